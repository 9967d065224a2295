#!/usr/bin/env python3
"""Request coalescing (`coalesce`): concurrent requests for the same backend share one upstream
transfer per worker, each gets the whole answer, a leg that leaves does not cancel the others,
the last one to leave cancels the transfer, and nothing is cached once it ends. Counted by the
real upstream (fakeup), so "one transfer" means one request on the wire."""

import json
import signal
import socket
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, get_json, read_response, stop_checked

SLOW = 3000  # ms: long enough that every joiner arrives while the flight runs


def send(port, path, rid):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n\r\n".encode())
    return s


def answer(s):
    status, _, body = gd.parse_response(read_response(s, timeout=30))
    s.close()
    return status, json.loads(body)


class CoalesceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/co", [("echo", u(f"/echo?delay_ms={SLOW}")),
                             ("tick", u(f"/json/btcbox_ticker.json?delay_ms={SLOW}"))],
                     timeout_ms=20000, coalesce=True),
            endpoint("/mixed", [("shared", u(f"/ok?id=s&delay_ms={SLOW}")),
                                ("own", u(f"/ok?id=o&delay_ms={SLOW}"), {"coalesce": False})],
                     timeout_ms=20000, coalesce=True),
            endpoint("/plain", [("p", u(f"/ok?id=p&delay_ms={SLOW}"))], timeout_ms=20000),
            endpoint("/hang", [("h", u("/hang"))], timeout_ms=20000, coalesce=True),
            endpoint("/bad", [("b", u(f"/status/503?delay_ms={SLOW}"))], timeout_ms=20000,
                     coalesce=True),
            endpoint("/short", [("h", u("/hang"), {"timeout_ms": 1500})], timeout_ms=20000,
                     coalesce=True),
            endpoint("/cycle", [("c", u("/cycle?sizes=1,2"))], coalesce=True),
            upstream_max_host_connections=0,
        ), workers=1)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def setUp(self):
        self.up.reset()
        self.base = {k: self.joined(*k) for k in [("/co", "echo"), ("/hang", "h")]}

    def joined(self, path, backend):
        exp = gd.scrape(self.gd)
        return exp.get("gatherd_upstream_joined_total", endpoint=path, backend=backend) or 0

    def wait_joined(self, path, backend, more, timeout=10):
        """Until `more` further legs of backend have joined a flight (polls /metrics)."""
        want = self.base[(path, backend)] + more
        deadline = time.monotonic() + timeout
        while self.joined(path, backend) < want:
            if time.monotonic() > deadline:
                raise gd.HarnessError(f"{path} {backend}: fewer than {want} joined")
            time.sleep(0.01)

    def burst(self, path, tag, joiners, started):
        """`{tag}-lead` first; once the upstream has seen `started` requests (its flights are
        running), `joiners` more as `{tag}-0`...; every answer, the lead's first."""
        socks = [send(self.gd.port, path, f"{tag}-lead")]
        self.up.wait("requests", started, timeout=10)
        socks += [send(self.gd.port, path, f"{tag}-{i}") for i in range(joiners)]
        return [answer(s) for s in socks]

    def test_concurrent_requests_share_one_transfer(self):
        answers = self.burst("/co", "co", 19, started=2)
        for status, body in answers:
            self.assertEqual(status, 200, body)
            self.assertEqual(body["errors"], [])
            self.assertEqual(body, answers[0][1])
        # Each backend was asked once, with the first request's id.
        st = self.up.stats()
        self.assertEqual(st["requests"], 2, st)
        self.assertEqual(answers[0][1]["results"][0]["headers"]["x-request-id"], "co-lead")
        self.assertEqual(answers[0][1]["results"][1],
                         json.loads(gd.fixture_bytes("btcbox_ticker.json")))
        lead = self.gd.wait_access_id("co-lead")
        self.assertEqual([b.get("joined", False) for b in lead["backends"]], [False, False])
        for i in range(19):
            line = self.gd.wait_access_id(f"co-{i}")
            self.assertEqual(line["status"], 200)
            self.assertEqual([b.get("joined") for b in line["backends"]], [True, True], line)

    def test_backend_can_opt_out(self):
        for status, body in self.burst("/mixed", "mixed", 4, started=2):
            self.assertEqual(status, 200, body)
            self.assertEqual([r["id"] for r in body["results"]], ["s", "o"])
        st = self.up.stats()
        self.assertEqual(st["requests"], 6, st)  # one shared, five of its own

    def test_off_by_default(self):
        socks = [send(self.gd.port, "/plain", f"plain-{i}") for i in range(5)]
        self.up.wait("requests", 5, timeout=10)
        for s in socks:
            self.assertEqual(answer(s)[0], 200)
        self.assertEqual(self.up.stats()["requests"], 5)

    def test_one_leaving_does_not_cancel_the_others(self):
        lead = send(self.gd.port, "/co", "leave-lead")
        self.up.wait("requests", 2, timeout=10)
        stay = send(self.gd.port, "/co", "leave-stay")
        self.wait_joined("/co", "echo", 1)
        lead.close()
        self.assertEqual(self.gd.wait_access_id("leave-lead")["status"], 499)
        status, body = answer(stay)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["errors"], [])
        st = self.up.stats()
        self.assertEqual((st["requests"], st["aborted"]), (2, 0), st)

    def test_last_leaving_cancels_the_transfer(self):
        a = send(self.gd.port, "/hang", "hang-a")
        self.up.wait("requests", 1, timeout=10)
        b = send(self.gd.port, "/hang", "hang-b")
        self.wait_joined("/hang", "h", 1)
        a.close()
        self.gd.wait_access_id("hang-a")
        self.assertEqual(self.up.stats()["aborted"], 0)
        b.close()
        self.up.wait("aborted", 1, timeout=10)
        line = self.gd.wait_access_id("hang-b")
        self.assertEqual((line["status"], line["backends"][0]["result"]), (499, "cancelled"))
        self.assertEqual(self.up.stats()["requests"], 1)

    def test_errors_are_shared(self):
        for status, body in self.burst("/bad", "bad", 4, started=1):
            self.assertEqual(status, 502, body)
            self.assertEqual([(e["error"], e["status"]) for e in body["errors"]],
                             [("http_status", 503)])
        self.assertEqual(self.up.stats()["requests"], 1)

    def test_a_joined_leg_gets_the_flights_timeout(self):
        a = send(self.gd.port, "/short", "short-a")
        self.up.wait("requests", 1, timeout=10)
        b = send(self.gd.port, "/short", "short-b")
        for s in (a, b):
            status, body = answer(s)
            self.assertEqual(status, 502, body)
            self.assertEqual(body["errors"][0]["error"], "timeout")
        la, lb = self.gd.wait_access_id("short-a"), self.gd.wait_access_id("short-b")
        # b joined later and ended with the flight, so its wait was shorter.
        self.assertLess(lb["backends"][0]["ms"], la["backends"][0]["ms"])
        self.assertTrue(lb["backends"][0]["joined"])
        self.assertEqual(self.up.stats()["requests"], 1)

    def test_nothing_is_cached(self):
        ns = [get_json(self.gd.url("/cycle"))[2]["results"][0]["n"] for _ in range(3)]
        self.assertEqual(ns, sorted(set(ns)))  # a fresh upstream answer each time
        self.assertEqual(self.up.stats()["requests"], 3)


class CoalesceReloadTest(unittest.TestCase):
    """A flight belongs to its configuration: after a reload, new requests start their own
    call (with the new backend settings) even while the old flight still runs."""

    def test_generations_do_not_mix(self):
        with FakeUpstream() as up:
            u = up.url

            def gen(tag):
                return config(endpoint("/co", [("e", u(f"/ok?id={tag}&delay_ms={SLOW}"))],
                                       timeout_ms=20000, coalesce=True))

            with Gatherd(gen("v1"), workers=1) as g:
                old = send(g.port, "/co", "gen-old")
                up.wait("requests", 1, timeout=10)
                g.write_config(gen("v2"))
                g.signal(signal.SIGHUP)
                g.wait_log("reloaded", timeout=10)
                new = send(g.port, "/co", "gen-new")
                up.wait("requests", 2, timeout=10)
                self.assertEqual(answer(old)[1]["results"], [{"ok": True, "id": "v1"}])
                self.assertEqual(answer(new)[1]["results"], [{"ok": True, "id": "v2"}])
                self.assertNotIn("joined", g.wait_access_id("gen-new")["backends"][0])
                self.assertEqual(up.stats()["requests"], 2)
                g.stop()


class CoalesceWorkersTest(unittest.TestCase):
    """With two workers each loop coalesces on its own: at most one transfer per worker."""

    def test_at_most_one_transfer_per_worker(self):
        with FakeUpstream() as up:
            u = up.url
            with Gatherd(config(endpoint("/co", [("e", u(f"/ok?delay_ms={SLOW}"))],
                                         timeout_ms=20000, coalesce=True)), workers=2) as g:
                socks = [send(g.port, "/co", f"w-{i}") for i in range(40)]
                for s in socks:
                    self.assertEqual(answer(s)[0], 200)
                workers = {g.wait_access_id(f"w-{i}")["worker"] for i in range(40)}
                # Each worker's first request started a transfer the others on it joined.
                self.assertEqual(up.stats()["requests"], len(workers))
                g.stop()


if __name__ == "__main__":
    unittest.main()
