#!/usr/bin/env python3
"""Path parameters (issue 11) against real fakeup upstreams: `/tickers/{pair}` matches exactly
one raw path segment, percent-decoded, then matched whole against its pattern; the value is
substituted percent-encoded (only A-Za-z0-9-._~ kept), which fakeup's log of raw targets shows;
a value that does not match is a 400 naming the parameter and calls nothing upstream; a path
that matches no endpoint is a 404; a literal path wins over a parameterised one; `coalesce`
never shares a call between two values; metrics never carry a value."""

import json
import unittest

import gd
from gd import FIXTURE_NAMES, FakeUpstream, Gatherd, config, endpoint, fixture_bytes, http_get, \
    raw_members, scrape
from gdcase import ConfigCase, UpstreamCase, ok_body

PAIR = "^[a-z]{3,5}_[a-z]{3,5}$"


class ParamsTest(UpstreamCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            # The parameterised endpoints come first: a literal path must win whatever the order.
            endpoint("/tickers/{pair}", [("bitbank", u("/json/bitbank_{pair}_ticker.json")),
                                         ("echo", u("/ok?id={pair}"))],
                     timeout_ms=10000, params={"pair": PAIR}),
            endpoint("/tickers/all", [("all", u("/ok?id=all"))], timeout_ms=10000),
            endpoint("/sym/{sym}", [("s", u("/ok?id={sym}"))], timeout_ms=10000,
                     params={"sym": "[a-z]+"}),
            endpoint("/sym/list", [("list", u("/ok?id=list"))], timeout_ms=10000),
            endpoint("/files/{name}", [("q", u("/ok?id={name}")), ("p", u("/json/{name}"))],
                     timeout_ms=10000, params={"name": "^.+$"}),
            endpoint("/pairs/{base}/{quote}", [("pq", u("/ok?id={base}-{quote}"))],
                     timeout_ms=10000, params={"base": "^[a-z]+$", "quote": "^[a-z]+$"}),
            # Two parameterised paths of one shape: the first whose pattern matches serves.
            endpoint("/v/{num}", [("num", u("/ok?id=num-{num}"))], timeout_ms=10000,
                     params={"num": "^[0-9]+$"}),
            endpoint("/v/{word}", [("word", u("/ok?id=word-{word}"))], timeout_ms=10000,
                     params={"word": "^[a-z]+$"}),
            endpoint("/co/{pair}", [("co", u("/ok?id={pair}&delay_ms=1000"))],
                     timeout_ms=10000, params={"pair": PAIR}, coalesce=True),
        ))

    def get(self, target, rid="params"):
        status, headers, body = http_get(self.gd.url(target), headers={"X-Request-Id": rid})
        self.assertEqual(headers.get("content-type"), "application/json", (target, body[:200]))
        return status, json.loads(body), body

    def targets(self, rid):
        return sorted(e["target"] for e in self.up.log() if e["request_id"] == rid)

    def assert_status(self, target, code, *needles):
        status, doc, _ = self.get(target)
        self.assertEqual(status, code, (target, doc))
        if code == 400:
            self.assertEqual(doc.get("error"), "bad_request", (target, doc))
        for n in needles:
            self.assertIn(n, doc.get("message", ""), (target, doc))

    def test_a_parameter_selects_the_upstream_resource(self):
        status, doc, body = self.get("/tickers/btc_jpy", "btc")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["errors"], [])
        self.assertEqual(raw_members(body)[0],
                         fixture_bytes("bitbank_btc_jpy_ticker.json").strip())
        self.assertEqual(doc["results"][1], ok_body("btc_jpy"))
        self.assertEqual(self.targets("btc"),
                         ["/json/bitbank_btc_jpy_ticker.json", "/ok?id=btc_jpy"])
        # Another value, another resource (this one the upstream does not have).
        status, doc, _ = self.get("/tickers/eth_jpy", "eth")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [{}, ok_body("eth_jpy")])
        self.assertEqual([(e["index"], e["error"], e.get("status")) for e in doc["errors"]],
                         [(0, "http_status", 404)])
        # The query is not part of the path and is not forwarded.
        status, doc, _ = self.get("/tickers/btc_jpy?pair=x&y=1", "btc-q")
        self.assertEqual(status, 200, doc)
        self.assertEqual(self.targets("btc-q"),
                         ["/json/bitbank_btc_jpy_ticker.json", "/ok?id=btc_jpy"])

    def test_the_value_is_decoded_before_it_is_matched(self):
        status, doc, _ = self.get("/tickers/btc%5Fjpy", "decoded")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"][1], ok_body("btc_jpy"))

    def test_a_value_that_does_not_match_is_400(self):
        for target in ("/tickers/BTC_JPY", "/tickers/btc-jpy", "/tickers/b_j",
                       "/tickers/btc%2Fjpy", "/tickers/btc_jpy%0A", "/tickers/%20btc_jpy",
                       "/tickers/bitcoin_jpy", "/tickers/%zz", "/tickers/btc_jp%"):
            with self.subTest(target=target):
                self.assert_status(target, 400, "pair")
        # A NUL in any path is refused from the head, before routing (issue 14).
        self.assert_status("/tickers/btc_jpy%00", 400, "NUL")
        self.assertEqual(self.up.stats()["requests"], 0, "a rejected value calls nothing")

    def test_the_whole_value_must_match(self):
        status, doc, _ = self.get("/sym/abc")
        self.assertEqual((status, doc["results"]), (200, [ok_body("abc")]))
        self.assert_status("/sym/abc1", 400, "sym")
        self.assert_status("/sym/1abc", 400, "sym")

    def test_paths_matching_no_endpoint_are_404(self):
        for target in ("/tickers", "/tickers/btc_jpy/extra", "/tickers/btc_jpy/",
                       "/tickersx/btc_jpy", "/x/tickers/btc_jpy", "/files/a/b", "/files",
                       "/pairs/btc", "/pairs/btc/jpy/x"):
            with self.subTest(target=target):
                self.assert_status(target, 404)
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_a_literal_path_wins(self):
        status, doc, _ = self.get("/tickers/all")
        self.assertEqual((status, doc["results"]), (200, [ok_body("all")]))
        # "list" matches {sym}'s pattern too.
        status, doc, _ = self.get("/sym/list")
        self.assertEqual((status, doc["results"]), (200, [ok_body("list")]))

    def test_the_first_matching_path_of_a_shape_serves(self):
        status, doc, _ = self.get("/v/42")
        self.assertEqual((status, doc["results"]), (200, [ok_body("num-42")]))
        status, doc, _ = self.get("/v/abc")
        self.assertEqual((status, doc["results"]), (200, [ok_body("word-abc")]))
        self.assert_status("/v/ABC", 400)

    def test_values_are_percent_encoded_into_the_url(self):
        cases = [
            ("a%20b%2Fc%20%C3%A9", "a b/c é", "a%20b%2Fc%20%C3%A9"),
            ("100%25%26x%3Dy%3F%23", "100%&x=y?#", "100%25%26x%3Dy%3F%23"),
            ("~._-AZaz09", "~._-AZaz09", "~._-AZaz09"),
            ("%e6%97%a5", "日", "%E6%97%A5"),
            ("a+b", "a+b", "a%2Bb"),
            ("%7Bpair%7D", "{pair}", "%7Bpair%7D"),
        ]
        for raw, value, sent in cases:
            with self.subTest(value=value):
                rid = f"enc-{len(self.up.log())}"
                status, doc, _ = self.get("/files/" + raw, rid)
                self.assertEqual(status, 200, doc)
                self.assertEqual(doc["results"][0], ok_body(value))
                self.assertEqual(self.targets(rid), ["/json/" + sent, "/ok?id=" + sent])

    def test_two_parameters(self):
        status, doc, _ = self.get("/pairs/btc/jpy", "two")
        self.assertEqual((status, doc["results"]), (200, [ok_body("btc-jpy")]))
        self.assertEqual(self.targets("two"), ["/ok?id=btc-jpy"])
        self.assert_status("/pairs/btc/JPY", 400, "quote")
        self.assert_status("/pairs/BTC/jpy", 400, "base")

    def test_coalesce_never_shares_a_call_between_values(self):
        pairs = ["btc_jpy", "eth_jpy"]
        socks = [(p, self.send(f"/co/{p}", f"co-{p}-lead")) for p in pairs]
        self.up.wait("requests", 2, timeout=10)
        socks += [(p, self.send(f"/co/{p}", f"co-{p}-{i}")) for i in range(2) for p in pairs]
        for p, s in socks:
            status, doc = self.answer(s)
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["results"], [ok_body(p)])
        # One call per value: the joiners shared their own pair's call, never the other's.
        self.assertEqual(sorted(e["target"] for e in self.up.log()),
                         ["/ok?id=btc_jpy&delay_ms=1000", "/ok?id=eth_jpy&delay_ms=1000"])

    def test_metrics_never_carry_a_value(self):
        self.assertEqual(self.get("/tickers/zqx_jpy")[0], 200)
        self.assertEqual(self.get("/tickers/zqxbad")[0], 400)
        self.assertEqual(self.get("/files/zqx%20file")[0], 200)
        exp = scrape(self.gd)
        status, _, text = http_get(self.gd.url("/metrics"))
        self.assertEqual(status, 200)
        self.assertNotIn(b"zqx", text)
        # The endpoint label is the configured path.
        self.assertIsNotNone(exp.get("gatherd_upstream_duration_seconds_count",
                                     endpoint="/tickers/{pair}", backend="bitbank"))


def param_config(url="http://127.0.0.1:9/t/{pair}", path="/t/{pair}", params=None):
    """A valid configuration with one path parameter; params=False: no "params" key."""
    e = endpoint(path, [("t", url)])
    if params is not False:
        e["params"] = {"pair": PAIR} if params is None else params
    return config(e)


class ParamsConfigTest(ConfigCase):
    def test_accepted(self):
        for cfg in (param_config(), param_config("http://127.0.0.1:9/t?p={pair}&q={pair}"),
                    param_config("https://h.example:8443/a/{pair}/b?x=1"),
                    param_config("http://127.0.0.1:9/{a}-{b}", "/t/{a}/{b}",
                                 {"a": "^[a-z]+$", "b": "x|y"}),
                    param_config("http://127.0.0.1:9/static", params={"pair": "."})):
            with self.subTest(cfg=cfg["endpoints"][0]):
                self.assert_accepted(cfg)

    def test_rejected(self):
        url_key = ("endpoints[0].backends[0].url",)
        cases = [(param_config(url), url_key)
                 for url in ("http://127.0.0.1:9/t/{nope}", "http://{pair}.example/x",
                             "http://{pair}/x", "http://h:{pair}/x", "http://127.0.0.1:{pair}/x",
                             "http://{pair}@127.0.0.1/x", "{pair}://127.0.0.1/x",
                             "http{pair}://127.0.0.1/x", "http://127.0.0.1:9/x#{pair}",
                             "http://127.0.0.1:9/t/{item}", "http://127.0.0.1:9/t/{pair")]
        no_pattern = ("endpoints[0].params", "endpoints[0].path")
        cases += [
            (param_config(params=False), no_pattern),
            (param_config(path="/t/{pair}/{other}"), no_pattern),
            (param_config(params={"pair": PAIR, "other": "x"}), ("endpoints[0].params.other",)),
            (param_config(path="/t/fixed", url="http://127.0.0.1:9/t"),
             ("endpoints[0].params",)),
            (param_config(params={"pair": 5}), ("endpoints[0].params.pair",)),
            (param_config(params=["pair"]), ("endpoints[0].params",)),
        ]
        cases += [(param_config(params={"pair": bad}), ("endpoints[0].params.pair",))
                  for bad in ("^[a-z", "(", "a{2,1}", "*x", "[[:nope:]]")]
        self.assert_all_rejected(cases)


class PairsExampleTest(ConfigCase):
    """config/pairs.json, the README's path-parameter example, against fakeup as the demo runs
    it (its port in ${DEMO_FAKE_PORT})."""

    def test_example(self):
        with self.example("pairs.json") as g:
            status, _, body = http_get(g.url("/tickers/btc_jpy"))
            self.assertEqual(status, 200, body)
            self.assertEqual(raw_members(body)[0],
                             fixture_bytes("bitbank_btc_jpy_ticker.json").strip())
            self.assertEqual(json.loads(body)["results"][1], ok_body("btc_jpy"))
            # bitbank is required, and the fake exchange has no eth_jpy ticker.
            status, _, doc = gd.get_json(g.url("/tickers/eth_jpy"))
            self.assertEqual(status, 502, doc)
            self.assertEqual([(e["name"], e["error"]) for e in doc["errors"]],
                             [("bitbank", "http_status")])
            status, _, body = http_get(g.url("/tickers/all"))
            self.assertEqual(status, 200, body)
            self.assertEqual(raw_members(body),
                             [fixture_bytes(n).strip() for n in FIXTURE_NAMES])
            status, _, doc = gd.get_json(g.url("/tickers/BTC"))
            self.assertEqual((status, doc["error"]), (400, "bad_request"))


if __name__ == "__main__":
    unittest.main()
