"""TLS upstreams for tests and benchmarks: Debian's nginx serving HTTPS (HTTP/1.1 and HTTP/2)
and h2c with certificates from a throwaway test PKI (tlsca.py), and its access log, from which a
test counts connections, TLS handshakes (resumed or full) and protocols at the upstream.

``TLSNginx(pki, servers, fakeup_port=None)`` runs one nginx in the foreground with one
``server`` per entry of ``servers`` (name -> dict of options):

  cert            leaf name in the PKI ("server", "named", "expired", "untrusted"); None: h2c
  http2           offer HTTP/2 (ALPN for TLS; prior knowledge for h2c); default True
  protocols       ssl_protocols; default "TLSv1.2 TLSv1.3"
  client_ca       PKI file nginx checks client certificates against; verify_client "on" by
                  default ("optional": ask, and say in the answer what came)
  keepalive_requests / keepalive_timeout   nginx's; default 1000 and 75s

Every server answers ``/`` (and any path but ``/up/``) with a small JSON body naming itself,
its connection serial, protocol, TLS version, whether the session was resumed and the client
certificate's subject.  ``/up/...`` is proxied to a fakeup on ``fakeup_port`` (its delay and fault
routes, behind TLS or HTTP/2).  One access log line per request: JSON with ``server``, ``conn``
(nginx's connection serial: one per TCP connection, so one per TLS handshake), ``n`` (requests
on that connection so far), ``reused`` ("r" for a resumed session), ``proto``, ``tls``, ``uri``,
``host``, ``sni``, ``client``.
"""

import gd
import nginxproc
from nginxproc import have_nginx  # noqa: F401  (for the tests: skip without nginx)

LOG_FORMAT = ('{"server":"$tls_test_server","conn":$connection,"n":$connection_requests,'
              '"reused":"$ssl_session_reused","proto":"$server_protocol","tls":"$ssl_protocol",'
              '"uri":"$request_uri","host":"$host","sni":"$ssl_server_name",'
              '"client":"$ssl_client_s_dn","status":$status}')
BODY = ('{"server":"$tls_test_server","conn":$connection,"proto":"$server_protocol",'
        '"tls":"$ssl_protocol","reused":"$ssl_session_reused","client":"$ssl_client_s_dn"}')


class TLSNginx(nginxproc.NginxProcess):
    def __init__(self, pki, servers, fakeup_port=None, start_timeout=15, workers=1):
        super().__init__(prefix="gatherd-tlsnginx-")
        self.pki = pki
        self.ports = {name: gd.free_port() for name in servers}
        self.servers = servers
        blocks = [self._server(name, o, fakeup_port) for name, o in servers.items()]
        upstream = ""
        if fakeup_port is not None:
            upstream = f"upstream fakeup {{ server 127.0.0.1:{fakeup_port}; keepalive 64; }}"
        self.start(f"""
    log_format tls escape=json '{LOG_FORMAT}';
    access_log {{dir}}/access.log tls;
    default_type application/json;
    # curl 7.88 asks for TLS 1.2 session ids (it turns tickets off), which need a cache here.
    ssl_session_cache shared:TLSTEST:1m;
    ssl_session_timeout 10m;
    {upstream}
    {''.join(blocks)}""", list(self.ports.values()), workers=workers, connections=4096,
                   start_timeout=start_timeout)
        # The start-up probes are connections too: count only what comes after them.
        self.mark()

    def _server(self, name, o, fakeup_port):
        port = self.ports[name]
        cert = o.get("cert", "server")
        listen = f"127.0.0.1:{port}"
        if cert is not None:
            listen += " ssl"
        if o.get("http2", True):
            listen += " http2"
        lines = [f"listen {listen};", f"set $tls_test_server {name};",
                 f"keepalive_requests {o.get('keepalive_requests', 1000)};",
                 f"keepalive_timeout {o.get('keepalive_timeout', '75s')};"]
        if cert is not None:
            lines += [f"ssl_certificate {self.pki.path(cert + '.crt')};",
                      f"ssl_certificate_key {self.pki.path(cert + '.key')};",
                      f"ssl_protocols {o.get('protocols', 'TLSv1.2 TLSv1.3')};"]
        if o.get("client_ca"):
            lines += [f"ssl_client_certificate {self.pki.path(o['client_ca'])};",
                      f"ssl_verify_client {o.get('verify_client', 'on')};"]
        if fakeup_port is not None:
            lines += ["location /up/ { proxy_pass http://fakeup/; proxy_http_version 1.1; "
                      "proxy_set_header Connection \"\"; }"]
        lines += [f"location / {{ return 200 '{BODY}'; }}"]
        return "server {\n        " + "\n        ".join(lines) + "\n    }\n    "

    def url(self, name, path="/", host="127.0.0.1"):
        scheme = "http" if self.servers[name].get("cert", "server") is None else "https"
        return f"{scheme}://{host}:{self.ports[name]}{path}"

    # the access log ----------------------------------------------------------------------

    def mark(self):
        """Forget what was logged so far: later counts start here."""
        self._skip = len(self.access_lines())

    def lines(self, server=None):
        """Access lines since the last mark(), of one server or all."""
        return [x for x in self.access_lines()[self._skip:]
                if server is None or x["server"] == server]

    def wait_lines(self, n, server=None, timeout=10):
        """The lines once at least n have been logged since mark().  nginx logs a request just
        after sending its answer, so the line may trail the answer gatherd already passed on;
        the log file is the only event there is, so it is polled."""
        return gd.wait_until(lambda: (lambda x: x if len(x) >= n else None)(self.lines(server)),
                             timeout, f"{n} nginx access lines for {server or 'any server'}")

    @staticmethod
    def connections(lines):
        """Distinct TCP (so TLS) connections among lines."""
        return len({x["conn"] for x in lines})

    @staticmethod
    def full_handshakes(lines):
        """Connections whose TLS session was negotiated in full, not resumed."""
        return len({x["conn"] for x in lines if x["reused"] != "r"})
