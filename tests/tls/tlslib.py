"""What the TLS tests share: one throwaway PKI per test process (made with openssl by tlsca.py,
removed at exit), configs that point gatherd at it, and readers of the TLS failure metric."""

import atexit
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import gd  # noqa: E402
import tlsca  # noqa: E402
import tlsup  # noqa: E402

_pki = None


def pki():
    """The test PKI (tlsca.TestPKI), made on first use."""
    global _pki
    if _pki is None:
        d = tempfile.mkdtemp(prefix="gatherd-pki-")
        atexit.register(shutil.rmtree, d, True)
        _pki = tlsca.TestPKI(d)
    return _pki


def trust(**top):
    """Top-level config keys with tls.ca_file set to the test CA (more tls keys in tls=)."""
    tls = {"ca_file": pki().path("ca.crt")}
    tls.update(top.pop("tls", {}))
    top["tls"] = tls
    return top


def backend(name, url, tls=None, **kw):
    b = {"name": name, "url": url}
    if tls is not None:
        b["tls"] = tls
    b.update(kw)
    return b


def client_cert(encrypted=True, cert="client"):
    """tls keys for mutual TLS with the test client certificate; the encrypted key's passphrase
    comes from ${TLS_TEST_PASS} (set by env())."""
    key = "client-enc.key" if encrypted and cert == "client" else cert + ".key"
    t = {"client_cert": pki().path(cert + ".crt"), "client_key": pki().path(key)}
    if encrypted and cert == "client":
        t["client_key_passphrase"] = "${TLS_TEST_PASS}"
    return t


def env():
    return {"TLS_TEST_PASS": tlsca.PASSPHRASE}


def tls_failures(g, endpoint, backend):
    """{reason: count} of gatherd_upstream_tls_failures_total for one backend (strictly parsed)."""
    exp = gd.scrape(g)
    return {labels["reason"]: v for labels, v in
            exp.series("gatherd_upstream_tls_failures_total")
            if labels["endpoint"] == endpoint and labels["backend"] == backend}


def error_of(body, name):
    for e in body.get("errors", []):
        if e["name"] == name:
            return e
    return None


def skip_without_nginx():
    if not tlsup.have_nginx():
        raise unittest.SkipTest("nginx is not installed")
