#!/usr/bin/env python3
"""The endpoint deadline (endpoint timeout_ms) cuts off slow backends as `timeout`, answers
promptly, and closes the upstream transfers it gave up on."""

import json
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, stop_checked


class DeadlineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/slow", [
                ("a", u("/ok?id=a&delay_ms=5000")),
                ("b", u("/ok?id=b&delay_ms=5000")),
            ], timeout_ms=300),
            endpoint("/half", [
                ("fast", u("/ok?id=fast")),
                ("slow", u("/ok?id=slow&delay_ms=5000")),
            ], timeout_ms=300),
            # A backend timeout equal to the deadline; and a short backend timeout under a
            # long deadline, which must decide on its own.
            endpoint("/ep_decides", [
                ("slow", u("/ok?delay_ms=5000"), {"timeout_ms": 400}),
            ], timeout_ms=400),
            endpoint("/be_decides", [
                ("fast", u("/ok?id=fast")),
                ("slow", u("/ok?delay_ms=5000"), {"timeout_ms": 250}),
            ], timeout_ms=20000),
        ))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def setUp(self):
        self.up.reset()

    def test_deadline_all_slow(self):
        t0 = time.monotonic()
        status, headers, body = http_get(self.gd.url("/slow"), timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 502, body)
        self.assertLess(elapsed, 3.0, "the 300 ms deadline was not applied")
        doc = json.loads(body)
        self.assertEqual(doc["results"], [{}, {}])
        self.assertEqual([(e["index"], e["name"], e["error"]) for e in doc["errors"]],
                         [(0, "a", "timeout"), (1, "b", "timeout")])
        # Both upstream transfers are cancelled: fakeup sees its clients leave while delaying,
        # long before its 5 s delay ends.
        self.up.wait("aborted", 2, timeout=4)

    def test_deadline_partial(self):
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/half"), timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200, body)
        self.assertLess(elapsed, 3.0)
        doc = json.loads(body)
        self.assertEqual(doc["results"], [{"ok": True, "id": "fast"}, {}])
        self.assertEqual([(e["index"], e["name"], e["error"]) for e in doc["errors"]],
                         [(1, "slow", "timeout")])
        self.up.wait("aborted", 1, timeout=4)

    def test_endpoint_deadline_with_equal_backend_timeout(self):
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/ep_decides"), timeout=30)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(status, 502, body)
        self.assertEqual(json.loads(body)["errors"][0]["error"], "timeout")

    def test_backend_timeout_under_long_deadline(self):
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/be_decides"), timeout=30)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["errors"][0]["error"], "timeout")
        self.up.wait("aborted", 1, timeout=4)


if __name__ == "__main__":
    unittest.main()
