#!/usr/bin/env python3
"""Upstream faults: every way an upstream can misbehave ends in the documented error entry
(`connect`, `transfer`, `timeout`, `http_status` with its status, `invalid_json`,
`too_large`), the answer is 200 next to a healthy backend and 502 alone, the access log names
the same result, nothing of the upstream connection is kept longer than needed (fakeup sees it
dropped), and gatherd is healthy afterwards.

A name that does not resolve (`connect`) and a lookup that never answers are in test_dns.py.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faultlib  # noqa: E402

import gd  # noqa: E402
from gd import config, endpoint  # noqa: E402
from faultlib import FaultTest, join, short  # noqa: E402

GOOD = {"ok": True, "id": "good"}
# Bodies so large that fakeup could not finish sending them in minutes (it streams them
# lazily): if the transfer is dropped within seconds, gatherd stopped reading at the cap.
ENDLESS = 20 * 10**9
CAP = 10000


class UpstreamFaultTest(FaultTest):
    @classmethod
    def make_config(cls, up):
        u = up.url
        cls.dead = gd.closed_port()
        good = ("good", u("/ok?id=good"))
        eps = []
        cls.faults = {}

        def fault(name, url, extra=None, ep_timeout=10000):
            b = {"name": "bad", "url": url}
            b.update(extra or {})
            eps.append(endpoint("/pair/" + name, [good, b], timeout_ms=ep_timeout))
            eps.append(endpoint("/alone/" + name, [b], timeout_ms=ep_timeout))

        fault("refused", f"http://127.0.0.1:{cls.dead}/ok")
        fault("reset_before", u("/reset_before"))
        fault("reset_mid", u("/reset_mid"))
        fault("hang", u("/hang"), {"timeout_ms": 300})
        fault("stall_body", u("/stall_body"), {"timeout_ms": 300})
        # 2 s of body if read to the end; the backend may only take 500 ms.
        fault("dribble", u("/dribble?interval_ms=100&bytes=20"), {"timeout_ms": 500})
        fault("s400", u("/status/400"))
        fault("s404", u("/status/404"))
        fault("s429", u("/status/429"))
        fault("s500", u("/status/500"))
        fault("s502", u("/status/502"))
        fault("s503", u("/status/503"))
        fault("json_503", u("/ok?status=503"))   # a JSON body does not make an error status ok
        fault("empty", u("/empty"))
        fault("truncated", u("/truncated"))
        fault("nonjson", u("/nonjson"))
        fault("badutf8", u("/badutf8"))
        fault("huge_chunked", u(f"/huge_chunked?bytes={ENDLESS}"), {"max_body_bytes": CAP})
        fault("huge_length", u(f"/huge_length?bytes={ENDLESS}"), {"max_body_bytes": CAP})
        fault("chunked_over_by_one", u(f"/huge_chunked?bytes={CAP + 1}"),
              {"max_body_bytes": CAP})
        fault("tls_plain", f"https://127.0.0.1:{up.port}/ok")
        eps.append(endpoint("/redirect", [
            ("good", u("/json/btcbox_ticker.json")), ("bad", u("/redirect"))],
            timeout_ms=10000))
        # The endpoint deadline cuts off a backend that has no timeout of its own shorter.
        eps.append(endpoint("/deadline", [good, ("bad", u("/hang"))], timeout_ms=400))
        return config(*eps)

    def setUp(self):
        self.up.reset()

    def check(self, name, kind, status=None, min_s=0.0, max_s=5.0):
        """Both forms of the fault: next to a good backend (200) and alone (502)."""
        for form in ("pair", "alone"):
            rid = f"uf-{name}-{form}"
            t0 = time.monotonic()
            code, doc, hdrs = join(self.gd.url(f"/{form}/{name}"),
                                   headers={"X-Request-Id": rid})
            took = time.monotonic() - t0
            self.assertEqual(hdrs.get("x-request-id"), rid)
            bad_index = 1 if form == "pair" else 0
            if form == "pair":
                self.assertEqual(code, 200, short(doc))
                self.assertEqual(doc["results"], [GOOD, {}], short(doc))
            else:
                self.assertEqual(code, 502, short(doc))
                self.assertEqual(doc["results"], [{}], short(doc))
            self.assertEqual(len(doc["errors"]), 1, short(doc))
            e = doc["errors"][0]
            self.assertEqual((e["index"], e["name"], e["error"]), (bad_index, "bad", kind),
                             short(doc))
            if status is None:
                self.assertNotIn("status", e, short(doc))
            else:
                self.assertEqual(e["status"], status, short(doc))
            self.assertIsInstance(e["message"], str)
            self.assertTrue(e["message"], short(doc))
            self.assertGreaterEqual(took, min_s, f"{name}: answered before the timeout")
            self.assertLess(took, max_s, f"{name}: answer took {took:.2f}s")
            line = self.gd.wait_access_id(rid)
            self.assertEqual(line["status"], code, line)
            self.assertEqual(line["backends"][bad_index]["result"], kind, line)
            if status is not None:
                self.assertEqual(line["backends"][bad_index].get("status"), status, line)
        self.assert_healthy()

    def test_connection_refused(self):
        self.check("refused", "connect")

    def test_reset_before_status_line(self):
        self.check("reset_before", "transfer")

    def test_reset_mid_body(self):
        self.check("reset_mid", "transfer")

    def test_no_answer_backend_timeout(self):
        self.check("hang", "timeout", min_s=0.25, max_s=3)
        # The hung upstream connections were closed by gatherd, not kept.
        self.up.wait("aborted", 2, timeout=5)

    def test_stalled_body(self):
        self.check("stall_body", "timeout", min_s=0.25, max_s=3)
        self.up.wait("aborted", 2, timeout=5)

    def test_dribble_past_deadline(self):
        self.check("dribble", "timeout", min_s=0.45, max_s=3)
        self.up.wait("aborted", 2, timeout=5)

    def test_endpoint_deadline(self):
        t0 = time.monotonic()
        code, doc, _ = join(self.gd.url("/deadline"))
        self.assertEqual(code, 200, short(doc))
        self.assertEqual(doc["results"], [GOOD, {}])
        self.assertEqual(doc["errors"][0]["error"], "timeout", short(doc))
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        self.up.wait("aborted", 1, timeout=5)
        self.assert_healthy()

    def test_4xx(self):
        for code in (400, 404, 429):
            with self.subTest(code=code):
                self.check(f"s{code}", "http_status", status=code)

    def test_5xx(self):
        for code in (500, 502, 503):
            with self.subTest(code=code):
                self.check(f"s{code}", "http_status", status=code)
        self.check("json_503", "http_status", status=503)

    def test_empty_body(self):
        self.check("empty", "invalid_json")

    def test_truncated_json(self):
        self.check("truncated", "invalid_json")

    def test_non_json(self):
        self.check("nonjson", "invalid_json")

    def test_bad_utf8(self):
        self.check("badutf8", "invalid_json")

    def _check_huge(self, name):
        # Six requests (pair and alone, three rounds) over bodies of 20 GB each: every one must
        # end as too_large within seconds and fakeup must see each connection dropped.
        t0 = time.monotonic()
        for _ in range(3):
            self.check(name, "too_large", max_s=5)
        st = self.up.wait("aborted", 6, timeout=10)
        took = time.monotonic() - t0
        self.assertLess(took, 20, f"{name}: transfers were not stopped at the cap")
        # Only the good backend's responses completed: no huge body was sent to the end.
        self.assertEqual(st["responses"], st["paths"].get("/ok", 0), st)
        self.assertEqual(st["paths"].get(f"/{name}", 0), 6, st)

    def test_huge_chunked_body(self):
        self._check_huge("huge_chunked")

    def test_huge_declared_length(self):
        self._check_huge("huge_length")

    def test_huge_bodies_concurrently(self):
        # Twenty at once: each is cut at the cap; the loop serves /healthz meanwhile.
        results = []
        lock = threading.Lock()

        def call(path):
            r = join(self.gd.url(path), timeout=30)
            with lock:
                results.append(r)

        ts = [threading.Thread(target=call, args=(p,))
              for p in ["/alone/huge_chunked", "/alone/huge_length"] * 10]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(len(results), 20)
        for code, doc, _ in results:
            self.assertEqual(code, 502, short(doc))
            self.assertEqual(doc["errors"][0]["error"], "too_large", short(doc))
        self.up.wait("aborted", 20, timeout=10)
        self.assertEqual(self.up.stats()["responses"], 0)
        self.assert_healthy()

    def test_chunked_over_by_one(self):
        self.check("chunked_over_by_one", "too_large")

    def test_redirect_not_followed(self):
        code, doc, _ = join(self.gd.url("/redirect"))
        self.assertEqual(code, 200, short(doc))
        self.assertEqual(doc["results"][1], {})
        e = doc["errors"][0]
        self.assertEqual((e["index"], e["error"], e["status"]), (1, "http_status", 302),
                         short(doc))
        st = self.up.stats()
        self.assertEqual(st["paths"].get("/ok", 0), 0, f"the redirect was followed: {st}")
        self.assert_healthy()

    def test_tls_to_plain_port(self):
        self.check("tls_plain", "connect")

    def test_all_faults_at_once(self):
        # Every fault endpoint concurrently, twice: each answer is still the right one.
        paths = [ep["path"] for ep in self.gd_config_endpoints()
                 if ep["path"].startswith("/pair/")]
        out = {}
        lock = threading.Lock()

        def call(p, k):
            r = join(self.gd.url(p), timeout=30)
            with lock:
                out[(p, k)] = r

        ts = [threading.Thread(target=call, args=(p, k)) for p in paths for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(len(out), 2 * len(paths))
        for (p, _), (code, doc, _) in out.items():
            self.assertEqual(code, 200, (p, short(doc)))
            self.assertEqual(doc["results"][0], GOOD, (p, short(doc)))
            self.assertEqual(len(doc["errors"]), 1, (p, short(doc)))
        self.assert_healthy()

    @classmethod
    def gd_config_endpoints(cls):
        with open(cls.gd.config_path) as f:
            return json.load(f)["endpoints"]


if __name__ == "__main__":
    faultlib.main()
