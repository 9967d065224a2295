#!/usr/bin/env python3
"""gatherd behind Debian's real nginx, configured by the shipped deploy/nginx/gatherd.conf.

The nginx configuration under test is deploy/nginx/gatherd.conf itself: the test only swaps
the `server` lines of its `upstream gatherd` block for loopback gatherd instances (keeping
their parameters), its `listen` line for a free 127.0.0.1 port and its access_log path for a
temporary file, and wraps it in a minimal main context (pid, error log, temp paths in a
temporary directory).  nginx runs in the foreground as a child of the test.

What gatherd must log as `client` (docs/interface.md, trusted_proxies): when the peer is
trusted, walk X-Forwarded-For from the right and take the first address that is not in
trusted_proxies.  nginx appends the real peer with $proxy_add_x_forwarded_for, so a client
at 127.0.0.1 sending `X-Forwarded-For: 203.0.113.7` arrives at gatherd as
`203.0.113.7, 127.0.0.1`; with trusted_proxies ["127.0.0.1"] gatherd logs 203.0.113.7.
Without trusted_proxies it logs the TCP peer (nginx, 127.0.0.1) and ignores the header.

Run: GATHERD_BIN=build/src/gatherd PYTHONPATH=tests/lib tests/proxy/test_nginx.py
Exit 77 (skip) when nginx is not installed.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import gd  # noqa: E402
import nginxproc  # noqa: E402

NGINX = nginxproc.NGINX
NGINX_CONF = os.path.join(gd.SRC, "deploy", "nginx", "gatherd.conf")
TRUSTED = ["127.0.0.1"]
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")   # nginx's $request_id


# --------------------------------------------------------------------------------------------
# nginx


def nginx_site_config(upstreams, listen_port, access_log):
    """deploy/nginx/gatherd.conf with test addresses swapped in (see the module docstring)."""
    with open(NGINX_CONF) as f:
        text = f.read()
    m = re.search(r"(upstream\s+gatherd\s*\{)(.*?)(\n\})", text, re.S)
    if not m:
        raise AssertionError(f"{NGINX_CONF}: no `upstream gatherd {{ ... }}` block")
    body = m.group(2)
    servers = re.findall(r"^\s*server\s+(\S+)([^;]*);", body, re.M)
    if not servers:
        raise AssertionError(f"{NGINX_CONF}: no server line in the upstream block")
    params = servers[0][1]        # e.g. " max_fails=1 fail_timeout=5s", kept as shipped
    lines = "".join(f"\n    server 127.0.0.1:{p}{params};" for p in upstreams)
    body, n = re.subn(r"^\s*server\s+\S+[^;]*;", "", body, flags=re.M)
    body = lines + body
    text = text[:m.start(2)] + body + text[m.end(2):]
    text, n = re.subn(r"^(\s*)listen\s+[^;]+;", rf"\1listen 127.0.0.1:{listen_port};", text,
                      count=1, flags=re.M)
    if n != 1:
        raise AssertionError(f"{NGINX_CONF}: no listen line")
    text = re.sub(r"^\s*listen\s+\[::\][^;]*;", "", text, flags=re.M)
    text, n = re.subn(r"^(\s*)access_log\s+\S+", rf"\1access_log {access_log}", text,
                      flags=re.M)
    return text


class Nginx(nginxproc.NginxProcess):
    """Debian's nginx in the foreground in front of the given gatherd ports."""

    def __init__(self, upstreams, start_timeout=15):
        super().__init__()
        self.port = gd.free_port()
        site = nginx_site_config(upstreams, self.port, self.access_log)
        with open(os.path.join(self.dir, "gatherd.conf"), "w") as f:
            f.write(site)
        self.start("    access_log off;\n    include {dir}/gatherd.conf;", [self.port],
                   start_timeout=start_timeout)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"


# --------------------------------------------------------------------------------------------
# helpers


def header(d, name):
    """Case-insensitive lookup in a dict of headers."""
    for k, v in d.items():
        if k.lower() == name.lower():
            return v
    return None


def metrics(g):
    status, _, body = gd.http_get(g.url("/metrics"))
    assert status == 200, status
    return body.decode()


def ephemeral_ports(port):
    """Client-side ports of every TCP socket pair with `port` on 127.0.0.1 (any state except
    LISTEN, TIME-WAIT included): a set that grows by one per connection ever opened to it in
    the last minute."""
    out = subprocess.run(["ss", "-Htan", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 5 or f[0] == "LISTEN":
            continue
        local, peer = f[3].rsplit(":", 1)[1], f[4].rsplit(":", 1)[1]
        ports.add(peer if local == str(port) else local)
    return ports


def cfg(upstream, **top):
    return gd.config(gd.endpoint("/t", [("a", upstream.url("/ok")),
                                         ("echo", upstream.url("/echo"))]), **top)


# --------------------------------------------------------------------------------------------


class TestBehindNginx(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.up = gd.FakeUpstream()

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()

    # X-Forwarded-For -------------------------------------------------------------------------

    def test_xff_trusted_proxy_client_is_forwarded_address(self):
        with gd.Gatherd(cfg(self.up, trusted_proxies=TRUSTED)) as g, Nginx([g.port]) as n:
            cases = [
                # client sends        -> gatherd receives (nginx appends 127.0.0.1) -> logs
                ("203.0.113.7", "203.0.113.7"),
                ("198.51.100.1, 203.0.113.7", "203.0.113.7"),      # rightmost untrusted
                ("203.0.113.7, 127.0.0.1", "203.0.113.7"),         # trusted hops skipped
            ]
            for i, (xff, want) in enumerate(cases):
                rid = f"xff-trusted-{i}"
                status, h, body = gd.http_get(n.url("/t"), headers={
                    "X-Forwarded-For": xff, "X-Request-Id": rid})
                self.assertEqual(status, 200, body)
                line = g.wait_access_id(rid)
                self.assertEqual(line.get("client"), want,
                                 f"XFF {xff!r} (+127.0.0.1 by nginx): access line {line}")
            # no X-Forwarded-For from the client: nginx sends "127.0.0.1" only, all trusted;
            # gatherd must still log an address, and it can only be 127.0.0.1
            status, _, _ = gd.http_get(n.url("/t"), headers={"X-Request-Id": "xff-none"})
            self.assertEqual(status, 200)
            self.assertEqual(g.wait_access_id("xff-none").get("client"), "127.0.0.1")

    def test_xff_untrusted_proxy_logs_peer(self):
        with gd.Gatherd(cfg(self.up)) as g, Nginx([g.port]) as n:
            status, _, body = gd.http_get(n.url("/t"), headers={
                "X-Forwarded-For": "203.0.113.7", "X-Request-Id": "xff-untrusted"})
            self.assertEqual(status, 200, body)
            line = g.wait_access_id("xff-untrusted")
            self.assertEqual(line.get("client"), "127.0.0.1",
                             f"without trusted_proxies the peer must be logged: {line}")
            # nginx's own log shows the real peer and the header it received
            n_line = [x for x in n.wait_access(
                lambda ls: any(x.get("request_id") == "xff-untrusted" for x in ls),
                "nginx's access line for xff-untrusted") if x.get("request_id") == "xff-untrusted"]
            self.assertEqual(n_line[0]["client"], "127.0.0.1")
            self.assertEqual(n_line[0]["xff"], "203.0.113.7")

    # X-Request-Id ---------------------------------------------------------------------------

    def test_request_id_from_client_reaches_upstream_and_comes_back(self):
        with gd.Gatherd(cfg(self.up)) as g, Nginx([g.port]) as n:
            rid = "client-id.42:abc/+=@-_"
            status, h, body = gd.http_get(n.url("/t"), headers={"X-Request-Id": rid})
            self.assertEqual(status, 200, body)
            self.assertEqual(h.get("x-request-id"), rid, h)
            echo = json.loads(body)["results"][1]
            self.assertEqual(header(echo["headers"], "X-Request-Id"), rid, echo)
            self.assertEqual(g.wait_access_id(rid)["path"], "/t")
            # nginx logs it too
            n.wait_access(lambda ls: any(x.get("request_id") == rid for x in ls),
                          f"nginx's access line for {rid}")

    def test_request_id_generated_by_nginx_when_absent_or_invalid(self):
        with gd.Gatherd(cfg(self.up)) as g, Nginx([g.port]) as n:
            for sent in (None, "bad id with spaces", "x" * 129):
                hdrs = {} if sent is None else {"X-Request-Id": sent}
                status, h, body = gd.http_get(n.url("/t"), headers=hdrs)
                self.assertEqual(status, 200, body)
                rid = h.get("x-request-id")
                self.assertRegex(rid or "", REQUEST_ID_RE, f"sent {sent!r}: headers {h}")
                echo = json.loads(body)["results"][1]
                self.assertEqual(header(echo["headers"], "X-Request-Id"), rid, echo)
                self.assertEqual(g.wait_access_id(rid)["status"], 200)

    def test_request_id_on_answers_nginx_makes_itself(self):
        # no gatherd at all: nginx's own 502 still carries the id
        port = gd.closed_port()
        with Nginx([port]) as n:
            status, h, _ = gd.http_get(n.url("/t"), headers={"X-Request-Id": "lonely-1"})
            self.assertEqual(status, 502)
            self.assertEqual(h.get("x-request-id"), "lonely-1")

    # keep-alive -----------------------------------------------------------------------------

    def test_keepalive_pool_reuses_upstream_connections(self):
        with gd.Gatherd(cfg(self.up)) as g, Nginx([g.port]) as n:
            before_m = gd.metric_sum(metrics(g), "gatherd_http_connections_opened_total")
            before_ss = ephemeral_ports(g.port)
            for i in range(50):                  # 50 requests, each a new client connection
                status, _, body = gd.http_get(n.url("/t"))
                self.assertEqual(status, 200, body)
            opened_ss = len(ephemeral_ports(g.port) - before_ss)
            after_m = gd.metric_sum(metrics(g), "gatherd_http_connections_opened_total")
            self.assertLessEqual(opened_ss, 5,
                                 f"nginx opened {opened_ss} connections to gatherd for 50 requests")
            self.assertIsNotNone(before_m,
                                 "/metrics lacks gatherd_http_connections_opened_total")
            # the second scrape's own connection is counted too
            self.assertLessEqual(after_m - before_m - 1, 5,
                                 f"gatherd_http_connections_opened_total grew by "
                                 f"{after_m - before_m} over 50 proxied requests")
            ups = {x.get("upstream") for x in n.wait_access(
                lambda ls: len(ls) >= 50, "nginx's access lines for 50 requests")}
            self.assertEqual(ups, {f"127.0.0.1:{g.port}"})
            print(f"\n  50 requests through nginx: {opened_ss} new TCP connections to gatherd "
                  f"(ss), connections_opened_total +{after_m - before_m:.0f} incl. 1 scrape",
                  file=sys.stderr)

    # drain and reload under load -----------------------------------------------------------

    def test_reload_and_restart_under_load_lose_nothing(self):
        """Two gatherd instances behind nginx; bounded load through nginx while (a) one gets
        SIGHUP with a changed config and (b) the other gets SIGTERM and is replaced by a new
        process on the same port.  Every client request must be answered 200."""
        conf = gd.config(gd.endpoint("/t", [("a", self.up.url("/ok?delay_ms=20"))]))
        conf2 = gd.config(gd.endpoint("/t", [("a", self.up.url("/ok?delay_ms=20"))],
                                      timeout_ms=4000),
                          gd.endpoint("/t2", [("a", self.up.url("/ok"))]))
        a = gd.Gatherd(conf)
        b = gd.Gatherd(conf)
        b2 = None
        port_b = b.port
        nginx = Nginx([a.port, b.port])
        # bounded: at most this many requests or seconds, whichever comes first
        max_requests, max_seconds, threads = 10000, 90, 8
        lock = threading.Condition()
        state = {"done": 0, "bad": [], "stop": False}
        draining = {}
        retried = 0
        retry_errors = []
        t0 = time.monotonic()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
            try:
                while True:
                    with lock:
                        if (state["stop"] or state["done"] >= max_requests
                                or time.monotonic() - t0 > max_seconds):
                            state["stop"] = True
                            lock.notify_all()
                            return
                    try:
                        conn.request("GET", "/t")
                        r = conn.getresponse()
                        body = r.read()
                        ok = r.status == 200
                        what = (r.status, body[:200], r.getheader("X-Request-Id"))
                    except (OSError, http.client.HTTPException) as e:
                        ok, what = False, repr(e)
                        conn.close()
                    with lock:
                        state["done"] += 1
                        if not ok:
                            state["bad"].append(what)
                        lock.notify_all()
            finally:
                conn.close()

        def wait_done(n, timeout=60):
            with lock:
                if not lock.wait_for(lambda: state["done"] >= n or state["stop"], timeout):
                    raise AssertionError(f"load stalled at {state['done']} requests")
                if state["done"] < n:
                    raise AssertionError(f"load ended at {state['done']} < {n}")
                return state["done"]

        workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        timeline = []
        try:
            for w in workers:
                w.start()
            wait_done(200)
            b_served_before = sum(1 for x in b.access_lines() if x.get("path") == "/t")

            # (a) SIGHUP with a changed config file
            a.write_config(conf2)
            timeline.append(("sighup a", state["done"]))
            a.signal(signal.SIGHUP)
            rl = a.wait_log("reloaded", timeout=15)
            self.assertEqual(rl.get("endpoints"), 2, rl)
            status, _, _ = gd.http_get(a.url("/t2"))
            self.assertEqual(status, 200, "reloaded config not applied (/t2)")
            wait_done(state["done"] + 200)

            # (b) SIGTERM, exit, replacement on the same port
            timeline.append(("sigterm b", state["done"]))
            b.signal(signal.SIGTERM)
            draining = b.wait_log("draining", timeout=15)
            rc = b.wait_exit(30)
            self.assertEqual(rc, 0, b.stderr_text())
            self.assertTrue(any(x.get("msg") == "stopped" for x in b.log_lines()),
                            b.stderr_text())
            b.stop()
            timeline.append(("b exited", state["done"]))
            b2 = gd.Gatherd(conf2, args=("--listen", f"127.0.0.1:{port_b}"))
            timeline.append(("b2 listening", state["done"]))

            # nginx takes b's port out of rotation for fail_timeout (5 s) after the refused
            # connects; keep the load on until the replacement served real traffic.
            while b2.out.wait(lambda x: x.get("path") == "/t", 1.0) is None:
                with lock:
                    if state["stop"]:
                        raise AssertionError("load ended before the replacement got traffic")
            timeline.append(("b2 served", state["done"]))
            wait_done(state["done"] + 200)
        finally:
            with lock:
                state["stop"] = True
                lock.notify_all()
            for w in workers:
                w.join(60)
            elapsed = time.monotonic() - t0
            nginx_errors = nginx.errors()
            # requests nginx had to send to a second instance (refused connect, closed
            # keep-alive connection): invisible to the client, that is the point
            retried_lines = [x for x in nginx.access_lines() if "," in x.get("upstream", "")]
            retried = len(retried_lines)
            retry_errors = [l for l in nginx_errors.splitlines() if "[error]" in l and "upstream" in l][:3]
            nginx.stop()
            for g in (a, b, b2):
                if g is not None:
                    g.stop()
        print(f"\n  load: {state['done']} requests in {elapsed:.1f}s through nginx, "
              f"{len(state['bad'])} not 200, {retried} retried by nginx; b served {b_served_before} before SIGTERM "
              f"(draining in_flight={draining.get('in_flight')}); timeline {timeline}",
              file=sys.stderr)
        for l in retry_errors:
            print("  nginx: " + l[l.find("[error]"):][:160], file=sys.stderr)
        self.assertFalse(any(w.is_alive() for w in workers), "load threads did not stop")
        # nginx's retries could hide a request gatherd dropped; gatherd's own access logs
        # cannot: every request that reached an instance (in flight at SIGTERM included) was
        # answered 200 there, none cancelled (499) or failed
        for name, g in (("a", a), ("b", b), ("b2", b2)):
            bad = [x for x in g.access_lines() if x.get("path") == "/t" and x.get("status") != 200]
            self.assertEqual(bad, [], f"gatherd {name} did not answer 200 to every request")
        self.assertGreater(b_served_before, 0, "b got no traffic before SIGTERM")
        self.assertEqual(state["bad"], [], f"lost requests; nginx error log:\n"
                                           f"{nginx_errors[-3000:]}")
        self.assertLess(state["done"], max_requests, "load cap reached before the scenario ended")


if __name__ == "__main__":
    if not os.path.exists(NGINX):
        print(f"SKIP: nginx not installed ({NGINX}); apt-get install nginx-light")
        sys.exit(77)
    unittest.main(verbosity=2)
