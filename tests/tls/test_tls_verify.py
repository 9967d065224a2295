#!/usr/bin/env python3
"""Verified HTTPS exchanges with Debian's nginx: a certificate from the configured CA is
accepted; an unknown issuer, a certificate for another name and an expired one are each refused
as `connect` with a message that says which, and counted under that reason in
gatherd_upstream_tls_failures_total; server_name verifies (and sends) a name other than the
address dialled; mutual TLS is accepted with the right client certificate and refused without;
min_version "1.3" refuses a TLS 1.2-only upstream; verify false is warned about; and backends of
one origin with different TLS settings never share a connection.

Run: GATHERD_BIN=build/src/gatherd PYTHONPATH=tests/lib tests/tls/test_tls_verify.py
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tlslib  # noqa: E402
from tlslib import backend, client_cert, error_of, pki, tls_failures, trust  # noqa: E402

import gd  # noqa: E402
import tlsup  # noqa: E402
from gd import config, endpoint, stop_checked  # noqa: E402


def get(g, path, want=None, timeout=15):
    status, _, body = gd.http_get(g.url(path), timeout=timeout)
    data = json.loads(body)
    if want is not None:
        assert status == want, f"{path}: {status} {data}"
    return status, data


class VerifyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tlslib.skip_without_nginx()
        cls.fake = gd.FakeUpstream(
            args=["--tls-cert", pki().path("server.crt"), "--tls-key", pki().path("server.key"),
                  "--tls-client-ca", pki().path("client-ca.crt"), "--tls-max-version", "1.2",
                  "--control-port", "0"],
            scheme="https")
        cls.ng = tlsup.TLSNginx(pki(), {
            "good": {},
            "named": {"cert": "named"},
            "expired": {"cert": "expired"},
            "untrusted": {"cert": "untrusted"},
            "mtls": {"client_ca": "client-ca.crt"},
            "mtls_optional": {"client_ca": "client-ca.crt", "verify_client": "optional"},
            "tls12": {"protocols": "TLSv1.2"},
            "tls13": {"protocols": "TLSv1.3"},
        })

    @classmethod
    def tearDownClass(cls):
        cls.ng.stop()
        cls.fake.stop()

    def one(self, b, **top):
        """gatherd with one endpoint /t of the given backends and the test CA trusted."""
        bs = b if isinstance(b, list) else [b]
        return gd.Gatherd(config(endpoint("/t", bs, timeout_ms=10000), **trust(**top)),
                          env=tlslib.env())

    def refused(self, url, reason, words, tls=None):
        with self.one(backend("b", url, tls)) as g:
            status, body = get(g, "/t", 502)
            e = error_of(body, "b")
            self.assertEqual(e["error"], "connect", e)
            self.assertIn(words, e["message"])
            fails = tls_failures(g, "/t", "b")
            self.assertEqual(fails.get(reason), 1, fails)
            self.assertEqual(sum(fails.values()), 1, fails)
            return e

    def test_verified_exchange(self):
        with self.one(backend("b", self.ng.url("good", "/x"))) as g:
            _, body = get(g, "/t", 200)
            r = body["results"][0]
            self.assertEqual(r["server"], "good")
            self.assertEqual(r["tls"], "TLSv1.3")
            self.assertEqual(body["errors"], [])
            fails = tls_failures(g, "/t", "b")
            self.assertEqual(set(fails), {"unknown_issuer", "name_mismatch", "expired",
                                          "not_yet_valid", "untrusted", "handshake",
                                          "handshake_timeout"})
            self.assertEqual(sum(fails.values()), 0, fails)

    def test_unknown_issuer(self):
        self.refused(self.ng.url("untrusted"), "unknown_issuer", "unknown issuer")

    def test_system_bundle_does_not_trust_the_test_ca(self):
        # Without ca_file the system's bundle is the trust: the test CA is not in it.
        with gd.Gatherd(config(endpoint("/t", [backend("b", self.ng.url("good"))]))) as g:
            _, body = get(g, "/t", 502)
            self.assertIn("unknown issuer", error_of(body, "b")["message"])

    def test_name_mismatch(self):
        # named.crt is for upstream.test only; the URL says 127.0.0.1.
        e = self.refused(self.ng.url("named"), "name_mismatch", "name mismatch")
        self.assertIn("127.0.0.1", e["message"])

    def test_expired(self):
        self.refused(self.ng.url("expired"), "expired", "expired")

    def test_server_name(self):
        b = backend("b", self.ng.url("named", "/sn"), {"server_name": "upstream.test"})
        with self.one(b) as g:
            _, body = get(g, "/t", 200)
            self.assertEqual(body["results"][0]["server"], "named")
            line = self.ng.wait_lines(1, "named")[-1]
            self.assertEqual((line["sni"], line["host"], line["uri"]),
                             ("upstream.test", "upstream.test", "/sn"), line)
        # The name verified is server_name, not the address: another name fails.
        self.refused(self.ng.url("good"), "name_mismatch", "name mismatch",
                     {"server_name": "other.test"})

    def test_mutual_tls_accepted(self):
        b = backend("b", self.ng.url("mtls"), client_cert())
        with self.one(b) as g:
            _, body = get(g, "/t", 200)
            self.assertEqual(body["results"][0]["client"], "CN=gatherd client")

    def test_mutual_tls_refused(self):
        # nginx completes the handshake and answers 400 to a missing or untrusted certificate.
        for tls in (None, client_cert(cert="stranger")):
            with self.one(backend("b", self.ng.url("mtls"), tls)) as g:
                _, body = get(g, "/t", 502)
                e = error_of(body, "b")
                self.assertEqual((e["error"], e.get("status")), ("http_status", 400), e)
        # A server that refuses in the handshake itself (fakeup, Python's ssl, with TLS 1.2:
        # in TLS 1.3 the client's handshake is over before the server judges its certificate,
        # and Python's refusal then arrives as a reset of the first request, a `transfer`).
        self.refused(self.fake.url("/ok"), "handshake", "TLS handshake failed")
        with self.one(backend("b", self.fake.url("/ok"), client_cert(encrypted=False))) as g:
            _, body = get(g, "/t", 200)
            self.assertEqual(body["results"][0], {"ok": True, "id": ""})

    def test_tls13_only(self):
        e = self.refused(self.ng.url("tls12"), "handshake", "TLS handshake failed",
                         {"min_version": "1.3"})
        self.assertIn("protocol version", e["message"])
        with self.one([backend("a", self.ng.url("tls13"), {"min_version": "1.3"}),
                       backend("b", self.ng.url("tls12"))]) as g:
            _, body = get(g, "/t", 200)
            self.assertEqual([r["tls"] for r in body["results"]], ["TLSv1.3", "TLSv1.2"])

    def test_verify_false_is_a_warning(self):
        b = backend("b", self.ng.url("untrusted"), {"verify": False})
        with self.one(b) as g:
            w = g.wait_log("config_warning")
            self.assertEqual(w["key"], "endpoints[0].backends[0].tls.verify")
            self.assertEqual(w["level"], "warn")
            _, body = get(g, "/t", 200)
            self.assertEqual(body["results"][0]["server"], "untrusted")

    def test_settings_differ_on_one_origin(self):
        """Backends of one origin whose TLS settings differ keep their connections apart: a
        connection that presented a client certificate, or that was never verified, must not
        serve another backend, however the requests interleave on one worker."""
        opt, bad = self.ng.url("mtls_optional"), self.ng.url("untrusted")
        eps = [endpoint("/cert", [backend("b", opt + "?x", client_cert(), coalesce=True)]),
               endpoint("/nocert", [backend("b", opt + "?x", coalesce=True)]),
               endpoint("/unverified", [backend("b", bad + "?y", {"verify": False})]),
               endpoint("/verified", [backend("b", bad + "?y")])]
        with gd.Gatherd(config(*eps, **trust()), env=tlslib.env(), workers=1) as g:
            for _ in range(4):
                for path in ("/cert", "/nocert", "/unverified", "/verified"):
                    status, body = get(g, path)
                    if path == "/cert":
                        self.assertEqual(body["results"][0]["client"], "CN=gatherd client")
                    elif path == "/nocert":
                        self.assertEqual(body["results"][0]["client"], "")
                    elif path == "/unverified":
                        self.assertEqual(status, 200, body)
                    else:
                        self.assertEqual(status, 502, body)
                        self.assertIn("unknown issuer", error_of(body, "b")["message"])
            lines = self.ng.lines("mtls_optional")
            with_cert = {x["conn"] for x in lines if x["client"]}
            without = {x["conn"] for x in lines if not x["client"]}
            self.assertFalse(with_cert & without, lines)


if __name__ == "__main__":
    unittest.main(verbosity=2)
