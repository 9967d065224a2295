#!/usr/bin/env python3
"""One worker serves hundreds of parked requests at once: 300 concurrent clients on an endpoint
with three backends delayed 200 ms each finish in a small multiple of 200 ms, not 300 x 200 ms."""

import asyncio
import json
import socket
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, parse_response, stop_checked

CLIENTS = 300


async def fetch(port, path, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        return parse_response(raw)
    finally:
        writer.close()


async def batch(port, path, n, timeout):
    return await asyncio.gather(*(fetch(port, path, timeout) for _ in range(n)),
                                return_exceptions=True)


class ConcurrencyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/three", [
                ("a", u("/ok?id=a&delay_ms=200")),
                ("b", u("/ok?id=b&delay_ms=200")),
                ("c", u("/ok?id=c&delay_ms=200")),
            ], timeout_ms=30000),
            # The test is about the loop, not the per-host pool cap: allow all 900 transfers.
            endpoint("/slow", [("s", u("/ok?id=s&delay_ms=3000"))], timeout_ms=30000),
            endpoint("/fast", [("f", u("/ok?id=f"))], timeout_ms=30000),
            upstream_max_host_connections=1000,
            upstream_idle_connections=1000,
        ), workers=1)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def test_300_concurrent_clients(self):
        t0 = time.monotonic()
        results = asyncio.run(batch(self.gd.port, "/three", CLIENTS, 60))
        elapsed = time.monotonic() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        self.assertEqual(errors, [], f"{len(errors)} clients failed, first: {errors[:1]!r}")
        statuses = {}
        for status, _, body in results:
            statuses[status] = statuses.get(status, 0) + 1
        self.assertEqual(statuses, {200: CLIENTS})
        for _, _, body in results:
            doc = json.loads(body)
            self.assertEqual(doc["errors"], [])
            self.assertEqual([r["id"] for r in doc["results"]], ["a", "b", "c"])
        # Serial would take 60 s; parallel is about 0.2 s plus overhead on a noisy machine.
        self.assertLess(elapsed, 10.0)
        self.assertEqual(self.up.stats()["requests"] % 3, 0)
        # And the worker is still responsive afterwards.
        results = asyncio.run(batch(self.gd.port, "/healthz", 1, 10))
        self.assertEqual(results[0][0], 200)

    def test_parked_requests_do_not_block_the_loop(self):
        async def run():
            slow = [asyncio.create_task(fetch(self.gd.port, "/slow", 60)) for _ in range(100)]
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.up.wait("path:/ok", 100, timeout=20))
            t0 = time.monotonic()
            fast = await batch(self.gd.port, "/fast", 20, 60)
            fast_elapsed = time.monotonic() - t0
            health = await fetch(self.gd.port, "/healthz", 60)
            done = await asyncio.gather(*slow, return_exceptions=True)
            return fast, fast_elapsed, health, done

        self.up.reset()
        fast, fast_elapsed, health, done = asyncio.run(run())
        self.assertEqual([r[0] for r in fast], [200] * 20)
        # The 100 parked requests wait 3 s upstream; the fast ones must not wait for them.
        self.assertLess(fast_elapsed, 2.0)
        self.assertEqual(health[0], 200)
        self.assertEqual([r[0] if not isinstance(r, BaseException) else r for r in done],
                         [200] * 100)


class ConnectionLimitTest(unittest.TestCase):
    def test_full_worker_leaves_new_connections_waiting(self):
        # At worker_connections a new connection waits in the listen backlog (nginx does the
        # same) and is served once a slot frees; it is not accepted and closed.
        up = FakeUpstream()
        g = Gatherd(config(endpoint("/f", [("f", up.url("/ok?id=f"))]), worker_connections=3),
                    workers=1)
        held = []
        try:
            for i in range(3):
                s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
                s.sendall(f"GET /f HTTP/1.1\r\nHost: t\r\nX-Request-Id: held-{i}\r\n\r\n".encode())
                g.wait_access_id(f"held-{i}")
                held.append(s)
            extra = socket.create_connection(("127.0.0.1", g.port), timeout=10)
            extra.sendall(b"GET /f HTTP/1.1\r\nHost: t\r\nX-Request-Id: extra\r\n"
                          b"Connection: close\r\n\r\n")
            held.pop().close()
            raw = b""
            while chunk := extra.recv(65536):
                raw += chunk
            extra.close()
            status, _, body = parse_response(raw)
            self.assertEqual(status, 200, raw[:300])
            self.assertEqual(json.loads(body)["errors"], [])
            self.assertEqual(http_get(g.url("/healthz"))[0], 200)
        finally:
            for s in held:
                s.close()
            self.assertEqual(g.stop(), 0, g.stderr_text())
            up.stop()


if __name__ == "__main__":
    unittest.main()
