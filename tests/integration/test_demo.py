#!/usr/bin/env python3
"""The README's first command: deploy/demo/run.sh with config/demo.json, run as the script runs
it (minus apt-get and the build: --no-install and the built GATHERD_BIN), on free ports.
/tickers joins the three fixtures, /tickers-degraded turns a 503 and a timeout into the
documented error entries, and SIGTERM (or SIGINT) to the script stops everything it started."""

import json
import os
import signal
import subprocess
import unittest

import gd
from gd import FIXTURE_NAMES, HarnessError, connect_refused, fixture_bytes, free_port, \
    http_get, raw_members

RUN_SH = os.path.join(gd.SRC, "deploy", "demo", "run.sh")


def session_members(sid):
    """Processes still alive in session sid (the script's, as start_new_session made it):
    whatever it started stays in it, even in a process group of its own."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.getsid(int(name)) == sid:
                pids.append(int(name))
        except OSError:
            pass  # exited meanwhile
    return pids


def two_free_ports():
    a = free_port()
    b = free_port()
    while b == a:
        b = free_port()
    return a, b


class DemoTest(unittest.TestCase):
    def test_demo_then_sigterm(self):
        self.run_demo(signal.SIGTERM)

    def test_demo_then_sigint(self):
        # What Ctrl-C sends (to the script alone: it keeps its children in their own groups).
        self.run_demo(signal.SIGINT)

    def run_demo(self, stop_signal):
        port, fake_port = two_free_ports()
        env = dict(os.environ, GATHERD_BIN=gd.BIN, DEMO_PORT=str(port),
                   DEMO_FAKE_PORT=str(fake_port))
        proc = subprocess.Popen([RUN_SH, "--no-install"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        out, err = gd._Lines(proc.stdout), gd._Lines(proc.stderr)
        try:
            listening = err.wait(lambda o: o.get("msg") == "listening", 30)
            if listening is None:
                raise HarnessError(f"the demo did not start (exit {proc.poll()}):\n{err.text()}")
            self.assertEqual(listening.get("addr"), f"0.0.0.0:{port}")
            base = f"http://127.0.0.1:{port}"

            status, headers, body = http_get(base + "/tickers")
            self.assertEqual(status, 200, body)
            self.assertEqual(headers.get("content-type"), "application/json")
            self.assertEqual(json.loads(body)["errors"], [])
            self.assertEqual(raw_members(body),
                             [fixture_bytes(n).strip() for n in FIXTURE_NAMES])

            # The cached one is read from memory once its first refresh is in (/readyz).
            gd.wait_until(lambda: http_get(base + "/readyz")[0] == 200, 10, "ready")
            status, headers, cached = http_get(base + "/tickers-cached")
            self.assertEqual(status, 200, cached)
            self.assertRegex(headers.get("cache-status", ""), r"^gatherd; hit; ttl=\d+$")
            self.assertRegex(headers.get("age", ""), r"^\d+$")
            self.assertEqual(raw_members(cached), raw_members(body))

            status, _, body = http_get(base + "/tickers-degraded")
            self.assertEqual(status, 200, body)
            doc = json.loads(body)
            self.assertEqual(raw_members(body)[0], fixture_bytes(FIXTURE_NAMES[0]).strip())
            self.assertEqual(doc["results"][1:], [{}, {}])
            errors = doc["errors"]
            self.assertEqual([(e["index"], e["name"], e["error"]) for e in errors],
                             [(1, "btcbox", "http_status"), (2, "coincheck", "timeout")], errors)
            self.assertEqual(errors[0].get("status"), 503)
            self.assertEqual(errors[0].get("message"), "upstream answered 503")
            self.assertNotIn("status", errors[1])
            self.assertIsInstance(errors[1].get("message"), str)

            proc.send_signal(stop_signal)
            self.assertEqual(proc.wait(30), 0, err.text())
            out.t.join(10)
            err.t.join(10)
            self.assertIsNotNone(err.wait(lambda o: o.get("msg") == "stopped", 0), err.text())
            self.assertIsNone(err.wait(lambda o: o.get("msg") == "signal_ignored", 0),
                              "gatherd got the signal twice")
            self.assertEqual(session_members(proc.pid), [], "the demo left processes behind")
            self.assertTrue(connect_refused(port) and connect_refused(fake_port))
        finally:
            for pid in session_members(proc.pid):
                os.kill(pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
