#!/usr/bin/env python3
"""TLS faults and TLS configuration: a reset in the middle of the handshake, a handshake that
stalls past the timeout and a TLS alert each end in the documented error, counted under their
reason, without freezing the loop or keeping the connection; the plain suite's faults that
happen after the handshake keep their own kinds over TLS; every key of the tls object is
checked at load (missing, unreadable or malformed files, keys, passphrases, placement), and a
SIGHUP re-reads the files.

Run: GATHERD_BIN=build/src/gatherd PYTHONPATH=tests/lib tests/tls/test_tls_faults.py
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tlslib  # noqa: E402
from tlslib import backend, client_cert, error_of, pki, tls_failures, trust  # noqa: E402

import gd  # noqa: E402
import tlsup  # noqa: E402
from gd import config, endpoint, stop_checked  # noqa: E402


def get(g, path, timeout=15):
    status, _, body = gd.http_get(g.url(path), timeout=timeout)
    return status, json.loads(body)


class HandshakeFaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ups = {mode: gd.FakeUpstream(args=["--tls-fault", mode, "--control-port", "0"],
                                         scheme="https")
                   for mode in ("reset", "stall", "alert")}
        cls.tls = gd.FakeUpstream(args=["--tls-cert", pki().path("server.crt"), "--tls-key",
                                        pki().path("server.key"), "--control-port", "0"],
                                  scheme="https")
        cls.plain = gd.FakeUpstream()
        eps = [endpoint(f"/{m}", [backend("b", up.url("/ok"), timeout_ms=600),
                                  backend("good", cls.plain.url("/ok?id=good"))],
                        timeout_ms=5000)
               for m, up in cls.ups.items()]
        u = cls.tls.url
        for name, path, extra in (("reset_mid", "/reset_mid", {}),
                                  ("hang", "/hang", {"timeout_ms": 300}),
                                  ("status", "/status/503", {}),
                                  ("too_large", "/huge_chunked?bytes=100000",
                                   {"max_body_bytes": 1000}),
                                  ("ok", "/ok?id=tls", {})):
            eps.append(endpoint("/after/" + name, [backend("b", u(path), **extra)],
                                timeout_ms=5000))
        cls.g = gd.Gatherd(config(*eps, **trust()), workers=1)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.g, cls.tls, cls.plain, *cls.ups.values())

    def setUp(self):
        for up in self.ups.values():
            up.reset()

    def fault(self, mode, kind, words):
        t0 = time.monotonic()
        status, body = get(self.g, "/" + mode)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200, body)
        self.assertEqual(body["results"][1], {"ok": True, "id": "good"})
        e = error_of(body, "b")
        self.assertEqual(e["error"], kind, e)
        self.assertIn(words, e["message"])
        # Nothing of the failed connection is kept.
        self.ups[mode].wait("connections_opened", 1)
        self.ups[mode].wait_le("connections_active", 0)
        return e, elapsed

    def test_reset_mid_handshake(self):
        self.fault("reset", "connect", "TLS handshake failed")
        self.assertGreaterEqual(tls_failures(self.g, "/reset", "b")["handshake"], 1)

    def test_alert(self):
        e, _ = self.fault("alert", "connect", "TLS handshake failed")
        self.assertIn("alert handshake failure", e["message"])
        self.assertGreaterEqual(tls_failures(self.g, "/alert", "b")["handshake"], 1)

    def test_stalled_handshake_times_out(self):
        before = tls_failures(self.g, "/stall", "b")["handshake_timeout"]
        # While the handshake hangs, the loop serves everyone else.
        answered = []
        t = threading.Thread(target=lambda: answered.append(get(self.g, "/stall")))
        t.start()
        self.ups["stall"].wait("connections_opened", 1)
        t0 = time.monotonic()
        self.assertEqual(gd.http_get(self.g.url("/healthz"))[0], 200)
        self.assertLess(time.monotonic() - t0, 0.5)
        t.join(10)
        status, body = answered[0]
        e = error_of(body, "b")
        self.assertEqual(e["error"], "timeout", e)
        self.assertIn("TLS handshake did not complete in time", e["message"])
        self.ups["stall"].wait_le("connections_active", 0)
        self.assertEqual(tls_failures(self.g, "/stall", "b")["handshake_timeout"], before + 1)

    def test_client_leaving_cancels_a_stalled_handshake(self):
        s = gd.socket.create_connection(("127.0.0.1", self.g.port))
        s.sendall(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        self.ups["stall"].wait("connections_opened", 1)
        s.close()
        st = self.ups["stall"].wait_le("connections_active", 0, timeout=5)
        self.assertEqual(st["connections_active"], 0)

    def test_faults_after_the_handshake_keep_their_kinds(self):
        for name, kind in (("reset_mid", "transfer"), ("hang", "timeout"),
                           ("status", "http_status"), ("too_large", "too_large")):
            status, body = get(self.g, "/after/" + name)
            self.assertEqual(status, 502, body)
            e = error_of(body, "b")
            self.assertEqual(e["error"], kind, e)
            self.assertNotIn("TLS", e["message"])
            self.assertEqual(sum(tls_failures(self.g, "/after/" + name, "b").values()), 0)
        self.assertEqual(get(self.g, "/after/ok"), (200, {"results": [{"ok": True, "id": "tls"}],
                                                           "errors": []}))


class ConfigTest(unittest.TestCase):
    """Every problem with the tls keys is a configuration error (exit 2) naming the key."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gatherd-tlscfg-")
        cls.garbage = os.path.join(cls.dir, "garbage.pem")
        with open(cls.garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        cls.empty = os.path.join(cls.dir, "empty.pem")
        open(cls.empty, "w").close()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def check(self, cfg, key, words, env=None):
        rc, out, err, _ = gd.run_check_config(cfg, env=env)
        self.assertEqual(rc, 2, (out, err))
        self.assertIn(f": {key}: ", err)
        self.assertIn(words, err)

    def ok(self, cfg, env=None):
        rc, out, err, _ = gd.run_check_config(cfg, env=env)
        self.assertEqual(rc, 0, err)
        return err

    def one(self, btls=None, url="https://127.0.0.1:1/", **top):
        """A config of one backend at url with its own tls btls and top-level keys top."""
        return config(endpoint("/t", [backend("b", url, btls)]), **top)

    B = "endpoints[0].backends[0]"

    def test_files(self):
        missing = os.path.join(self.dir, "missing.pem")
        self.check(self.one(btls={"ca_file": missing}), f"{self.B}.tls.ca_file", "No such file")
        self.check(self.one(btls={"ca_file": self.dir}), f"{self.B}.tls.ca_file", "directory")
        self.check(self.one(btls={"ca_file": self.garbage}), f"{self.B}.tls.ca_file",
                   "not a valid PEM")
        self.check(self.one(btls={"ca_file": self.empty}), f"{self.B}.tls.ca_file",
                   "no PEM certificate")
        self.check(self.one(btls={"ca_file": ""}), f"{self.B}.tls.ca_file", "must name a file")
        # A top-level value no backend uses is checked all the same, under its own key.
        self.check(self.one(url="http://127.0.0.1:1/", tls={"ca_file": missing}),
                   "tls.ca_file", "No such file")
        # Inherited: the error names the key where the value was written.
        self.check(self.one(tls={"client_cert": pki().path("client.crt"), "client_key": missing}),
                   "tls.client_key", "No such file")

    def test_system_bundle(self):
        err = "install ca-certificates or set tls.ca_file"
        self.check(self.one(), "tls.ca_file", err, env={"SSL_CERT_FILE": "/nonexistent.pem"})
        self.ok(self.one(url="http://127.0.0.1:1/"), env={"SSL_CERT_FILE": "/nonexistent.pem"})
        self.ok(self.one(btls={"ca_file": pki().path("ca.crt")}),
                env={"SSL_CERT_FILE": "/nonexistent.pem"})
        self.ok(self.one(), env={"SSL_CERT_FILE": pki().path("ca.crt")})

    def test_keys(self):
        k = f"{self.B}.tls.client_key"
        enc = client_cert()
        self.ok(self.one(btls=enc), env=tlslib.env())
        self.check(self.one(btls=dict(enc, client_key_passphrase="wrong")), k,
                   "cannot be decrypted")
        no_pass = dict(enc)
        del no_pass["client_key_passphrase"]
        self.check(self.one(btls=no_pass), k, "is encrypted")
        self.check(self.one(btls=enc), f"{self.B}.tls.client_key_passphrase", "TLS_TEST_PASS",
                   env={"TLS_TEST_PASS": None})
        other = dict(client_cert(cert="stranger"), client_cert=pki().path("client.crt"))
        self.check(self.one(btls=other), k, "is not the key of the certificate")
        self.check(self.one(btls={"client_cert": pki().path("client.crt")}), k,
                   "is required with client_cert")
        self.check(self.one(btls={"client_key": pki().path("client.key")}),
                   f"{self.B}.tls.client_cert", "is required with client_key")
        self.check(self.one(btls={"client_cert": pki().path("client.crt"),
                                 "client_key": pki().path("client.crt")}), k,
                   "no PEM private key")

    def test_placement_and_values(self):
        b = self.B
        self.check(self.one(tls={"verify": False}), "tls.verify",
                   "allowed only per backend")
        self.check(self.one(tls={"server_name": "a.test"}), "tls.server_name",
                   "only for a backend")
        self.check(self.one(btls={"verify": True}, url="http://127.0.0.1:1/"), f"{b}.tls",
                   "applies only to https://")
        self.check(self.one(url="https://127.0.0.1:1/") | {
            "endpoints": [endpoint("/t", [backend("b", "https://127.0.0.1:1/",
                                                  http2="prior_knowledge")])]},
            f"{b}.http2", "is for http:// upstreams")
        self.check(self.one(btls={"min_version": "1.1"}), f"{b}.tls.min_version", "\"1.2\"")
        self.check(self.one(btls={"server_name": "bad name"}), f"{b}.tls.server_name",
                   "DNS name")
        self.check(self.one(btls={"colour": "red"}), f"{b}.tls.colour", "unknown key")
        self.check(self.one(http2="sometimes"), "http2", "must be")
        # The top level's h2c is for its http:// backends; https:// ones negotiate.
        self.ok(self.one(btls={"ca_file": pki().path("ca.crt")}, http2="prior_knowledge"))

    def test_check_config_prints_the_warning(self):
        err = self.ok(self.one(btls={"verify": False}))
        self.assertIn(f"warning: {self.B}.tls.verify: false", err)


class ReloadTest(unittest.TestCase):
    def test_sighup_rereads_the_files(self):
        tlslib.skip_without_nginx()
        d = tempfile.mkdtemp(prefix="gatherd-tlsreload-")
        ca = os.path.join(d, "ca.pem")
        shutil.copy(pki().path("other-ca.crt"), ca)
        ng = tlsup.TLSNginx(pki(), {"good": {}})
        cfg = config(endpoint("/t", [backend("b", ng.url("good"))]), tls={"ca_file": ca})
        g = gd.Gatherd(cfg)
        try:
            status, body = get(g, "/t")
            self.assertEqual(status, 502)
            self.assertIn("unknown issuer", error_of(body, "b")["message"])
            # The same path, new contents: a reload reads them.
            shutil.copy(pki().path("ca.crt"), ca)
            g.signal(signal.SIGHUP)
            g.wait_log("reloaded")
            self.assertEqual(get(g, "/t")[0], 200)
            # A file gone at reload: rejected, naming the key; the old configuration serves on.
            os.unlink(ca)
            g.signal(signal.SIGHUP)
            line = g.wait_log("reload_failed")
            self.assertIn("tls.ca_file", line["error"])
            self.assertEqual(get(g, "/t")[0], 200)
        finally:
            stop_checked(g)
            ng.stop()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
