"""A unittest base for tests that drive one gatherd against one fakeup and judge each request by
what fakeup logged for its X-Request-Id (arrival and end times, raw targets, outcomes).

A subclass starts ``cls.up`` (FakeUpstream) and ``cls.gd`` (Gatherd) in setUpClass and
configures, if it calls assert_healthy() or leave(), an aggregate endpoint at ``HEALTHY_PATH``
that answers 200 at once.  tearDownClass stops both and fails on a non-zero exit (a sanitizer
report, a leak).
"""

import contextlib
import json
import os
import socket
import time
import unittest

from gd import SRC, FakeUpstream, Gatherd, http_get, parse_response, read_response, \
    run_check_config, scrape, stop_checked, wait_until

HEALTHY_PATH = "/fast"


def ok_body(i=""):
    """What fakeup's /ok answers for ?id=i."""
    return {"ok": True, "id": i}


class UpstreamCase(unittest.TestCase):
    up = None
    gd = None

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def setUp(self):
        # Nothing of an earlier test may still be in flight upstream: the log and counters a
        # test reads must be its own.
        self.up.wait_le("active", 0, timeout=15)
        self.up.reset()

    def fetch(self, target, rid, timeout=30, object_pairs_hook=None):
        """(status, parsed JSON body, seconds) of one GET with X-Request-Id rid; the answer
        must be JSON."""
        t0 = time.monotonic()
        status, headers, body = http_get(self.gd.url(target), headers={"X-Request-Id": rid},
                                         timeout=timeout)
        elapsed = time.monotonic() - t0
        self.assertEqual(headers.get("content-type"), "application/json", (target, body[:200]))
        return status, json.loads(body, object_pairs_hook=object_pairs_hook), elapsed

    def requests_of(self, rid):
        """fakeup's log entries of the calls made for request rid, in arrival order."""
        return [e for e in self.up.log() if e["request_id"] == rid]

    def access(self, rid):
        return self.gd.wait_access_id(rid, timeout=15)

    def assert_healthy(self):
        status, _, body = http_get(self.gd.url(HEALTHY_PATH))
        self.assertEqual(status, 200, body)

    def send(self, target, rid, close=False):
        """A GET sent on a new connection, not yet answered: the socket."""
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=30)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n".encode()
                  + (b"Connection: close\r\n" if close else b"") + b"\r\n")
        return s

    def answer(self, s):
        """(status, parsed body) of the answer on a socket from send(); closes it."""
        try:
            status, _, body = parse_response(read_response(s, timeout=30))
        finally:
            s.close()
        return status, json.loads(body)

    def scrape_when(self, pred, what, timeout=10):
        """Scrape /metrics until pred(exposition) holds (gatherd counts a request a moment
        after answering it); that exposition."""
        return wait_until(lambda: (lambda e: e if pred(e) else None)(scrape(self.gd)),
                          timeout, what)

    def leave(self, target, rid, started):
        """Send a request, wait until fakeup has `started` calls, leave.  Every call must be
        aborted upstream promptly, the request logged 499, and gatherd keep serving.  Returns
        (access line, fakeup's log of the request)."""
        s = self.send(target, rid)
        self.up.wait("requests", started, timeout=10)
        t0 = time.monotonic()
        s.close()
        self.up.wait("aborted", started, timeout=5)
        self.assertLess(time.monotonic() - t0, 5.0)
        line = self.access(rid)
        self.assertEqual(line["status"], 499, line)
        # A barrier on the same loop: calls still waiting for a slot would have started by now.
        self.assert_healthy()
        log = self.requests_of(rid)
        self.assertEqual(len(log), started, log)
        self.assertEqual({e["outcome"] for e in log}, {"aborted"}, log)
        return line, log


class ConfigCase(unittest.TestCase):
    """Configuration checks through ``gatherd --check-config``."""

    def assert_rejected(self, cfg, *keys):
        """Exit 2 with a message on stderr naming one of ``keys`` (the key path; the reason's
        wording is not checked); the stderr."""
        rc, out, err, _ = run_check_config(cfg)
        self.assertEqual(rc, 2, f"want exit 2; stdout={out!r} stderr={err!r}")
        self.assertTrue(any(k in err for k in keys), f"stderr should name {keys}: {err!r}")
        return err

    def assert_all_rejected(self, cases):
        """assert_rejected for each (config, keys), a subtest per endpoint."""
        for cfg, keys in cases:
            with self.subTest(cfg=cfg["endpoints"][0]):
                self.assert_rejected(cfg, *keys)

    def assert_accepted(self, cfg):
        rc, out, err, _ = run_check_config(cfg)
        self.assertEqual(rc, 0, err)

    @contextlib.contextmanager
    def example(self, name):
        """config/<name> as the offline demo runs it: against a fakeup whose port it reads
        from ${DEMO_FAKE_PORT}; it must pass --check-config, then runs; yields the Gatherd."""
        with open(os.path.join(SRC, "config", name)) as f:
            text = f.read()
        with FakeUpstream() as up:
            env = {"DEMO_FAKE_PORT": str(up.port)}
            rc, out, err, _ = run_check_config(text, env=env)
            self.assertEqual(rc, 0, err)
            with Gatherd(text, env=env, workers=None) as g:
                yield g
