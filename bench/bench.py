#!/usr/bin/env python3
"""gatherd benchmark: gatherd against nginx, nginx+Lua and Go references, one Markdown table.

Started by bench/run.sh (which installs packages and builds gatherd) or bench/profile.sh.
Everything it starts (nginx instances, gatherd, wrk, perf) lives in its own process group
and is stopped on exit, including on Ctrl-C; files go to one temporary folder under /tmp.

Processes:
  upstream nginx   zero-delay fixture bodies at /fix/NAME.json and the same bodies after a
                   non-blocking delay (echo module's echo_sleep + echo_exec) at /dMS/NAME.json,
                   on N_UP ports, one per "upstream host". Keep-alive, 2 workers.
  reference nginx  R1: the joined K=3 answer as a static file; R2: proxy_pass to one upstream
                   with a keepalive pool. Started per scenario with 1 or 2 workers.
  nginx + Lua      the K-way join in lua-nginx-module: capture_multi on K internal locations,
                   each proxy_pass to its own keepalive upstream block. One worker.
  Go               the K-way join in Go's net/http (bench/ref-go/main.go, built at bench time):
                   one shared keep-alive http.Client, a goroutine per upstream.
  gatherd          one config per scenario, endpoint /agg with K backends.
  cached endpoint  gatherd K=3 with "cache" and "refresh_ms" against nginx-static (the same
                   bytes as a static file); its backends are 3 more ports of the upstream nginx
                   that log every request (port, time, X-Request-Id), so the background
                   refresh's upstream calls are counted where they arrive.
  HTTPS            the upstream nginx also serves the fixtures over TLS (HTTP/1.1 and HTTP/2
                   by ALPN) on 3 ports, with a certificate from a PKI made at bench time
                   (tests/lib/tlsca.py); R2-TLS proxies to one of them with proxy_ssl_verify,
                   proxy_ssl_session_reuse and a keep-alive pool; gatherd verifies with ca_file.
Load: wrk (closed loop, fixed duration, --latency) or, for single-request fan-out latency,
sequential curl requests.
"""

import argparse
import datetime
import glob
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXDIR = os.path.join(ROOT, "tests", "fixtures", "exchanges")


def _ports_free(base):
    for port in range(base + 80, base + 200):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _choose_port_base():
    """BENCH_PORT_BASE, or the first of 18000, 19000, ... 29000 whose ports are all free
    (other test suites on this machine listen on ports of their own choosing)."""
    if os.environ.get("BENCH_PORT_BASE"):
        return int(os.environ["BENCH_PORT_BASE"])
    for base in range(18000, 30000, 1000):
        if _ports_free(base):
            return base
    return 18000


PORT_BASE = _choose_port_base()
R1_PORT = PORT_BASE + 81
R2_PORT = PORT_BASE + 82
LUA_PORT = PORT_BASE + 83
GO_PORT = PORT_BASE + 84
TLS_UP_BASE = PORT_BASE + 85  # 3 HTTPS upstream ports: backend i of a TLS scenario
R2_TLS_PORT = PORT_BASE + 88
GATHERD_PORT = PORT_BASE + 90
LOGGED_UP_BASE = PORT_BASE + 91  # 3 upstream ports with an access log: backend i of k3-cache
UP_BASE = PORT_BASE + 100
N_UP = 100  # upstream "hosts": distinct ports on 127.0.0.1
DELAYS_MS = (10, 20, 50, 500, 1000)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
GO_SRC = os.path.join(HERE, "ref-go", "main.go")


def nginx_module(name):
    """Path of a dynamic nginx module: /usr/lib/nginx/modules/NAME, or the file named by the
    load_module line of Debian's /usr/share/nginx/modules-available/*.conf (relative to
    nginx's prefix /usr/share/nginx, where modules/ links to /usr/lib/nginx/modules)."""
    direct = os.path.join("/usr/lib/nginx/modules", name)
    if os.path.exists(direct):
        return direct
    for conf in glob.glob("/usr/share/nginx/modules-available/*.conf"):
        with open(conf) as f:
            m = re.search(r"load_module\s+(\S*" + re.escape(name) + r");", f.read())
        if m:
            path = m.group(1)
            path = path if path.startswith("/") else os.path.join("/usr/share/nginx", path)
            if os.path.exists(path):
                return path
    return None


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Scenarios. kind: "ref" (nginx reference), "gatherd" (wrk load), "single" (sequential requests).
# cmp names the reference a gatherd row is compared with; --only pulls it in automatically.
# Each reference runs just before the rows compared with it, so that a change in the load other
# work puts on the machine is less likely to fall between the two.

LIFTED_POOL = {"upstream_max_host_connections": 0, "upstream_idle_connections": 2048}

SCENARIOS = [
    dict(name="r1", kind="ref", ref="static", workers=2, conns=64,
         label="R1 nginx static join (K=3)"),
    dict(name="r2", kind="ref", ref="proxy", workers=2, conns=64,
         label="R2 nginx proxy_pass, 1 upstream"),
    dict(name="k3", kind="gatherd", k=3, workers=2, conns=64, cmp="r2", target="k3",
         label="gatherd K=3, 0 ms"),
    dict(name="k3-log", kind="gatherd", k=3, workers=2, conns=64, cmp="r2", access_log=True,
         label="gatherd K=3, 0 ms, access log on"),
    dict(name="k20", kind="gatherd", k=20, workers=2, conns=64, cmp="r2", target="k20",
         label="gatherd K=20, 0 ms"),
    dict(name="k3-pool", kind="gatherd", k=3, workers=2, conns=64, cmp="r2", pool=LIFTED_POOL,
         label="gatherd K=3, 0 ms, pool caps lifted"),
    dict(name="k20-pool", kind="gatherd", k=20, workers=2, conns=64, cmp="r2", pool=LIFTED_POOL,
         label="gatherd K=20, 0 ms, pool caps lifted"),
    dict(name="r2-w1", kind="ref", ref="proxy", workers=1, conns=64,
         label="R2 nginx proxy_pass, 1 upstream, 1 worker"),
    dict(name="k3-w1", kind="gatherd", k=3, workers=1, conns=64, cmp="r2-w1",
         label="gatherd K=3, 0 ms, 1 worker"),
    dict(name="k20-w1", kind="gatherd", k=20, workers=1, conns=64, cmp="r2-w1",
         label="gatherd K=20, 0 ms, 1 worker"),
    # Other implementations of the same join, for the same upstreams (issue 16): what a
    # scripted nginx and an idiomatic Go service pay per request for a K-way fan-out.
    dict(name="lua-k3", kind="ref", ref="lua", k=3, workers=1, conns=64, cmp="r2-w1",
         label="nginx+Lua capture_multi K=3, 0 ms, 1 worker"),
    dict(name="lua-k20", kind="ref", ref="lua", k=20, workers=1, conns=64, cmp="r2-w1",
         label="nginx+Lua capture_multi K=20, 0 ms, 1 worker"),
    # nginx+Lua at the connections of the "flat" rows below: how a peer's CPU per request
    # moves with the load on this machine.
    dict(name="lua-k20-c16", kind="ref", ref="lua", k=20, workers=1, conns=16, cmp="r2-w1",
         label="nginx+Lua capture_multi K=20, 0 ms, 1 worker, 16 conns"),
    dict(name="lua-k20-c256", kind="ref", ref="lua", k=20, workers=1, conns=256, cmp="r2-w1",
         label="nginx+Lua capture_multi K=20, 0 ms, 1 worker, 256 conns"),
    dict(name="go-k3", kind="ref", ref="go", k=3, conns=64, cmp="r2",
         label="Go net/http K=3, 0 ms"),
    dict(name="go-k20", kind="ref", ref="go", k=20, conns=64, cmp="r2",
         label="Go net/http K=20, 0 ms"),
    # CPU per request should not grow with the load: the same K=20 one-worker row (k20-w1 is
    # the 64-connection point) at a quarter and four times the connections.
    dict(name="k20-w1-c16", kind="gatherd", k=20, workers=1, conns=16, cmp="r2-w1",
         label="gatherd K=20, 0 ms, 1 worker, 16 conns"),
    dict(name="k20-w1-c256", kind="gatherd", k=20, workers=1, conns=256, cmp="r2-w1",
         label="gatherd K=20, 0 ms, 1 worker, 256 conns"),
    # HTTPS upstreams (issue 15): the same K=3 join over verified TLS with HTTP/1.1 and with
    # HTTP/2, against nginx proxying one leg over TLS; every TLS connection the upstream accepts
    # is one handshake, so "upstream TLS handshakes/req" is its connections opened per request.
    dict(name="r2-tls", kind="ref", ref="proxy-tls", workers=2, conns=64, tls=True,
         label="R2-TLS nginx proxy_pass over HTTPS, 1 upstream"),
    dict(name="k3-tls-h1", kind="gatherd", k=3, workers=2, conns=64, cmp="r2-tls", tls=True,
         http2="off", label="gatherd K=3, 0 ms, HTTPS, HTTP/1.1"),
    dict(name="k3-tls-h2", kind="gatherd", k=3, workers=2, conns=64, cmp="r2-tls", tls=True,
         http2="auto", label="gatherd K=3, 0 ms, HTTPS, HTTP/2"),
    dict(name="r2-d50", kind="ref", ref="proxy", workers=2, conns=16, delay=50,
         label="R2 nginx proxy_pass, 50 ms upstream, 16 conns"),
    dict(name="k3-d50-c16", kind="gatherd", k=3, workers=2, conns=16, delay=50, cmp="r2-d50",
         target="d50", pool=LIFTED_POOL, label="gatherd K=3, 50 ms, 16 conns"),
    dict(name="k1-d50-c16", kind="gatherd", k=1, workers=2, conns=16, delay=50, cmp="r2-d50",
         pool=LIFTED_POOL, label="gatherd K=1, 50 ms, 16 conns (same leg as R2)"),
    dict(name="k3-d50-c256", kind="gatherd", k=3, workers=2, conns=256, delay=50,
         cmp="r2-d50", pool=LIFTED_POOL, label="gatherd K=3, 50 ms, 256 conns"),
    dict(name="k3-d50-c256-cap", kind="gatherd", k=3, workers=2, conns=256, delay=50,
         cmp="r2-d50", label="gatherd K=3, 50 ms, 256 conns, default pool caps"),
    dict(name="inflight1000", kind="gatherd", k=3, workers=2, conns=1000, delay=1000,
         pool=LIFTED_POOL, target="inflight", label="gatherd 1,000 in flight, K=3, 1 s"),
    # The same load with coalescing on: the 1,000 share one transfer per backend and worker.
    dict(name="inflight1000-co", kind="gatherd", k=3, workers=2, conns=1000, delay=1000,
         coalesce=True, target="inflight",
         label="gatherd 1,000 in flight, K=3, 1 s, coalesce on"),
    dict(name="k3-co", kind="gatherd", k=3, workers=2, conns=64, cmp="r2", coalesce=True,
         label="gatherd K=3, 0 ms, coalesce on"),
    # The response cache and background refresh (issue 13): a cached K=3 answer against nginx
    # serving the same bytes as a static file, and the upstream calls the refresh makes during
    # that load (a row of its own, from the same run: "derived" rows run nothing).
    dict(name="nginx-static", kind="ref", ref="static", workers=2, conns=64,
         label="nginx-static: the cached K=3 answer as a static file"),
    dict(name="k3-cache", kind="gatherd", k=3, workers=2, conns=64, cmp="nginx-static",
         cache={"ttl_ms": 60000}, refresh_ms=1000, target="cache",
         label="gatherd K=3, cache ttl 60 s, refresh_ms 1000"),
    dict(name="k3-refresh", kind="derived", of="k3-cache", part="refresh", conns=64,
         target="refresh", label="upstream calls during k3-cache's load (refresh_ms 1000, "
         "3 backends)"),
    dict(name="fanout1", kind="single", k=1, workers=2, delay=500, target="fanout",
         label="gatherd fan-out 1, 500 ms, 1 request"),
    dict(name="fanout10", kind="single", k=10, workers=2, delay=500, target="fanout",
         label="gatherd fan-out 10, 500 ms, 1 request"),
    dict(name="fanout100", kind="single", k=100, workers=2, delay=500, target="fanout",
         pool=LIFTED_POOL, label="gatherd fan-out 100, 500 ms, 1 request"),
    # The policies of issue 11, default pool settings, one worker: a concurrency limit runs
    # 20 backends in four waves of five (2.0 s), and one call per item of a 100-item list
    # (each) takes one upstream delay, not a hundred.
    dict(name="conc5", kind="single", k=20, workers=1, delay=500, concurrency=5,
         target="waves", label="gatherd 20 backends × 500 ms, concurrency 5, 1 request"),
    dict(name="each100", kind="single", k=1, each=100, workers=1, delay=500,
         target="fanout", label="gatherd 100 items × 500 ms (each), 1 request"),
    # Streaming (issue 12): one slow backend among three. Streamed (Accept:
    # application/x-ndjson), the first line leaves when the 10 ms backend answers; the plain
    # join to the same endpoint waits for the 500 ms one.
    dict(name="stream-first", kind="single", k=3, delays=(10, 20, 500), workers=1,
         stream=True, target="first",
         label="gatherd K=3 at 10/20/500 ms, first NDJSON line, 1 request"),
    dict(name="stream-plain", kind="single", k=3, delays=(10, 20, 500), workers=1,
         target="plain500", label="gatherd K=3 at 10/20/500 ms, plain join, 1 request"),
]
BY_NAME = {s["name"]: s for s in SCENARIOS}
# Names --only also takes, for a set of scenarios measured together.
GROUPS = {
    "compare-k3": ["r2", "r2-w1", "k3", "k3-w1", "lua-k3", "go-k3"],
    "compare-k20": ["r2", "r2-w1", "k20", "k20-w1", "lua-k20", "go-k20"],
    "flat": ["k20-w1-c16", "k20-w1", "k20-w1-c256", "lua-k20-c16", "lua-k20", "lua-k20-c256"],
    "tls": ["r2", "k3", "r2-tls", "k3-tls-h1", "k3-tls-h2"],
}
GROUPS["policies"] = ["conc5", "each100"]
GROUPS["stream"] = ["stream-first", "stream-plain"]
GROUPS["cache"] = ["nginx-static", "k3-cache", "k3-refresh"]
GROUPS["compare"] = list(dict.fromkeys(GROUPS["compare-k3"] + GROUPS["compare-k20"]
                                        + GROUPS["flat"]))
REF_SHORT = {"r2": "R2", "r2-w1": "R2 (1 worker)", "r2-d50": "R2 @50 ms", "r2-tls": "R2-TLS",
             "nginx-static": "nginx-static"}


# ---------------------------------------------------------------------------------------------
# Process bookkeeping.

class Procs:
    """Every process the benchmark starts, each the leader of its own process group."""

    def __init__(self):
        self.live = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # The leader is gone; make sure no child of it (an nginx worker) lingers.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(reversed(self.live)):
            self.stop(p, grace=3.0)


PROCS = Procs()


def proc_cpu_s(pid):
    """CPU seconds (user+system) used so far by a process, all its threads; 0 once it is gone.

    Summed from each thread's schedstat (nanoseconds) where the kernel has it, so that a few
    requests can be measured; otherwise utime+stime from /proc/PID/stat (clock ticks). The
    processes measured here keep their threads for their whole life, so the per-thread sum
    does not lose the share of a thread that ended."""
    try:
        total = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, IndexError, ValueError):
        return sum(proc_user_sys_s(pid))


def proc_user_sys_s(pid):
    """(user, system) CPU seconds of a process, all its threads, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except (OSError, IndexError):
        return 0.0, 0.0


def machine_busy_s():
    """CPU seconds all CPUs spent in user, nice and system mode (not interrupts)."""
    with open("/proc/stat") as f:
        v = f.readline().split()
    return (int(v[1]) + int(v[2]) + int(v[3])) / CLK_TCK


def children_cpu_s():
    """CPU seconds of the benchmark's finished children (wrk, curl) so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def family(pid):
    """pid and its direct children (an nginx master and its workers)."""
    pids = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            pids.append(int(d))
    return pids


def wait_port(port, proc, timeout=10.0, path="/"):
    """Waits until an HTTP GET on 127.0.0.1:port answers at all; False if proc died first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_fetch(url, timeout=30.0):
    """(status, headers, body) of a GET."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def http_get(url, timeout=30.0):
    st, _, body = http_fetch(url, timeout)
    return st, body


def lua_join_http(legs, port):
    """The http{} block of nginx + lua-nginx-module doing the K-way join of LEGS [(name, url)] on
    127.0.0.1:PORT (after a head that loads the modules and opens http {): content_by_lua_block
    runs ngx.location.capture_multi on K internal locations, each proxy_pass to its own upstream
    block with the same keep-alive pool as R2; a body that cjson.safe decodes is spliced in as
    raw text, a failed or non-200 leg becomes {} and an error entry."""
    ups, locs = [], []
    for i, (name, url) in enumerate(legs):
        path = url.split("/", 3)[3]
        ups.append(f"  upstream leg{i} {{ server 127.0.0.1:{UP_BASE + i}; keepalive 64; "
                   f"keepalive_requests 10000000; }}\n")
        locs.append(f"    location = /_leg/{i} {{ internal; proxy_pass http://leg{i}/{path}; "
                    f"proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n")
    lua_legs = ", ".join(f'{{"/_leg/{i}"}}' for i in range(len(legs)))
    lua_names = ", ".join(json.dumps(n) for n, _ in legs)
    return f"""
  proxy_connect_timeout 10s; proxy_send_timeout 10s; proxy_read_timeout 10s;
  init_by_lua_block {{
    agg_cjson = require "cjson.safe"
    agg_legs = {{ {lua_legs} }}
    agg_names = {{ {lua_names} }}
  }}
{"".join(ups)}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /agg {{
      content_by_lua_block {{
        local resps = {{ ngx.location.capture_multi(agg_legs) }}
        local decode, names = agg_cjson.decode, agg_names
        local parts, errs, ok = {{}}, {{}}, 0
        for i = 1, #agg_legs do
          local r = resps[i]
          if r.status == 200 and not r.truncated and decode(r.body) ~= nil then
            parts[i] = r.body
            ok = ok + 1
          else
            parts[i] = "{{}}"
            if r.status ~= 200 then
              errs[#errs + 1] = string.format(
                '{{"index":%d,"name":"%s","error":"http_status","status":%d,'
                .. '"message":"upstream answered %d"}}', i - 1, names[i], r.status, r.status)
            else
              errs[#errs + 1] = string.format(
                '{{"index":%d,"name":"%s","error":"invalid_json",'
                .. '"message":"upstream body is not JSON"}}', i - 1, names[i])
            end
          end
        end
        local out = '{{"results":[' .. table.concat(parts, ",") .. '],"errors":['
                    .. table.concat(errs, ",") .. ']}}'
        if ok == 0 then ngx.status = 502 end
        ngx.header.content_type = "application/json"
        ngx.header.content_length = #out
        ngx.print(out)
      }}
    }}
{"".join(locs)}  }}
}}
"""


# ---------------------------------------------------------------------------------------------
# Fixtures and nginx configurations.

class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.www = os.path.join(tmp, "www")
        os.makedirs(os.path.join(self.www, "fix"))
        self.fixtures = []  # (name, bytes stripped)
        for path in sorted(glob.glob(os.path.join(FIXDIR, "*.json"))):
            base = os.path.basename(path)
            with open(path, "rb") as f:
                body = f.read().strip()
            self.fixtures.append((base, body))
            with open(os.path.join(self.www, "fix", base), "wb") as f:
                f.write(body)
        if len(self.fixtures) < 3:
            raise SystemExit(f"bench: expected 3 fixtures in {FIXDIR}")
        # R1 serves what gatherd answers for K=3: the three bodies in order, no errors.
        join = b'{"results":[' + b",".join(b for _, b in self.fixtures[:3]) + b'],"errors":[]}'
        with open(os.path.join(self.www, "join3.json"), "wb") as f:
            f.write(join)
        self.join3 = join
        for root, dirs, files in os.walk(tmp):
            os.chmod(root, 0o755)
            for n in files:
                os.chmod(os.path.join(root, n), 0o644)
        self.upstream = None
        self.upstream_log = os.path.join(tmp, "upstream", "logged.log")
        self.pki = None

    def make_pki(self):
        """The test PKI of tests/lib/tlsca.py (openssl, at bench time): a CA and a leaf for
        127.0.0.1 and localhost. None, with the reason logged, when it cannot be made."""
        sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
        import tlsca
        try:
            self.pki = tlsca.TestPKI(os.path.join(self.tmp, "pki"))
        except (RuntimeError, OSError) as e:
            log(f"no TLS PKI, HTTPS rows skipped: {e}")
        for root, dirs, files in os.walk(os.path.join(self.tmp, "pki")):
            os.chmod(root, 0o755)
            for n in files:
                os.chmod(os.path.join(root, n), 0o644)
        return self.pki

    def upstream_stats(self):
        """(connections accepted, requests) so far by the upstream nginx (stub_status)."""
        st, body = http_get(f"http://127.0.0.1:{UP_BASE}/_status")
        m = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n", body)
        if st != 200 or not m:
            raise RuntimeError(f"upstream status unreadable: {body[:200]!r}")
        return int(m.group(1)), int(m.group(3))

    def fixture_for(self, i):
        return self.fixtures[i % len(self.fixtures)]

    def backend_url(self, i, delay=0, tls=False, logged=False):
        base, _ = self.fixture_for(i)
        prefix = f"d{delay}" if delay else "fix"
        if tls:
            return f"https://127.0.0.1:{TLS_UP_BASE + i}/{prefix}/{base}"
        if logged:
            return f"http://127.0.0.1:{LOGGED_UP_BASE + i}/{prefix}/{base}"
        return f"http://127.0.0.1:{UP_BASE + i}/{prefix}/{base}"

    def logged_calls(self):
        """[(port, time, X-Request-Id)] of every request the logged upstream ports received."""
        out = []
        try:
            with open(self.upstream_log) as f:
                for line in f:
                    v = line.split()
                    if len(v) >= 3:
                        out.append((int(v[0]), float(v[1]), v[2]))
        except OSError:
            pass
        return out

    def nginx_common(self, name, workers, conns, modules=()):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        temps = " ".join(f"{k}_temp_path {d}/{k};" for k in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        loads = "".join(f"load_module {m};\n" for m in (ECHO_MODULE,) + tuple(modules))
        head = f"""
{loads}worker_processes {workers};
worker_rlimit_nofile {NOFILE};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {conns}; multi_accept on; }}
http {{
  access_log off;
  {temps}
  default_type application/json;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 600s;
  keepalive_requests 10000000; keepalive_timeout 300s;
  etag off;
"""
        return d, head

    def start_nginx(self, name, conf_text, d, ports):
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(conf_text)
        for port in ports:
            if not port_free(port):
                raise SystemExit(f"bench: port {port} is in use (another process took it; set BENCH_PORT_BASE)")
        err = open(os.path.join(d, "stderr.log"), "wb")
        p = PROCS.start([NGINX, "-p", d, "-c", conf, "-g", "daemon off;"],
                        stdout=subprocess.DEVNULL, stderr=err)
        for port in ports:
            if not wait_port(port, p):
                with open(os.path.join(d, "error.log"), "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise SystemExit(f"bench: nginx {name} did not start:\n{tail}")
        return p

    def start_upstream(self):
        """The fake upstream hosts: one nginx, N_UP ports, zero-delay and delayed bodies."""
        d, head = self.nginx_common("upstream", 2, 20000)
        locs = "".join(
            f"    location ~ ^/d{ms}/(.+)$ {{ echo_sleep {ms / 1000:.3f}; echo_exec /fix/$1; }}\n"
            for ms in DELAYS_MS)
        listens = "".join(f"    listen 127.0.0.1:{UP_BASE + i} backlog=4096;\n" for i in range(N_UP))
        tls, ports = "", [UP_BASE, UP_BASE + N_UP - 1]
        if self.make_pki():
            # The same files over TLS, HTTP/2 offered by ALPN, a session cache for resumption.
            tls_listens = "".join(f"    listen 127.0.0.1:{TLS_UP_BASE + i} ssl http2 backlog=4096;\n"
                                  for i in range(3))
            tls = f"""  server {{
{tls_listens}
    ssl_certificate {self.pki.path("server.crt")};
    ssl_certificate_key {self.pki.path("server.key")};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:BENCH:10m;
    http2_max_requests 10000000;
    root {self.www};
    location /fix/ {{ }}
  }}
"""
            ports += [TLS_UP_BASE, TLS_UP_BASE + 2]
        # 3 more ports that log each request (the others log nothing), for the cached rows:
        # the background refresh's calls are counted, per backend and in time, where they land.
        logged_listens = "".join(f"    listen 127.0.0.1:{LOGGED_UP_BASE + i} backlog=4096;\n"
                                 for i in range(3))
        ports += [LOGGED_UP_BASE, LOGGED_UP_BASE + 2]
        text = head + f"""
  log_format logged '$server_port $msec $http_x_request_id $status';
  server {{
{listens}
    root {self.www};
    location /fix/ {{ }}
    location = /_status {{ stub_status; }}
{locs}  }}
  server {{
{logged_listens}
    access_log {self.upstream_log} logged;
    root {self.www};
    location /fix/ {{ }}
  }}
{tls}}}
"""
        self.upstream = self.start_nginx("upstream", text, d, ports)
        # The delayed path must really answer after the delay, with the same bytes.
        base, body = self.fixtures[0]
        t = time.monotonic()
        st, got = http_get(f"http://127.0.0.1:{UP_BASE}/d50/{base}")
        dt = time.monotonic() - t
        if st != 200 or got != body or not (0.045 <= dt < 0.5):
            raise SystemExit(f"bench: delayed upstream misbehaves: {st} {dt:.3f}s {got[:80]!r}")
        return self.upstream

    def start_reference(self, sc):
        """R1 (static join) and R2 (proxy_pass with a keepalive pool) in one nginx."""
        delay = sc.get("delay", 0)
        d, head = self.nginx_common(f"ref-{sc['name']}", sc["workers"], 4096)
        base, _ = self.fixtures[0]
        prefix = f"d{delay}" if delay else "fix"
        text = head + f"""
  upstream up0 {{ server 127.0.0.1:{UP_BASE}; keepalive 64; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{R1_PORT} backlog=4096;
    root {self.www};
    location = /agg {{ try_files /join3.json =404; }}
  }}
  server {{
    listen 127.0.0.1:{R2_PORT} backlog=4096;
    location = /agg {{
      proxy_pass http://up0/{prefix}/{base};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
        return self.start_nginx(f"ref-{sc['name']}", text, d, [R1_PORT, R2_PORT])

    def backends(self, sc):
        """[(name, url)] of a scenario's K backends, the same for gatherd and the references."""
        k, delay = sc["k"], sc.get("delay", 0)
        out = []
        for i in range(k):
            base, _ = self.fixture_for(i)
            name = base.split("_")[0].split(".")[0] if k <= len(self.fixtures) else f"b{i}"
            d = sc["delays"][i] if "delays" in sc else delay
            out.append((name, self.backend_url(i, d, sc.get("tls", False),
                                                logged="refresh_ms" in sc)))
        return out

    def start_reference_tls(self, sc):
        """R2-TLS: R2 over HTTPS, as nginx is deployed in front of a TLS upstream: the
        certificate verified (proxy_ssl_verify against the test CA), TLS sessions reused
        (proxy_ssl_session_reuse) and a keep-alive pool of 64, HTTP/1.1 (nginx proxies no
        HTTP/2)."""
        if self.pki is None:
            raise RuntimeError("no TLS PKI (openssl)")
        d, head = self.nginx_common(f"ref-{sc['name']}", sc["workers"], 4096)
        base, _ = self.fixtures[0]
        text = head + f"""
  upstream up0tls {{ server 127.0.0.1:{TLS_UP_BASE}; keepalive 64; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{R2_TLS_PORT} backlog=4096;
    location = /agg {{
      proxy_pass https://up0tls/fix/{base};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {self.pki.path("ca.crt")};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }}
  }}
}}
"""
        return self.start_nginx(f"ref-{sc['name']}", text, d, [R2_TLS_PORT])

    def start_lua(self, sc):
        """nginx + lua-nginx-module doing the K-way join of lua_join_http()."""
        ndk, lua = nginx_module("ndk_http_module.so"), nginx_module("ngx_http_lua_module.so")
        if not (ndk and lua):
            raise RuntimeError("lua-nginx-module not installed (libnginx-mod-http-lua)")
        d, head = self.nginx_common(f"ref-{sc['name']}", sc["workers"], 4096, (ndk, lua))
        text = head + lua_join_http(self.backends(sc), LUA_PORT)
        # The modules must load and the Lua must compile (init_by_lua runs at load): a failure
        # here skips the Lua rows instead of stopping the run, as start_nginx would.
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(text)
        t = subprocess.run([NGINX, "-t", "-q", "-p", d, "-c", conf], capture_output=True,
                           text=True, timeout=30)
        if t.returncode != 0:
            raise RuntimeError(f"nginx+Lua config does not load: {t.stderr.strip()[-300:]}")
        return self.start_nginx(f"ref-{sc['name']}", text, d, [LUA_PORT])

    def gatherd_config(self, sc, access_log):
        backends = [{"name": n, "url": u} for n, u in self.backends(sc)]
        cfg = {
            "listen": f"127.0.0.1:{GATHERD_PORT}",
            "workers": sc["workers"],
            "log_level": "warn",
            "access_log": bool(access_log),
            "endpoints": [{"path": "/agg", "timeout_ms": 10000, "backends": backends}],
        }
        ep = cfg["endpoints"][0]
        if sc.get("coalesce"):
            ep["coalesce"] = True
        if sc.get("concurrency"):
            ep["concurrency"] = sc["concurrency"]
        if sc.get("cache"):
            ep["cache"] = dict(sc["cache"])
        if sc.get("refresh_ms"):
            ep["refresh_ms"] = sc["refresh_ms"]
        if sc.get("each"):
            # One backend whose URL takes the item (nginx ignores the query of a static file).
            backends[0]["url"] += "?id={item}"
            ep["each"] = {"param": "sn", "max_items": sc["each"]}
        if sc.get("tls"):
            if self.pki is None:
                raise RuntimeError("no TLS PKI (openssl)")
            cfg["tls"] = {"ca_file": self.pki.path("ca.crt")}
            cfg["http2"] = sc.get("http2", "auto")
        cfg.update(sc.get("pool", {}))
        return cfg


def agg_path(sc):
    """The request target a scenario sends: /agg, with the item list for an each endpoint."""
    if sc.get("each"):
        return "/agg?sn=" + ",".join(f"item{i}" for i in range(sc["each"]))
    return "/agg"


# ---------------------------------------------------------------------------------------------
# wrk.

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out):
    """Requests, req/s, p50/p99 (ms), errors from wrk --latency output."""
    r = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", out, re.M)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    r["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        r[f"p{pct}"] = float(m.group(1)) * UNIT[m.group(2)] if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sockerr"] = dict(zip(("connect", "read", "write", "timeout"),
                            map(int, m.groups()))) if m else {}
    return r


def wrk_argv(url, conns, secs):
    threads = max(1, min(2, conns))
    return ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{secs}s", "--latency",
            "--timeout", "10s", url]


def run_wrk(url, conns, secs):
    argv = wrk_argv(url, conns, secs)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr.strip()}")
    return parse_wrk(out.stdout), out.stdout


# ---------------------------------------------------------------------------------------------
# Running one scenario.

class Runner:
    def __init__(self, args, env, gatherd_bin):
        self.args = args
        self.env = env
        self.bin = gatherd_bin
        self.results = {}
        self.go_bin = None

    def build_go(self):
        """Builds bench/ref-go/main.go once per run (standard library only, no network; the
        build cache lives in the temporary folder)."""
        if self.go_bin:
            return self.go_bin
        go = shutil.which("go") or "/usr/lib/go/bin/go"
        if not os.path.exists(go):
            raise RuntimeError("go not installed (golang-go)")
        d = os.path.join(self.env.tmp, "go")
        out = os.path.join(d, "refgo")
        env = dict(os.environ, GOCACHE=os.path.join(d, "cache"), GOPATH=os.path.join(d, "path"),
                   GOPROXY="off", GOFLAGS="", GO111MODULE="off", GOTOOLCHAIN="local")
        r = subprocess.run([go, "build", "-o", out, GO_SRC], cwd=os.path.dirname(GO_SRC),
                           env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"go build failed: {r.stderr.strip()}")
        self.go_bin = out
        return out

    def start_go(self, sc):
        binary = self.build_go()
        d = os.path.join(self.env.tmp, f"ref-{sc['name']}")
        os.makedirs(d, exist_ok=True)
        if not port_free(GO_PORT):
            raise SystemExit(f"bench: port {GO_PORT} is in use (another process took it; set BENCH_PORT_BASE)")
        argv = [binary, "-listen", f"127.0.0.1:{GO_PORT}", "-path", "/agg",
                "-idle", str(max(64, sc["conns"])), "-timeout", "10s"]
        argv += [f"{n}={u}" for n, u in self.env.backends(sc)]
        err = open(os.path.join(d, "stderr.log"), "wb")
        p = PROCS.start(argv, stdout=subprocess.DEVNULL, stderr=err)
        end = time.monotonic() + 15
        while time.monotonic() < end and p.poll() is None:
            try:
                if http_get(f"http://127.0.0.1:{GO_PORT}/healthz", timeout=2)[0] == 200:
                    return p
            except OSError:
                pass
            time.sleep(0.1)
        with open(os.path.join(d, "stderr.log"), "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        PROCS.stop(p)
        raise RuntimeError(f"Go reference did not start (exit {p.poll()}): {tail}")

    def measure(self, pids, load):
        """Runs load() (which returns a result dict with "requests") and adds what it cost:
        CPU per request of pids (the server under test) and of the upstream nginx, upstream
        connections accepted per request, and the share of the machine used by processes that
        are not part of the benchmark during the run (other work disturbs the numbers)."""
        up = self.upstream_pids()
        a0, q0 = self.env.upstream_stats()
        m0, t0, u0 = machine_busy_s(), sum(map(proc_cpu_s, pids)), sum(map(proc_cpu_s, up))
        c0, w0 = children_cpu_s(), time.monotonic()
        us0 = [proc_user_sys_s(p) for p in pids]
        res = load()
        us1 = [proc_user_sys_s(p) for p in pids]
        m1, t1, u1 = machine_busy_s(), sum(map(proc_cpu_s, pids)), sum(map(proc_cpu_s, up))
        c1, w1 = children_cpu_s(), time.monotonic()
        a1, q1 = self.env.upstream_stats()
        n = max(res["requests"], 1)
        res["cpu_us"] = (t1 - t0) * 1e6 / n
        # The split into user and system time, from clock ticks: only where a run used
        # enough CPU (half a second) for ticks to resolve it.
        user = sum(b[0] - a[0] for a, b in zip(us0, us1))
        system = sum(b[1] - a[1] for a, b in zip(us0, us1))
        if user + system >= 0.5:
            res["user_us"], res["sys_us"] = user * 1e6 / n, system * 1e6 / n
        res["up_cpu_us"] = (u1 - u0) * 1e6 / n
        res["up_conns"] = max(a1 - a0 - 1, 0) / n  # the status request itself opens one
        res["up_reqs"] = max(q1 - q0 - 1, 0) / n
        others = (m1 - m0) - (t1 - t0) - (u1 - u0) - (c1 - c0)
        res["others_pct"] = max(others, 0.0) / ((w1 - w0) * (os.cpu_count() or 1)) * 100
        return res

    def measure_wrk(self, url, conns, pids, around=None):
        """Warm-up, then the measured wrk run. around(): a snapshot taken just before and just
        after the measured run (res["around"]); res["wall"]: the run's start and end (epoch s)."""
        a = self.args
        if a.warmup > 0:
            run_wrk(url, conns, a.warmup)

        def load():
            before = around() if around else None
            t0 = time.time()
            res, raw = run_wrk(url, conns, a.duration)
            res["wall"] = (t0, time.time())
            res["raw"] = raw
            if around:
                res["around"] = (before, around())
            return res
        return self.measure(pids, load)

    def upstream_pids(self):
        return family(self.env.upstream.pid)

    def run_ref(self, sc):
        if sc["ref"] == "lua":
            p, port = self.env.start_lua(sc), LUA_PORT
        elif sc["ref"] == "go":
            p, port = self.start_go(sc), GO_PORT
        elif sc["ref"] == "proxy-tls":
            p, port = self.env.start_reference_tls(sc), R2_TLS_PORT
        else:
            p = self.env.start_reference(sc)
            port = R1_PORT if sc["ref"] == "static" else R2_PORT
        try:
            url = f"http://127.0.0.1:{port}/agg"
            ctype = None
            if "k" in sc:
                # A K-way join: the same check as gatherd's before the load.
                self.check_join(sc, url)
            else:
                st, hdrs, body = http_fetch(url)
                if st != 200:
                    raise RuntimeError(f"reference answered {st}: {body[:200]!r}")
                if sc["ref"] == "static" and body != self.env.join3:
                    raise RuntimeError("the static reference does not serve the K=3 join")
                ctype = hdrs.get("Content-Type")
            res = self.measure_wrk(url, sc["conns"], family(p.pid))
            res["content_type"] = ctype
            res["rss_mb"] = sum(proc_hwm_kb(x) for x in family(p.pid)) / 1024
            return res
        finally:
            PROCS.stop(p)

    def start_gatherd(self, sc, access_log):
        d = os.path.join(self.env.tmp, f"gatherd-{sc['name']}")
        os.makedirs(d, exist_ok=True)
        cfg = self.env.gatherd_config(sc, access_log)
        conf = os.path.join(d, "gatherd.json")
        with open(conf, "w") as f:
            json.dump(cfg, f, indent=1)
        if not port_free(GATHERD_PORT):
            raise SystemExit(f"bench: port {GATHERD_PORT} is in use (another process took it; set BENCH_PORT_BASE)")
        out_path = os.path.join(d, "access.log")
        err = open(os.path.join(d, "stderr.log"), "wb")
        out = open(out_path, "wb") if access_log else subprocess.DEVNULL
        argv = [self.bin, "--config", conf]
        if self.args.valgrind:
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/callgrind.out"] + argv
        p = PROCS.start(argv, stdout=out, stderr=err)
        end = time.monotonic() + (60 if self.args.valgrind else 15)
        while time.monotonic() < end:
            if p.poll() is not None:
                break
            try:
                st, _ = http_get(f"http://127.0.0.1:{GATHERD_PORT}/healthz", timeout=2)
                if st == 200:
                    return p, d, cfg
            except OSError:
                pass
            time.sleep(0.1)
        with open(os.path.join(d, "stderr.log"), "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        PROCS.stop(p)
        raise RuntimeError(f"gatherd did not become healthy (exit {p.poll()}):\n{tail}")

    def check_join(self, sc, url=None):
        """One request before the load: K results, no errors, in order, each equal to its
        fixture. url: a reference's join (default gatherd's)."""
        st, body = http_get(url or f"http://127.0.0.1:{GATHERD_PORT}{agg_path(sc)}")
        if st != 200:
            raise RuntimeError(f"/agg answered {st}: {body[:300]!r}")
        j = json.loads(body)
        if sc.get("each"):
            # An object keyed by item, each the one backend's fixture.
            want = json.loads(self.env.fixture_for(0)[1])
            res = j.get("results", {})
            if (list(res) != [f"item{i}" for i in range(sc["each"])] or j.get("errors") != []
                    or any(v != want for v in res.values())):
                raise RuntimeError(f"/agg answered a wrong per-item join: {body[:300]!r}")
            return len(body)
        if len(j.get("results", [])) != sc["k"] or j.get("errors") != []:
            raise RuntimeError(f"/agg answered a wrong join: {body[:300]!r}")
        for i, r in enumerate(j["results"]):
            want = json.loads(self.env.fixture_for(i)[1])
            if r != want:
                raise RuntimeError(f"/agg results[{i}] differs from its fixture")
        if sc["k"] == 3 and body != self.env.join3:
            log(f"{sc['name']}: note: join bytes differ from R1's static join "
                f"({len(body)} vs {len(self.env.join3)} bytes)")
        return len(body)

    def run_gatherd(self, sc):
        if sc.get("cache"):
            return self.run_cached(sc)
        p, d, cfg = self.start_gatherd(sc, sc.get("access_log", False))
        try:
            size = self.check_join(sc)
            res = self.measure_wrk(f"http://127.0.0.1:{GATHERD_PORT}/agg", sc["conns"], [p.pid])
            res["rss_mb"] = proc_hwm_kb(p.pid) / 1024
            res["body_bytes"] = size
            if p.poll() is not None:
                raise RuntimeError(f"gatherd exited with {p.returncode} during the run")
            if sc.get("access_log"):
                PROCS.stop(p)  # flush the logger before counting lines
                with open(os.path.join(d, "access.log"), "rb") as f:
                    res["log_lines"] = sum(1 for _ in f)
            return res
        finally:
            PROCS.stop(p)

    def gatherd_counters(self):
        """{(family, result): value} of gatherd's cache lookups and refreshes (all endpoints:
        the bench configures one)."""
        _, body = http_get(f"http://127.0.0.1:{GATHERD_PORT}/metrics")
        out = {}
        for line in body.decode().splitlines():
            m = re.match(r'(gatherd_cache_lookups_total|gatherd_refreshes_total)\{.*'
                         r'(?:result|outcome)="(\w+)"\}\s+(\S+)$', line)
            if m:
                key = (m.group(1), m.group(2))
                out[key] = out.get(key, 0) + float(m.group(3))
        return out

    def run_cached(self, sc):
        """A cached endpoint under load: warmed by its background refresh (/readyz), its answer
        checked to be a hit with the static reference's bytes and Content-Type; then the load,
        and from the logged upstream ports the refresh's calls during it (the "refresh" part,
        the k3-refresh row)."""
        p, d, cfg = self.start_gatherd(sc, False)
        try:
            end = time.monotonic() + 15
            while True:
                st, body = http_get(f"http://127.0.0.1:{GATHERD_PORT}/readyz", timeout=2)
                if st == 200:
                    break
                if time.monotonic() > end:
                    raise RuntimeError(f"/readyz still answers {st} {body[:80]!r} after 15 s")
                time.sleep(0.05)
            size = self.check_join(sc)
            st, hdrs, body = http_fetch(f"http://127.0.0.1:{GATHERD_PORT}/agg")
            cs = hdrs.get("Cache-Status", "")
            if st != 200 or body != self.env.join3:
                raise RuntimeError(f"cached /agg answered {st}, {len(body)} bytes, not the "
                                   f"reference's {len(self.env.join3)}: {body[:120]!r}")
            if not cs.startswith("gatherd; hit"):
                raise RuntimeError(f"warmed /agg is not a hit: Cache-Status {cs!r}")
            ref = self.results.get(sc.get("cmp", ""), {})
            want_type = ref.get("content_type") or "application/json"
            if hdrs.get("Content-Type") != want_type:
                raise RuntimeError(f"Content-Type {hdrs.get('Content-Type')!r}, the reference "
                                   f"sends {want_type!r}")
            res = self.measure_wrk(f"http://127.0.0.1:{GATHERD_PORT}/agg", sc["conns"], [p.pid],
                                   around=self.gatherd_counters)
            res["rss_mb"] = proc_hwm_kb(p.pid) / 1024
            res["body_bytes"] = size
            if p.poll() is not None:
                raise RuntimeError(f"gatherd exited with {p.returncode} during the run")
            c0, c1 = res.pop("around")
            delta = {k: c1.get(k, 0) - c0.get(k, 0) for k in set(c0) | set(c1)}
            looked = sum(v for (f, _), v in delta.items() if f == "gatherd_cache_lookups_total")
            hits = delta.get(("gatherd_cache_lookups_total", "hit"), 0)
            res["notes"] = [f"hits: {hits / max(looked, 1) * 100:.2f} % of {looked:,.0f} lookups"]
            res["refresh"] = self.refresh_calls(sc, res, delta)
            return res
        finally:
            PROCS.stop(p)

    def refresh_calls(self, sc, load, delta):
        """The upstream calls the logged backends received during the measured run: per
        backend, the refresh's (X-Request-Id gatherd-refresh) and any other (a request's own
        fan-out, a miss), and the intervals between consecutive refresh calls."""
        t0, t1 = load["wall"]
        secs = t1 - t0
        every = sc["refresh_ms"] / 1000
        calls = self.env.logged_calls()
        ports = [LOGGED_UP_BASE + i for i in range(sc["k"])]
        counts, gaps, others = [], [], 0
        for port in ports:
            times = sorted(t for pt, t, rid in calls if pt == port and rid == "gatherd-refresh")
            counts.append(sum(1 for t in times if t0 <= t <= t1))
            gaps += [b - a for a, b in zip(times, times[1:]) if t0 <= b <= t1]
            others += sum(1 for pt, t, rid in calls
                          if pt == port and rid != "gatherd-refresh" and t0 <= t <= t1)
        total = sum(counts)
        rate, want = total / secs, len(ports) / every
        per = secs / every  # calls expected per backend in the window
        ok = (all(abs(c - per) <= 1 for c in counts) and others == 0 and gaps
              and 0.5 * every <= min(gaps) and max(gaps) <= 1.5 * every)
        outcomes = ", ".join(f"{o} {v:,.0f}" for (f, o), v in sorted(delta.items())
                             if f == "gatherd_refreshes_total" and v)
        notes = [f"{total} refresh calls in {secs:.1f} s = {rate:.2f}/s, expected {want:.2f}/s",
                 "per backend " + "/".join(map(str, counts)) + f" (expected {per:.1f} each)",
                 (f"intervals {min(gaps) * 1e3:.0f}–{max(gaps) * 1e3:.0f} ms, median "
                  f"{statistics.median(gaps) * 1e3:.0f} ms") if gaps else "no intervals",
                 f"{others} other upstream requests",
                 f"refreshes: {outcomes or 'none'}"]
        log("  " + "; ".join(notes))
        return {"rps": None, "requests": total, "p50": None, "p99": None, "notes": notes,
                "calls_per_s": rate, "refresh_ok": bool(ok), "others_pct": load["others_pct"],
                "non2xx": 0, "sockerr": {}}

    def run_single(self, sc):
        """Fan-out width: latency of one request at a time, timed by curl."""
        p, d, cfg = self.start_gatherd(sc, False)
        try:
            # Warm-up: every worker gets requests and so its upstream connections (a new
            # connection per request is gatherd's business, but not what this row measures).
            for _ in range(2 * sc["workers"]):
                self.check_join(sc)
            n = self.args.single_runs

            def load():
                if sc.get("stream"):
                    return self.load_stream(sc, n)
                times = []
                for _ in range(n):
                    out = subprocess.run(
                        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                         "--max-time", "30", f"http://127.0.0.1:{GATHERD_PORT}{agg_path(sc)}"],
                        capture_output=True, text=True, timeout=60)
                    code, secs = out.stdout.split()
                    if code != "200":
                        raise RuntimeError(f"/agg answered {code}")
                    times.append(float(secs) * 1e3)
                return {"rps": None, "requests": n, "p50": statistics.median(times),
                        "p99": max(times), "times": times, "non2xx": 0, "sockerr": {}}
            res = self.measure([p.pid], load)
            res["rss_mb"] = proc_hwm_kb(p.pid) / 1024
            return res
        finally:
            PROCS.stop(p)

    def load_stream(self, sc, n):
        """n streamed requests one at a time: the time to the first NDJSON line (p50, max) and
        to the done line (done_p50), from sending the request, read off a raw socket."""
        sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
        from streamclient import StreamClient
        first, done = [], []
        for _ in range(n):
            with StreamClient(GATHERD_PORT, agg_path(sc), accept="application/x-ndjson") as s:
                st, _ = s.head()
                lines = s.all_lines()
                if st != 200 or not s.ended or lines[-1][1] != {"done": True, "ok": sc["k"],
                                                                 "failed": 0}:
                    raise RuntimeError(f"stream answered {st}: {lines[-1:]!r}")
                first.append((lines[0][0] - s.t0) * 1e3)
                done.append((lines[-1][0] - s.t0) * 1e3)
        return {"rps": None, "requests": n, "p50": statistics.median(first), "p99": max(first),
                "times": first, "done_p50": statistics.median(done), "non2xx": 0,
                "sockerr": {}}

    def wait_quiet(self):
        """Waits (at most --quiet-wait seconds) until the machine is nearly idle between
        scenarios, so that other people's builds and tests disturb fewer measurements."""
        end = time.monotonic() + self.args.quiet_wait
        warned = False
        while True:
            b0, t0 = machine_busy_s(), time.monotonic()
            time.sleep(1.0)
            busy = (machine_busy_s() - b0) / ((time.monotonic() - t0) * (os.cpu_count() or 1))
            if busy < self.args.quiet_level / 100 or time.monotonic() >= end:
                if warned:
                    log(f"  machine {busy * 100:.0f}% busy, going on")
                return
            if not warned:
                log(f"  machine {busy * 100:.0f}% busy with other work; waiting up to "
                    f"{self.args.quiet_wait} s for it to settle")
                warned = True

    def run_once(self, sc):
        if self.args.quiet_wait > 0:
            self.wait_quiet()
        log(f"running {sc['name']}: {sc['label']}")
        try:
            if sc["kind"] == "ref":
                res = self.run_ref(sc)
            elif self.bin is None:
                return {"skip": "gatherd not built"}
            elif sc["kind"] == "gatherd":
                res = self.run_gatherd(sc)
            else:
                res = self.run_single(sc)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
            log(f"{sc['name']} failed: {e}")
            return {"skip": f"failed: {str(e).splitlines()[0][:80]}"}
        if sc.get("tls"):
            res["up_handshakes"] = res["up_conns"]  # each TLS connection is one handshake
        log(f"  {fmt_num(res.get('rps'), 0)} req/s, p50 {fmt_ms(res.get('p50'))}, "
            f"p99 {fmt_ms(res.get('p99'))}, {fmt_num(res.get('cpu_us'), 1)} us/req "
            f"({fmt_user_sys(res)}), "
            f"{fmt_num(res.get('rss_mb'), 1)} MB, others {res['others_pct']:.0f}% CPU")
        return res

    def run(self, sc):
        """--repeat runs of a scenario; the one with the median req/s (the median p50 for
        latency scenarios) stands for it, so one disturbed run does not decide a row."""
        if sc["kind"] == "derived":
            # Measured by another row's run (the one kept for it): nothing runs here.
            src = self.results.get(sc["of"], {})
            res = src.get(sc["part"]) or {"skip": src.get("skip", f"{sc['of']} did not run")}
            self.results[sc["name"]] = res
            return res
        runs = []
        for _ in range(self.args.repeat):
            res = self.run_once(sc)
            if "skip" in res:
                self.results[sc["name"]] = res
                return res
            runs.append(res)
        latency = sc.get("delay") or not runs[0].get("rps")
        runs.sort(key=lambda r: r["p50"] if latency else r["rps"])
        res = runs[(len(runs) - 1) // 2] if latency else runs[len(runs) // 2]
        self.results[sc["name"]] = res
        return res


# ---------------------------------------------------------------------------------------------
# The table.

def fmt_num(x, nd):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def fmt_ms(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f} ms"
    return f"{x:.2f} ms"


def judge(sc, res, results):
    """(versus-reference text, target text, PASS/FAIL/'')."""
    ref = results.get(sc.get("cmp", ""), {})
    have_ref = ref and "skip" not in ref
    vs = ""
    if sc.get("cmp") and have_ref:
        if sc.get("delay"):
            vs = f"p50 {res['p50'] - ref['p50']:+.2f} ms vs {REF_SHORT[sc['cmp']]}"
        elif ref.get("rps"):
            # The CPU ratio (server and upstream per request) barely moves when other work
            # shares the machine; the req/s ratio does.
            cost = (res["cpu_us"] + res["up_cpu_us"]) / (ref["cpu_us"] + ref["up_cpu_us"])
            vs = (f"{res['rps'] / ref['rps']:.3f}× {REF_SHORT[sc['cmp']]} req/s; "
                  f"{cost:.1f}× its CPU/req")
    t = sc.get("target")
    if t == "k3":
        text = "≥0.35× R2, p99 ≤ 2×p50"
        ok = have_ref and res["rps"] >= 0.35 * ref["rps"] and res["p99"] <= 2 * res["p50"]
    elif t == "k20":
        text = "≥0.06× R2"
        ok = have_ref and res["rps"] >= 0.06 * ref["rps"]
    elif t == "d50":
        text = "p50 ≤ R2 p50 + 1 ms"
        ok = have_ref and res["p50"] <= ref["p50"] + 1.0
    elif t == "inflight":
        # p50 near the upstream's 1 s shows the 1,000 really were in flight at once.
        text = "RSS < 40 MB, with p50 ≤ 1.1 s"
        ok = res["rss_mb"] < 40 and res["p50"] <= 1100
    elif t == "fanout":
        text = "≈0.5 s (max ≤ 0.6 s)"
        ok = res["p99"] <= 600
    elif t == "first":
        text = "≈10 ms (median ≤ 50 ms)"
        ok = res["p50"] <= 50
    elif t == "plain500":
        text = "≈500 ms (median 500–600 ms)"
        ok = 500 <= res["p50"] <= 600
    elif t == "cache":
        text = "≥0.8× nginx-static"
        ok = have_ref and res["rps"] >= 0.8 * ref["rps"]
    elif t == "refresh":
        # Each backend called once per refresh_ms: its count in the window within one of
        # the expected, no two calls closer than half an interval, no gap of 1.5, no other call.
        text = "1 call per 1 s per backend (3.00/s)"
        ok = res["refresh_ok"]
    elif t == "waves":
        # Four waves of 0.5 s: faster would mean the limit did not hold.
        text = "≈2.0 s (median ≥ 2.0 s, max ≤ 2.2 s)"
        ok = res["p50"] >= 1990 and res["p99"] <= 2200
    else:
        return vs, "", ""
    if t in ("k3", "k20", "d50", "cache") and not have_ref:  # measured against a reference
        return vs, text, "n/a"
    bad = res.get("non2xx") or any(v for k, v in res.get("sockerr", {}).items() if k != "read")
    return vs, text, ("PASS" if ok and not bad else "FAIL")


def fmt_user_sys(res):
    """CPU per request split into user and system time, "user / system", or ""."""
    if "user_us" not in res:
        return ""
    return f"{fmt_num(res['user_us'], 0)} / {fmt_num(res['sys_us'], 0)}"


COLUMNS = ("scenario", "conns", "req/s", "p50", "p99", "CPU µs/req", "user / system µs/req",
           "peak RSS MB", "vs R2",
           "target", "result", "upstream CPU µs/req", "upstream conns opened/req",
           "others' CPU %", "upstream TLS handshakes/req")


def table(results, order):
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name in order:
        sc = BY_NAME[name]
        res = results.get(name)
        if res is None:
            continue
        conns = str(sc.get("conns", 1))
        if "skip" in res:
            cells = [sc["label"], conns, res["skip"]] + [""] * (len(COLUMNS) - 3)
            rows.append("| " + " | ".join(cells) + " |")
            continue
        vs, ttext, verdict = judge(sc, res, results)
        errs = []
        if res.get("non2xx"):
            errs.append(f"{res['non2xx']} non-2xx")
        se = {k: v for k, v in res.get("sockerr", {}).items() if v}
        if se:
            errs.append("socket " + ",".join(f"{k} {v}" for k, v in se.items()))
        if "log_lines" in res:
            errs.append(f"{res['log_lines']:,} access lines")
        if "done_p50" in res:
            errs.append(f"done line median {fmt_ms(res['done_p50'])}")
        errs += res.get("notes", [])
        single = sc["kind"] == "single"
        label = sc["label"]
        if sc.get("pool") and "lifted" not in label:
            label += ", pool caps lifted"
        cells = [
            label + (f" ({'; '.join(errs)})" if errs else ""),
            conns,
            fmt_num(res.get("rps"), 0),
            fmt_ms(res.get("p50")) + (f" (median of {res['requests']})" if single else ""),
            fmt_ms(res.get("p99")) + (" (max)" if single else ""),
            fmt_num(res.get("cpu_us"), 1),
            fmt_user_sys(res),
            fmt_num(res.get("rss_mb"), 1),
            vs, ttext, verdict,
            fmt_num(res.get("up_cpu_us"), 1),
            fmt_num(res.get("up_conns"), 3),
            fmt_num(res.get("others_pct"), 0),
            fmt_num(res.get("up_handshakes"), 4) if "up_handshakes" in res else "",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "no-commit"
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src",
                                "meson.build"], capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty-src" if dirty else "")
    except OSError:
        return "unknown"


def cpu_vulnerabilities():
    """The kernel's /sys/devices/system/cpu/vulnerabilities/*, in one line: the mitigations in
    force change what a system call or a context switch costs, so they belong with the CPU."""
    unaffected, other = [], []
    for path in sorted(glob.glob("/sys/devices/system/cpu/vulnerabilities/*")):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        name = os.path.basename(path)
        if text == "Not affected":
            unaffected.append(name)
        else:
            other.append(f"{name}: {text}")
    if not unaffected and not other:
        return "not reported by the kernel"
    if unaffected:
        other.append("Not affected: " + ", ".join(unaffected))
    return "; ".join(other)


def machine_line():
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    cpu, ident = "?", {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first CPU is enough
                k, _, v = line.partition(":")
                ident.setdefault(k.strip(), v.strip())
        cpu = ident.get("model name", "?")
    except OSError:
        pass
    sig = ", ".join(f"{k} {ident[k]}" for k in ("cpu family", "model", "stepping", "microcode")
                    if k in ident)
    return (f"{os.cpu_count()} CPUs ({cpu}{'; ' + sig if sig else ''}), kernel "
            f"{os.uname().release}, load before run {load}  \n"
            f"CPU vulnerabilities: {cpu_vulnerabilities()}")


NOTES = """Each entry is one `bench/run.sh` run: the scenarios, the columns and the way they are
measured are described in bench/README.md. Compare rows within one entry (same machine, same
moment); across entries only the ratios to R2 mean much, and only when "others' CPU %" is low."""


# ---------------------------------------------------------------------------------------------
# Profile mode.

def strip_ipc(line):
    """perf report appends empty IPC columns ("-  -") for clock samples."""
    return re.sub(r"(\s+-)+\s*$", "", line)


def served(port):
    """Requests gatherd has answered on /agg, from its own metrics."""
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return sum(float(l.rsplit(" ", 1)[1]) for l in body.decode().splitlines()
               if l.startswith('gatherd_requests_total{endpoint="/agg"'))


SYSCALLS = ("epoll_wait", "epoll_ctl", "poll", "recvfrom", "sendto", "sendmsg", "read",
            "write", "accept4", "close", "setsockopt")


def count_syscalls(wrk, pid, secs, total):
    """Counts gatherd's system calls and context switches per request under load, with perf's
    syscall tracepoints: the kernel's share of a request is mostly these."""
    events = ["raw_syscalls:sys_enter", "context-switches"] + [
        f"syscalls:sys_enter_{name}" for name in SYSCALLS]
    n0 = served(GATHERD_PORT)
    rec = subprocess.run(["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", str(pid),
                          "--", "sleep", str(secs)], capture_output=True, text=True,
                         timeout=secs + 60)
    n = max(served(GATHERD_PORT) - n0, 1)  # a little more than perf saw: an upper bound
    out, _ = wrk.communicate(timeout=total + 60)
    PROCS.stop(wrk)
    w = parse_wrk(out)
    if rec.returncode != 0:
        print(f"perf stat failed:\n{rec.stderr}")
        return 3
    print(f"load: {w['rps']:,.0f} req/s, p50 {fmt_ms(w['p50'])}, p99 {fmt_ms(w['p99'])}; "
          f"per request ({n:,.0f} requests):")
    for line in rec.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            name = f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter",
                                                                   "all system calls")
            print(f"  {name:<18} {float(f[0]) / n:8.2f}")
    return 0


def profile(runner, sc, secs):
    env = runner.env
    p, d, cfg = runner.start_gatherd(sc, sc.get("access_log", False))
    try:
        runner.check_join(sc)
        url = f"http://127.0.0.1:{GATHERD_PORT}/agg"
        warm = 2
        total = warm + secs + 3
        wrk = PROCS.start(wrk_argv(url, sc.get("conns", 64), total), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
        time.sleep(warm)
        data = os.path.join(d, "perf.data")
        if runner.args.syscalls:
            return count_syscalls(wrk, p.pid, secs, total)
        if runner.args.valgrind:
            time.sleep(secs)
            out, _ = wrk.communicate(timeout=total + 60)
            PROCS.stop(wrk)
            PROCS.stop(p, grace=30)
            outs = glob.glob(os.path.join(d, "callgrind.out*"))
            print(parse_wrk(out))
            r = subprocess.run(["callgrind_annotate", "--inclusive=no"] + outs,
                               capture_output=True, text=True)
            print("\n".join(r.stdout.splitlines()[:70]))
            return 0
        rec = subprocess.run(["perf", "record", "-F", "999", "-e", "cpu-clock", "--call-graph",
                              "dwarf", "-p", str(p.pid), "-o", data, "--", "sleep", str(secs)],
                             capture_output=True, text=True, timeout=secs + 120)
        out, _ = wrk.communicate(timeout=total + 60)
        PROCS.stop(wrk)
        w = parse_wrk(out)
        print(f"load during the profile: {w['rps']:,.0f} req/s, p50 {fmt_ms(w['p50'])}, "
              f"p99 {fmt_ms(w['p99'])}\n")
        if rec.returncode != 0 or not os.path.exists(data):
            print(f"perf record failed:\n{rec.stderr}")
            return 3
        full = os.path.join(d, "perf-report.txt")
        subprocess.run(f"perf report -i {data} --stdio --no-children > {full} 2>/dev/null",
                       shell=True, timeout=1200)
        print("== share of CPU by library (perf report --sort dso) ==")
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", "dso", "-g", "none", "--percent-limit", "0.5"],
                           capture_output=True, text=True, timeout=1200)
        print("\n".join(strip_ipc(l) for l in r.stdout.splitlines()
                        if l.strip() and not l.startswith("#")))
        print("\n== top symbols (perf report --stdio --no-children) ==")
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.3"],
                           capture_output=True, text=True, timeout=1200)
        lines = [strip_ipc(l) for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
        print("\n".join(lines[:runner.args.top]))
        print(f"\nfull report with call graphs: {full}"
              + ("" if runner.args.keep else " (removed at exit; keep it with --keep)"))
        return 0
    finally:
        PROCS.stop(p)


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gatherd", help="gatherd binary (default: none, gatherd rows skipped)")
    ap.add_argument("--quick", action="store_true", help="3 s per scenario, 1 s warm-up")
    ap.add_argument("--only", help="comma-separated scenario or group names (references they "
                    "compare with are added; groups: " + ", ".join(GROUPS) + ")")
    ap.add_argument("--duration", type=int, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up (default 2)")
    ap.add_argument("--single-runs", type=int, default=5, help="requests per fan-out scenario")
    ap.add_argument("--quiet-wait", type=int, default=30, metavar="S",
                    help="before each scenario wait up to S s for the machine to be idle "
                    "(default 30; 0: do not wait)")
    ap.add_argument("--quiet-level", type=float, default=10, metavar="PCT",
                    help="idle means below PCT %% of all CPUs busy (default 10)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each scenario N times and keep the median run (default 1)")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--profile", metavar="SCENARIO", help="profile one gatherd scenario")
    ap.add_argument("--profile-seconds", type=int, default=5)
    ap.add_argument("--top", type=int, default=45, help="profile: symbols to print")
    ap.add_argument("--valgrind", action="store_true", help="profile under callgrind")
    ap.add_argument("--syscalls", action="store_true",
                    help="profile: count system calls per request (perf stat) instead")
    ap.add_argument("--command", default=" ".join(sys.argv), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            print(f"{s['name']:18} {s['label']}")
        for g, names in GROUPS.items():
            print(f"{g:18} group: {','.join(names)}")
        return 0
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)

    if args.only:
        want = []
        for n in (n.strip() for n in args.only.split(",")):
            want += GROUPS.get(n, [n] if n else [])
        bad = [n for n in want if n not in BY_NAME]
        if bad:
            raise SystemExit(f"bench: unknown scenario(s) {', '.join(bad)}; see --list")
        for n in want:  # grows as it goes: a derived row's source brings its reference too
            for c in (BY_NAME[n].get("cmp"), BY_NAME[n].get("of")):
                if c and c not in want:
                    want.append(c)
        order = [s["name"] for s in SCENARIOS if s["name"] in want]
    else:
        order = [s["name"] for s in SCENARIOS]

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="gatherd-bench-", dir="/tmp")
    gatherd_bin = os.path.abspath(args.gatherd) if args.gatherd else None
    try:
        env = Env(tmp)
        env.start_upstream()
        runner = Runner(args, env, gatherd_bin)
        if args.profile:
            if args.profile not in BY_NAME or BY_NAME[args.profile]["kind"] != "gatherd":
                raise SystemExit("bench: --profile needs a gatherd wrk scenario, e.g. k3")
            if gatherd_bin is None:
                raise SystemExit("bench: --profile needs --gatherd")
            return profile(runner, BY_NAME[args.profile], args.profile_seconds)
        started = datetime.datetime.now().astimezone()
        machine = machine_line()
        for name in order:
            runner.run(BY_NAME[name])
        tab = table(runner.results, order)
        print()
        print(tab)
        print()
        if not args.no_record:
            path = os.path.join(HERE, "RESULTS.md")
            new = not os.path.exists(path)
            with open(path, "a") as f:
                if new:
                    f.write("# gatherd benchmark results\n\nAppended by bench/run.sh, newest "
                            "last.\n\n" + NOTES + "\n")
                f.write(f"\n## {started:%Y-%m-%d %H:%M %Z} — {git_rev()}\n\n")
                f.write(f"Command: `{args.command}` ({args.duration} s per scenario, "
                        f"{args.warmup} s warm-up, median of {args.repeat} run(s))  \nMachine: {machine}\n\n")
                f.write(tab + "\n")
            log("appended to bench/RESULTS.md")
        failed = [n for n in order if "skip" in runner.results.get(n, {})]
        return 1 if failed else 0
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
