#!/usr/bin/env python3
"""Streamed answers (issue 12) against real fakeup upstreams, read over a raw socket that notes
when each piece arrived: `Accept: application/x-ndjson` and `text/event-stream` get 200 and the
headers at once, then one line (event) per backend in completion order, each the moment its
backend ends (a 50 ms line arrives long before the 2 s backend's, judged against fakeup's own
end times), then the done line and the terminating chunk; a `q=0`, a wildcard or HEAD get the
plain join; an early end (fail_fast, a required backend, the deadline) sends a `cancelled` or
`timeout` line for every backend left; a client that leaves mid-stream cancels what runs (the
upstream sees the abort); an `each` stream of 100 items; dependents failing inside the graph get
their lines too; a client that does not read never stalls the loop; SSE keep-alive comments on
an idle stream; a stream in flight at SIGTERM ends at the drain limit; the access line and
the metrics record streams."""

import json
import select
import signal
import socket
import time
import unittest
import urllib.parse

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, scrape, wait_until
from gdcase import HEALTHY_PATH, ConfigCase, UpstreamCase, ok_body
from streamclient import StreamClient

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
FAR = 20000       # ms: a delay no test waits for
SLOW_MS = 2000    # the slow backend of /three
BIG = 8           # 1 MiB answers of /big


class StreamTest(UpstreamCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/three", [("slow", u(f"/ok?id=slow&delay_ms={SLOW_MS}")),
                                ("fail", u("/status/503?delay_ms=300")),
                                ("fast", u("/ok?id=fast&delay_ms=50"))],
                     timeout_ms=10000),
            endpoint("/ff", [("ok", u("/ok?id=ok")),
                             ("bad", u("/status/503?delay_ms=300")),
                             ("hang", u("/hang")),
                             ("slow", u(f"/ok?id=slow&delay_ms={FAR}"))],
                     timeout_ms=30000, on_error="fail_fast"),
            endpoint("/required", [("opt", u("/status/500")),
                                   ("req", u("/status/503?delay_ms=300"), {"required": True}),
                                   ("hang", u("/hang"))],
                     timeout_ms=30000),
            endpoint("/deadline", [("ok", u("/ok?id=ok")), ("hang", u("/hang")),
                                   ("slow", u(f"/ok?id=slow&delay_ms={FAR}"))],
                     timeout_ms=800),
            endpoint("/slots-deadline", [("first", u("/ok?id=first")), ("stuck", u("/hang")),
                                         ("q1", u("/ok?id=q1")), ("q2", u("/ok?id=q2"))],
                     timeout_ms=800, concurrency=1),
            endpoint("/leave", [("fast", u("/ok?id=fast")), ("hang", u("/hang")),
                                ("slow", u(f"/ok?id=slow&delay_ms={FAR}"))],
                     timeout_ms=60000),
            endpoint("/items", [("contract", u("/ok?id={item}&delay_ms=300"))],
                     each={"param": "sn", "max_items": 100}, timeout_ms=10000),
            endpoint("/chain", [("a", u("/status/503?delay_ms=100")),
                                ("b", u("/ok?id={a:/id}")),
                                ("c", u("/ok?id={b:/id}")),
                                ("d", u("/ok?id=d&delay_ms=300"))],
                     timeout_ms=10000),
            endpoint("/big", [(f"b{i}", u(f"/huge_length?bytes={1 << 20}")) for i in range(BIG)],
                     timeout_ms=30000),
            endpoint("/idle", [("hang", u("/hang"))], timeout_ms=60000),
            endpoint("/big-hang", [("big", u(f"/huge_length?bytes={8 << 20}")),
                                   ("hang", u("/hang"))], timeout_ms=60000),
            endpoint(HEALTHY_PATH, [("f", u("/ok?id=f"))], timeout_ms=10000),
        ), workers=1)

    # helpers ---------------------------------------------------------------------------------

    def stream(self, target, rid, accept=NDJSON, **kw):
        return StreamClient(self.gd.port, target, accept=accept, rid=rid, **kw)

    def assert_stream_head(self, s, accept=NDJSON):
        status, h = s.head()
        self.assertEqual(status, 200, h)
        self.assertEqual(h.get("content-type"), accept, h)
        self.assertEqual(h.get("transfer-encoding"), "chunked", h)
        self.assertEqual(h.get("x-accel-buffering"), "no", h)
        self.assertNotIn("content-length", h)
        if accept == SSE:
            self.assertEqual(h.get("cache-control"), "no-cache", h)
        self.assertTrue(h.get("x-request-id"), h)
        return h

    def read_ndjson(self, s):
        """(lines before the done line, done line, its arrival); the stream must end properly
        right after the done line."""
        got = s.all_lines()
        self.assertTrue(s.ended, "no terminating chunk")
        self.assertTrue(got, "no lines")
        t_done, done = got[-1]
        self.assertEqual(set(done), {"done", "ok", "failed"}, done)
        self.assertIs(done["done"], True)
        for _, line in got[:-1]:
            self.assertNotIn("done", line)
        return got[:-1], done, t_done

    def assert_line(self, line, index, name, result=None, error=None, status=None):
        """One line's exact shape: label, name, then result, or error and message (and status
        exactly for http_status)."""
        self.assertEqual(line.get("index"), index, line)
        self.assertEqual(line.get("name"), name, line)
        if error is None:
            self.assertEqual(set(line), {"index", "name", "result"}, line)
            if result is not None:
                self.assertEqual(line["result"], result, line)
        else:
            keys = {"index", "name", "error", "message"} | ({"status"} if status else set())
            self.assertEqual(set(line), keys, line)
            self.assertEqual(line["error"], error, line)
            self.assertTrue(line["message"], line)
            if status:
                self.assertEqual(line["status"], status, line)

    def entry(self, rid, prefix):
        hits = [e for e in self.requests_of(rid) if e["target"].startswith(prefix)]
        self.assertEqual(len(hits), 1, (prefix, self.requests_of(rid)))
        return hits[0]

    # NDJSON and SSE -----------------------------------------------------------------------------

    def test_ndjson_lines_leave_as_backends_finish(self):
        with self.stream("/three", "nd-three") as s:
            self.assert_stream_head(s)
            lines, done, t_done = self.read_ndjson(s)
            # Reuse the connection: the stream ended properly, so the next request works.
            s.sock.sendall(b"GET " + HEALTHY_PATH.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = gd.parse_response(gd.read_response(s.sock))
            self.assertEqual(status, 200, body)
        names = [line["name"] for _, line in lines]
        self.assertEqual(names, ["fast", "fail", "slow"], "completion order")
        self.assert_line(lines[0][1], 2, "fast", result=ok_body("fast"))
        self.assert_line(lines[1][1], 1, "fail", error="http_status", status=503)
        self.assert_line(lines[2][1], 0, "slow", result=ok_body("slow"))
        self.assertEqual(done, {"done": True, "ok": 2, "failed": 1})
        # The head came at once, before any backend ended.
        fast = self.entry("nd-three", "/ok?id=fast")
        fail = self.entry("nd-three", "/status/503")
        slow = self.entry("nd-three", "/ok?id=slow")
        self.assertLess(s.t_head, fast["end"], "the head must not wait for a backend")
        # Each line arrived once its backend had answered (fakeup logs its end only after the
        # answer left, so its arrival plus its delay is the bound), and long before the slow
        # one ended: the 50 ms line near 50 ms, not at 2 s (margins wide for a loaded machine).
        t_fast, t_fail, t_slow = (t for t, _ in lines)
        self.assertGreaterEqual(t_fast, fast["t"] + 0.05)
        self.assertGreaterEqual(t_fail, fail["t"] + 0.3)
        self.assertGreaterEqual(t_slow, slow["t"] + SLOW_MS / 1000)
        self.assertLess(t_fast - s.t0, 0.4 + 0.3, (t_fast - s.t0))
        self.assertLess(t_fast, slow["end"] - 1.0)
        self.assertLess(t_fail, slow["end"] - 1.0)
        self.assertLess(t_fast - fast["end"], 0.5)
        self.assertLess(t_fail - fail["end"], 0.5)
        self.assertGreaterEqual(t_done, t_slow)
        line = self.access("nd-three")
        self.assertEqual(line["stream"], "ndjson", line)
        self.assertEqual(line["status"], 200, line)
        self.assertEqual([(b["name"], b["result"]) for b in line["backends"]],
                         [("slow", "ok"), ("fail", "http_status"), ("fast", "ok")])

    def test_sse_events_leave_as_backends_finish(self):
        with self.stream("/three", "sse-three", accept=SSE) as s:
            self.assert_stream_head(s, SSE)
            evs = s.all_events()
            self.assertTrue(s.ended, "no terminating chunk")
        self.assertTrue(all(not ev["comments"] for _, ev in evs), evs)
        self.assertEqual([(ev["event"], ev["id"]) for _, ev in evs],
                         [("result", "2"), ("result", "1"), ("result", "0"), ("done", None)])
        self.assert_line(evs[0][1]["data"], 2, "fast", result=ok_body("fast"))
        self.assert_line(evs[1][1]["data"], 1, "fail", error="http_status", status=503)
        self.assert_line(evs[2][1]["data"], 0, "slow", result=ok_body("slow"))
        self.assertEqual(evs[3][1]["data"], {"done": True, "ok": 2, "failed": 1})
        slow = self.entry("sse-three", "/ok?id=slow")
        fast = self.entry("sse-three", "/ok?id=fast")
        self.assertGreaterEqual(evs[0][0], fast["t"] + 0.05)
        self.assertLess(evs[0][0], slow["end"] - 1.0)
        self.assertLess(evs[0][0] - s.t0, 0.7)
        self.assertEqual(self.access("sse-three")["stream"], "sse")

    def test_what_does_not_select_a_stream(self):
        for i, accept in enumerate([None, "application/json", "*/*", "application/*",
                                    "text/*", NDJSON + ";q=0", SSE + "; q=0.0",
                                    "application/x-ndjsonx", "text/event-streams"]):
            with self.subTest(accept=accept):
                hdrs = {"X-Request-Id": f"plain-{i}"}
                if accept is not None:
                    hdrs["Accept"] = accept
                status, h, body = http_get(self.gd.url(HEALTHY_PATH), headers=hdrs)
                self.assertEqual(status, 200, body)
                self.assertEqual(h.get("content-type"), "application/json", h)
                self.assertIn("content-length", h)
                self.assertEqual(json.loads(body), {"results": [ok_body("f")], "errors": []})
                self.assertNotIn("stream", self.access(f"plain-{i}"))
        # HEAD never streams.
        status, h, body = http_get(self.gd.url(HEALTHY_PATH), method="HEAD",
                                   headers={"Accept": NDJSON})
        self.assertEqual((status, h.get("content-type"), body), (200, "application/json", b""))
        # Named with q above 0, even beside other types, it does; the higher q wins.
        for accept, ctype in (("application/json;q=0.9, " + NDJSON + ";q=0.1", NDJSON),
                              ("text/html, " + SSE, SSE),
                              (NDJSON + ";q=0.5, " + SSE + ";q=0.8", SSE),
                              ("APPLICATION/X-NDJSON", NDJSON)):
            with self.subTest(accept=accept):
                with self.stream(HEALTHY_PATH, "sel", accept=accept) as s:
                    self.assertEqual(s.head()[1].get("content-type"), ctype)
                    list(s._pieces(b"\n"))
                    self.assertTrue(s.ended)

    # early ends ---------------------------------------------------------------------------------

    def test_fail_fast_in_a_stream(self):
        with self.stream("/ff", "nd-ff") as s:
            self.assert_stream_head(s)
            lines, done, _ = self.read_ndjson(s)
        got = [line for _, line in lines]
        self.assert_line(got[0], 0, "ok", result=ok_body("ok"))
        self.assert_line(got[1], 1, "bad", error="http_status", status=503)
        self.assertEqual(sorted((x["index"], x["error"]) for x in got[2:]),
                         [(2, "cancelled"), (3, "cancelled")])
        for x in got[2:]:
            self.assertIn('backend "bad" failed', x["message"], x)
        self.assertEqual(done, {"done": True, "ok": 1, "failed": 3})
        self.up.wait("aborted", 2, timeout=5)
        self.assertEqual(self.access("nd-ff")["status"], 200)

    def test_a_required_failure_ends_a_stream(self):
        with self.stream("/required", "nd-req", accept=SSE) as s:
            self.assert_stream_head(s, SSE)
            evs = [ev for _, ev in s.all_events()]
            self.assertTrue(s.ended)
        self.assertEqual([(ev["event"], ev["id"]) for ev in evs],
                         [("result", "0"), ("result", "1"), ("result", "2"), ("done", None)])
        self.assertEqual([ev["data"]["error"] for ev in evs[:3]],
                         ["http_status", "http_status", "cancelled"])
        self.assertEqual(evs[3]["data"], {"done": True, "ok": 0, "failed": 3})
        self.up.wait("aborted", 1, timeout=5)

    def test_the_deadline_in_a_stream(self):
        with self.stream("/deadline", "nd-dl") as s:
            self.assert_stream_head(s)
            lines, done, t_done = self.read_ndjson(s)
        got = [line for _, line in lines]
        self.assert_line(got[0], 0, "ok", result=ok_body("ok"))
        self.assertEqual(sorted((x["index"], x["error"]) for x in got[1:]),
                         [(1, "timeout"), (2, "timeout")])
        self.assertEqual(done, {"done": True, "ok": 1, "failed": 2})
        self.assertGreaterEqual(t_done - s.t0, 0.75)
        self.assertLess(t_done - s.t0, 5.0)
        # The ok line did not wait for the deadline.
        self.assertLess(lines[0][0] - s.t0, 0.7)
        self.up.wait("aborted", 2, timeout=5)

    def test_calls_waiting_for_a_slot_get_their_lines_at_the_deadline(self):
        with self.stream("/slots-deadline", "nd-slots") as s:
            lines, done, _ = self.read_ndjson(s)
        got = [line for _, line in lines]
        self.assert_line(got[0], 0, "first", result=ok_body("first"))
        self.assertEqual(sorted((x["index"], x["error"]) for x in got[1:]),
                         [(1, "timeout"), (2, "timeout"), (3, "timeout")])
        self.assertEqual(done, {"done": True, "ok": 1, "failed": 3})
        self.up.wait("aborted", 1, timeout=5)
        self.assertEqual(sorted(e["path"] for e in self.requests_of("nd-slots")),
                         ["/hang", "/ok"])

    def test_a_client_leaving_mid_stream_cancels_the_rest(self):
        s = self.stream("/leave", "nd-leave")
        self.assert_stream_head(s)
        it = s.lines()
        _, first = next(it)
        self.assert_line(first, 0, "fast", result=ok_body("fast"))
        self.up.wait("requests", 3, timeout=10)
        t0 = time.monotonic()
        s.close()
        self.up.wait("aborted", 2, timeout=5)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(sorted(e["outcome"] for e in self.requests_of("nd-leave")),
                         ["aborted", "aborted", "responded"])
        line = self.access("nd-leave")
        self.assertEqual(line["status"], 499, line)
        self.assertEqual(line["stream"], "ndjson", line)
        self.assertEqual([b["result"] for b in line["backends"]],
                         ["ok", "cancelled", "cancelled"])
        self.assert_healthy()

    def test_a_client_hanging_up_while_its_stream_is_written(self):
        """The client half-closes while gatherd is blocked writing an 8 MiB line to it (not
        waiting for one): that counts as leaving, as it does for a parked request, and must
        cancel the call still running once the line is out, not at the deadline."""
        s = self.stream("/big-hang", "nd-hangup", rcvbuf=32 << 10)
        try:
            # The line is being written: more than the head has reached the client, which
            # reads none (the poll interval only paces the peeks).
            wait_until(lambda: select.select([s.sock], [], [], 1)[0]
                       and len(s.sock.recv(1 << 16, socket.MSG_PEEK)) > 16 << 10,
                       20, "the big line to be on its way", interval=0.01)
            s.sock.shutdown(socket.SHUT_WR)
            self.assert_healthy()  # a barrier: the loop has seen the hang-up
            _, first = next(s.lines())
            self.assertEqual(first["name"], "big")
            t0 = time.monotonic()
            self.up.wait("aborted", 1, timeout=10)
            self.assertLess(time.monotonic() - t0, 10.0)
        finally:
            s.close()
        line = self.access("nd-hangup")
        self.assertEqual(line["status"], 499, line)
        self.assertEqual([b["result"] for b in line["backends"]], ["ok", "cancelled"], line)

    # each, chains -------------------------------------------------------------------------------

    def test_a_stream_of_100_items(self):
        items = [f"C{n:03}" for n in range(100)]
        with self.stream("/items?sn=" + ",".join(items), "nd-items") as s:
            self.assert_stream_head(s)
            lines, done, t_done = self.read_ndjson(s)
        got = [line for _, line in lines]
        self.assertEqual(len(got), 100)
        self.assertEqual(sorted(x["item"] for x in got), items)
        for x in got:
            self.assertEqual(set(x), {"item", "name", "result"}, x)
            self.assertEqual(x["name"], "contract")
            self.assertEqual(x["result"], ok_body(x["item"]))
        self.assertEqual(done, {"done": True, "ok": 100, "failed": 0})
        self.assertLess(t_done - s.t0, 5.0)
        line = self.access("nd-items")
        self.assertEqual(line["legs"]["total"], 100, line)
        self.assertEqual(line["stream"], "ndjson")
        # SSE ids are the items, percent-encoded: none can break the framing.
        odd = ["a b", "c\nd", "e:f"]
        q = urllib.parse.quote(",".join(odd), safe=",")
        with self.stream("/items?sn=" + q, "sse-items", accept=SSE) as s:
            evs = [ev for _, ev in s.all_events()]
        ids = {ev["data"]["item"]: ev["id"] for ev in evs if ev["event"] == "result"}
        self.assertEqual(ids, {"a b": "a%20b", "c\nd": "c%0Ad", "e:f": "e%3Af"})
        self.assertEqual(evs[-1]["data"], {"done": True, "ok": 3, "failed": 0})

    def test_dependents_failing_in_the_graph_get_their_lines(self):
        with self.stream("/chain", "nd-chain") as s:
            lines, done, _ = self.read_ndjson(s)
        got = [line for _, line in lines]
        self.assertEqual([(x["name"], x.get("error")) for x in got],
                         [("a", "http_status"), ("b", "dependency"), ("c", "dependency"),
                          ("d", None)])
        self.assertEqual(done, {"done": True, "ok": 1, "failed": 3})
        self.assertLess(lines[1][0], self.entry("nd-chain", "/ok?id=d")["end"])

    # slow readers, idle streams, metrics -------------------------------------------------------

    def test_a_client_that_does_not_read_never_stalls_the_loop(self):
        """Eight 1 MiB answers streamed to a client that reads nothing for a while, more than
        the kernel's socket buffers hold: gatherd keeps serving others meanwhile, then the
        client gets every byte."""
        s = self.stream("/big", "nd-big", rcvbuf=32 << 10)
        try:
            self.up.wait("responses", BIG, timeout=20)
            for i in range(5):
                t0 = time.monotonic()
                self.assert_healthy()
                self.assertLess(time.monotonic() - t0, 3.0)
            self.assert_stream_head(s)
            lines, done, _ = self.read_ndjson(s)
        finally:
            s.close()
        self.assertEqual(done, {"done": True, "ok": BIG, "failed": 0})
        self.assertEqual(len(lines), BIG)
        for _, x in lines:
            self.assertEqual(len(x["result"]), (1 << 20) - 2)

    def test_sse_keep_alive_comments_on_an_idle_stream(self):
        """Nothing to send for 15 s: a `: keep-alive` comment, then the client leaves."""
        s = self.stream("/idle", "sse-idle", accept=SSE, timeout=40)
        try:
            self.assert_stream_head(s, SSE)
            t, ev = next(s.events())
            self.assertEqual((ev["event"], ev["comments"]), (None, ["keep-alive"]), ev)
            self.assertGreater(t - s.t0, 14.0)
            self.assertLess(t - s.t0, 30.0)
        finally:
            s.close()
        self.up.wait("aborted", 1, timeout=5)
        self.assertEqual(self.access("sse-idle")["status"], 499)

    def test_metrics_count_streams_like_any_request(self):
        def count(e):
            return e.get("gatherd_requests_total", endpoint="/three", code="200") or 0

        before = count(scrape(self.gd))
        with self.stream("/three", "nd-m") as s:
            self.read_ndjson(s)
        self.scrape_when(lambda e: count(e) >= before + 1, "the streamed request to be counted")


class StreamDrainTest(unittest.TestCase):
    def test_a_stream_in_flight_at_sigterm_ends_at_the_drain_limit(self):
        """SIGTERM while a stream waits on a backend that never answers: at drain_timeout_ms
        it gets a `timeout` line and the done line, the stream ends properly, exit 0."""
        with FakeUpstream() as up:
            g = Gatherd(config(endpoint("/idle", [("ok", up.url("/ok?id=x")),
                                                  ("hang", up.url("/hang"))],
                                        timeout_ms=60000),
                               drain_timeout_ms=1000), workers=1)
            try:
                with StreamClient(g.port, "/idle", accept=SSE) as s:
                    it = s.events()
                    _, first = next(it)
                    self.assertEqual(first["data"]["name"], "ok", first)
                    t0 = time.monotonic()
                    g.signal(signal.SIGTERM)
                    rest = [ev for _, ev in it]
                    elapsed = time.monotonic() - t0
                    self.assertTrue(s.ended, "no terminating chunk")
                self.assertEqual([(ev["event"], ev["id"]) for ev in rest],
                                 [("result", "1"), ("done", None)])
                self.assertEqual(rest[0]["data"]["error"], "timeout", rest)
                self.assertEqual(rest[1]["data"], {"done": True, "ok": 1, "failed": 1})
                self.assertGreaterEqual(elapsed, 0.9)
                self.assertLess(elapsed, 10.0)
                self.assertEqual(g.wait_exit(15), 0, g.stderr_text())
                up.wait("aborted", 1, timeout=5)
            finally:
                g.stop()


class StreamExampleTest(ConfigCase):
    """config/live.json, the README's streaming example, against fakeup as the demo runs it."""

    def test_example(self):
        with self.example("live.json") as g:
            with StreamClient(g.port, "/tickers", accept=NDJSON) as s:
                got = s.all_lines()
            self.assertEqual([x.get("name") for _, x in got[:-1]],
                             ["coincheck", "btcbox", "bitbank"])
            self.assertEqual(got[-1][1], {"done": True, "ok": 3, "failed": 0})
            # The first line after the fastest upstream (40 ms), not the slowest (1 s).
            self.assertLess(got[0][0] - s.t0, got[-1][0] - s.t0 - 0.5)
            # Without the Accept header, the same endpoint is the plain join.
            status, _, doc = gd.get_json(g.url("/tickers"))
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["errors"], [])


if __name__ == "__main__":
    unittest.main()
