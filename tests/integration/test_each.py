#!/usr/bin/env python3
"""One upstream call per item of a client's list (`each`, issue 11), against real fakeup
upstreams: items come from the query (comma lists and repeated parameters, percent-decoded,
empty pieces ignored, duplicates collapsed, `max_items` counting distinct items); every item is
substituted percent-encoded (only A-Za-z0-9-._~ kept), which fakeup's log of raw targets shows;
the answer is an object keyed by item in request order with errors in item order; a missing,
empty, oversized or badly encoded list is a 400 that calls nothing upstream; `on_error`,
`concurrency` and the deadline apply to items; 100 items of 0.5 s take about 0.5 s on one
worker with the default connection settings; the access line summarises the legs; metrics never
carry an item; `coalesce` never shares a call between different items; a client that leaves
cancels every item."""

import json
import time
import unittest
import urllib.parse

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, scrape
from gdcase import HEALTHY_PATH, ConfigCase, UpstreamCase, ok_body

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
FAR = 20000  # ms: a delay no test waits for


def enc(item):
    """An item as gatherd must substitute it: UTF-8, every byte but the unreserved ones %XX."""
    return "".join(chr(b) if chr(b) in UNRESERVED else f"%{b:02X}" for b in item.encode())


def q(*items):
    """A comma list with each item percent-encoded by the client."""
    return ",".join(urllib.parse.quote(i, safe="") for i in items)


def each(param, backend_url, name="item", **kw):
    """An each endpoint's keys: one backend named `name`; `max_items` and the rest in kw."""
    spec = {"param": param}
    if "max_items" in kw:
        spec["max_items"] = kw.pop("max_items")
    return dict(backends=[(name, backend_url)], each=spec, **kw)


def unique_keys(pairs):
    """json object_pairs_hook: a dict in body order; a duplicate key fails the test."""
    d = dict(pairs)
    if len(d) != len(pairs):
        raise AssertionError(f"duplicate keys in {pairs!r}")
    return d


class EachTest(UpstreamCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url

        def ep(path, param, url, **kw):
            kw.setdefault("timeout_ms", 30000)
            return endpoint(path, **each(param, url, **kw))

        # One worker and the default connection settings, as the issue's 100 items need.
        cls.gd = Gatherd(config(
            ep("/contracts", "sn", u("/ok?id={item}"), name="contract", max_items=5),
            ep("/codes", "code", u("/status/{item}"), name="code"),
            # The item is the whole path: "hang", "ok", "status/503" (sent as status%2F503,
            # which fakeup decodes back into a route).
            ep("/route", "r", u("/{item}"), name="route"),
            ep("/route-ff", "r", u("/{item}"), name="route", on_error="fail_fast"),
            ep("/route-ff-conc", "r", u("/{item}"), name="route", on_error="fail_fast",
               concurrency=1),
            ep("/route-deadline", "r", u("/{item}"), name="route", timeout_ms=800),
            ep("/route-ff-deadline", "r", u("/{item}"), name="route", timeout_ms=800,
               on_error="fail_fast"),
            ep("/route-slot-deadline", "r", u("/{item}"), name="route", timeout_ms=800,
               concurrency=1),
            ep("/hundred", "sn", u("/ok?id={item}&delay_ms=500"), name="contract"),
            ep("/waves", "sn", u("/ok?id={item}&delay_ms=300"), name="contract", concurrency=5),
            ep("/delays", "ms", u("/ok?delay_ms={item}"), name="delayed"),
            ep("/co-items", "sn", u("/ok?id={item}&delay_ms=1000"), name="contract",
               coalesce=True),
            ep("/leave", "sn", u("/hang?id={item}"), name="hung", timeout_ms=60000),
            ep("/leave-conc", "sn", u("/hang?id={item}"), name="hung", timeout_ms=60000,
               concurrency=2),
            endpoint(HEALTHY_PATH, [("f", u("/ok?id=f"))], timeout_ms=10000),
        ), workers=1)

    # helpers ---------------------------------------------------------------------------------

    def get(self, target, rid, timeout=30):
        """(status, doc, [(item, result)] in body order, seconds) of one request."""
        status, doc, elapsed = self.fetch(target, rid, timeout, object_pairs_hook=unique_keys)
        pairs = None
        if status in (200, 502):
            self.assertIsInstance(doc["results"], dict, "results must be an object")
            pairs = list(doc["results"].items())
        return status, doc, pairs, elapsed

    def assert_items(self, pairs, want):
        """want: [(item, result)] in request order."""
        self.assertEqual(pairs, want)

    def assert_errors(self, doc, want, name):
        """want: [(item, error)] in item order; entries carry item and the backend's name,
        never an index, a message, and `status` exactly for http_status."""
        got = [(e.get("item"), e.get("error")) for e in doc["errors"]]
        self.assertEqual(got, want, doc)
        for e in doc["errors"]:
            self.assertEqual(e.get("name"), name, e)
            self.assertNotIn("index", e, e)
            self.assertIsInstance(e.get("message"), str, e)
            self.assertTrue(e["message"], e)
            self.assertEqual("status" in e, e["error"] == "http_status", e)

    def assert_bad_request(self, target, param, *more):
        status, headers, body = http_get(self.gd.url(target))
        self.assertEqual(status, 400, (target, body[:300]))
        self.assertEqual(headers.get("content-type"), "application/json", target)
        doc = json.loads(body)
        self.assertEqual(doc.get("error"), "bad_request", (target, doc))
        self.assertIsInstance(doc.get("message"), str)
        for needle in (param,) + more:
            self.assertIn(needle, doc["message"], (target, doc))

    def assert_legs(self, line, total, outcomes, slowest=None):
        self.assertNotIn("backends", line, "an each request summarises its legs instead")
        legs = line["legs"]
        self.assertEqual(legs["total"], total, legs)
        self.assertEqual({k: v for k, v in legs["outcomes"].items() if v}, outcomes, legs)
        self.assertIsInstance(legs["slowest_ms"], (int, float), legs)
        self.assertIsInstance(legs["slowest_item"], str, legs)
        if slowest is not None:
            self.assertEqual(legs["slowest_item"], slowest, legs)
        return legs

    # the list -------------------------------------------------------------------------------

    def test_results_keyed_by_item_in_request_order(self):
        status, doc, pairs, _ = self.get("/contracts?sn=A2,A1", "order")
        self.assertEqual(status, 200, doc)
        self.assert_items(pairs, [("A2", ok_body("A2")), ("A1", ok_body("A1"))])
        self.assertEqual(doc["errors"], [])
        self.assertEqual(sorted(e["target"] for e in self.requests_of("order")),
                         ["/ok?id=A1", "/ok?id=A2"])
        self.assert_legs(self.access("order"), 2, {"ok": 2})

    def test_comma_lists_and_repeated_parameters(self):
        target = "/contracts?x=1&sn=A1,A2&sn=A3&sn=A1,,A2,&sn=&sn=,A4"
        status, doc, pairs, _ = self.get(target, "lists")
        self.assertEqual(status, 200, doc)
        self.assertEqual([k for k, _ in pairs], ["A1", "A2", "A3", "A4"])
        # Duplicates collapse into one call each.
        self.assertEqual(sorted(e["target"] for e in self.requests_of("lists")),
                         ["/ok?id=A1", "/ok?id=A2", "/ok?id=A3", "/ok?id=A4"])

    def test_values_are_decoded_before_the_split(self):
        status, doc, pairs, _ = self.get("/contracts?sn=A1%2CA2&sn=%41%33", "decoded")
        self.assertEqual(status, 200, doc)
        self.assertEqual([k for k, _ in pairs], ["A1", "A2", "A3"])

    def test_a_plus_is_a_plus(self):
        # Percent-decoding, not form decoding: "+" stays "+" (and is sent as %2B).
        status, doc, pairs, _ = self.get("/contracts?sn=a+b,c%2Bd", "plus")
        self.assertEqual(status, 200, doc)
        self.assert_items(pairs, [("a+b", ok_body("a+b")), ("c+d", ok_body("c+d"))])
        self.assertEqual(sorted(e["target"] for e in self.requests_of("plus")),
                         ["/ok?id=a%2Bb", "/ok?id=c%2Bd"])

    def test_max_items_counts_distinct_items(self):
        status, doc, pairs, _ = self.get("/contracts?sn=1,2,3,4,5,1,2&sn=3,4,5", "distinct")
        self.assertEqual(status, 200, doc)
        self.assertEqual([k for k, _ in pairs], ["1", "2", "3", "4", "5"])
        self.assert_bad_request("/contracts?sn=1,2,3,4,5,6", "sn", "5")
        self.assert_bad_request("/contracts?sn=1,2,3&sn=4,5,6", "sn", "5")
        # The default max_items is 100.
        self.assert_bad_request("/hundred?sn=" + ",".join(f"c{i}" for i in range(101)), "sn",
                                "100")
        st = self.up.stats()
        self.assertEqual(st["requests"], 5, "a rejected list must call nothing upstream")

    def test_bad_lists_are_400(self):
        for target in ("/contracts", "/contracts?", "/contracts?sn", "/contracts?sn=",
                       "/contracts?sn=,,,", "/contracts?sn=&sn=,", "/contracts?other=A1",
                       "/contracts?sn=%zz", "/contracts?sn=%4", "/contracts?sn=A1%",
                       "/contracts?sn=A1,%zz", "/contracts?sn=A1&sn=%4"):
            with self.subTest(target=target):
                self.assert_bad_request(target, "sn")
        self.assertEqual(self.up.stats()["requests"], 0)
        self.assert_healthy()

    # substitution ---------------------------------------------------------------------------

    def test_items_are_percent_encoded_into_the_url(self):
        items = ["a b", "x/y", "é€", "100%", "a&b=c", "q?#", "~._-", "日本"]
        target = "/contracts?sn=" + q(*items[:3]) + "&sn=" + q(*items[3:5])
        status, doc, pairs, _ = self.get(target, "enc-1")
        self.assertEqual(status, 200, doc)
        # fakeup decodes what it received: the round trip is exact.
        self.assert_items(pairs, [(i, ok_body(i)) for i in items[:5]])
        self.assertEqual(sorted(e["target"] for e in self.requests_of("enc-1")),
                         sorted("/ok?id=" + enc(i) for i in items[:5]))
        # The literal forms: a raw slash in the query, and the same items again.
        target = "/contracts?sn=x/y,z/w&sn=" + q(*items[5:])
        status, doc, pairs, _ = self.get(target, "enc-2")
        self.assertEqual(status, 200, doc)
        self.assert_items(pairs, [(i, ok_body(i)) for i in ["x/y", "z/w"] + items[5:]])
        self.assertEqual(sorted(e["target"] for e in self.requests_of("enc-2")),
                         sorted("/ok?id=" + enc(i) for i in ["x/y", "z/w"] + items[5:]))
        self.assertIn("/ok?id=%E6%97%A5%E6%9C%AC", [e["target"] for e in self.up.log()])

    def test_an_item_in_the_path_cannot_leave_its_segment(self):
        status, doc, pairs, _ = self.get("/route?r=" + q("json/btcbox_ticker.json", "ok"),
                                         "in-path")
        self.assertEqual(status, 200, doc)
        self.assertEqual(sorted(e["target"] for e in self.requests_of("in-path")),
                         ["/json%2Fbtcbox_ticker.json", "/ok"])
        self.assertEqual([k for k, _ in pairs], ["json/btcbox_ticker.json", "ok"])

    def test_an_item_that_is_not_utf8(self):
        # %FF decodes to a byte that is not UTF-8: gatherd may refuse it (400) or answer, but
        # whatever it answers and logs must be valid JSON, and it keeps serving.
        status, headers, body = http_get(self.gd.url("/contracts?sn=%FF,ok"),
                                         headers={"X-Request-Id": "not-utf8"})
        self.assertIn(status, (200, 400, 502), body[:300])
        doc = json.loads(body.decode("utf-8"))
        if status == 400:
            self.assertEqual(doc["error"], "bad_request")
        self.access("not-utf8")
        for raw in self.gd.stdout_bytes():
            json.loads(raw.decode("utf-8"))
        self.assert_healthy()

    # failures and policies ------------------------------------------------------------------

    def test_failed_items_are_errors_in_item_order(self):
        status, doc, pairs, _ = self.get("/codes?code=503,200,404", "codes")
        self.assertEqual(status, 200, doc)
        self.assert_items(pairs, [("503", {}), ("200", {"error": 200}), ("404", {})])
        self.assert_errors(doc, [("503", "http_status"), ("404", "http_status")], "code")
        self.assertEqual([e["status"] for e in doc["errors"]], [503, 404])
        self.assert_legs(self.access("codes"), 3, {"ok": 1, "http_status": 2})

    def test_all_items_failing_is_502(self):
        status, doc, pairs, _ = self.get("/codes?code=404,500", "allfail")
        self.assertEqual(status, 502, doc)
        self.assert_items(pairs, [("404", {}), ("500", {})])
        self.assert_errors(doc, [("404", "http_status"), ("500", "http_status")], "code")

    def test_fail_fast_cancels_the_other_items(self):
        target = "/route-ff?r=" + q("hang", "status/503", "stall_body")
        status, doc, pairs, elapsed = self.get(target, "items-ff")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        self.assert_items(pairs, [("hang", {}), ("status/503", {}), ("stall_body", {})])
        self.assert_errors(doc, [("hang", "cancelled"), ("status/503", "http_status"),
                                 ("stall_body", "cancelled")], "route")
        self.up.wait("aborted", 2, timeout=5)
        self.assertEqual({e["target"]: e["outcome"] for e in self.requests_of("items-ff")},
                         {"/hang": "aborted", "/status%2F503": "responded",
                          "/stall_body": "aborted"})
        self.assert_legs(self.access("items-ff"), 3, {"http_status": 1, "cancelled": 2})

    def test_fail_fast_cancels_items_waiting_for_a_slot(self):
        target = "/route-ff-conc?r=" + q("ok", "status/503", "hang", "json/btcbox_ticker.json")
        status, doc, pairs, elapsed = self.get(target, "items-ffc")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        self.assert_items(pairs, [("ok", ok_body()), ("status/503", {}), ("hang", {}),
                                  ("json/btcbox_ticker.json", {})])
        self.assert_errors(doc, [("status/503", "http_status"), ("hang", "cancelled"),
                                 ("json/btcbox_ticker.json", "cancelled")], "route")
        self.assert_healthy()
        self.assertEqual([e["target"] for e in self.requests_of("items-ffc")],
                         ["/ok", "/status%2F503"])

    def test_deadline(self):
        status, doc, pairs, elapsed = self.get("/route-deadline?r=ok,hang", "items-dl")
        self.assertEqual(status, 200, doc)
        self.assertGreaterEqual(elapsed, 0.75)
        self.assert_items(pairs, [("ok", ok_body()), ("hang", {})])
        self.assert_errors(doc, [("hang", "timeout")], "route")
        status, doc, pairs, elapsed = self.get("/route-ff-deadline?r=ok,hang", "items-ffdl")
        self.assertEqual(status, 502, doc)
        self.assert_items(pairs, [("ok", ok_body()), ("hang", {})])
        self.assert_errors(doc, [("hang", "timeout")], "route")

    def test_deadline_while_items_wait_for_a_slot(self):
        status, doc, pairs, elapsed = self.get("/route-slot-deadline?r=hang,ok", "items-sdl")
        self.assertEqual(status, 502, doc)
        self.assertGreaterEqual(elapsed, 0.75)
        self.assertLess(elapsed, 5.0)
        self.assert_items(pairs, [("hang", {}), ("ok", {})])
        self.assert_errors(doc, [("hang", "timeout"), ("ok", "timeout")], "route")
        self.up.wait("aborted", 1, timeout=5)
        self.assertEqual([e["target"] for e in self.requests_of("items-sdl")], ["/hang"])
        self.assert_legs(self.access("items-sdl"), 2, {"timeout": 2})

    def test_concurrency_starts_items_in_order(self):
        items = [f"i{n}" for n in range(10)]
        status, doc, pairs, elapsed = self.get("/waves?sn=" + ",".join(items), "items-waves")
        self.assertEqual(status, 200, doc)
        self.assertEqual([k for k, _ in pairs], items)
        self.assertGreaterEqual(elapsed, 0.6 - 0.02)
        self.assertLess(elapsed, 3.0)
        log = sorted(self.requests_of("items-waves"), key=lambda e: e["t"])
        ids = [e["target"].split("id=")[1].split("&")[0] for e in log]
        self.assertEqual(max(e["active"] for e in log), 5)
        self.assertEqual(sorted(ids[:5]), items[:5])
        self.assertEqual(sorted(ids[5:]), items[5:])
        self.assertGreaterEqual(min(e["t"] for e in log[5:]) - min(e["t"] for e in log[:5]),
                                0.3 - 0.01)

    def test_a_hundred_items_in_half_a_second(self):
        items = [f"CN-{n:04}" for n in range(100)]
        status, doc, pairs, elapsed = self.get("/hundred?sn=" + ",".join(items), "hundred")
        self.assertEqual(status, 200, doc)
        self.assert_items(pairs, [(i, ok_body(i)) for i in items])
        self.assertEqual(doc["errors"], [])
        # About 0.5 s: all hundred at once (a loop would take 50 s); a wide margin for a
        # machine shared with other builds.
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 1.5)
        log = self.requests_of("hundred")
        self.assertEqual(len(log), 100)
        self.assertEqual(max(e["active"] for e in log), 100, "not all in flight at once")
        legs = self.assert_legs(self.access("hundred"), 100, {"ok": 100})
        self.assertIn(legs["slowest_item"], items)
        self.assertGreaterEqual(legs["slowest_ms"], 500)

    # observability ----------------------------------------------------------------------------

    def test_access_line_names_the_slowest_leg(self):
        status, doc, pairs, _ = self.get("/delays?ms=0,300,30", "slowest")
        self.assertEqual(status, 200, doc)
        legs = self.assert_legs(self.access("slowest"), 3, {"ok": 3}, slowest="300")
        self.assertGreaterEqual(legs["slowest_ms"], 295)
        self.assertLess(legs["slowest_ms"], 5000)

    def test_metrics_never_carry_an_item(self):
        before = scrape(self.gd)
        items = ["zqxitem1", "zqx item2", "zqx/item3"]
        status, doc, pairs, _ = self.get("/contracts?sn=" + q(*items), "metrics")
        self.assertEqual(status, 200, doc)
        status, doc, pairs, _ = self.get("/codes?code=404,zqx404", "metrics-err")
        self.assertEqual(status, 502, doc)

        def calls(e):
            return e.get("gatherd_upstream_duration_seconds_count", endpoint="/contracts",
                         backend="contract") or 0

        after = self.scrape_when(lambda e: calls(e) >= calls(before) + 3,
                                 "the three calls to be observed")
        self.assertEqual(calls(after) - calls(before), 3)
        status, _, text = http_get(self.gd.url("/metrics"))
        self.assertEqual(status, 200)
        self.assertNotIn(b"zqx", text)
        backends = {lab.get("backend") for key in after.samples for lab in [dict(key[1])]}
        self.assertLessEqual({"contract", "code"}, backends)
        self.assertFalse({b for b in backends if b and "zqx" in b}, backends)

    # coalescing -----------------------------------------------------------------------------

    def test_coalesce_never_shares_a_call_between_items(self):
        lead = self.send("/co-items?sn=A,B", "co-lead")
        self.up.wait("requests", 2, timeout=10)
        other = self.send("/co-items?sn=B,C", "co-other")
        self.up.wait("requests", 3, timeout=10)
        (s1, d1), (s2, d2) = self.answer(lead), self.answer(other)
        self.assertEqual((s1, s2), (200, 200), (d1, d2))
        self.assertEqual(d1["results"], {"A": ok_body("A"), "B": ok_body("B")})
        self.assertEqual(d2["results"], {"B": ok_body("B"), "C": ok_body("C")})
        # A, B and C were each asked once: B was shared, A and C never.
        self.assertEqual(sorted(e["target"] for e in self.up.log()),
                         ["/ok?id=A&delay_ms=1000", "/ok?id=B&delay_ms=1000",
                          "/ok?id=C&delay_ms=1000"])

    # clients that leave -----------------------------------------------------------------------

    def leave_cancelled(self, target, rid, started, total):
        """leave(), then: the access line's legs are `cancelled` when they ran and
        `not_started` when they waited for a slot; fakeup's log."""
        line, log = self.leave(target, rid, started)
        want = {"cancelled": started}
        if total > started:
            want["not_started"] = total - started
        self.assert_legs(line, total, want)
        return log

    def test_client_leaves(self):
        self.leave_cancelled("/leave?sn=a,b,c", "leave-each", 3, 3)

    def test_client_leaves_while_items_wait_for_slots(self):
        log = self.leave_cancelled("/leave-conc?sn=a,b,c,d", "leave-each-conc", 2, 4)
        self.assertEqual(sorted(e["target"] for e in log), ["/hang?id=a", "/hang?id=b"])


URL = "http://127.0.0.1:9/c?id={item}"


def each_config(each_spec=None, backends=None, **ep):
    """A valid each configuration; each_spec, backends and other endpoint keys replace its
    own (each_spec=False: no "each" key)."""
    e = endpoint("/c", backends if backends is not None else [("c", URL)], **ep)
    if each_spec is not False:
        e["each"] = {"param": "sn"} if each_spec is None else each_spec
    return config(e)


class EachConfigTest(ConfigCase):
    def test_accepted(self):
        for cfg in (each_config(), each_config({"param": "sn", "max_items": 1}),
                    each_config({"param": "sn", "max_items": 1000}),
                    each_config(backends=[("c", "https://127.0.0.1:9/c/{item}/x")]),
                    each_config(backends=[("c", "http://127.0.0.1:9/c/{item}?again={item}")]),
                    each_config(concurrency=3, on_error="fail_fast", coalesce=True)):
            with self.subTest(cfg=cfg):
                self.assert_accepted(cfg)

    def test_rejected(self):
        ep_each = ("endpoints[0].each", "endpoints[0].backends")
        two = [("c", URL), ("d", "http://127.0.0.1:9/d?id={item}")]
        cases = [
            (each_config(backends=[]), ep_each),
            (each_config(backends=two), ep_each),
            (each_config({}), ("endpoints[0].each",)),
            (each_config({"max_items": 5}), ("endpoints[0].each",)),
            (each_config({"param": ""}), ("endpoints[0].each",)),
            (each_config({"param": 5}), ("endpoints[0].each",)),
            (each_config({"param": "sn", "bogus": 1}), ("endpoints[0].each",)),
            (each_config("sn"), ("endpoints[0].each",)),
            (each_config(backends=[("c", "http://127.0.0.1:9/c")]),
             ("endpoints[0].each", "endpoints[0].backends[0].url")),
        ]
        cases += [(each_config({"param": "sn", "max_items": v}), ("endpoints[0].each",))
                  for v in (0, 1001, -1, "5", 1.5, None)]
        # {item} outside an each endpoint, or anywhere but the path and query of a URL.
        cases += [(each_config(False), ("endpoints[0].backends[0].url",))]
        cases += [(each_config(backends=[("c", url)]), ("endpoints[0].backends[0].url",))
                  for url in ("http://{item}/c", "http://{item}.example/c",
                              "http://127.0.0.1:{item}/c", "http://{item}@127.0.0.1/c",
                              "{item}://127.0.0.1/c", "http://127.0.0.1:9/c#{item}",
                              "http://127.0.0.1:9/c?id={other}",
                              "http://127.0.0.1:9/c?id={item}&x={ITEM}")]
        self.assert_all_rejected(cases)


class ContractsExampleTest(ConfigCase):
    """config/contracts.json, the README's per-item example, against fakeup as the demo runs
    it (its port in ${DEMO_FAKE_PORT})."""

    def test_example(self):
        with self.example("contracts.json") as g:
            items = [f"C{n:03}" for n in range(100)]
            t0 = time.monotonic()
            status, _, doc = gd.get_json(g.url("/contracts?sn=" + ",".join(items)))
            elapsed = time.monotonic() - t0
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc, {"results": {i: ok_body(i) for i in items},
                                   "errors": []})
            self.assertLess(elapsed, 1.5)
            status, _, doc = gd.get_json(g.url("/contracts-gentle?sn=A,B,C"))
            self.assertEqual(status, 200, doc)
            self.assertEqual(list(doc["results"]), ["A", "B", "C"])
            status, _, doc = gd.get_json(g.url("/contracts"))
            self.assertEqual((status, doc["error"]), (400, "bad_request"))


if __name__ == "__main__":
    unittest.main()
