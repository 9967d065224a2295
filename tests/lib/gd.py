"""Test harness for gatherd: runs the real binary and the fakeup upstream as processes and talks
to them over real sockets on 127.0.0.1.  Nothing here sleeps for a fixed time: every wait is on
a log line, a fakeup counter (``/_wait``), a process exit or a socket, with a timeout.

Environment: ``GATHERD_BIN`` (the built binary), ``GATHERD_SRC`` (the repository root).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SRC = os.environ.get("GATHERD_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("GATHERD_BIN") or os.path.join(SRC, "build", "src", "gatherd")
FAKEUP = os.path.join(SRC, "tests", "upstream", "fakeup.py")
FIXTURES = os.path.join(SRC, "tests", "fixtures", "exchanges")
# The worker count a test gets unless it asks for one: run the suite with GD_TEST_WORKERS=2 to
# exercise the multi-worker paths.
DEFAULT_WORKERS = int(os.environ.get("GD_TEST_WORKERS", "1"))
FIXTURE_NAMES = ("bitbank_btc_jpy_ticker.json", "btcbox_ticker.json", "coincheck_ticker.json")


class HarnessError(AssertionError):
    """A process did not do what the harness waited for (timeout, early exit)."""


def filler(n):
    """The body fakeup's /huge_length and /huge_chunked send for bytes=n."""
    if n >= 2:
        return b'"' + b"a" * (n - 2) + b'"'
    return b"1" * n


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A port nobody listens on (bound, then closed without listen): connecting is refused."""
    return free_port()


# ---------------------------------------------------------------------------------------------
# fakeup


class FakeUpstream:
    """fakeup.py as a subprocess on 127.0.0.1, port chosen by the kernel."""

    def __init__(self, fixtures=None, start_timeout=15, args=(), scheme="http"):
        """``args`` are more fakeup options (``--tls-cert ...``); ``scheme`` is what url() says.
        With ``--control-port`` among them, the control routes go to that port."""
        cmd = [sys.executable, FAKEUP, "--host", "127.0.0.1", "--port", "0", *args]
        if fixtures:
            cmd += ["--fixtures", fixtures]
        self.scheme = scheme
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self._stderr = []
        self._t = threading.Thread(target=self._drain_stderr, daemon=True)
        self._t.start()
        line = _readline_with_timeout(self.proc.stdout, start_timeout)
        if not line:
            self.stop()
            raise HarnessError("fakeup did not start: " + "".join(self._stderr))
        ready = json.loads(line)
        self.port = ready["port"]
        self.control_port = ready.get("control_port", self.port)
        self.host = "127.0.0.1"

    def _drain_stderr(self):
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace"))

    def stderr(self):
        return "".join(self._stderr)

    def url(self, path="/"):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def _control(self, path, timeout):
        c = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=timeout)
        try:
            c.request("GET", path, headers={"X-Fakeup-Control": "1", "Connection": "close"})
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def stats(self):
        return self._control("/_stats", 10)[1]

    def reset(self):
        return self._control("/_reset", 10)[1]

    def log(self):
        """fakeup's request log since the last reset (arrival and end times, raw targets)."""
        return self._control("/_log", 10)[1]

    def switch(self, key, status):
        """Makes ``/switch?key=<key>`` answer ``status`` from now on."""
        self._control(f"/_switch?key={urllib.parse.quote(key)}&status={int(status)}", 10)

    def switch_calls(self, key):
        """The request log's entries for ``/switch?key=<key>`` (any other query beside it)."""
        pat = re.compile(r"[?&]key=" + re.escape(key) + r"(&|$)")
        return [e for e in self.log() if e["path"] == "/switch" and pat.search(e["target"])]

    def wait(self, counter, value, timeout=10, **more):
        """Wait until ``counter`` >= value (and each of ``more``); return the stats.  Raise
        HarnessError with the stats on timeout.  ``counter`` may be ``path:/x``."""
        want = {counter: value}
        want.update(more)
        return self.wait_all(want, timeout)

    def wait_le(self, counter, value, timeout=10):
        """Wait until ``counter`` <= value (e.g. connections_active going down)."""
        return self.wait_all({"le:" + counter: value}, timeout)

    def wait_all(self, want, timeout=10):
        """Wait until every condition of ``want`` ({counter: value}, ``le:counter`` for <=)
        holds."""
        q = urllib.parse.urlencode(dict(want, timeout_ms=int(timeout * 1000)))
        status, st = self._control("/_wait?" + q, timeout + 10)
        if status != 200:
            raise HarnessError(f"fakeup: waited {timeout}s for {want}; stats {st}")
        return st

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _readline_with_timeout(f, timeout):
    out = []

    def rd():
        out.append(f.readline())

    t = threading.Thread(target=rd, daemon=True)
    t.start()
    t.join(timeout)
    return out[0].decode() if out and out[0] else ""


# ---------------------------------------------------------------------------------------------
# gatherd


class _Lines:
    """Lines from a pipe, collected by a thread; waiters block on a condition."""

    def __init__(self, pipe):
        self.raw = []
        self.bytes = []       # the undecoded lines, to check encodings
        self.parsed = []      # dict, or None for a line that is not a JSON object
        self.closed = False
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.t.start()

    def _run(self, pipe):
        for line in iter(pipe.readline, b""):
            text = line.decode("utf-8", "replace").rstrip("\n")
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    obj = None
            except ValueError:
                obj = None
            with self.cond:
                self.bytes.append(line)
                self.raw.append(text)
                self.parsed.append(obj)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, pred, timeout, start=0):
        """First parsed line (index >= start) for which pred(line) is true, or None on timeout
        or when the pipe closed without one."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.parsed):
                    obj = self.parsed[i]
                    i += 1
                    if obj is not None and pred(obj):
                        return obj
                if self.closed:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def text(self):
        with self.cond:
            return "\n".join(self.raw)


class Gatherd:
    """The gatherd binary with a config written to a temporary file.

    ``config`` is a dict (written as JSON), a str (written as is) or None (built-in default).
    Unless ``args`` contains ``--listen`` or ``listen`` is None, it runs with ``--listen
    127.0.0.1:0``; the real address is taken from the ``listening`` log line.  ``prefix`` is a
    command that execs the binary (``["taskset", "-c", "0"]``), so the process is still gatherd.
    """

    def __init__(self, config=None, args=(), env=None, workers=DEFAULT_WORKERS, start_timeout=15,
                 wait_listening=True, listen="127.0.0.1:0", read_stdout=True, prefix=()):
        self.dir = tempfile.mkdtemp(prefix="gatherd-test-")
        self.config_path = None
        cmd = [*prefix, BIN]
        if config is not None:
            self.config_path = os.path.join(self.dir, "gatherd.json")
            self.write_config(config)
            cmd += ["--config", self.config_path]
        args = list(args)
        if (listen is not None and "--listen" not in args
                and not any(a.startswith("--listen=") for a in args)):
            cmd += ["--listen", listen]
        if workers is not None and "--workers" not in args:
            cmd += ["--workers", str(workers)]
        cmd += args
        self.cmd = cmd
        full_env = dict(os.environ)
        if env:
            for k, v in env.items():
                if v is None:
                    full_env.pop(k, None)
                else:
                    full_env[k] = v
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=full_env)
        # read_stdout=False leaves the access log pipe unread (a stuck log reader) until
        # start_stdout_reader().
        self.out = _Lines(self.proc.stdout) if read_stdout else None
        self.err = _Lines(self.proc.stderr)
        self.returncode = None
        self.port = None
        self.addr = None
        if wait_listening:
            line = self.err.wait(lambda o: o.get("msg") == "listening", start_timeout)
            if line is None:
                rc = self.proc.poll()
                self.kill()
                raise HarnessError(
                    f"gatherd did not log 'listening' within {start_timeout}s "
                    f"(exit {rc}); cmd {cmd}\nstderr:\n{self.err.text()}")
            self.listening = line
            self.addr = line.get("addr")
            m = re.search(r":(\d+)$", self.addr or "")
            if m:
                self.port = int(m.group(1))

    def wait_accepting(self, port, timeout=15):
        """For a gatherd whose log level hides the ``listening`` line: wait until ``port``
        accepts a connection (the socket is the event; the poll interval only paces the
        retries) and make it this instance's port."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"gatherd exited {self.proc.returncode} before accepting; "
                                   f"stderr:\n{self.err.text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
                self.port = port
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"gatherd did not accept on {port} within {timeout}s")
                time.sleep(0.02)

    # config --------------------------------------------------------------------------------

    def write_config(self, config):
        """(Re)write the config file atomically; with SIGHUP this is a reload."""
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start_stdout_reader(self):
        if self.out is None:
            self.out = _Lines(self.proc.stdout)

    # addresses -----------------------------------------------------------------------------

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    # logs ----------------------------------------------------------------------------------

    def access_lines(self):
        with self.out.cond:
            return [o for o in self.out.parsed if o is not None]

    def stdout_text(self):
        return self.out.text()

    def stdout_bytes(self):
        """The access log's lines as the raw bytes gatherd wrote."""
        with self.out.cond:
            return list(self.out.bytes)

    def stderr_text(self):
        return self.err.text()

    def log_lines(self):
        with self.err.cond:
            return [o for o in self.err.parsed if o is not None]

    def wait_log(self, msg, timeout=10, pred=None):
        """The first stderr line with this ``msg`` (and pred); HarnessError on timeout."""
        line = self.err.wait(lambda o: o.get("msg") == msg and (pred is None or pred(o)),
                             timeout)
        if line is None:
            raise HarnessError(f"no log line msg={msg!r} within {timeout}s; "
                               f"stderr:\n{self.err.text()}")
        return line

    def wait_access(self, pred, timeout=10):
        """The first access line for which pred is true; HarnessError on timeout."""
        line = self.out.wait(pred, timeout)
        if line is None:
            raise HarnessError(f"no matching access line within {timeout}s; "
                               f"stdout:\n{self.out.text()}")
        return line

    def wait_access_id(self, request_id, timeout=10):
        return self.wait_access(lambda o: o.get("request_id") == request_id, timeout)

    # process -------------------------------------------------------------------------------

    def signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=15):
        """The exit status; HarnessError if it is still running after ``timeout``."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"gatherd still running after {timeout}s; "
                               f"stderr:\n{self.err.text()}")
        # Let the reader threads see the end of both pipes.
        self.start_stdout_reader()
        self.out.t.join(5)
        self.err.t.join(5)
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.returncode = self.proc.wait()
        self.start_stdout_reader()
        self.out.t.join(5)
        self.err.t.join(5)
        self._cleanup()

    def stop(self, timeout=20):
        """SIGTERM and wait; SIGKILL after ``timeout``.  Returns the exit status (negative for a
        signal), or raises HarnessError if the process had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self._cleanup()
                raise HarnessError(f"gatherd ignored SIGTERM for {timeout}s; "
                                   f"stderr:\n{self.err.text()}")
        self.returncode = self.proc.wait()
        self.start_stdout_reader()
        self.out.t.join(5)
        self.err.t.join(5)
        self._cleanup()
        return self.returncode

    def _cleanup(self):
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        # A crash (sanitizer abort, segfault) fails the test even if its assertions passed.
        if exc_type is None and rc != 0:
            raise HarnessError(f"gatherd exited with {rc} after SIGTERM; "
                               f"stderr:\n{self.err.text()}")


def run_check_config(config, env=None, args=(), timeout=15):
    """Run ``gatherd --check-config --config FILE``; return (rc, stdout, stderr, path)."""
    d = tempfile.mkdtemp(prefix="gatherd-check-")
    try:
        path = os.path.join(d, "gatherd.json")
        with open(path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config, indent=2))
        full_env = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        p = subprocess.run([BIN, "--check-config", "--config", path, *args],
                           capture_output=True, timeout=timeout, env=full_env,
                           stdin=subprocess.DEVNULL)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_bin(args, env=None, timeout=15):
    """Run the binary with arguments to completion; return (rc, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run([BIN, *args], capture_output=True, timeout=timeout, env=full_env,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# configs


def endpoint(path, backends, timeout_ms=None, **kw):
    """An endpoint dict; ``backends`` is a list of (name, url) pairs or backend dicts."""
    bs = []
    for b in backends:
        if isinstance(b, dict):
            bs.append(b)
        else:
            name, url = b[0], b[1]
            d = {"name": name, "url": url}
            if len(b) > 2:
                d.update(b[2])
            bs.append(d)
    ep = {"path": path, "backends": bs}
    if timeout_ms is not None:
        ep["timeout_ms"] = timeout_ms
    ep.update(kw)
    return ep


def config(*endpoints, **top):
    c = {"endpoints": list(endpoints)}
    c.update(top)
    return c


# ---------------------------------------------------------------------------------------------
# HTTP clients


def http_get(url, headers=None, timeout=10, method="GET", body=None):
    """One request on a fresh connection: (status, headers with lower-case names, body)."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def get_json(url, **kw):
    status, headers, body = http_get(url, **kw)
    return status, headers, json.loads(body)


def raw_request(port, data, timeout=10, host="127.0.0.1"):
    """Send raw bytes, return the raw bytes of one response (head plus body as framed by
    Content-Length or chunking) or whatever arrived before the server closed the connection.
    A reset counts as a close.  Raises socket.timeout if the server neither answers nor closes
    within ``timeout``."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        return read_response(s, timeout)
    finally:
        s.close()


def read_response(s, timeout=10):
    """Read one HTTP response from a socket (see raw_request)."""
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout

    def more():
        nonlocal buf
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no complete response within %ss (got %r)" % (timeout, buf[:200]))
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        buf += chunk
        return bool(chunk)

    while b"\r\n\r\n" not in buf:
        if not more():
            return buf
    head, _, rest = buf.partition(b"\r\n\r\n")
    hl = head.decode("latin-1").lower()
    status_line = hl.split("\r\n")[0]
    m = re.search(r"\r\ncontent-length:\s*(\d+)", hl)
    if status_line.split(" ")[1:2] in (["204"], ["304"]) or re.match(r"http/1\.\d 1\d\d", hl):
        return buf
    if m:
        n = int(m.group(1))
        while len(buf) - len(head) - 4 < n:
            if not more():
                break
        return buf
    if re.search(r"\r\ntransfer-encoding:\s*chunked", hl):
        while not buf.endswith(b"0\r\n\r\n"):
            if not more():
                break
        return buf
    while more():
        pass
    return buf


def response_length(buf, head_request=False):
    """Length of the first complete HTTP response in buf (framed by Content-Length or chunked),
    or None if it is not complete yet (or is delimited by the connection closing)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").lower()
    start = end + 4
    m = re.match(r"http/1\.\d (\d{3})", head)
    code = int(m.group(1)) if m else 0
    if head_request or code in (204, 304) or 100 <= code < 200:
        return start
    m = re.search(r"\r\ncontent-length:\s*(\d+)", head)
    if m:
        n = start + int(m.group(1))
        return n if len(buf) >= n else None
    if re.search(r"\r\ntransfer-encoding:\s*chunked", head):
        i = start
        while True:
            j = buf.find(b"\r\n", i)
            if j < 0:
                return None
            size = int(buf[i:j].split(b";")[0] or b"0", 16)
            if size == 0:
                k = buf.find(b"\r\n\r\n", j)
                return k + 4 if k >= 0 else None
            i = j + 2 + size + 2
            if i > len(buf):
                return None
    return None


def read_responses(s, n, timeout=10):
    """Read n pipelined responses from a socket: a list of (status, headers, body)."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = b""
    out = []
    while len(out) < n:
        k = response_length(buf)
        if k is not None:
            out.append(parse_response(buf[:k]))
            buf = buf[k:]
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"{len(out)} of {n} responses within {timeout}s")
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} responses: {buf[:200]!r}")
        buf += chunk
    return out


def parse_response(raw):
    """(status, headers lower-case, body) from raw bytes; status None if no status line."""
    if not raw:
        return None, {}, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    status = int(m.group(1)) if m else None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
    return status, headers, body


def dechunk(data):
    out = b""
    while data:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def unix_request(path, data, timeout=10):
    """raw_request over a unix socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(data)
        return read_response(s, timeout)
    finally:
        s.close()


def connect_refused(port, host="127.0.0.1", timeout=5):
    """True if a TCP connect to the port is refused (nothing listens)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# JSON helpers


def raw_members(body, key="results"):
    """The raw bytes of each element of the top-level array ``key`` in a JSON object body, so a
    test can check that gatherd copied an upstream body byte for byte."""
    s = body
    i = _ws(s, 0)
    if s[i:i + 1] != b"{":
        raise ValueError("not an object")
    i += 1
    while True:
        i = _ws(s, i)
        if s[i:i + 1] == b"}":
            raise KeyError(key)
        kstart = i
        i = _skip(s, i)
        k = json.loads(s[kstart:i])
        i = _ws(s, i)
        assert s[i:i + 1] == b":"
        i = _ws(s, i + 1)
        if k == key:
            assert s[i:i + 1] == b"["
            i += 1
            out = []
            while True:
                i = _ws(s, i)
                if s[i:i + 1] == b"]":
                    return out
                start = i
                i = _skip(s, i)
                out.append(s[start:i])
                i = _ws(s, i)
                if s[i:i + 1] == b",":
                    i += 1
        i = _skip(s, i)
        i = _ws(s, i)
        if s[i:i + 1] == b",":
            i += 1


def _ws(s, i):
    while i < len(s) and s[i] in b" \t\r\n":
        i += 1
    return i


def _skip(s, i):
    """Index just past the JSON value starting at i."""
    c = s[i:i + 1]
    if c == b'"':
        i += 1
        while True:
            ch = s[i]
            if ch == 0x5C:
                i += 2
            elif ch == 0x22:
                return i + 1
            else:
                i += 1
    if c in (b"{", b"["):
        depth = 0
        while True:
            ch = s[i:i + 1]
            if ch == b'"':
                i = _skip(s, i)
                continue
            if ch in (b"{", b"["):
                depth += 1
            elif ch in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    while i < len(s) and s[i:i + 1] not in b",]} \t\r\n":
        i += 1
    return i


def metric_sum(text, name):
    """Sum of every sample of metric ``name`` (any labels) in Prometheus text."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            total += float(m.group(3))
            found = True
    return total if found else None


def stop_checked(g, *others):
    """Stops gatherd and then ``others`` (fakeups), whatever happens; fails unless gatherd
    exited 0, which is also how a sanitizer report or a leak fails a test."""
    try:
        rc = g.stop()
        assert rc == 0, f"gatherd exit {rc}: {g.stderr_text()}"
    finally:
        for o in others:
            o.stop()


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it is truthy (return its value) or raise after timeout seconds.  For
    conditions nothing announces, such as a counter gatherd updates just after an answer."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition format 0.0.4, parsed strictly


class ExpositionError(AssertionError):
    """The text is not a valid exposition; the message names the line."""


METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's ParseFloat forms as Prometheus writes them; Python's float() also takes "1_0", "inf",
# "infinity" and "nan" in any case, which the format does not.
FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN")
_TIMESTAMP = re.compile(r"-?[0-9]+")
_BLANKS = re.compile(r"[ \t]*")
_META = re.compile(r"#[ \t]+(HELP|TYPE)(?:[ \t]+([^ \t]*)(?:[ \t]+(.*))?)?$")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


class Exposition:
    """A parsed exposition: ``types`` and ``helps`` by family name; ``samples`` maps
    (sample name, frozenset of label pairs) to the value, in the order written."""

    def __init__(self):
        self.types = {}
        self.helps = {}
        self.samples = {}
        self.family = {}  # sample key -> family name

    def get(self, name, **labels):
        """The value of the series with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name):
        """[(labels dict, value)] of every sample called ``name``."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]

    def of_family(self, family):
        """[(sample name, labels dict, value)] of every sample of a family."""
        return [(k[0], dict(k[1]), v) for k, v in self.samples.items()
                if self.family[k] == family]


def _unescape(s, i, escapes, fail, quote=None):
    """Read s from i to an unescaped ``quote`` (to the end when None), undoing the backslash
    escapes in ``escapes`` (``n`` is a line feed) and refusing any other; (text, index after)."""
    out = []
    while True:
        if i >= len(s):
            if quote is not None:
                fail("unterminated label value")
            return "".join(out), i
        c = s[i]
        if c == "\\":
            esc = s[i + 1:i + 2]
            if esc not in escapes:
                fail(f"bad escape \\{esc}")
            out.append("\n" if esc == "n" else esc)
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1


def _family_of(types, name):
    if name in types:
        return name
    for t, suffixes in _SUFFIXES.items():
        for s in suffixes:
            if s and name.endswith(s) and types.get(name[:-len(s)]) == t:
                return name[:-len(s)]
    return None


def _parse_labels(s, i, fail):
    """Parse '{...}' starting at s[i] == '{'; return (labels dict, index after '}')."""
    def blanks(i):
        return _BLANKS.match(s, i).end()

    labels = {}
    i = blanks(i + 1)
    while s[i:i + 1] != "}":
        m = _LABEL_NAME.match(s, i)
        if not m:
            fail("bad label name")
        name = m.group(0)
        if name.startswith("__"):
            fail(f"reserved label name {name}")
        if name in labels:
            fail(f"label {name} twice")
        i = blanks(m.end())
        if s[i:i + 1] != "=":
            fail(f"no '=' after label {name}")
        i = blanks(i + 1)
        if s[i:i + 1] != '"':
            fail(f"label {name}: value not quoted")
        labels[name], i = _unescape(s, i + 1, ("\\", '"', "n"), fail, quote='"')
        i = blanks(i)
        if s[i:i + 1] == ",":
            i = blanks(i + 1)
        elif s[i:i + 1] != "}":
            fail("expected ',' or '}' after a label")
    return labels, i + 1


def parse_metrics(text):
    """Parse ``text`` (str or UTF-8 bytes) as the text format 0.0.4 and return an Exposition.
    Raises ExpositionError on: a malformed line or escape, a sample whose family has no TYPE
    before it, a sample name its family's type does not have, a second TYPE or HELP for a
    family, a family whose lines are not one group, a duplicate series, a missing final line
    feed."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ExpositionError(f"not UTF-8: {e}")
    if text and not text.endswith("\n"):
        raise ExpositionError("the last line does not end with a line feed")
    exp = Exposition()
    done = set()      # families whose group has ended
    current = None

    def enter(family, fail):
        nonlocal current
        if family != current:
            if family in done:
                fail(f"lines of {family} are not one group")
            if current is not None:
                done.add(current)
            current = family

    for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        def fail(why, n=n, line=line):
            raise ExpositionError(f"line {n}: {why}: {line!r}")

        if line.strip(" \t") == "":
            continue
        if line.startswith("#"):
            m = _META.match(line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.group(1), m.group(2) or "", m.group(3) or ""
            if not _NAME.fullmatch(name):
                fail(f"{kind} without a valid metric name")
            enter(name, fail)
            if kind == "TYPE":
                if name in exp.types:
                    fail(f"second TYPE for {name}")
                if rest not in METRIC_TYPES:
                    fail(f"unknown type {rest!r}")
                exp.types[name] = rest
            else:
                if name in exp.helps:
                    fail(f"second HELP for {name}")
                exp.helps[name] = _unescape(rest, 0, ("\\", "n"), fail)[0]
            continue
        m = _NAME.match(line)
        if not m:
            fail("bad metric name")
        name = m.group(0)
        i = m.end()
        labels = {}
        if line[i:i + 1] == "{":
            labels, i = _parse_labels(line, i, fail)
        fields = re.fullmatch(r"[ \t]+([^ \t]+)(?:[ \t]+([^ \t]+))?", line[i:])
        if not fields:
            fail("expected blanks, a value and at most a timestamp")
        value, timestamp = fields.groups()
        if not FLOAT.fullmatch(value):
            fail(f"bad value {value!r}")
        if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
            fail(f"bad timestamp {timestamp!r}")
        family = _family_of(exp.types, name)
        if family is None:
            fail(f"sample {name} has no TYPE")
        t = exp.types[family]
        if t in _SUFFIXES and name[len(family):] not in _SUFFIXES[t]:
            fail(f"{name} is not a sample of {t} {family}")
        if t == "histogram" and name.endswith("_bucket") and "le" not in labels:
            fail("bucket without le")
        if t == "summary" and name == family and "quantile" not in labels:
            fail("summary sample without quantile")
        enter(family, fail)
        key = (name, frozenset(labels.items()))
        if key in exp.samples:
            fail("duplicate series")
        exp.samples[key] = float(value)
        exp.family[key] = family
    return exp


def scrape(g, timeout=10):
    """GET /metrics from a Gatherd and parse it strictly: an Exposition."""
    status, headers, body = http_get(g.url("/metrics"), timeout=timeout)
    if status != 200:
        raise HarnessError(f"/metrics answered {status}: {body[:300]!r}")
    return parse_metrics(body)
