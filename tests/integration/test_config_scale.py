#!/usr/bin/env python3
"""The number of backends across a configuration is bounded (10,000), by --check-config and by
a reload alike, and a configuration at the bound starts and reloads in well under two seconds,
whether it has ten endpoints of a thousand backends or ten thousand endpoints of one: the work
is linear in the backends (a quadratic start took 26.7 s for 40,000)."""

import json
import os
import signal
import time
import unittest

from gd import Gatherd, closed_port, http_get, run_check_config

LIMIT = 10000
# Sanitizer builds run several times slower; the bound only has to tell linear from quadratic.
BOUND_S = 2.0 * (4 if "ASAN_OPTIONS" in os.environ else 1)


def cfg(nendpoints, per, port):
    url = f"http://127.0.0.1:{port}"
    return {"access_log": False, "endpoints": [
        {"path": f"/e{i}", "timeout_ms": 2000,
         "backends": [{"name": f"b{j}", "url": f"{url}/x{i}_{j}"} for j in range(per)]}
        for i in range(nendpoints)]}


class ConfigScaleTest(unittest.TestCase):
    def test_bound_on_backends_across_endpoints(self):
        port = closed_port()
        rc, out, _, _ = run_check_config(cfg(10, 1000, port))
        self.assertEqual(rc, 0)
        self.assertIn(f"{LIMIT} backends", out)
        rc, _, err, _ = run_check_config(cfg(11, 1000, port))
        self.assertEqual(rc, 2, err)
        self.assertIn("endpoints[10].backends:", err)
        self.assertIn(f"over the limit of {LIMIT}", err)
        rc, _, err, _ = run_check_config(cfg(LIMIT + 1, 1, port))
        self.assertEqual(rc, 2, err)
        self.assertIn(f"endpoints[{LIMIT}].backends:", err)

    def test_reload_over_the_bound_is_refused(self):
        port = closed_port()
        with Gatherd(cfg(2, 1, port)) as g:
            g.write_config(cfg(11, 1000, port))
            g.signal(signal.SIGHUP)
            line = g.wait_log("reload_failed", 20)
            self.assertIn(f"over the limit of {LIMIT}", line["error"])
            self.assertEqual(http_get(g.url("/e1"))[0], 502, "the old configuration serves")

    def start_and_reload(self, nendpoints, per):
        port = closed_port()
        config = cfg(nendpoints, per, port)
        text = json.dumps(config)
        t0 = time.monotonic()
        g = Gatherd(text, start_timeout=60)
        started = time.monotonic() - t0
        try:
            g.signal(signal.SIGHUP)
            t0 = time.monotonic()
            g.wait_log("reloaded", 60)
            reloaded = time.monotonic() - t0
            print(f"{nendpoints} x {per}: start {started:.3f} s, reload {reloaded:.3f} s")
            self.assertLess(started, BOUND_S)
            self.assertLess(reloaded, BOUND_S)
            status, _, body = http_get(g.url(f"/e{nendpoints - 1}"), timeout=30)
            self.assertEqual(status, 502)
            self.assertEqual(json.loads(body)["errors"][0]["error"], "connect")
        finally:
            self.assertEqual(g.stop(), 0, g.stderr_text())

    def test_ten_endpoints_of_a_thousand(self):
        self.start_and_reload(10, 1000)

    def test_ten_thousand_endpoints_of_one(self):
        self.start_and_reload(LIMIT, 1)


if __name__ == "__main__":
    unittest.main()
