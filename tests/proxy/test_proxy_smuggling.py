#!/usr/bin/env python3
"""The request-smuggling and framing forms of issue 14 (tests/lib/smuggling.py) sent to the
shipped nginx configuration (deploy/nginx/gatherd.conf) in front of gatherd, to show what
reaches gatherd there and that the two never disagree on where a request ends.

nginx parses each form itself and forwards what it accepted with its own framing (bodies with
Content-Length, one request per forwarded request). The property checked: every request gatherd
serves is one nginx logged too (matched by X-Request-Id, which nginx forwards), so no byte nginx
took for a body was served by gatherd as a request, and the smuggled request never runs unless
nginx itself read it as a request of the client's. The table of what happened to each form is
printed. Exit 77 (skip) when nginx is not installed."""

import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import gd  # noqa: E402
import nginxproc  # noqa: E402
from smuggling import CODINGS, FORMS, SMUGGLED  # noqa: E402
from test_nginx import Nginx  # noqa: E402


def exchange(port, data, timeout=5):
    """Every response nginx sends on one connection until it closes or goes quiet: statuses."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(2)
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", got)]


class ProxySmugglingTest(unittest.TestCase):
    def test_forms_through_nginx(self):
        up = gd.FakeUpstream()
        conf = gd.config(gd.endpoint("/tickers", [("ok", up.url("/ok"))]),
                         gd.endpoint("/healthz2", [("ok", up.url("/ok"))]),
                         trusted_proxies=["127.0.0.1"])
        forms = dict(FORMS)
        for name, (coding, _) in CODINGS.items():
            forms["coding_" + name] = (b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                                       b"Transfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n"
                                       + SMUGGLED, None)
        for name, target in [("nul_in_path_pct", b"/healthz%00junk"),
                             ("nul_in_path_raw", b"/healthz\x00junk")]:
            forms[name] = (b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", None)
        rows = []
        try:
            with gd.Gatherd(conf) as g, Nginx([g.port]) as n:
                for i, (name, (data, _)) in enumerate(forms.items()):
                    # Each form's requests carry an id of their own, so lines are matched.
                    tagged = data.replace(b"Host: a\r\n", b"Host: a\r\nX-Request-Id: f%d\r\n" % i,
                                          1).replace(b"X-Request-Id: smuggled",
                                                     b"X-Request-Id: f%d-smuggled" % i)
                    before = up.stats()["requests"]
                    statuses = exchange(n.port, tagged)
                    # A sentinel through nginx: once gatherd logged it, it logged the form's too.
                    rid = f"sentinel-{i}"
                    gd.http_get(n.url("/healthz"), headers={"X-Request-Id": rid})
                    g.wait_access_id(rid)
                    seen_by_gatherd = [(a["request_id"], a["status"]) for a in g.access_lines()
                                       if a.get("request_id") in (f"f{i}", f"f{i}-smuggled")]
                    ran = up.stats()["requests"] - before
                    rows.append((name, statuses, seen_by_gatherd, ran))
                nginx_ids = {x.get("request_id") for x in n.access_lines()}
                for name, statuses, seen, ran in rows:
                    with self.subTest(name):
                        for rid, _ in seen:
                            self.assertIn(rid, nginx_ids,
                                          f"{name}: gatherd served {rid}, which nginx never "
                                          f"forwarded as a request: a desync")
                        if ran:
                            self.assertIn(next((r for r, _ in seen if r.endswith("smuggled")),
                                               None), nginx_ids,
                                          f"{name}: an upstream call nginx did not ask for")
                        self.assertTrue(statuses, f"{name}: nginx answered nothing")
        finally:
            up.stop()
        print("\n  form                          nginx answered   reached gatherd (id, status)",
              file=sys.stderr)
        for name, statuses, seen, ran in rows:
            print(f"  {name:29s} {str(statuses):16s} {seen}{' +upstream call' if ran else ''}",
                  file=sys.stderr)


if __name__ == "__main__":
    if not nginxproc.have_nginx():
        print("nginx not installed: skip")
        sys.exit(77)
    unittest.main()
