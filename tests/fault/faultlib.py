"""Helpers shared by the fault suite (tests/fault), on top of tests/lib/gd.py.

Nothing here sleeps for a fixed time: waits are on sockets, log lines, fakeup counters or a
clock deadline while polling a condition that is expected to become true.
"""

import json
import os
import socket
import stat
import sys
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, http_get, wait_until  # noqa: F401 (re-exported)


def join(url, timeout=15, headers=None):
    """GET an aggregate endpoint: (status, parsed body, headers)."""
    status, hdrs, body = http_get(url, timeout=timeout, headers=headers)
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"answer is not JSON: status {status}, body {body[:300]!r}")
    return status, doc, hdrs


def metrics(g):
    status, _, body = http_get(g.url("/metrics"), timeout=10)
    assert status == 200, status
    return body.decode()


def metric(g, name):
    return gd.metric_sum(metrics(g), name)


def recv_until_closed(s, timeout):
    """Read until EOF/reset; return (bytes, closed) where closed is False on timeout."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


def split_responses(data):
    """Split a byte stream of complete HTTP/1.1 responses (Content-Length or chunked framing)
    into a list of gd.parse_response() triples; the incomplete tail is ignored."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out
        head = data[:end].decode("latin-1")
        rest = data[end + 4:]
        hl = head.lower()
        n = None
        for line in hl.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip() == "content-length":
                n = int(v.strip())
        if n is not None:
            if len(rest) < n:
                return out
            out.append(gd.parse_response(data[:end + 4 + n]))
            data = rest[n:]
        elif "transfer-encoding: chunked" in hl:
            term = rest.find(b"0\r\n\r\n")
            if term < 0:
                return out
            out.append(gd.parse_response(data[:end + 4 + term + 5]))
            data = rest[term + 5:]
        else:
            out.append(gd.parse_response(data))
            return out


class FaultTest(unittest.TestCase):
    """One fakeup and one gatherd for the class; ``make_config(up)`` builds the config.
    Every test can call ``assert_healthy()``; tearDownClass asserts exit 0 at SIGTERM."""

    workers = 1
    gd_args = ()

    @classmethod
    def make_config(cls, up):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        try:
            cfg = cls.make_config(cls.up)
            ep_paths = [e["path"] for e in cfg["endpoints"]]
            if "/fast" not in ep_paths:
                cfg["endpoints"].append(gd.endpoint(
                    "/fast", [("a", cls.up.url("/ok?id=a")), ("b", cls.up.url("/ok?id=b"))],
                    timeout_ms=10000))
            cls.gd = Gatherd(cfg, workers=cls.workers, args=cls.gd_args)
        except BaseException:
            cls.up.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.gd.stop()
            assert rc == 0, f"gatherd exit {rc} after SIGTERM; stderr:\n{cls.gd.stderr_text()}"
        finally:
            cls.up.stop()

    def assert_healthy(self):
        """/healthz answers 200 and a normal aggregate request joins both backends."""
        status, _, body = http_get(self.gd.url("/healthz"), timeout=10)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "ok"})
        status, doc, _ = join(self.gd.url("/fast"))
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc, {"results": [{"ok": True, "id": "a"}, {"ok": True, "id": "b"}],
                               "errors": []})
        self.assertTrue(self.gd.alive())


# ---------------------------------------------------------------------------------------------
# A DNS server that answers some names NXDOMAIN and swallows queries for others, and gatherd
# run in a private mount namespace whose /etc/resolv.conf points at it.


def _qname(msg):
    labels, i = [], 12
    while i < len(msg):
        n = msg[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:
            return None, i
        labels.append(msg[i + 1:i + 1 + n].decode("latin-1"))
        i += 1 + n
    return ".".join(labels).lower(), i


class StubDNS:
    """UDP DNS on ``addr``:53.  Names starting with ``blackhole`` get no answer at all (queries
    are counted in ``swallowed``); every other name is answered NXDOMAIN (``answered``)."""

    def __init__(self, addr):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.2)
        self.swallowed = []
        self.answered = []
        self.cond = threading.Condition()
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(msg) < 12:
                continue
            name, end = _qname(msg)
            if name is None:
                continue
            with self.cond:
                if name.startswith("blackhole"):
                    self.swallowed.append(name)
                    self.cond.notify_all()
                    continue
                self.answered.append(name)
                self.cond.notify_all()
            qid, flags = struct.unpack("!HH", msg[:4])
            # QR, opcode copied, RD copied, RA, RCODE 3 (NXDOMAIN); the question echoed.
            rflags = 0x8000 | (flags & 0x7900) | 0x0080 | 3
            reply = struct.pack("!HHHHHH", qid, rflags, 1, 0, 0, 0) + msg[12:end + 4]
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                pass

    def wait_swallowed(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.swallowed) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"DNS stub: {len(self.swallowed)} black-holed queries "
                                         f"after {timeout}s, wanted {n}")
                self.cond.wait(left)

    def stop(self):
        self._stop = True
        self.t.join(2)
        self.sock.close()


def private_resolv_wrapper(resolv_text):
    """Return (wrapper_path, tmpdir, reason).  The wrapper runs its arguments in a private
    mount namespace where ``resolv_text`` is bind-mounted over /etc/resolv.conf (the process
    keeps its pid: unshare and sh exec).  wrapper_path is None when this is impossible here,
    with the reason."""
    d = tempfile.mkdtemp(prefix="gatherd-dns-")
    resolv = os.path.join(d, "resolv.conf")
    with open(resolv, "w") as f:
        f.write(resolv_text)
    wrapper = os.path.join(d, "in-ns.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                "exec unshare --mount --propagation private sh -c "
                "'mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"' "
                f"'{resolv}' \"$@\"\n")
    os.chmod(wrapper, stat.S_IRWXU)
    try:
        p = subprocess.run([wrapper, "cat", "/etc/resolv.conf"], capture_output=True,
                           timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, d, f"cannot run unshare: {e}"
    if p.returncode != 0 or p.stdout.decode(errors="replace") != resolv_text:
        return None, d, ("unshare --mount / mount --bind not permitted here: "
                         + p.stderr.decode(errors="replace").strip())
    return wrapper, d, None


def gatherd_in_namespace(wrapper, cfg, **kw):
    """A gd.Gatherd whose binary runs under ``wrapper`` (see private_resolv_wrapper)."""
    real = gd.BIN
    script = os.path.join(os.path.dirname(wrapper), "gatherd")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\nexec '{wrapper}' '{real}' \"$@\"\n")
    os.chmod(script, stat.S_IRWXU)
    gd.BIN = script
    try:
        return Gatherd(cfg, **kw)
    finally:
        gd.BIN = real


def short(x, n=600):
    """repr(x) cut to n characters, for assertion messages about large answers."""
    s = repr(x)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def main():
    """unittest.main(), but exit 77 (meson's "skipped") when every test was skipped, e.g.
    because setUpClass found the environment unfit."""
    prog = unittest.main(exit=False)
    r = prog.result
    for test, reason in r.skipped:
        print(f"skipped {test}: {reason}", file=sys.stderr)
    if r.wasSuccessful() and r.skipped and r.testsRun <= len(r.skipped):
        sys.exit(77)
    sys.exit(0 if r.wasSuccessful() else 1)
