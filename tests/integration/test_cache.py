#!/usr/bin/env python3
"""The response cache ("cache" on an endpoint, cache_max_bytes): what is stored and under which
key, the headers (ETag, Age, Cache-Control, Cache-Status) and 304s, collapsed forwarding across
two workers, stale-while-revalidate and stale-if-error with an upstream turned bad and good
again, the LRU bound under 10,000 client-chosen keys, reloads, streams bypassing it, metrics and
the access line. Upstream calls are counted at the upstream (fakeup's request log)."""

import concurrent.futures
import json
import os
import signal
import socket
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, run_check_config, stop_checked






def cache_status(h):
    return h.get("cache-status", "")


class CacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.cfg = config(
            endpoint("/c", [("a", u("/switch?key=c"))], cache={"ttl_ms": 60000}),
            endpoint("/plain", [("a", u("/switch?key=plain"))]),
            endpoint("/p/{id}", [("a", u("/switch?key=p{id}"))], params={"id": "[a-z0-9]+"},
                     cache={"ttl_ms": 60000}),
            endpoint("/each", [("a", u("/switch?key=e{item}"))], each={"param": "ids"},
                     cache={"ttl_ms": 60000}),
            endpoint("/short", [("a", u("/switch?key=short"))], cache={"ttl_ms": 1500}),
            endpoint("/bad", [("a", u("/switch?key=bad"))], cache={"ttl_ms": 60000}),
            endpoint("/swr", [("a", u("/switch?key=swr&delay_ms=300"))],
                     cache={"ttl_ms": 1000, "stale_while_revalidate_ms": 60000}),
            endpoint("/swrfail", [("a", u("/switch?key=swrfail"))],
                     cache={"ttl_ms": 500, "stale_while_revalidate_ms": 1500}),
            endpoint("/sie", [("a", u("/switch?key=sie"))],
                     cache={"ttl_ms": 1000, "stale_if_error_ms": 60000}),
            endpoint("/sie2", [("a", u("/switch?key=sie2"))],
                     cache={"ttl_ms": 500, "stale_if_error_ms": 1000}),
            endpoint("/slow", [("a", u("/switch?key=slow&delay_ms=1500")),
                               ("b", u("/switch?key=slowb&delay_ms=1500"))],
                     cache={"ttl_ms": 60000}, timeout_ms=20000),
            endpoint("/leave", [("a", u("/switch?key=leave&delay_ms=1500"))],
                     cache={"ttl_ms": 60000}, timeout_ms=20000),
            endpoint("/big", [("a", u("/switch?key=big&pad=20000"))], cache={"ttl_ms": 60000}),
            endpoint("/stream", [("a", u("/switch?key=stream"))], cache={"ttl_ms": 60000}),
            endpoint("/keep", [("a", u("/switch?key=keep"))], cache={"ttl_ms": 60000}),
            endpoint("/change", [("a", u("/switch?key=change"))], cache={"ttl_ms": 60000}),
            cache_max_bytes=131072,
        )
        # The sanitizer build holds freed memory in a quarantine (256 MB by default), which
        # would hide whether the cache's bound holds: keep it small.
        opts = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
        env = {"ASAN_OPTIONS": ":".join(opts + ["quarantine_size_mb=4"])}
        cls.gd = Gatherd(cls.cfg, workers=2, env=env)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def get(self, path, headers=None):
        return http_get(self.gd.url(path), headers=headers, timeout=30)

    def test_miss_then_hit_headers(self):
        st, h, body = self.get("/c")
        self.assertEqual(st, 200)
        # 60 s fresh: 59 whole seconds left (58 on a machine slow enough to take a second).
        self.assertRegex(cache_status(h), r"^gatherd; fwd=miss; stored; ttl=5[89]$")
        self.assertEqual(h["age"], "0")
        self.assertRegex(h["cache-control"], r"^max-age=5[89]$")
        self.assertRegex(h["etag"], r'^"[0-9a-f]{16}"$')
        self.assertEqual(h["vary"], "Accept")  # a stream is another representation
        st2, h2, body2 = self.get("/c")
        self.assertEqual((st2, body2), (200, body))
        self.assertRegex(cache_status(h2), r"^gatherd; hit; ttl=(59|58)$")
        self.assertEqual(h2["etag"], h["etag"])
        st3, h3, body3 = http_get(self.gd.url("/c"), method="HEAD")
        self.assertEqual((st3, body3, h3["etag"]), (200, b"", h["etag"]))
        self.assertRegex(cache_status(h3), r"^gatherd; hit")
        self.assertEqual(len(self.up.switch_calls("c")), 1)
        # The access line and the metrics say how it went.
        line = self.gd.wait_access(lambda o: o.get("path") == "/c" and o.get("cache") == "hit")
        self.assertNotIn("backends", line)
        exp = gd.scrape(self.gd)
        self.assertGreaterEqual(exp.get("gatherd_cache_lookups_total", endpoint="/c",
                                        result="hit"), 1)
        self.assertGreaterEqual(exp.get("gatherd_cache_entries"), 1)
        self.assertGreater(exp.get("gatherd_cache_bytes"), 0)

    def test_age_counts_up(self):
        st, h, _ = self.get("/p/age")
        self.assertEqual(h["age"], "0")
        gd.wait_until(lambda: self.get("/p/age")[1]["age"] != "0", 10, "Age to count")
        _, h, _ = self.get("/p/age")
        age = int(h["age"])
        self.assertGreaterEqual(age, 1)
        self.assertEqual(h["cache-control"], f"max-age={59 - age}")
        self.assertEqual(cache_status(h), f"gatherd; hit; ttl={59 - age}")

    def test_uncached_endpoint_keeps_its_headers(self):
        st, h, _ = self.get("/plain")
        self.assertEqual(h["cache-control"], "no-store")
        for k in ("cache-status", "etag", "age", "vary"):
            self.assertNotIn(k, h)
        line = self.gd.wait_access(lambda o: o.get("path") == "/plain")
        self.assertNotIn("cache", line)

    def test_etag_304(self):
        _, h, body = self.get("/p/etag")
        st, h2, body2 = self.get("/p/etag", {"If-None-Match": h["etag"]})
        self.assertEqual((st, body2), (304, b""))
        self.assertEqual(h2["etag"], h["etag"])
        self.assertIn("cache-status", h2)
        self.assertIn("age", h2)
        st, _, _ = self.get("/p/etag", {"If-None-Match": f'"nope", W/{h["etag"]}'})
        self.assertEqual(st, 304)
        st, _, body3 = self.get("/p/etag", {"If-None-Match": '"0000000000000000"'})
        self.assertEqual((st, body3), (200, body))
        # A 304 on the wire: no body, and a Content-Length that is the 200's.
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
        s.sendall(f"GET /p/etag HTTP/1.1\r\nHost: t\r\nIf-None-Match: {h['etag']}\r\n\r\n"
                  f"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            raw += d
        s.close()
        first, rest = raw.split(b"\r\n\r\n", 1)
        self.assertTrue(first.startswith(b"HTTP/1.1 304"), first)
        self.assertIn(f"Content-Length: {len(body)}".encode(), first)
        self.assertTrue(rest.startswith(b"HTTP/1.1 200"), rest[:80])

    def test_keys(self):
        for v in ("ka", "kb", "ka", "kb"):
            self.assertEqual(self.get(f"/p/{v}")[0], 200)
        self.assertEqual([len(self.up.switch_calls(k)) for k in ("pka", "pkb")], [1, 1])
        # each: the distinct items in request order; repeats do not make another key.
        self.get("/each?ids=x1,y1")
        _, h, _ = self.get("/each?ids=x1,y1,x1")
        self.assertRegex(cache_status(h), "^gatherd; hit")
        _, h, _ = self.get("/each?ids=x1&ids=y1")
        self.assertRegex(cache_status(h), "^gatherd; hit")
        _, h, _ = self.get("/each?ids=y1,x1")
        self.assertRegex(cache_status(h), "^gatherd; fwd=miss")
        self.assertEqual(len(self.up.switch_calls("ex1")), 2)

    def test_incomplete_not_stored(self):
        self.up.switch("bad", 503)
        try:
            st, h, body = self.get("/bad")
            self.assertEqual(st, 502)
            self.assertEqual(cache_status(h), "gatherd; fwd=miss")
            self.assertEqual(h["cache-control"], "no-store")
            self.assertNotIn("etag", h)
            self.get("/bad")
            self.assertEqual(len(self.up.switch_calls("bad")), 2)
        finally:
            self.up.switch("bad", 200)
        st, h, _ = self.get("/bad")
        self.assertEqual(st, 200)
        self.assertRegex(cache_status(h), r"^gatherd; fwd=miss; stored; ttl=5[89]$")

    def test_expiry(self):
        self.get("/short")
        n = len(self.up.switch_calls("short"))
        gd.wait_until(lambda: "fwd=" in cache_status(self.get("/short")[1]), 10, "expiry")
        self.assertEqual(len(self.up.switch_calls("short")), n + 1)

    def test_stale_while_revalidate(self):
        self.get("/swr")
        gd.wait_until(lambda: "ttl=-" in cache_status(self.get("/swr")[1]), 10, "staleness")
        # Stale answers at once, while exactly one background fill refreshes the entry.
        self.up.wait("path:/switch", 0)
        before = len(self.up.switch_calls("swr"))
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda _: self.get("/swr"), range(16)))
        self.assertLess(time.monotonic() - t0, 0.3 * 16)
        for st, h, _ in got:
            self.assertEqual(st, 200)
            self.assertRegex(cache_status(h), r"^gatherd; (fwd=stale; ttl=-\d+|hit; ttl=\d+)$")
        gd.wait_until(lambda: "hit" in cache_status(self.get("/swr")[1]), 10, "refresh")
        # One background refresh (+1 if the stale lookup that waited above started one).
        self.assertLessEqual(len(self.up.switch_calls("swr")) - before, 1 + 1)
        exp = gd.scrape(self.gd)
        self.assertGreaterEqual(exp.get("gatherd_cache_lookups_total", endpoint="/swr",
                                        result="stale"), 1)

    def test_stale_while_revalidate_with_failing_refresh(self):
        """A background refresh that fails stores nothing: the stale answer is served until
        stale_while_revalidate_ms runs out, then the error as it is."""
        _, h0, body0 = self.get("/swrfail")
        self.up.switch("swrfail", 503)
        try:
            gd.wait_until(lambda: "fwd=stale" in cache_status(self.get("/swrfail")[1]), 10,
                          "staleness")
            gd.wait_until(lambda: len(self.up.switch_calls("swrfail")) >= 2, 10, "a refresh")
            st, h, body = self.get("/swrfail")
            if st == 200:  # still within the window
                self.assertEqual(body, body0)
                self.assertRegex(cache_status(h), r"^gatherd; fwd=stale; ttl=-\d+$")
            gd.wait_until(lambda: self.get("/swrfail")[0] == 502, 10, "the window's end")
            st, h, _ = self.get("/swrfail")
            self.assertEqual((st, cache_status(h)), (502, "gatherd; fwd=miss"))
        finally:
            self.up.switch("swrfail", 200)

    def test_stale_if_error(self):
        _, h0, body0 = self.get("/sie")
        self.up.switch("sie", 503)
        try:
            gd.wait_until(lambda: "fwd=stale" in cache_status(self.get("/sie")[1]), 10,
                          "a stale answer for an error")
            st, h, body = self.get("/sie")
            self.assertEqual((st, body), (200, body0))
            self.assertRegex(cache_status(h), r"^gatherd; fwd=stale; fwd-status=502; ttl=-\d+$")
            self.assertEqual(h["etag"], h0["etag"])
        finally:
            self.up.switch("sie", 200)
        st, h, body = self.get("/sie")
        self.assertEqual(st, 200)
        self.assertRegex(cache_status(h), r"^gatherd; fwd=stale; stored; ttl=(0|-1)$")
        self.assertNotEqual(body, body0)

    def test_stale_if_error_runs_out(self):
        self.get("/sie2")
        self.up.switch("sie2", 503)
        try:
            # 500 ms fresh, then 1 s of stale-if-error, then the error as it is.
            gd.wait_until(lambda: self.get("/sie2")[0] == 502, 10, "the error itself")
            st, h, _ = self.get("/sie2")
            self.assertEqual((st, cache_status(h)), (502, "gatherd; fwd=miss"))
        finally:
            self.up.switch("sie2", 200)

    def test_collapsed_across_workers(self):
        """100 concurrent requests on a cold key, two workers: one call per backend."""
        n = 100
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=30)
            s.sendall(f"GET /slow HTTP/1.1\r\nHost: t\r\nX-Request-Id: col-{i}\r\n"
                      f"Connection: close\r\n\r\n".encode())
            socks.append(s)
        bodies, statuses = set(), []
        for s in socks:
            status, headers, body = gd.parse_response(gd.read_response(s, timeout=30))
            s.close()
            statuses.append((status, headers.get("cache-status")))
            bodies.add(body)
        self.assertEqual({st for st, _ in statuses}, {200})
        self.assertEqual(len(bodies), 1)
        self.assertEqual([len(self.up.switch_calls(k)) for k in ("slow", "slowb")], [1, 1])
        col = [c for _, c in statuses if "collapsed" in c]
        self.assertGreater(len(col), 0)
        for c in col:
            self.assertRegex(c, r"^gatherd; fwd=miss; collapsed; stored; ttl=5[89]$")
        lines = [gd_line for gd_line in self.gd.access_lines()
                 if gd_line.get("request_id", "").startswith("col-")]
        gd.wait_until(lambda: len([l for l in self.gd.access_lines()
                                   if l.get("request_id", "").startswith("col-")]) == n, 10,
                      "access lines")
        lines = [l for l in self.gd.access_lines() if l.get("request_id", "").startswith("col-")]
        self.assertEqual(sorted(l["cache"] for l in lines).count("miss"), 1)
        self.assertEqual({l["worker"] for l in lines}, {0, 1}, "both workers took requests")

    def test_filler_client_leaves(self):
        """The client whose miss started the fill leaves: the others still get the answer,
        from the one upstream call, which is not cut off."""
        first = socket.create_connection(("127.0.0.1", self.gd.port), timeout=30)
        first.sendall(b"GET /leave HTTP/1.1\r\nHost: t\r\n\r\n")
        self.up.wait("path:/switch", 1)
        gd.wait_until(lambda: len(self.up.switch_calls("leave")) == 1, 10, "the fill's call")
        others = []
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=30)
            s.sendall(b"GET /leave HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            others.append(s)
        first.close()
        for s in others:
            status, headers, _ = gd.parse_response(gd.read_response(s, timeout=30))
            s.close()
            self.assertEqual(status, 200)
        self.assertEqual(len(self.up.switch_calls("leave")), 1)
        self.assertEqual([e["outcome"] for e in self.up.log() if "key=leave" in e["target"]],
                         ["responded"])

    def test_too_big_not_stored(self):
        # 20 KB over an eighth of 128 KiB: served, never stored.
        for _ in range(2):
            st, h, body = self.get("/big")
            self.assertEqual(st, 200)
            self.assertEqual(cache_status(h), "gatherd; fwd=miss")
            self.assertGreater(len(body), 16384)
        self.assertEqual(len(self.up.switch_calls("big")), 2)

    def test_stream_bypasses(self):
        self.get("/stream")
        st, h, _ = self.get("/stream", {"Accept": "application/x-ndjson"})
        self.assertEqual(st, 200)
        self.assertNotIn("cache-status", h)
        self.assertEqual(len(self.up.switch_calls("stream")), 2)

    def test_eviction_bounded(self):
        """10,000 distinct client-chosen keys under a 128 KiB bound: memory stays bounded."""
        rss0 = self.rss_kb()
        ev0 = gd.scrape(self.gd).get("gatherd_cache_evictions_total")

        def run(lo):
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", self.gd.port, timeout=30)
            for i in range(lo, lo + 2500):
                c.request("GET", f"/p/ev{i}")
                r = c.getresponse()
                r.read()
                assert r.status == 200, r.status
            c.close()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(run, range(0, 10000, 2500)))
        exp = gd.scrape(self.gd)
        self.assertLessEqual(exp.get("gatherd_cache_bytes"), 131072)
        self.assertGreater(exp.get("gatherd_cache_evictions_total") - ev0, 9000)
        self.assertLess(self.rss_kb() - rss0, 64 * 1024)

    def rss_kb(self):
        with open(f"/proc/{self.gd.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def test_reload_drops_changed_only(self):
        self.get("/keep")
        self.get("/change")
        cfg = json.loads(json.dumps(self.cfg))
        for ep in cfg["endpoints"]:
            if ep["path"] == "/change":
                ep["timeout_ms"] = 4321
        self.gd.write_config(cfg)
        n = len([l for l in self.gd.log_lines() if l.get("msg") == "reloaded"])
        self.gd.signal(signal.SIGHUP)
        gd.wait_until(lambda: len([l for l in self.gd.log_lines()
                                   if l.get("msg") == "reloaded"]) > n, 10, "reloaded")
        _, h, _ = self.get("/keep")
        self.assertRegex(cache_status(h), "^gatherd; hit")
        _, h, _ = self.get("/change")
        self.assertRegex(cache_status(h), "^gatherd; fwd=miss; stored")
        self.assertEqual([len(self.up.switch_calls(k)) for k in ("keep", "change")], [1, 2])


class CacheDrainTest(unittest.TestCase):
    def test_waiters_survive_reload_and_drain(self):
        """Requests collapsed onto a fill on two workers keep waiting through a reload that
        changes the endpoint and through SIGTERM, and all get the one answer."""
        with FakeUpstream() as up:
            cfg = config(endpoint("/w", [("a", up.url("/switch?key=dw&delay_ms=1500"))],
                                  cache={"ttl_ms": 60000}, timeout_ms=20000),
                         drain_timeout_ms=10000)
            g = Gatherd(cfg, workers=2)
            socks = []
            try:
                for i in range(20):
                    s = socket.create_connection(("127.0.0.1", g.port), timeout=30)
                    s.sendall(f"GET /w HTTP/1.1\r\nHost: t\r\nX-Request-Id: dw-{i}\r\n"
                              f"\r\n".encode())
                    socks.append(s)
                gd.wait_until(lambda: len(up.switch_calls("dw")) == 1, 10, "the fill's call")

                def looked_up():
                    exp = gd.scrape(g)
                    return sum(exp.get("gatherd_cache_lookups_total", endpoint="/w", result=r)
                               for r in ("miss", "collapsed"))
                # Every request is waiting (none still in the listen backlog the drain closes).
                gd.wait_until(lambda: looked_up() == 20, 10, "20 waiting requests")
                cfg["endpoints"][0]["timeout_ms"] = 19000
                g.write_config(cfg)
                g.signal(signal.SIGHUP)
                g.wait_log("reloaded")
                g.signal(signal.SIGTERM)
                g.wait_log("draining")
                for s in socks:
                    status, headers, _ = gd.parse_response(gd.read_response(s, timeout=30))
                    self.assertEqual(status, 200)
                    self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(g.wait_exit(timeout=20), 0, g.stderr_text())
                self.assertEqual(len(up.switch_calls("dw")), 1)
            finally:
                for s in socks:
                    s.close()
                g.kill()  # cleans up, exited or not


class CacheNotifyTest(unittest.TestCase):
    def test_notification_says_how_the_cache_served(self):
        with FakeUpstream() as up:
            g = Gatherd(config(endpoint("/n", [("a", up.url("/switch?key=nt"))],
                                        cache={"ttl_ms": 60000},
                                        notify={"url": up.url("/sink")})), workers=1)
            try:
                self.assertEqual(http_get(g.url("/n"))[0], 200)
                self.assertEqual(http_get(g.url("/n"))[0], 200)
                up.wait("path:/sink", 2)
                docs = [json.loads(e["body"]) for e in up.log() if e["path"] == "/sink"]
                self.assertEqual(sorted(d["cache"] for d in docs), ["hit", "miss"])
            finally:
                stop_checked(g)


class CacheOffTest(unittest.TestCase):
    def test_zero_bound_turns_caching_off(self):
        with FakeUpstream() as up:
            g = Gatherd(config(endpoint("/c", [("a", up.url("/switch?key=off"))],
                                        cache={"ttl_ms": 60000}), cache_max_bytes=0), workers=1)
            try:
                for _ in range(2):
                    st, h, _ = http_get(g.url("/c"))
                    self.assertEqual((st, h["cache-control"]), (200, "no-store"))
                    self.assertNotIn("cache-status", h)
                self.assertEqual(len(up.switch_calls("off")), 2)
            finally:
                stop_checked(g)

    def test_config_errors_name_the_key(self):
        base = {"path": "/x", "backends": [{"name": "a", "url": "http://127.0.0.1:1/"}]}
        for cache, key in [({}, "endpoints[0].cache.ttl_ms: is required"),
                           ({"ttl_ms": 0}, "endpoints[0].cache.ttl_ms: must be between"),
                           ({"ttl_ms": 5, "stale_if_error_ms": -1},
                            "endpoints[0].cache.stale_if_error_ms"),
                           ({"ttl_ms": 5, "stale": 1}, "endpoints[0].cache.stale: unknown key"),
                           ("yes", "endpoints[0].cache: must be an object")]:
            rc, _, err, _ = run_check_config({"endpoints": [dict(base, cache=cache)]})
            self.assertEqual(rc, 2, err)
            self.assertIn(key, err)
        rc, _, err, _ = run_check_config({"cache_max_bytes": -1, "endpoints": [base]})
        self.assertEqual(rc, 2)
        self.assertIn("cache_max_bytes", err)


if __name__ == "__main__":
    unittest.main()
