#!/usr/bin/env python3
"""A request the service makes to itself on a single worker must not deadlock: the loop that
waits for /all's upstreams is the loop that serves /tickers and /healthz."""

import concurrent.futures
import json
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, free_port, http_get, stop_checked


class SelfCallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        port = free_port()
        me = f"http://127.0.0.1:{port}"
        names = gd.FIXTURE_NAMES
        cls.gd = Gatherd(config(
            endpoint("/tickers", [
                ("bitbank", u(f"/json/{names[0]}?delay_ms=200")),
                ("btcbox", u(f"/json/{names[1]}?delay_ms=100")),
                ("coincheck", u(f"/json/{names[2]}")),
            ], timeout_ms=8000),
            endpoint("/all", [
                ("tickers", me + "/tickers"),
                ("health", me + "/healthz"),
            ], timeout_ms=10000),
            endpoint("/nested", [
                ("all", me + "/all"),
                ("ready", me + "/readyz"),
            ], timeout_ms=12000),
        ), args=["--listen", f"127.0.0.1:{port}"], workers=1)
        assert cls.gd.port == port, (cls.gd.addr, port)
        cls.tickers = [json.loads(gd.fixture_bytes(n)) for n in names]

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def test_self_call(self):
        status, _, body = http_get(self.gd.url("/all"), timeout=30)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["errors"], [])
        self.assertEqual(doc["results"], [
            {"results": self.tickers, "errors": []},
            {"status": "ok"},
        ])

    def test_two_levels(self):
        status, _, body = http_get(self.gd.url("/nested"), timeout=30)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["errors"], [])
        self.assertEqual(doc["results"][0]["results"][0]["results"], self.tickers)
        self.assertEqual(doc["results"][1], {"status": "ready"})

    def test_concurrent_self_calls(self):
        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            got = list(ex.map(lambda _: http_get(self.gd.url("/all"), timeout=60), range(20)))
        for status, _, body in got:
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["errors"], [])


if __name__ == "__main__":
    unittest.main()
