"""A throwaway PKI for TLS tests, made with the ``openssl`` command line each time it is needed,
so nothing that expires is checked in.

``TestPKI(dir)`` writes into ``dir``:

  ca.crt / ca.key               the test CA gatherd is told to trust (``tls.ca_file``)
  other-ca.crt                  a second CA nobody trusts (for "unknown issuer")
  server.crt / server.key       leaf by the test CA for localhost and 127.0.0.1
  named.crt / named.key         leaf by the test CA for ``upstream.test`` only (server_name)
  expired.crt / expired.key     leaf by the test CA for 127.0.0.1, valid only in 2020
  untrusted.crt / untrusted.key leaf by other-ca for 127.0.0.1
  client-ca.crt                 the CA nginx checks client certificates against (mTLS)
  client.crt / client.key       client certificate by client-ca; key unencrypted
  client-enc.key                the same key encrypted with the passphrase ``PASSPHRASE``
  stranger.crt / stranger.key   client certificate by other-ca (refused by nginx)

Keys are EC P-256: quick to make, and the handshakes they cost are what production pays.
"""

import os
import subprocess

PASSPHRASE = "test-passphrase"
OPENSSL = os.environ.get("OPENSSL_BIN", "openssl")


def _run(args, cwd):
    p = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: exit {p.returncode}: {p.stderr}")
    return p.stdout


class TestPKI:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._ca("ca", "gatherd test CA")
        self._ca("other-ca", "gatherd untrusted CA")
        self._ca("client-ca", "gatherd test client CA")
        self._leaf("server", "ca", "127.0.0.1", "DNS:localhost,IP:127.0.0.1", "serverAuth")
        self._leaf("named", "ca", "upstream.test", "DNS:upstream.test", "serverAuth")
        self._leaf("untrusted", "other-ca", "127.0.0.1", "IP:127.0.0.1", "serverAuth")
        self._leaf("expired", "ca", "127.0.0.1", "IP:127.0.0.1", "serverAuth",
                   dates=("200101000000Z", "200102000000Z"))
        self._leaf("client", "client-ca", "gatherd client", None, "clientAuth")
        self._leaf("stranger", "other-ca", "gatherd stranger", None, "clientAuth")
        _run(["pkey", "-in", "client.key", "-aes256", "-passout", "pass:" + PASSPHRASE,
              "-out", "client-enc.key"], directory)

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", name + ".key"], self.dir)

    def _ca(self, name, cn):
        self._key(name)
        _run(["req", "-x509", "-new", "-key", name + ".key", "-subj", "/CN=" + cn, "-days",
              "30", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", name + ".crt"],
             self.dir)

    def _leaf(self, name, ca, cn, san, usage, dates=None):
        """A leaf signed by ``ca``.  ``openssl ca`` is used because, unlike ``openssl x509`` in
        OpenSSL 3.0, it can set a notBefore in the past (the expired certificate)."""
        self._key(name)
        _run(["req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn, "-out",
              name + ".csr"], self.dir)
        db = os.path.join(self.dir, ca + ".db")
        if not os.path.exists(db + ".index"):
            open(db + ".index", "w").close()
            with open(db + ".serial", "w") as f:
                f.write("1000\n")
        ext = [f"extendedKeyUsage={usage}", "basicConstraints=CA:FALSE",
               "keyUsage=critical,digitalSignature,keyEncipherment"]
        if san:
            ext.append("subjectAltName=" + san)
        conf = os.path.join(self.dir, name + ".cnf")
        with open(conf, "w") as f:
            f.write(f"""[ca]
default_ca = test
[test]
database = {db}.index
serial = {db}.serial
new_certs_dir = {self.dir}
certificate = {self.path(ca + '.crt')}
private_key = {self.path(ca + '.key')}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[ext]
""" + "\n".join(ext) + "\n")
        when = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "30"]
        _run(["ca", "-batch", "-notext", "-config", conf, "-extensions", "ext", "-in",
              name + ".csr", "-out", name + ".crt", *when], self.dir)
