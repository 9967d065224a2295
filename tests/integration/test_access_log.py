#!/usr/bin/env python3
"""Access log: exactly one JSON line on stdout per request, with the fields of the interface
document; stderr log lines are JSON too; access_log false silences stdout; X-Forwarded-For is
believed only from trusted proxies."""

import http.client
import json
import re
import signal
import socket
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, metric_sum, stop_checked

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class AccessLogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.cfg = config(
            endpoint("/mix", [
                ("good", u("/ok")),
                ("bad", u("/status/503")),
                ("slow", u("/hang"), {"timeout_ms": 200}),
            ], timeout_ms=10000),
            trusted_proxies=["127.0.0.1"],
        )
        cls.gd = Gatherd(cls.cfg)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def test_fields(self):
        status, headers, body = http_get(self.gd.url("/mix"), headers={"X-Request-Id": "al-1"})
        self.assertEqual(status, 200)
        line = self.gd.wait_access_id("al-1")
        for key in ["time", "request_id", "method", "path", "status", "duration_ms", "bytes",
                    "worker", "client", "backends"]:
            self.assertIn(key, line)
        self.assertIn(line["worker"], range(gd.DEFAULT_WORKERS))
        self.assertRegex(line["time"], TIME)
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["path"], "/mix")
        self.assertEqual(line["status"], 200)
        self.assertIsInstance(line["duration_ms"], (int, float))
        self.assertGreaterEqual(line["duration_ms"], 150)   # the 200 ms backend timeout
        self.assertEqual(line["bytes"], len(body))
        self.assertEqual(line["client"], "127.0.0.1")
        b = line["backends"]
        self.assertEqual([(x["name"], x["result"]) for x in b],
                         [("good", "ok"), ("bad", "http_status"), ("slow", "timeout")])
        self.assertEqual(b[0].get("status"), 200)
        self.assertEqual(b[1].get("status"), 503)
        for x in b:
            self.assertIsInstance(x["ms"], (int, float))
        self.assertGreaterEqual(b[2]["ms"], 150)

    def test_one_line_per_request(self):
        paths = ["/mix", "/healthz", "/readyz", "/metrics", "/nowhere", "/mix"]
        for i, p in enumerate(paths):
            http_get(self.gd.url(p), headers={"X-Request-Id": f"one-{i}"})
        http_get(self.gd.url("/mix"), method="POST", headers={"X-Request-Id": "one-post"})
        want = {f"one-{i}": p for i, p in enumerate(paths)}
        want["one-post"] = "/mix"
        for rid in want:
            self.gd.wait_access_id(rid)
        lines = [l for l in self.gd.access_lines() if l.get("request_id") in want]
        self.assertEqual(sorted(l["request_id"] for l in lines), sorted(want))
        for l in lines:
            self.assertEqual(l["path"], want[l["request_id"]])
        by_id = {l["request_id"]: l for l in lines}
        self.assertEqual(by_id["one-4"]["status"], 404)
        self.assertEqual(by_id["one-post"]["status"], 405)
        self.assertEqual(by_id["one-post"]["method"], "POST")

    def test_every_stdout_line_is_access_json(self):
        http_get(self.gd.url("/healthz"), headers={"X-Request-Id": "json-1"})
        self.gd.wait_access_id("json-1")
        for raw in self.gd.stdout_text().splitlines():
            obj = json.loads(raw)
            self.assertIn("request_id", obj)

    def test_stderr_lines_are_json(self):
        for raw in self.gd.stderr_text().splitlines():
            obj = json.loads(raw)
            self.assertIn("msg", obj)
            self.assertIn(obj.get("level"), ("debug", "info", "warn", "error"))
            self.assertRegex(obj.get("time", ""), TIME)
        self.assertEqual(self.gd.listening.get("workers"), gd.DEFAULT_WORKERS)

    def test_forwarded_for_trusted(self):
        http_get(self.gd.url("/healthz"), headers={"X-Request-Id": "xff-1",
                                                   "X-Forwarded-For": "203.0.113.9"})
        self.assertEqual(self.gd.wait_access_id("xff-1")["client"], "203.0.113.9")

    def test_forwarded_for_several_lines(self):
        # Two X-Forwarded-For lines are one list: a client's forged line first, then the one a
        # trusted proxy added. The client is the rightmost untrusted hop of the whole list.
        with socket.create_connection(("127.0.0.1", self.gd.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: xff-lines\r\n"
                      b"X-Forwarded-For: 198.51.100.7\r\n"
                      b"X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n"
                      b"Connection: close\r\n\r\n")
            self.assertIn(b" 200 ", s.recv(4096))
        self.assertEqual(self.gd.wait_access_id("xff-lines")["client"], "203.0.113.9")

    def test_forwarded_for_untrusted(self):
        g = Gatherd(config(*self.cfg["endpoints"]))
        try:
            http_get(g.url("/healthz"), headers={"X-Request-Id": "xff-2",
                                                 "X-Forwarded-For": "203.0.113.9"})
            self.assertEqual(g.wait_access_id("xff-2")["client"], "127.0.0.1")
        finally:
            self.assertEqual(g.stop(), 0)

    def test_stuck_log_reader_does_not_stall_requests(self):
        # Nobody reads gatherd's stdout: the pipe (64 KiB) fills after a few hundred access
        # lines.  Requests must go on being answered and the dropped lines be counted.
        g = Gatherd(config(*self.cfg["endpoints"]), read_stdout=False)
        conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
        try:
            t0 = time.monotonic()
            # Access lines of ~450 bytes (404s with long paths and ids): 25000 of them, about
            # 11 MB, are far more than the pipe and gatherd's log buffer (4 MiB) hold.
            path = "/" + "p" * 190
            rid = "r" * 120
            for i in range(25000):
                conn.request("GET", path, headers={"X-Request-Id": rid})
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 404)
            self.assertLess(time.monotonic() - t0, 120)
            _, _, body = http_get(g.url("/metrics"))
            dropped = metric_sum(body.decode(), "gatherd_log_lines_dropped_total")
            self.assertIsNotNone(dropped)
            self.assertGreater(dropped, 0)
        finally:
            conn.close()
            g.start_stdout_reader()
            self.assertEqual(g.stop(), 0)

    def test_access_log_off(self):
        g = Gatherd(config(*self.cfg["endpoints"], access_log=False))
        for p in ["/healthz", "/mix", "/nowhere"]:
            http_get(g.url(p))
        g.signal(signal.SIGTERM)
        self.assertEqual(g.wait_exit(20), 0)
        self.assertEqual(g.stdout_text(), "")
        g.stop()


if __name__ == "__main__":
    unittest.main()
