#!/usr/bin/env python3
"""DNS faults, hermetic: gatherd runs in a private mount namespace whose /etc/resolv.conf names
a DNS server of our own on a loopback address (options timeout:5 attempts:3).  That server
answers NXDOMAIN for most names and never answers names starting with "blackhole".

- A name that does not resolve ends as a `connect` error.
- A name whose lookup never answers must not freeze the worker's loop (DESIGN.md: cancelling a
  transfer while curl's threaded resolver runs would join the resolver thread on the loop
  unless CURLOPT_QUICK_EXIT detaches it): with one worker, /healthz keeps answering in < 0.5 s
  while such a request is pending, when its 500 ms backend timeout cuts it off (it ends as
  `timeout` within a couple of seconds), and when its client disconnects mid-lookup.
- gatherd still exits 0 at SIGTERM while resolver threads are stuck in getaddrinfo, and a
  drain whose limit cuts off a request parked in such a lookup answers it (`timeout`) and
  exits 0 promptly.

Skipped, with the reason, where unshare/mount --bind is not permitted.
"""

import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faultlib  # noqa: E402

from gd import FakeUpstream, config, endpoint, http_get  # noqa: E402
from faultlib import (StubDNS, gatherd_in_namespace, join,  # noqa: E402
                      private_resolv_wrapper)

PROBE_LIMIT = 0.5   # seconds: a /healthz slower than this means the loop was blocked


class DnsFaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = None
        cls.dns = None
        cls.up = None
        cls.gd = None
        # A loopback address of our own (all of 127/8 is loopback), so no other DNS server on
        # this machine is disturbed and parallel runs are unlikely to collide.
        for _ in range(20):
            addr = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
            try:
                cls.dns = StubDNS(addr)
                break
            except OSError as e:
                err = e
        if cls.dns is None:
            raise unittest.SkipTest(f"cannot bind a UDP DNS server on 127.53.x.y:53: {err}")
        wrapper, cls.tmp, reason = private_resolv_wrapper(
            f"nameserver {cls.dns.addr}\noptions timeout:5 attempts:3\n")
        if wrapper is None:
            cls.dns.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise unittest.SkipTest(reason)
        cls.wrapper = wrapper
        cls.up = FakeUpstream()
        u = cls.up.url
        port = cls.up.port
        ok = ("ok", u("/ok?id=ok"))
        cfg = config(
            endpoint("/nxdomain", [ok, ("nx", f"http://nxdomain.invalid.test:{port}/ok")],
                     timeout_ms=10000),
            endpoint("/blackhole", [
                ok, ("bh", f"http://blackhole.invalid.test:{port}/ok", {"timeout_ms": 500}),
            ], timeout_ms=10000),
            endpoint("/blackhole_long", [
                ("bh", f"http://blackhole-long.invalid.test:{port}/ok"),
            ], timeout_ms=30000),
            endpoint("/fast", [("a", u("/ok?id=a")), ("b", u("/ok?id=b"))], timeout_ms=10000),
        )
        try:
            cls.gd = gatherd_in_namespace(wrapper, cfg, workers=1)
        except BaseException:
            cls.up.stop()
            cls.dns.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.gd is not None:
                t0 = time.monotonic()
                rc = cls.gd.stop(timeout=20)
                took = time.monotonic() - t0
                assert rc == 0, f"gatherd exit {rc}; stderr:\n{cls.gd.stderr_text()}"
                # Resolver threads are still blocked in getaddrinfo (15 s per query): the exit
                # must not wait for them.
                assert took < 10, f"SIGTERM took {took:.1f}s with lookups pending"
        finally:
            if cls.up:
                cls.up.stop()
            if cls.dns:
                cls.dns.stop()
            if cls.tmp:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    def probe(self):
        """One /healthz on a fresh connection; returns its duration."""
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/healthz"), timeout=20)
        dt = time.monotonic() - t0
        self.assertEqual(status, 200, body)
        return dt

    def probe_while(self, busy, at_least=1.0):
        """Probe /healthz back to back while busy() is true and for at_least seconds; every
        probe must be fast.  Returns the number of probes."""
        n = 0
        worst = 0.0
        end = time.monotonic() + at_least
        while busy() or time.monotonic() < end:
            worst = max(worst, self.probe())
            n += 1
        self.assertLess(worst, PROBE_LIMIT, f"slowest /healthz {worst:.3f}s: the loop stalled")
        return n

    def assert_healthy(self):
        status, doc, _ = join(self.gd.url("/fast"))
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["errors"], [])
        self.assertLess(self.probe(), PROBE_LIMIT)

    def test_nxdomain_is_connect(self):
        before = len(self.dns.answered)
        status, doc, _ = join(self.gd.url("/nxdomain"))
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [{"ok": True, "id": "ok"}, {}])
        self.assertEqual(len(doc["errors"]), 1, doc)
        e = doc["errors"][0]
        self.assertEqual((e["index"], e["name"], e["error"]), (1, "nx", "connect"), e)
        self.assertNotIn("status", e)
        self.assertGreater(len(self.dns.answered), before, "the stub DNS was never asked")
        self.assert_healthy()

    def test_blackholed_lookup_times_out_without_blocking(self):
        for rnd in range(3):
            with self.subTest(round=rnd):
                before = len(self.dns.swallowed)
                result = {}

                def call():
                    t0 = time.monotonic()
                    result["answer"] = join(self.gd.url("/blackhole"), timeout=30)
                    result["took"] = time.monotonic() - t0

                t = threading.Thread(target=call)
                t.start()
                self.dns.wait_swallowed(before + 1, timeout=10)
                n = self.probe_while(t.is_alive, at_least=1.5)
                t.join(30)
                self.assertFalse(t.is_alive())
                status, doc, _ = result["answer"]
                self.assertEqual(status, 200, doc)
                self.assertEqual(doc["results"], [{"ok": True, "id": "ok"}, {}])
                self.assertEqual([(e["index"], e["name"], e["error"]) for e in doc["errors"]],
                                 [(1, "bh", "timeout")], doc)
                self.assertLess(result["took"], 2.5, "backend timeout 500 ms not honoured")
                self.assertGreater(n, 5)
        self.assert_healthy()

    def test_many_blackholed_lookups_at_once(self):
        before = len(self.dns.swallowed)
        results = []
        lock = threading.Lock()

        def call():
            r = join(self.gd.url("/blackhole"), timeout=30)
            with lock:
                results.append(r)

        ts = [threading.Thread(target=call) for _ in range(10)]
        for t in ts:
            t.start()
        self.dns.wait_swallowed(before + 10, timeout=10)
        self.probe_while(lambda: any(t.is_alive() for t in ts), at_least=1.5)
        for t in ts:
            t.join(30)
        self.assertEqual(len(results), 10)
        for status, doc, _ in results:
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["errors"][0]["error"], "timeout", doc)
        self.assert_healthy()

    def test_client_leaves_during_blackholed_lookup(self):
        for rnd in range(3):
            with self.subTest(round=rnd):
                rid = f"dns-leave-{rnd}"
                before = len(self.dns.swallowed)
                s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
                s.sendall(f"GET /blackhole_long HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n"
                          "\r\n".encode())
                self.dns.wait_swallowed(before + 1, timeout=10)
                s.close()
                # The cancel runs on the loop: the request is logged as 499 at once rather
                # than after the lookup gives up (15 s), and probes right after stay fast.
                line = self.gd.wait_access_id(rid, timeout=2)
                self.assertEqual(line["status"], 499, line)
                self.assertEqual([b["result"] for b in line["backends"]], ["cancelled"], line)
                self.probe_while(lambda: False, at_least=1.5)
        self.assert_healthy()

    def test_drain_cuts_off_a_blackholed_lookup(self):
        # A gatherd of its own: SIGTERM while a request waits on a lookup that never answers.
        port = self.up.port
        g = gatherd_in_namespace(self.wrapper, config(
            endpoint("/bh", [("ok", self.up.url("/ok?id=ok")),
                             ("bh", f"http://blackhole-drain.invalid.test:{port}/ok")],
                     timeout_ms=60000),
            drain_timeout_ms=1000), workers=1)
        try:
            before = len(self.dns.swallowed)
            result = {}

            def call():
                result["answer"] = join(g.url("/bh"), timeout=30)

            t = threading.Thread(target=call)
            t.start()
            self.dns.wait_swallowed(before + 1, timeout=10)
            t0 = time.monotonic()
            g.signal(signal.SIGTERM)
            g.wait_log("draining", timeout=5)
            rc = g.wait_exit(timeout=15)
            took = time.monotonic() - t0
            t.join(10)
        finally:
            if g.alive():
                g.kill()
            else:
                g.stop()   # reaps and removes its temporary directory
        self.assertEqual(rc, 0, g.stderr_text())
        # The drain limit (1 s) plus its grace for writing answers, not the 15 s lookup.
        self.assertLess(took, 5.0)
        status, doc, _ = result["answer"]
        self.assertEqual(status, 200, doc)
        self.assertEqual([(e["name"], e["error"]) for e in doc["errors"]], [("bh", "timeout")])
        self.assertIsNotNone(g.err.wait(lambda o: o.get("msg") == "stopped", 1))


if __name__ == "__main__":
    faultlib.main()
