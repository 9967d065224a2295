#!/usr/bin/env python3
"""Dependent calls (issue 12) against real fakeup upstreams: a URL's `{backend:/pointer}` is
filled from that backend's answer, percent-encoded, which fakeup's log of raw targets shows;
independent backends start at once and a dependent the moment its last dependency succeeded,
which fakeup's own arrival and end times show (a chain of three beside a fourth backend that
ends before the first link; a diamond; no "stages"); every cause of the `dependency` error,
transitively, with no upstream call for a dependent that cannot run; `fail_fast` cancels
dependents; the deadline makes a waiting dependent `timeout`; `concurrency` counts dependents;
the access line shows `start_ms`; configuration errors exit 2 naming the backend and the
reference; config/orders.json works as documented."""

import json
import time
import unittest
import urllib.parse

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get
from gdcase import HEALTHY_PATH, ConfigCase, UpstreamCase, ok_body

FAR = 20000  # ms: a delay no test waits for

# One answer with a field of every JSON type, for the pointers of the `dependency` tests.
KINDS = {"s": "x y", "n": 42, "o": {"k": 1}, "a": [1], "t": True, "f": False, "z": None}


def body_url(u, doc, delay_ms=0):
    """fakeup's /body answering `doc` (after delay_ms)."""
    q = "b=" + urllib.parse.quote(json.dumps(doc, separators=(",", ":")), safe="")
    if delay_ms:
        q += f"&delay_ms={delay_ms}"
    return u("/body?" + q)


class ChainTest(UpstreamCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        # The first link's id needs encoding both ways: fakeup decodes it from the query and
        # answers it as a JSON string with \u escapes; gatherd must send it on re-encoded.
        first = urllib.parse.quote("A 1/é", safe="")
        cls.gd = Gatherd(config(
            # A chain of three, and "side", independent, which ends before the first link.
            endpoint("/chain", [("a", u(f"/ok?id={first}&delay_ms=400")),
                                ("b", u("/ok?id=B{a:/id}&delay_ms=200")),
                                ("c", u("/ok?id=C{b:/id}&delay_ms=200")),
                                ("side", u("/ok?id=side&delay_ms=100"))],
                     timeout_ms=10000),
            # A diamond: l and r read top, bottom reads both; slow never holds anyone up.
            endpoint("/diamond", [("top", u("/ok?id=T&delay_ms=100")),
                                  ("l", u("/ok?id=L{top:/id}&delay_ms=100")),
                                  ("r", u("/ok?id=R{top:/id}&delay_ms=500")),
                                  ("bottom", u("/ok?id={l:/id}-{r:/id}")),
                                  ("slow", u("/ok?id=slow&delay_ms=3000"))],
                     timeout_ms=10000),
            # Numbers as their JSON text, several references to one backend, path and query.
            endpoint("/values", [("v", body_url(u, KINDS)),
                                 ("use", u("/ok/{v:/n}?id={v:/s}&n={v:/n}"))],
                     timeout_ms=10000),
            # Every cause of `dependency`: a pointer finding nothing, an object, an array, a
            # boolean (twice) and null; a dependency that failed; and transitively.
            endpoint("/causes", [("v", body_url(u, KINDS)),
                                 ("missing", u("/ok?id={v:/nope}")),
                                 ("object", u("/ok?id={v:/o}")),
                                 ("array", u("/ok?id={v:/a}")),
                                 ("true", u("/ok?id={v:/t}")),
                                 ("false", u("/ok?id={v:/f}")),
                                 ("null", u("/ok?id={v:/z}")),
                                 ("bad", u("/status/503")),
                                 ("after-bad", u("/ok?id={bad:/id}")),
                                 ("after-after", u("/ok?id={after-bad:/id}")),
                                 ("after-missing", u("/ok?id={missing:/id}&x={v:/s}"))],
                     timeout_ms=10000),
            # fail_fast: the first failure cancels dependents, waiting or running.
            endpoint("/ff-root", [("a", u("/status/500?delay_ms=100")),
                                  ("b", u("/ok?id={a:/id}")),
                                  ("other", u(f"/ok?id=other&delay_ms={FAR}"))],
                     timeout_ms=30000, on_error="fail_fast"),
            endpoint("/ff-mid", [("a", u("/ok?id=a")),
                                 ("b", u("/hang?id={a:/id}")),
                                 ("c", u("/ok?id={b:/id}")),
                                 ("bad", u("/status/503?delay_ms=500"))],
                     timeout_ms=30000, on_error="fail_fast"),
            # The deadline: a dependent still waiting gets `timeout`.
            endpoint("/deadline", [("a", u("/ok?id=a")),
                                   ("b", u("/hang?id={a:/id}")),
                                   ("c", u("/ok?id={b:/id}"))],
                     timeout_ms=800),
            endpoint("/deadline-root", [("a", u("/hang")), ("b", u("/ok?id={a:/id}"))],
                     timeout_ms=800),
            # concurrency 1: dependents take their slot like any call.
            endpoint("/serial", [("a", u("/ok?id=a&delay_ms=100")),
                                 ("b", u("/ok?id=b{a:/id}&delay_ms=100")),
                                 ("c", u("/ok?id=c&delay_ms=100"))],
                     timeout_ms=10000, concurrency=1),
            # A chain beside a path parameter: a dependent's URL takes both.
            endpoint("/user/{uid}", [("u", u("/ok?id=u-{uid}")),
                                     ("o", u("/ok?id={u:/id}.{uid}"))],
                     timeout_ms=10000, params={"uid": "^[a-z0-9 ]+$"}),
            endpoint(HEALTHY_PATH, [("f", u("/ok?id=f"))], timeout_ms=10000),
        ))

    # helpers ---------------------------------------------------------------------------------

    def by_name(self, rid, names):
        """fakeup's log entries of request rid, keyed by backend: the entry whose target is
        that backend's (matched by `names`: {name: target prefix})."""
        log = self.requests_of(rid)
        out = {}
        for name, prefix in names.items():
            hits = [e for e in log if e["target"].startswith(prefix)]
            self.assertEqual(len(hits), 1, (name, prefix, log))
            out[name] = hits[0]
        self.assertEqual(len(log), len(names), log)
        return out

    def errors(self, doc):
        return [(e["index"], e["name"], e["error"]) for e in doc["errors"]]

    # the graph ---------------------------------------------------------------------------------

    def test_a_chain_of_three_beside_an_independent_backend(self):
        status, doc, elapsed = self.fetch("/chain", "chain")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc, {"results": [ok_body("A 1/é"), ok_body("BA 1/é"),
                                           ok_body("CBA 1/é"), ok_body("side")],
                               "errors": []})
        # 400 + 200 + 200 ms one after the other.
        self.assertGreaterEqual(elapsed, 0.78)
        self.assertLess(elapsed, 5.0)
        log = self.by_name("chain", {"a": "/ok?id=A%201", "b": "/ok?id=BA", "c": "/ok?id=CBA",
                                     "side": "/ok?id=side"})
        # Each value went on percent-encoded, only A-Za-z0-9-._~ kept.
        self.assertEqual(log["b"]["target"], "/ok?id=BA%201%2F%C3%A9&delay_ms=200")
        self.assertEqual(log["c"]["target"], "/ok?id=CBA%201%2F%C3%A9&delay_ms=200")
        a, b, c, side = (log[k] for k in ("a", "b", "c", "side"))
        # The independent backend started with the first link and ended before it.
        self.assertLess(abs(side["t"] - a["t"]), 0.5, log)
        self.assertLess(side["end"], a["end"], log)
        # Each link starts after the one it reads has ended, and promptly then.
        self.assertGreaterEqual(b["t"], a["end"], log)
        self.assertGreaterEqual(c["t"], b["end"], log)
        self.assertLess(b["t"] - a["end"], 0.5, log)
        self.assertLess(c["t"] - b["end"], 0.5, log)
        # The access line shows when each dependent started.
        line = self.access("chain")
        legs = {x["name"]: x for x in line["backends"]}
        self.assertEqual({k: v["result"] for k, v in legs.items()},
                         {"a": "ok", "b": "ok", "c": "ok", "side": "ok"})
        self.assertNotIn("start_ms", legs["a"], line)
        self.assertNotIn("start_ms", legs["side"], line)
        self.assertGreaterEqual(legs["b"]["start_ms"], 390, line)
        self.assertGreaterEqual(legs["c"]["start_ms"], legs["b"]["start_ms"] + 190, line)
        self.assertLess(legs["c"]["start_ms"], 4000, line)

    def test_a_diamond_and_no_stages(self):
        status, doc, _ = self.fetch("/diamond", "diamond")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [ok_body("T"), ok_body("LT"), ok_body("RT"),
                                          ok_body("LT-RT"), ok_body("slow")])
        log = self.by_name("diamond", {"top": "/ok?id=T", "l": "/ok?id=LT&", "r": "/ok?id=RT&",
                                       "bottom": "/ok?id=LT-RT", "slow": "/ok?id=slow"})
        top, l, r, bottom, slow = (log[k] for k in ("top", "l", "r", "bottom", "slow"))
        # Both sides start once top has ended, together; the bottom once both have, i.e.
        # after the slower side, and long before the independent slow backend ends.
        for side in (l, r):
            self.assertGreaterEqual(side["t"], top["end"], log)
            self.assertLess(side["t"] - top["end"], 0.5, log)
        self.assertLess(l["end"], r["end"], log)
        self.assertGreaterEqual(bottom["t"], r["end"], log)
        self.assertLess(bottom["t"] - r["end"], 0.5, log)
        self.assertLess(bottom["end"], slow["end"] - 1.0, log)
        self.assertLess(abs(slow["t"] - top["t"]), 0.5, log)

    def test_numbers_strings_and_several_references(self):
        status, doc, _ = self.fetch("/values", "values")
        # fakeup has no /ok/42 route: the call is made and answers 404, which is the point.
        self.assertEqual(status, 200, doc)
        self.assertEqual(self.errors(doc), [(1, "use", "http_status")])
        log = self.by_name("values", {"v": "/body", "use": "/ok/"})
        self.assertEqual(log["use"]["target"], "/ok/42?id=x%20y&n=42")

    def test_every_dependency_cause(self):
        status, doc, _ = self.fetch("/causes", "causes")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"][0], KINDS)
        want = {"missing": "nothing", "object": "an object", "array": "an array",
                "true": "a boolean", "false": "a boolean", "null": "null"}
        errs = {e["name"]: e for e in doc["errors"]}
        self.assertEqual(set(errs), set(want) | {"bad", "after-bad", "after-after",
                                                 "after-missing"}, doc)
        ptr = {"missing": "/nope", "object": "/o", "array": "/a", "true": "/t", "false": "/f",
               "null": "/z"}
        for name, found in want.items():
            with self.subTest(name=name):
                e = errs[name]
                self.assertEqual(e["error"], "dependency", e)
                self.assertNotIn("status", e)
                self.assertIn(ptr[name], e["message"], e)
                self.assertIn(f"found {found}", e["message"], e)
        self.assertEqual((errs["bad"]["error"], errs["bad"]["status"]), ("http_status", 503))
        for name, dep in (("after-bad", "bad"), ("after-after", "after-bad"),
                          ("after-missing", "missing")):
            with self.subTest(name=name):
                self.assertEqual(errs[name]["error"], "dependency", errs[name])
                self.assertIn(f'"{dep}"', errs[name]["message"], errs[name])
        # The errors are in index order, and no dependent that could not run reached the
        # upstream: only v and bad did.
        self.assertEqual([e["index"] for e in doc["errors"]], list(range(1, 11)))
        self.assertEqual(sorted(e["path"] for e in self.requests_of("causes")),
                         ["/body", "/status/503"])
        line = self.access("causes")
        results = {x["name"]: x["result"] for x in line["backends"]}
        self.assertEqual(results["v"], "ok")
        self.assertEqual(results["after-after"], "dependency", line)
        self.assertEqual(results["bad"], "http_status", line)

    def test_a_dependent_with_a_path_parameter(self):
        status, doc, _ = self.fetch("/user/a%207", "param")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [ok_body("u-a 7"), ok_body("u-a 7.a 7")])
        self.assertEqual(sorted(e["target"] for e in self.requests_of("param")),
                         ["/ok?id=u-a%207", "/ok?id=u-a%207.a%207"])

    # policies ---------------------------------------------------------------------------------

    def test_fail_fast_cancels_a_waiting_dependent(self):
        status, doc, elapsed = self.fetch("/ff-root", "ff-root")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(self.errors(doc), [(0, "a", "http_status"), (1, "b", "cancelled"),
                                            (2, "other", "cancelled")])
        self.up.wait("aborted", 1, timeout=5)
        self.assertEqual(sorted(e["path"] for e in self.requests_of("ff-root")),
                         ["/ok", "/status/500"])

    def test_fail_fast_cancels_running_and_waiting_dependents(self):
        status, doc, elapsed = self.fetch("/ff-mid", "ff-mid")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(doc["results"][0], ok_body("a"))
        self.assertEqual(self.errors(doc), [(1, "b", "cancelled"), (2, "c", "cancelled"),
                                            (3, "bad", "http_status")])
        self.up.wait("aborted", 1, timeout=5)
        outcomes = {e["path"]: e["outcome"] for e in self.requests_of("ff-mid")}
        self.assertEqual(outcomes, {"/ok": "responded", "/hang": "aborted",
                                    "/status/503": "responded"})

    def test_the_deadline_makes_waiting_dependents_timeout(self):
        status, doc, elapsed = self.fetch("/deadline", "deadline")
        self.assertEqual(status, 200, doc)
        self.assertGreaterEqual(elapsed, 0.75)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(self.errors(doc), [(1, "b", "timeout"), (2, "c", "timeout")])
        self.up.wait("aborted", 1, timeout=5)
        status, doc, _ = self.fetch("/deadline-root", "deadline-root")
        self.assertEqual(status, 502, doc)
        self.assertEqual(self.errors(doc), [(0, "a", "timeout"), (1, "b", "timeout")])
        self.up.wait("aborted", 2, timeout=5)
        self.assertEqual([e["path"] for e in self.requests_of("deadline-root")], ["/hang"])

    def test_concurrency_counts_dependents(self):
        status, doc, elapsed = self.fetch("/serial", "serial")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [ok_body("a"), ok_body("ba"), ok_body("c")])
        log = sorted(self.requests_of("serial"), key=lambda e: e["t"])
        self.assertEqual(max(e["active"] for e in log), 1, log)
        # One slot: a, then the first call that may start in configuration order, b.
        self.assertEqual([e["target"].split("&")[0] for e in log],
                         ["/ok?id=a", "/ok?id=ba", "/ok?id=c"])
        for prev, cur in zip(log, log[1:]):
            self.assertGreaterEqual(cur["t"], prev["end"], log)


class ChainCoalesceTest(UpstreamCase):
    """`coalesce` on a chain: requests in flight together share the dependent's call as they
    share its dependency's. A dependent starts later than its request, so its transfer's
    timeout (clamped to what is left of the deadline) must not make its calls differ."""

    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/co", [("a", u("/ok?id=A&delay_ms=1000")),
                             ("b", u("/ok?id=B{a:/id}&delay_ms=300"))],
                     timeout_ms=10000, coalesce=True),
        ), workers=1)

    def test_dependents_are_shared(self):
        socks = [self.send("/co", f"co-{i}") for i in range(3)]
        for s in socks:
            status, doc = self.answer(s)
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["results"], [ok_body("A"), ok_body("BA")])
        self.assertEqual(sorted(e["target"] for e in self.up.log()),
                         ["/ok?id=A&delay_ms=1000", "/ok?id=BA&delay_ms=300"])
        joined = [[b.get("joined", False) for b in self.access(f"co-{i}")["backends"]]
                  for i in range(3)]
        self.assertEqual(sorted(joined), [[False, False], [True, True], [True, True]], joined)


def chain_config(*backends, **ep):
    return config(endpoint("/g", list(backends), **ep))


class ChainConfigTest(ConfigCase):
    def test_accepted(self):
        for cfg in (chain_config(("a", "http://127.0.0.1:9/a"),
                                 ("b", "http://127.0.0.1:9/b/{a:/x}?y={a:/y/0}&z={a:}")),
                    chain_config(("a", "http://127.0.0.1:9/a"),
                                 ("b", "http://127.0.0.1:9/b?{a:/~0~1}"),
                                 ("c", "http://127.0.0.1:9/c?{a:/x}&{b:/x}"))):
            with self.subTest(cfg=cfg):
                self.assert_accepted(cfg)

    def test_rejected(self):
        a = ("a", "http://127.0.0.1:9/a")
        k1 = "endpoints[0].backends[1].url"
        cases = [
            (chain_config(a, ("b", "http://127.0.0.1:9/b?{nope:/x}")), (k1,), ("{nope:/x}",
                                                                              '"nope"')),
            (chain_config(a, ("b", "http://127.0.0.1:9/b?{b:/x}")), (k1,), ("{b:/x}", "own")),
            (chain_config(a, ("b", "http://127.0.0.1:9/b?{a:x}")), (k1,), ("{a:x}", "6901")),
            (chain_config(a, ("b", "http://127.0.0.1:9/b?{a:/x~2}")), (k1,), ("/x~2",)),
            (chain_config(("a", "http://127.0.0.1:9/a?{c:/x}"),
                          ("b", "http://127.0.0.1:9/b?{a:/x}"),
                          ("c", "http://127.0.0.1:9/c?{b:/x}")),
             ("endpoints[0].backends",), ("a -> c -> b -> a",)),
            (chain_config(("a", "http://127.0.0.1:9/a/{item}?{a:/x}"), each={"param": "sn"}),
             ("endpoints[0].backends[0].url",), ("each",)),
            (chain_config(a, ("b", "http://{a:/host}/b")), (k1,), ("host",)),
            (chain_config(a, ("b", "http://127.0.0.1:{a:/port}/b")), (k1,), ("port",)),
            (chain_config(a, ("a", "http://127.0.0.1:9/b?{a:/x}")),
             ("endpoints[0].backends[1].name",), ()),
        ]
        for cfg, keys, words in cases:
            with self.subTest(cfg=cfg["endpoints"][0]["backends"]):
                err = self.assert_rejected(cfg, *keys)
                for w in words:
                    self.assertIn(w, err)

    def test_a_cycle_stops_the_start(self):
        g = Gatherd(chain_config(("a", "http://127.0.0.1:9/a?{b:/x}"),
                                 ("b", "http://127.0.0.1:9/b?{a:/x}")), wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2)
        self.assertIn("a -> b -> a", g.stderr_text())
        g.stop()


class OrdersExampleTest(ConfigCase):
    """config/orders.json, the README's dependent-call example, against fakeup as the demo
    runs it (its port in ${DEMO_FAKE_PORT})."""

    def test_example(self):
        with self.example("orders.json") as g:
            status, _, doc = gd.get_json(g.url("/orders"))
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["errors"], [])
            user, orders, news = doc["results"]
            self.assertEqual(user, ok_body("u-42"))
            self.assertEqual(orders, ok_body("orders-of-u-42"))
            self.assertEqual(news, ok_body("news"))
            line = g.wait_access(lambda o: o.get("path") == "/orders")
            self.assertIn("start_ms", line["backends"][1], line)


if __name__ == "__main__":
    unittest.main()
