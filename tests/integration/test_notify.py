#!/usr/bin/env python3
"""Fire-and-forget notifications (an endpoint's "notify"): after each answer gatherd POSTs a
report of the request to a sink, here a second fakeup whose request log holds what it was sent.
A sink that hangs, refuses or answers 500 never changes or delays an answer and is counted in
gatherd_notify_total; a full queue drops and counts; SIGTERM sends what is queued within the
drain limit and drops (and logs once) the rest; a reload does not redirect queued ones."""

import json
import os
import shutil
import signal
import tempfile
import time
import unittest

import gd
import tlsca
from gd import FakeUpstream, Gatherd, config, endpoint, get_json, http_get, run_check_config, \
    scrape, stop_checked, wait_until

IN_FLIGHT = 4  # NOTIFY_IN_FLIGHT: POSTs per sink and worker at most


def count(g, path, result):
    return scrape(g).get("gatherd_notify_total", endpoint=path, result=result) or 0


def wait_count(g, path, result, want, timeout=20):
    """Wait until gatherd_notify_total{path,result} reaches want; assert it is exactly want."""
    wait_until(lambda: count(g, path, result) >= want, timeout,
               f"gatherd_notify_total{{{path},{result}}} >= {want}")
    got = count(g, path, result)
    assert got == want, f"gatherd_notify_total{{{path},{result}}} is {got}, want {want}"


def posts(sink, path="/sink"):
    """The notifications the sink received, in arrival order (log entries)."""
    return [e for e in sink.log() if e["path"] == path]


class NotifyCase(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()
        self.sink = FakeUpstream()

    def tearDown(self):
        self.up.stop()
        self.sink.stop()

    def cfg(self, notify, **top):
        u = self.up.url
        return config(endpoint("/t", [("a", u("/ok?id=a")), ("b", u("/status/503"))],
                               timeout_ms=5000, notify=notify),
                      endpoint("/quiet", [("a", u("/ok?id=q"))]), **top)

    def get_fast(self, g, n, rid="r"):
        """n requests to /t, one after the other: each answered at once, whatever the sink."""
        for i in range(n):
            t0 = time.monotonic()
            status, headers, doc = get_json(g.url("/t"), headers={"X-Request-Id": f"{rid}{i}"})
            elapsed = time.monotonic() - t0
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["results"], [{"ok": True, "id": "a"}, {}])
            self.assertEqual(doc["errors"][0]["status"], 503)
            self.assertLess(elapsed, 1.5, "the answer waited for the sink")


class PayloadTest(NotifyCase):
    def test_payload(self):
        notify = {"url": self.sink.url("/sink"), "headers": {"X-Token": "${NOTIFY_TEST_TOKEN}"}}
        with Gatherd(self.cfg(notify), env={"NOTIFY_TEST_TOKEN": "t0k"}, workers=1) as g:
            t0 = time.time()
            self.get_fast(g, 1, rid="pay-")
            self.assertEqual(http_get(g.url("/quiet"))[0], 200)
            self.sink.wait("path:/sink", 1)
            wait_count(g, "/t", "sent", 1)
            [e] = posts(self.sink)
            self.assertEqual(e["method"], "POST")
            self.assertEqual(e["content_type"], "application/json")
            self.assertEqual(e["request_id"], "pay-0", "the request's id as X-Request-Id")
            self.assertEqual(e["headers"].get("x-token"), "t0k", "configured headers, expanded")
            doc = json.loads(e["body"])
            self.assertEqual(list(doc), ["request_id", "time", "path", "status", "duration_ms",
                                         "cache", "backends"])
            self.assertEqual(doc["request_id"], "pay-0")
            self.assertEqual((doc["path"], doc["status"], doc["cache"]), ("/t", 200, None))
            self.assertIsInstance(doc["duration_ms"], float)
            self.assertTrue(0 <= doc["duration_ms"] < 1500, doc)
            when = time.mktime(time.strptime(doc["time"][:19], "%Y-%m-%dT%H:%M:%S")) - \
                time.timezone
            self.assertLess(abs(when - t0), 60, doc["time"])
            a, b = doc["backends"]
            self.assertEqual({k: a[k] for k in ("name", "ok", "error")},
                             {"name": "a", "ok": True, "error": None})
            self.assertEqual({k: b[k] for k in ("name", "ok", "error")},
                             {"name": "b", "ok": False, "error": "http_status"})
            self.assertTrue(all(isinstance(x["ms"], float) for x in (a, b)))
            access = g.wait_access_id("pay-0")
            self.assertEqual([x["name"] for x in access["backends"]], ["a", "b"])
            # An endpoint without notify sends nothing and has no series.
            self.assertEqual(len(posts(self.sink)), 1)
            self.assertEqual(count(g, "/quiet", "sent"), 0)
            self.assertEqual(count(g, "/t", "failed") + count(g, "/t", "dropped"), 0)
            # Keep-alive to the sink: a second notification reuses the connection.
            self.get_fast(g, 1, rid="again-")
            self.sink.wait("path:/sink", 2)
            self.assertEqual(self.sink.stats()["connections_opened"], 1)
        self.assertFalse(any(o.get("msg") == "notify_dropped" for o in g.log_lines()))


class BadSinkTest(NotifyCase):
    """Answers and their counts are the same whatever the sink does."""

    def test_sink_hangs(self):
        n = 10
        notify = {"url": self.sink.url("/hang"), "timeout_ms": 2000, "queue": 100}
        with Gatherd(self.cfg(notify), workers=1) as g:
            self.get_fast(g, n)
            # At most IN_FLIGHT POSTs at once: the rest wait in gatherd, not on sockets.
            st = self.sink.wait("path:/hang", IN_FLIGHT)
            self.assertLessEqual(st["connections_active"], IN_FLIGHT)
            wait_count(g, "/t", "failed", n, timeout=30)
            self.assertEqual(count(g, "/t", "sent"), 0)
            self.assertEqual(count(g, "/t", "dropped"), 0)
            log = posts(self.sink, "/hang")
            self.assertEqual(len(log), n)
            self.assertLessEqual(max(e["active"] for e in log), IN_FLIGHT)
            self.assertEqual([e["request_id"] for e in log], [f"r{i}" for i in range(n)],
                             "sent in order")

    def test_sink_refuses(self):
        notify = {"url": f"http://127.0.0.1:{gd.closed_port()}/sink"}
        with Gatherd(self.cfg(notify), workers=1) as g:
            self.get_fast(g, 3)
            wait_count(g, "/t", "failed", 3)
            self.assertEqual(count(g, "/t", "sent") + count(g, "/t", "dropped"), 0)

    def test_sink_answers_500(self):
        notify = {"url": self.sink.url("/sink?status=500")}
        with Gatherd(self.cfg(notify), workers=1) as g:
            self.get_fast(g, 3)
            wait_count(g, "/t", "failed", 3)
            self.assertEqual(count(g, "/t", "sent") + count(g, "/t", "dropped"), 0)
            self.assertEqual(len(posts(self.sink)), 3)

    def test_queue_overflow_and_drain_limit(self):
        """queue 2 on a sink that never answers: IN_FLIGHT POSTs run, 2 wait, the rest are
        dropped at once; SIGTERM drops the 6 left at the drain limit and logs that once."""
        n = 10
        notify = {"url": self.sink.url("/hang"), "timeout_ms": 60000, "queue": 2}
        g = Gatherd(self.cfg(notify, drain_timeout_ms=1000), workers=1)
        try:
            self.get_fast(g, n)
            wait_count(g, "/t", "dropped", n - IN_FLIGHT - 2)
            self.sink.wait("path:/hang", IN_FLIGHT)
            self.assertEqual(count(g, "/t", "sent") + count(g, "/t", "failed"), 0)
            t0 = time.monotonic()
            g.signal(signal.SIGTERM)
            self.assertEqual(g.wait_exit(15), 0, g.stderr_text())
            self.assertLess(time.monotonic() - t0, 5, "the drain limit bounds the wait")
            lines = [o for o in g.log_lines() if o.get("msg") == "notify_dropped"]
            self.assertEqual(len(lines), 1, g.stderr_text())
            self.assertEqual(lines[0]["dropped"], IN_FLIGHT + 2)
            self.assertEqual(lines[0]["level"], "warn")
            # The cancelled POSTs left the sink.
            self.sink.wait_le("connections_active", 0)
        finally:
            g.kill()


class DrainTest(NotifyCase):
    def test_sigterm_sends_queued(self):
        """Notifications in flight and queued at SIGTERM are all sent before the exit."""
        n = 8
        notify = {"url": self.sink.url("/sink?delay_ms=1500"), "timeout_ms": 10000}
        g = Gatherd(self.cfg(notify, drain_timeout_ms=20000), workers=1)
        try:
            self.get_fast(g, n)
            self.sink.wait("path:/sink", IN_FLIGHT)
            g.signal(signal.SIGTERM)
            # The sink answers each after 1.5 s, IN_FLIGHT at a time: at the signal, at most the
            # first round was done, so at least n - IN_FLIGHT were queued or in flight.
            self.assertLessEqual(self.sink.stats()["responses"], IN_FLIGHT)
            g.wait_log("draining")
            self.assertEqual(g.wait_exit(30), 0, g.stderr_text())
            log = posts(self.sink)
            self.assertEqual([e["outcome"] for e in log], ["responded"] * n)
            self.assertEqual([json.loads(e["body"])["request_id"] for e in log],
                             [f"r{i}" for i in range(n)])
            self.assertFalse(any(o.get("msg") == "notify_dropped" for o in g.log_lines()))
            g.wait_log("stopped", timeout=1)
        finally:
            g.kill()

    def test_sigterm_idle(self):
        """Nothing queued: the drain is as quick as without notify."""
        with Gatherd(self.cfg({"url": self.sink.url("/sink")}), workers=1) as g:
            self.get_fast(g, 1)
            self.sink.wait("responses", 1)
            wait_count(g, "/t", "sent", 1)
            t0 = time.monotonic()
        self.assertLess(time.monotonic() - t0, 3)


class ReloadTest(NotifyCase):
    def test_queued_keep_their_sink(self):
        other = FakeUpstream()
        try:
            old = {"url": self.sink.url("/sink?delay_ms=1000"), "headers": {"X-Gen": "old"}}
            g = Gatherd(self.cfg(old), workers=1)
            with g:
                self.get_fast(g, 6, rid="old")
                self.sink.wait("path:/sink", IN_FLIGHT)
                g.write_config(self.cfg({"url": other.url("/sink"), "headers": {"X-Gen": "new"}}))
                g.signal(signal.SIGHUP)
                g.wait_log("reloaded")
                self.get_fast(g, 1, rid="new")
                other.wait("path:/sink", 1)
                self.sink.wait("responses", 6, timeout=20)
                log = posts(self.sink)
                self.assertEqual([e["request_id"] for e in log], [f"old{i}" for i in range(6)])
                self.assertEqual({e["headers"]["x-gen"] for e in log}, {"old"})
                [e] = posts(other)
                self.assertEqual((e["request_id"], e["headers"]["x-gen"]), ("new0", "new"))
                wait_count(g, "/t", "sent", 7)
        finally:
            other.stop()


class HttpsSinkTest(NotifyCase):
    """An https:// sink is verified with the top level's tls, as a backend would be."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="gatherd-notify-pki-")
        self.pki = tlsca.TestPKI(self.dir)
        self.tls_sink = FakeUpstream(args=["--tls-cert", self.pki.path("server.crt"),
                                           "--tls-key", self.pki.path("server.key"),
                                           "--control-port", "0"], scheme="https")

    def tearDown(self):
        self.tls_sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def test_verified(self):
        notify = {"url": self.tls_sink.url("/sink")}
        with Gatherd(self.cfg(notify, tls={"ca_file": self.pki.path("ca.crt")}),
                     workers=1) as g:
            # One after the other, so that the second may reuse the first's connection.
            for i in (1, 2):
                self.get_fast(g, 1, rid=f"s{i}-")
                wait_count(g, "/t", "sent", i)
            self.assertEqual([e["method"] for e in posts(self.tls_sink)], ["POST", "POST"])
            self.assertEqual(self.tls_sink.stats()["connections_opened"], 1)

    def test_unverified_fails(self):
        notify = {"url": self.tls_sink.url("/sink")}
        with Gatherd(self.cfg(notify, tls={"ca_file": self.pki.path("other-ca.crt")})) as g:
            self.get_fast(g, 2)
            wait_count(g, "/t", "failed", 2)
            self.assertEqual(posts(self.tls_sink), [])


class MultiWorkerDrainTest(NotifyCase):
    def test_sigterm_two_workers(self):
        """Each worker sends its own queue before the process exits."""
        n = 12
        notify = {"url": self.sink.url("/sink?delay_ms=500"), "timeout_ms": 10000}
        g = Gatherd(self.cfg(notify, drain_timeout_ms=20000), workers=2)
        try:
            self.get_fast(g, n)
            self.sink.wait("path:/sink", IN_FLIGHT)
            g.signal(signal.SIGTERM)
            self.assertEqual(g.wait_exit(30), 0, g.stderr_text())
            log = posts(self.sink)
            self.assertEqual(sorted(json.loads(e["body"])["request_id"] for e in log),
                             sorted(f"r{i}" for i in range(n)))
            self.assertEqual({e["outcome"] for e in log}, {"responded"})
            self.assertFalse(any(o.get("msg") == "notify_dropped" for o in g.log_lines()))
        finally:
            g.kill()


class ExampleTest(NotifyCase):
    """config/notify.json, the README's worked example."""

    def test_example(self):
        path = os.path.join(gd.SRC, "config", "notify.json")
        with open(path) as f:
            text = f.read()
        env = {"DEMO_FAKE_PORT": str(self.up.port), "NOTIFY_SINK_PORT": str(self.sink.port),
               "NOTIFY_TOKEN": "s3cret"}
        rc, out, err, _ = run_check_config(text, env=env)
        self.assertEqual(rc, 0, err)
        with Gatherd(text, env=env) as g:
            status, _, doc = get_json(g.url("/tickers"))
            self.assertEqual((status, doc["errors"]), (200, []))
            self.sink.wait("responses", 1)
            [e] = posts(self.sink)
            self.assertEqual(e["headers"]["authorization"], "Bearer s3cret")
            body = json.loads(e["body"])
            self.assertEqual((body["path"], body["status"]), ("/tickers", 200))
            self.assertEqual([(b["name"], b["ok"]) for b in body["backends"]],
                             [("bitbank", True), ("btcbox", True), ("coincheck", True)])


class ConfigTest(unittest.TestCase):
    def check(self, notify, key, env=None):
        cfg = config(endpoint("/t", [("a", "http://127.0.0.1:9/a")], notify=notify))
        rc, out, err, _ = run_check_config(cfg, env=env)
        self.assertEqual(rc, 2, (notify, out, err))
        self.assertIn(f"endpoints[0].notify{key}: ", err)
        return err

    def test_rejected(self):
        self.check("http://x/", "", )
        self.check({}, ".url")
        self.assertIn("http:// or https://", self.check({"url": "ftp://x/"}, ".url"))
        self.check({"url": "http://127.0.0.1:9/{item}"}, ".url")
        self.check({"url": "http://x/", "queue": 0}, ".queue")
        self.check({"url": "http://x/", "queue": 100001}, ".queue")
        self.check({"url": "http://x/", "timeout_ms": 0}, ".timeout_ms")
        self.check({"url": "http://x/", "bogus": 1}, ".bogus")
        self.check({"url": "http://x/", "headers": {"Content-Type": "text/plain"}},
                   ".headers.Content-Type")
        self.check({"url": "http://x/", "headers": {"X-Id": "${NOTIFY_UNSET_VAR}"}},
                   ".headers.X-Id", env={"NOTIFY_UNSET_VAR": None})
        self.check({"url": "${NOTIFY_UNSET_VAR}"}, ".url", env={"NOTIFY_UNSET_VAR": None})

    def test_accepted(self):
        cfg = config(endpoint("/t", [("a", "http://127.0.0.1:9/a")],
                              notify={"url": "https://sink.example/n", "queue": 1,
                                      "timeout_ms": 600000, "headers": {"X-A": "b"}}))
        rc, out, err, _ = run_check_config(cfg)
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    unittest.main()
