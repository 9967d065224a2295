#!/usr/bin/env python3
"""Streamed answers (issue 12) through Debian's real nginx configured by the shipped
deploy/nginx/gatherd.conf (set up as tests/proxy/test_nginx.py does): nginx buffers proxied
answers, and gatherd's `X-Accel-Buffering: no` must turn that off for streams alone, so each
NDJSON line and SSE event reaches the client when its backend ends, not with the slowest; the
stream ends properly (terminating chunk) and the connection is reused; a client that leaves
nginx mid-stream cancels gatherd's upstream calls (nginx closes its connection to gatherd).

Run: GATHERD_BIN=build/src/gatherd PYTHONPATH=tests/lib tests/proxy/test_nginx_stream.py
Exit 77 (skip) when nginx is not installed.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import gd  # noqa: E402
import nginxproc  # noqa: E402
from streamclient import StreamClient  # noqa: E402
from test_nginx import Nginx  # noqa: E402

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
SLOW_MS = 2000


class TestStreamBehindNginx(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.up = gd.FakeUpstream()
        u = cls.up.url
        cls.gd = gd.Gatherd(gd.config(
            gd.endpoint("/three", [("slow", u(f"/ok?id=slow&delay_ms={SLOW_MS}")),
                                   ("mid", u("/ok?id=mid&delay_ms=300")),
                                   ("fast", u("/ok?id=fast&delay_ms=50"))],
                        timeout_ms=10000),
            gd.endpoint("/leave", [("fast", u("/ok?id=fast")), ("hang", u("/hang"))],
                        timeout_ms=15000),
        ))
        cls.nginx = Nginx([cls.gd.port])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.nginx.stop()
        finally:
            gd.stop_checked(cls.gd, cls.up)

    def setUp(self):
        self.up.wait_le("active", 0, timeout=15)
        self.up.reset()

    def entry(self, rid, prefix):
        hits = [e for e in self.up.log() if e["request_id"] == rid
                and e["target"].startswith(prefix)]
        self.assertEqual(len(hits), 1, (prefix, self.up.log()))
        return hits[0]

    def check_timing(self, rid, arrivals, t0):
        """arrivals: {name: arrival}; each line came after its backend answered and, but for
        the slow one, long before the slow backend ended."""
        slow = self.entry(rid, "/ok?id=slow")
        for name, delay in (("fast", 0.05), ("mid", 0.3)):
            e = self.entry(rid, f"/ok?id={name}")
            self.assertGreaterEqual(arrivals[name], e["t"] + delay, name)
            self.assertLess(arrivals[name], slow["end"] - 1.0,
                            f"{name}'s line was held back by nginx")
        self.assertLess(arrivals["fast"] - t0, 0.8)
        self.assertGreaterEqual(arrivals["slow"], slow["t"] + SLOW_MS / 1000)

    def test_ndjson_lines_pass_as_they_come(self):
        rid = "ngx-nd"
        with StreamClient(self.nginx.port, "/three", accept=NDJSON, rid=rid) as s:
            status, h = s.head()
            got = s.all_lines()
            self.assertTrue(s.ended, "no terminating chunk from nginx")
            # The connection to nginx is kept alive and serves the next request.
            s.sock.sendall(b"GET /three HTTP/1.1\r\nHost: t\r\n\r\n")
            st2, _, body = gd.parse_response(gd.read_response(s.sock, timeout=15))
        self.assertEqual(status, 200, h)
        self.assertEqual(h.get("content-type"), NDJSON, h)
        self.assertEqual(h.get("x-request-id"), rid, h)
        self.assertEqual(st2, 200, body)
        names = [x.get("name") for _, x in got[:-1]]
        self.assertEqual(names, ["fast", "mid", "slow"])
        self.assertEqual(got[-1][1], {"done": True, "ok": 3, "failed": 0})
        self.check_timing(rid, {x["name"]: t for t, x in got[:-1]}, s.t0)
        line = self.gd.wait_access_id(rid)
        self.assertEqual((line["status"], line["stream"]), (200, "ndjson"), line)

    def test_sse_events_pass_as_they_come(self):
        rid = "ngx-sse"
        with StreamClient(self.nginx.port, "/three", accept=SSE, rid=rid) as s:
            status, h = s.head()
            evs = s.all_events()
            self.assertTrue(s.ended, "no terminating chunk from nginx")
        self.assertEqual(status, 200, h)
        self.assertEqual(h.get("content-type"), SSE, h)
        self.assertEqual(h.get("cache-control"), "no-cache", h)
        self.assertEqual([(ev["event"], ev["id"]) for _, ev in evs],
                         [("result", "2"), ("result", "1"), ("result", "0"), ("done", None)])
        self.check_timing(rid, {ev["data"]["name"]: t for t, ev in evs[:-1]}, s.t0)
        self.assertEqual(self.gd.wait_access_id(rid)["stream"], "sse")

    def test_a_client_leaving_nginx_mid_stream_cancels_upstream(self):
        rid = "ngx-leave"
        s = StreamClient(self.nginx.port, "/leave", accept=NDJSON, rid=rid)
        try:
            s.head()
            _, first = next(s.lines())
            self.assertEqual(first.get("name"), "fast", first)
            self.up.wait("requests", 2, timeout=10)
        finally:
            s.close()
        t0 = time.monotonic()
        self.up.wait("aborted", 1, timeout=10)
        self.assertLess(time.monotonic() - t0, 10.0)
        line = self.gd.wait_access_id(rid, timeout=15)
        self.assertEqual(line["status"], 499, line)
        self.assertEqual([b["result"] for b in line["backends"]], ["ok", "cancelled"], line)


if __name__ == "__main__":
    if not nginxproc.have_nginx():
        print(f"SKIP: nginx not installed ({nginxproc.NGINX}); apt-get install nginx-light")
        sys.exit(77)
    unittest.main(verbosity=2)
