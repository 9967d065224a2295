#!/usr/bin/env python3
"""HTTP/2 and reuse over TLS, counted at the upstream (Debian's nginx, its access log): HTTP/2
is negotiated by ALPN where offered and HTTP/1.1 used where refused or turned off; h2c is spoken
by prior knowledge; the K legs of requests to one HTTP/2 origin share one connection, and the
connection cap counts connections, not streams; connections are kept across requests, so
handshakes are far fewer than requests; and where the upstream closes every connection, new
ones resume the TLS session instead of negotiating it in full.

Run: GATHERD_BIN=build/src/gatherd PYTHONPATH=tests/lib tests/tls/test_tls_http2.py
"""

import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tlslib  # noqa: E402
from tlslib import backend, pki, trust  # noqa: E402

import gd  # noqa: E402
import tlsup  # noqa: E402
from gd import config, endpoint  # noqa: E402

K = 6
DELAY_MS = 400


def get(g, path, want=200, timeout=20):
    status, _, body = gd.http_get(g.url(path), timeout=timeout)
    data = json.loads(body)
    assert status == want, f"{path}: {status} {data}"
    return data


class HTTP2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tlslib.skip_without_nginx()
        cls.fake = gd.FakeUpstream()
        cls.ng = tlsup.TLSNginx(pki(), {
            "h2": {},
            "h1": {"http2": False},
            "h2c": {"cert": None},
            "h1_close": {"http2": False, "keepalive_requests": 1},
        }, fakeup_port=cls.fake.port)

    @classmethod
    def tearDownClass(cls):
        cls.ng.stop()
        cls.fake.stop()

    def setUp(self):
        self.ng.mark()

    def legs(self, server, k, path="/leg", **kw):
        return [backend(f"b{i}", self.ng.url(server, f"{path}{i}" if "?" not in path
                                             else f"{path}&i={i}"), **kw) for i in range(k)]

    def gatherd(self, *eps, **top):
        return gd.Gatherd(config(*eps, **trust(**top)), workers=1)

    def test_alpn_negotiates_http2(self):
        with self.gatherd(endpoint("/t", self.legs("h2", 1))) as g:
            self.assertEqual(get(g, "/t")["results"][0]["proto"], "HTTP/2.0")
            self.assertEqual(self.ng.wait_lines(1, "h2")[0]["proto"], "HTTP/2.0")

    def test_http11_where_refused_or_off(self):
        eps = [endpoint("/refused", self.legs("h1", 1)),
               endpoint("/off", self.legs("h2", 1, http2="off"))]
        with self.gatherd(*eps) as g:
            self.assertEqual(get(g, "/refused")["results"][0]["proto"], "HTTP/1.1")
            self.assertEqual(get(g, "/off")["results"][0]["proto"], "HTTP/1.1")
        self.assertEqual([x["proto"] for x in self.ng.wait_lines(2)], ["HTTP/1.1"] * 2)

    def test_h2c_prior_knowledge(self):
        """h2c by prior knowledge. curl 7.88.1 cannot reuse an h2c connection (it sends
        nothing on it), so each transfer has one of its own: the answers stay right however
        often the legs run."""
        n = 3
        with self.gatherd(endpoint("/t", self.legs("h2c", 2)), http2="prior_knowledge") as g:
            for _ in range(n):
                body = get(g, "/t")
                self.assertEqual([r.get("proto") for r in body["results"]], ["HTTP/2.0"] * 2,
                                 body)
            lines = self.ng.wait_lines(2 * n, "h2c")
            self.assertEqual({x["proto"] for x in lines}, {"HTTP/2.0"})
            self.assertEqual(tlsup.TLSNginx.connections(lines), 2 * n, lines)

    def test_legs_to_one_origin_share_one_connection(self):
        n = 10
        with self.gatherd(endpoint("/t", self.legs("h2", K))) as g:
            for _ in range(n):
                body = get(g, "/t")
                self.assertEqual(len({r["conn"] for r in body["results"]}), 1, body)
            lines = self.ng.wait_lines(n * K, "h2")
            self.assertEqual(tlsup.TLSNginx.connections(lines), 1, lines)
            self.assertEqual({x["proto"] for x in lines}, {"HTTP/2.0"})

    def test_connection_cap_counts_connections_not_streams(self):
        """With one connection allowed per origin, K slow legs over HTTP/2 run at once as
        streams of it; over HTTP/1.1 the same cap makes them take turns."""
        slow = f"/up/ok?delay_ms={DELAY_MS}"
        eps = [endpoint("/h2", self.legs("h2", K, slow)),
               endpoint("/h1", self.legs("h2", K, slow, http2="off"))]
        with self.gatherd(*eps, upstream_max_host_connections=1) as g:
            get(g, "/h2")  # the first answer tells the pool that the origin speaks HTTP/2
            t0 = time.monotonic()
            get(g, "/h2")
            h2 = time.monotonic() - t0
            t0 = time.monotonic()
            get(g, "/h1")
            h1 = time.monotonic() - t0
        lines = self.ng.wait_lines(3 * K, "h2")
        self.assertEqual(tlsup.TLSNginx.connections([x for x in lines if x["proto"] ==
                                                     "HTTP/2.0"]), 1, lines)
        self.assertEqual(tlsup.TLSNginx.connections([x for x in lines if x["proto"] ==
                                                     "HTTP/1.1"]), 1, lines)
        # Taking turns costs K delays at least; streams of one connection about one.
        self.assertGreaterEqual(h1, K * DELAY_MS / 1000 * 0.95, (h1, h2))
        self.assertLess(h2, K * DELAY_MS / 1000 / 2, (h1, h2))

    def test_handshakes_far_fewer_than_requests(self):
        n = 40
        eps = [endpoint("/h2", self.legs("h2", 3)), endpoint("/h1", self.legs("h1", 3))]
        with self.gatherd(*eps) as g:
            for path in ("/h2", "/h1"):
                threads = [threading.Thread(target=lambda: [get(g, path) for _ in range(n // 4)])
                           for _ in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
        h2 = self.ng.wait_lines(n * 3, "h2")
        h1 = self.ng.wait_lines(n * 3, "h1")
        # HTTP/2: one connection carries everything. HTTP/1.1: as many as legs ran at once
        # (4 clients x 3 legs), kept alive after that.
        self.assertLessEqual(tlsup.TLSNginx.connections(h2), 2, h2)
        self.assertLessEqual(tlsup.TLSNginx.connections(h1), 12, h1)
        self.assertEqual(len(h1), n * 3)

    def test_sessions_resumed_when_connections_are_not_kept(self):
        """nginx closes each connection after one request: every request needs a handshake,
        and all but the first resume the TLS session."""
        n = 20
        with self.gatherd(endpoint("/t", self.legs("h1_close", 1))) as g:
            for _ in range(n):
                get(g, "/t")
        lines = self.ng.wait_lines(n, "h1_close")
        self.assertEqual(tlsup.TLSNginx.connections(lines), n, lines)
        self.assertLessEqual(tlsup.TLSNginx.full_handshakes(lines), 2, lines)


if __name__ == "__main__":
    unittest.main(verbosity=2)
