#!/usr/bin/env python3
"""Each error kind of the interface: a failed backend gives {} in results and an errors entry
{"index","name","error",...}; the answer is 200 when one backend succeeded, 502 when none did."""

import json
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, stop_checked

OK_BODY = {"ok": True, "id": "good"}


class ErrorKindsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.dead = gd.closed_port()
        good = ("good", u("/ok?id=good"))

        def pair(path, bad_url, bad_extra=None, **ep):
            b = {"name": "bad", "url": bad_url}
            b.update(bad_extra or {})
            return endpoint(path, [good, b], timeout_ms=ep.pop("timeout_ms", 10000), **ep)

        cls.cfg = config(
            pair("/timeout", u("/hang"), {"timeout_ms": 200}),
            pair("/timeout_stall", u("/stall_body"), {"timeout_ms": 300}),
            pair("/connect", f"http://127.0.0.1:{cls.dead}/ok"),
            # TLS to a plain-HTTP port: the handshake fails.
            pair("/tls_fail", f"https://127.0.0.1:{cls.up.port}/ok"),
            pair("/status503", u("/status/503")),
            pair("/status404", u("/status/404")),
            pair("/status500_json", u("/ok?status=500")),
            pair("/status503_nonjson", u("/nonjson?status=503")),
            pair("/status503_big", u("/huge_length?bytes=5000&status=503"),
                 {"max_body_bytes": 1000}),
            pair("/status503_big_chunked", u("/huge_chunked?bytes=5000&status=503"),
                 {"max_body_bytes": 1000}),
            pair("/status503_reset", u("/reset_mid?status=503")),
            pair("/redirect", u("/redirect")),
            pair("/nonjson", u("/nonjson")),
            pair("/truncated", u("/truncated")),
            pair("/empty", u("/empty")),
            pair("/badutf8", u("/badutf8")),
            pair("/surrogate_utf8", u("/body?b=%22%ED%A0%80%22")),      # UTF-8 of U+D800
            pair("/overlong_utf8", u("/body?b=%22%C0%AF%22")),          # overlong '/'
            pair("/trailing", u("/body?b=%7B%7D%20x")),                 # {} x
            pair("/two_values", u("/body?b=%7B%7D%7B%7D")),             # {}{}
            pair("/ws_only", u("/body?b=%20%0A%20")),
            pair("/len_over", u("/huge_length?bytes=5000"), {"max_body_bytes": 1000}),
            pair("/chunked_over", u("/huge_chunked?bytes=100000"), {"max_body_bytes": 1000}),
            # Bodies far larger than socket buffers, so fakeup cannot finish sending them.
            pair("/chunked_endless", u("/huge_chunked?bytes=500000000"),
                 {"max_body_bytes": 1000}),
            pair("/len_endless", u("/huge_length?bytes=500000000"), {"max_body_bytes": 1000}),
            pair("/len_at_limit", u("/huge_length?bytes=1000"), {"max_body_bytes": 1000}),
            pair("/len_limit_plus1", u("/huge_length?bytes=1001"), {"max_body_bytes": 1000}),
            pair("/chunked_at_limit", u("/huge_chunked?bytes=1000"), {"max_body_bytes": 1000}),
            pair("/chunked_limit_plus1", u("/huge_chunked?bytes=1001"),
                 {"max_body_bytes": 1000}),
            # max_body_bytes inherited from the endpoint, then from the top level.
            pair("/ep_limit", u("/huge_length?bytes=5000"), max_body_bytes=1000),
            endpoint("/top_limit", [("bad", u("/huge_chunked?bytes=3000"))], timeout_ms=10000),
            pair("/reset_mid", u("/reset_mid")),
            pair("/reset_before", u("/reset_before")),
            pair("/garbage", u("/garbage")),
            pair("/dribble", u("/dribble?interval_ms=20&bytes=20")),
            pair("/close_framed", u("/ok?id=bad&framing=close")),
            pair("/close_framed_truncated", u("/truncated?framing=close")),
            pair("/status201", u("/ok?id=bad&status=201")),
            pair("/status204", u("/empty?status=204")),
            endpoint("/mixed", [
                ("ok0", u("/json/btcbox_ticker.json")),
                ("hang", u("/hang"), {"timeout_ms": 200}),
                ("dead", f"http://127.0.0.1:{cls.dead}/ok"),
                ("s503", u("/status/503")),
                ("html", u("/nonjson")),
                ("big", u("/huge_length?bytes=5000"), {"max_body_bytes": 1000}),
                ("reset", u("/reset_mid")),
                ("ok7", u("/ok?id=good")),
            ], timeout_ms=10000),
            endpoint("/allfail", [
                ("s503", u("/status/503")),
                ("dead", f"http://127.0.0.1:{cls.dead}/ok"),
            ], timeout_ms=10000),
            max_body_bytes=2000,
        )
        cls.gd = Gatherd(cls.cfg)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def get(self, path, want_status=200):
        status, headers, body = http_get(self.gd.url(path), timeout=30)
        self.assertEqual(status, want_status, body)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)
        doc = json.loads(body)
        self.assertEqual(set(doc), {"results", "errors"}, doc)
        return doc

    def assert_pair_fails(self, path, kind, status=None):
        doc = self.get(path)
        self.assertEqual(doc["results"], [OK_BODY, {}], doc)
        self.assertEqual(len(doc["errors"]), 1, doc)
        e = doc["errors"][0]
        self.assertEqual(e["index"], 1, e)
        self.assertEqual(e["name"], "bad", e)
        self.assertEqual(e["error"], kind, e)
        self.assertIsInstance(e.get("message"), str, e)
        if kind == "http_status":
            self.assertEqual(e.get("status"), status, e)
        else:
            self.assertNotIn("status", e, "status is present only for http_status")
        return e

    def assert_pair_ok(self, path):
        doc = self.get(path)
        self.assertEqual(doc["errors"], [], doc)
        self.assertEqual(doc["results"][0], OK_BODY)
        return doc

    # timeout -----------------------------------------------------------------------------

    def test_timeout(self):
        t0 = time.monotonic()
        self.assert_pair_fails("/timeout", "timeout")
        self.assertLess(time.monotonic() - t0, 3.0, "backend timeout_ms 200 not applied")

    def test_timeout_stalled_body(self):
        self.assert_pair_fails("/timeout_stall", "timeout")

    def test_timeout_closes_upstream(self):
        before = self.up.stats()["aborted"]
        self.assert_pair_fails("/timeout", "timeout")
        # The hung upstream connection must be closed, not left in a pool.
        self.up.wait("aborted", before + 1, timeout=5)

    # connect ------------------------------------------------------------------------------

    def test_connect(self):
        self.assert_pair_fails("/connect", "connect")

    def test_connect_tls_handshake_failed(self):
        self.assert_pair_fails("/tls_fail", "connect")

    # http_status --------------------------------------------------------------------------

    def test_http_status_503(self):
        self.assert_pair_fails("/status503", "http_status", 503)

    def test_http_status_404(self):
        self.assert_pair_fails("/status404", "http_status", 404)

    def test_http_status_500_with_json_body(self):
        self.assert_pair_fails("/status500_json", "http_status", 500)

    def test_http_status_whatever_the_body(self):
        # The status line decides: a non-2xx answer is http_status with its status, whether
        # its body is HTML, larger than max_body_bytes or cut short.  (An upstream's 2 KB HTML
        # 503 page must not be reported as too_large.)
        for path in ["/status503_nonjson", "/status503_big", "/status503_big_chunked",
                     "/status503_reset"]:
            with self.subTest(path=path):
                self.assert_pair_fails(path, "http_status", 503)

    def test_redirect_not_followed(self):
        before = self.up.stats()["paths"].get("/ok", 0)
        self.assert_pair_fails("/redirect", "http_status", 302)
        # Only the good backend's /ok, never the redirect target.
        self.assertEqual(self.up.stats()["paths"].get("/ok", 0), before + 1)

    # invalid_json -------------------------------------------------------------------------

    def test_invalid_json_nonjson(self):
        self.assert_pair_fails("/nonjson", "invalid_json")

    def test_invalid_json_truncated(self):
        self.assert_pair_fails("/truncated", "invalid_json")

    def test_invalid_json_empty(self):
        self.assert_pair_fails("/empty", "invalid_json")

    def test_invalid_json_whitespace_only(self):
        self.assert_pair_fails("/ws_only", "invalid_json")

    def test_invalid_json_bad_utf8(self):
        self.assert_pair_fails("/badutf8", "invalid_json")

    def test_invalid_json_surrogate_utf8(self):
        self.assert_pair_fails("/surrogate_utf8", "invalid_json")

    def test_invalid_json_overlong_utf8(self):
        self.assert_pair_fails("/overlong_utf8", "invalid_json")

    def test_invalid_json_trailing_garbage(self):
        self.assert_pair_fails("/trailing", "invalid_json")

    def test_invalid_json_two_values(self):
        self.assert_pair_fails("/two_values", "invalid_json")

    # too_large ----------------------------------------------------------------------------

    def test_too_large_content_length(self):
        self.assert_pair_fails("/len_over", "too_large")

    def test_too_large_chunked(self):
        self.assert_pair_fails("/chunked_over", "too_large")

    def test_too_large_stops_reading(self):
        # gatherd stops reading a body it will not use: fakeup sees the transfer cut off, and
        # the answer does not wait for 500 MB to be read.
        for path in ["/chunked_endless", "/len_endless"]:
            with self.subTest(path=path):
                before = self.up.stats()["aborted"]
                t0 = time.monotonic()
                self.assert_pair_fails(path, "too_large")
                self.assertLess(time.monotonic() - t0, 5.0)
                self.up.wait("aborted", before + 1, timeout=5)

    def test_too_large_boundary(self):
        self.assert_pair_ok("/len_at_limit")
        self.assert_pair_fails("/len_limit_plus1", "too_large")
        self.assert_pair_ok("/chunked_at_limit")
        self.assert_pair_fails("/chunked_limit_plus1", "too_large")

    def test_too_large_inherited(self):
        self.assert_pair_fails("/ep_limit", "too_large")
        doc = self.get("/top_limit", 502)
        self.assertEqual(doc["errors"][0]["error"], "too_large", doc)

    # transfer -----------------------------------------------------------------------------

    def test_transfer_reset_mid_body(self):
        self.assert_pair_fails("/reset_mid", "transfer")

    def test_transfer_reset_before_answer(self):
        # A reset before any byte of the answer is neither refused nor a status: "anything
        # else" is transfer.
        self.assert_pair_fails("/reset_before", "transfer")

    def test_transfer_not_http(self):
        self.assert_pair_fails("/garbage", "transfer")

    # success cases around errors ----------------------------------------------------------

    def test_slow_body_assembled(self):
        doc = self.assert_pair_ok("/dribble")
        self.assertEqual(doc["results"][1], "a" * 18)

    def test_body_delimited_by_close(self):
        doc = self.assert_pair_ok("/close_framed")
        self.assertEqual(doc["results"][1], {"ok": True, "id": "bad"})
        self.assert_pair_fails("/close_framed_truncated", "invalid_json")

    def test_any_2xx_is_success(self):
        doc = self.assert_pair_ok("/status201")
        self.assertEqual(doc["results"][1], {"ok": True, "id": "bad"})

    def test_204_empty_body_is_invalid_json(self):
        # 204 is inside 200-299, so not http_status; its body is empty, so invalid_json.
        self.assert_pair_fails("/status204", "invalid_json")

    def test_mixed(self):
        doc = self.get("/mixed")
        r = doc["results"]
        self.assertEqual(len(r), 8)
        self.assertEqual(r[0], json.loads(gd.fixture_bytes("btcbox_ticker.json")))
        self.assertEqual(r[1:7], [{}] * 6)
        self.assertEqual(r[7], OK_BODY)
        got = [(e["index"], e["name"], e["error"], e.get("status")) for e in doc["errors"]]
        self.assertEqual(got, [
            (1, "hang", "timeout", None),
            (2, "dead", "connect", None),
            (3, "s503", "http_status", 503),
            (4, "html", "invalid_json", None),
            (5, "big", "too_large", None),
            (6, "reset", "transfer", None),
        ])

    def test_all_failed_502(self):
        doc = self.get("/allfail", 502)
        self.assertEqual(doc["results"], [{}, {}])
        got = [(e["index"], e["name"], e["error"], e.get("status")) for e in doc["errors"]]
        self.assertEqual(got, [(0, "s503", "http_status", 503), (1, "dead", "connect", None)])
        for e in doc["errors"]:
            self.assertIsInstance(e.get("message"), str)

    def test_healthy_after_errors(self):
        status, _, body = http_get(self.gd.url("/healthz"))
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))


if __name__ == "__main__":
    unittest.main()
