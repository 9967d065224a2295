#!/usr/bin/env python3
"""An upstream origin that a reload drops is released once its last transfer ends: its curl
multi, wakeup sockets and idle connections go. Fifty reloads, each changing one backend's
origin (the userinfo of its URL), under light traffic with a request in flight across some of
them, leave the process's descriptors and gatherd_upstream_connections_open where they started;
an origin every configuration names keeps its pool and its kept-alive connection."""

import json
import os
import signal
import threading
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, scrape, wait_until

RELOADS = 50


class ReloadOriginsTest(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()     # the changing origin
        self.stable = FakeUpstream()  # named by every configuration

    def tearDown(self):
        self.up.stop()
        self.stable.stop()

    def cfg(self, i):
        url = f"http://user{i}@127.0.0.1:{self.up.port}"
        return config(
            endpoint("/t", [("t", f"{url}/ok?id={i}")], timeout_ms=10000),
            endpoint("/slow", [("t", f"{url}/ok?id={i}&delay_ms=300")], timeout_ms=10000),
            endpoint("/stable", [("s", self.stable.url("/ok?id=s"))], timeout_ms=10000),
        )

    def fds(self, g):
        return len(os.listdir(f"/proc/{g.proc.pid}/fd"))

    def open_conns(self, g):
        return scrape(g).get("gatherd_upstream_connections_open")

    def get_id(self, g, path):
        status, _, body = http_get(g.url(path), timeout=30)
        self.assertEqual(status, 200, body)
        return json.loads(body)["results"][0]["id"]

    def test_dropped_origins_are_released(self):
        # One worker: each worker has pools of its own, so with more the start and the end
        # would differ by which worker served what, not by what was released.
        with Gatherd(self.cfg(0), workers=1) as g:
            self.assertEqual(self.get_id(g, "/t"), "0")
            self.assertEqual(self.get_id(g, "/stable"), "s")
            fds0, conns0 = self.fds(g), self.open_conns(g)
            for i in range(1, RELOADS + 1):
                slow = {}
                t = None
                if i % 5 == 0:
                    # A request of the old configuration in flight across the reload: its
                    # origin must serve it to the end, then go.
                    def run(path="/slow"):
                        slow["r"] = http_get(g.url(path), timeout=30)

                    t = threading.Thread(target=run)
                    t.start()
                    self.up.wait("path:/ok", i + i // 5)
                g.write_config(self.cfg(i))
                g.signal(signal.SIGHUP)
                seen = []
                g.wait_log("reloaded", 10, pred=lambda o: seen.append(o) or len(seen) >= i)
                self.assertEqual(self.get_id(g, "/t"), str(i))
                self.assertEqual(self.get_id(g, "/stable"), "s")
                if t is not None:
                    t.join(30)
                    self.assertEqual(slow["r"][0], 200, slow)
                    self.assertEqual(json.loads(slow["r"][2])["results"][0]["id"], str(i - 1))
            # Every dropped origin's pool is gone; the current one holds what the first did.
            wait_until(lambda: self.fds(g) <= fds0 + 2, 10,
                       f"descriptors back to {fds0} (now {self.fds(g)})")
            wait_until(lambda: self.open_conns(g) <= conns0, 10,
                       f"{conns0} upstream connections open (now {self.open_conns(g)})")
            # gatherd closed the dropped origins' idle connections: the upstream sees only the
            # current one.
            self.up.wait_le("connections_active", 1, timeout=10)
            # The stable origin kept its pool: one connection, reused throughout.
            self.assertEqual(self.stable.stats()["connections_opened"], 1)


if __name__ == "__main__":
    unittest.main()
