#!/usr/bin/env python3
"""Configuration validation through --check-config: exit 2 and a message naming the key path for
every kind of mistake; exit 0 and a one-line summary for a valid file.  Plus the command line
(--version, --help, unknown flags, a port in use, --log-level over the config's log_level)."""

import os
import re
import socket
import unittest

import gd
from gd import Gatherd, free_port, http_get, raw_request, run_bin, run_check_config


def valid():
    return {
        "listen": "127.0.0.1:0",
        "workers": 1,
        "endpoints": [
            {"path": "/tickers", "timeout_ms": 3000, "backends": [
                {"name": "a", "url": "http://127.0.0.1:9/a"},
                {"name": "b", "url": "https://example.invalid/b", "timeout_ms": 2000,
                 "headers": {"Accept": "application/json"}},
            ]},
            {"path": "/other", "backends": [{"name": "c", "url": "http://127.0.0.1:9/c"}]},
        ],
    }


# Malformed listen addresses and the start of the reason given for each.
BAD_LISTEN = [
    ("nonsense", "must be HOST:PORT, [IPV6]:PORT or unix:PATH"),
    ("1.2.3.4:99999", "PORT must be a number"),
    ("127.0.0.1:http", "PORT must be a number"),
    ("127.0.0.1:", "PORT must be a number"),
    ("127.0.0.1:-1", "PORT must be a number"),
    ("[::1", "has no ']'"),
    ("[::1]5042", "needs :PORT"),
    ("[not-v6]:5042", "is not a valid IPv6 address"),
    ("example.com:5042", "HOST must be an IPv4 literal"),
    ("unix:", "unix socket path must be 1 to 107 bytes"),
    ("unix:/" + "a" * 107, "unix socket path must be 1 to 107 bytes"),
]
GOOD_LISTEN = ["127.0.0.1:0", "0.0.0.0:65535", "*:5042", ":5042", "localhost:5042", "[::1]:0",
               "[::]:5042", "unix:/run/gatherd/gatherd.sock"]


def with_(mutate):
    c = valid()
    mutate(c)
    return c


class CheckConfigTest(unittest.TestCase):
    def assert_rejected(self, cfg, *needles, env=None):
        rc, out, err, path = run_check_config(cfg, env=env)
        self.assertEqual(rc, 2, f"want exit 2; stdout={out!r} stderr={err!r}")
        for n in needles:
            if isinstance(n, re.Pattern):
                self.assertRegex(err, n)
            else:
                self.assertIn(n, err, f"stderr should mention {n!r}")
        return err, path

    # accepted -------------------------------------------------------------------------------

    def test_valid(self):
        rc, out, err, _ = run_check_config(valid())
        self.assertEqual(rc, 0, err)
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"one-line summary expected, got {out!r}")
        self.assertFalse(out.startswith(" "))

    def test_env_var_set(self):
        def m(c):
            c["endpoints"][0]["backends"][0]["headers"] = {"Authorization": "Bearer ${GD_TOK}",
                                                           "X-Dollar": "$$"}
        rc, out, err, _ = run_check_config(with_(m), env={"GD_TOK": "t"})
        self.assertEqual(rc, 0, err)

    def test_minimal(self):
        rc, out, err, _ = run_check_config(
            {"endpoints": [{"path": "/x", "backends": [{"name": "a", "url": "http://h/"}]}]})
        self.assertEqual(rc, 0, err)

    def test_limits_accepted(self):
        def m(c):
            c["workers"] = 0
            c["endpoints"][0]["timeout_ms"] = 600000
            c["endpoints"][0]["backends"][0]["timeout_ms"] = 600000
            c["endpoints"][0]["backends"][1]["timeout_ms"] = 1
            c["max_body_bytes"] = 1073741824
            c["drain_timeout_ms"] = 0
            c["upstream_max_host_connections"] = 0
        rc, out, err, _ = run_check_config(with_(m))
        self.assertEqual(rc, 0, err)

    def test_builtin_default_is_config_gatherd_json(self):
        rc1, out1, err1 = run_bin(["--check-config"])
        rc2, out2, err2 = run_bin(["--check-config", "--config",
                                   os.path.join(gd.SRC, "config", "gatherd.json")])
        self.assertEqual((rc1, rc2), (0, 0), err1 + err2)

        def facts(s):   # the summary without the file name
            return re.sub(r"\([^)]*\)|\S*gatherd\.json\S*|built-in", "", s)
        self.assertEqual(facts(out1), facts(out2))

    def test_check_config_never_listens(self):
        # The configured port is taken; --check-config must not try to bind it.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            cfg = valid()
            cfg["listen"] = "127.0.0.1:%d" % s.getsockname()[1]
            rc, out, err, _ = run_check_config(cfg)
            self.assertEqual(rc, 0, err)

    # rejected -------------------------------------------------------------------------------

    def test_malformed_json(self):
        text = '{\n  "workers": 1,\n  "endpoints": [,]\n}\n'
        err, _ = self.assert_rejected(text)
        # Line 3; the column is somewhere on that line.
        self.assertRegex(err, r"(?i)(line\D{0,3}3\b|:3:\d+)", "message lacks the line")
        self.assertRegex(err, r"(?i)(col(umn)?\D{0,3}\d+|:3:\d+)", "message lacks the column")

    def test_error_names_the_file(self):
        err, path = self.assert_rejected(with_(lambda c: c.update(bogus=1)))
        self.assertIn(path, err)

    def test_unknown_top_level_key(self):
        self.assert_rejected(with_(lambda c: c.update(bogus=1)), "bogus")

    def test_unknown_endpoint_key(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][1].update(methd="GET")),
                             "endpoints[1]", "methd")

    def test_unknown_backend_key(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][1].update(bogus=True)),
            "endpoints[0].backends[1]", "bogus")

    def test_missing_url(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][1].pop("url")),
            "endpoints[0].backends[1]", "url")

    def test_ftp_url(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][1].update(url="ftp://h/x")),
            "endpoints[0].backends[1].url")

    def test_not_a_url(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][0].update(url="127.0.0.1:80/x")),
            "endpoints[0].backends[0].url")

    def test_duplicate_paths(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][1].update(path="/tickers")),
                             "endpoints[1].path")

    def test_path_without_slash(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][1].update(path="other")),
                             "endpoints[1].path")

    def test_path_with_query(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][1].update(path="/a?b")),
                             "endpoints[1].path")

    def test_reserved_paths(self):
        for p in ["/healthz", "/readyz", "/metrics"]:
            with self.subTest(path=p):
                self.assert_rejected(with_(lambda c: c["endpoints"][1].update(path=p)),
                                     "endpoints[1].path")

    def test_negative_timeout(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][0].update(timeout_ms=-5)),
                             "endpoints[0].timeout_ms")

    def test_zero_timeout(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][0].update(timeout_ms=0)),
                             "endpoints[0].timeout_ms")

    def test_huge_timeout(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][0].update(timeout_ms=10 ** 9)),
                             "endpoints[0].timeout_ms")

    def test_huge_backend_timeout(self):
        def m(c):
            c["endpoints"][1]["timeout_ms"] = 600000
            c["endpoints"][1]["backends"][0]["timeout_ms"] = 10 ** 9
        self.assert_rejected(with_(m), "endpoints[1].backends[0].timeout_ms")

    def test_timeout_not_integer(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][0].update(timeout_ms="3000")),
                             "endpoints[0].timeout_ms")
        self.assert_rejected(with_(lambda c: c["endpoints"][0].update(timeout_ms=2.5)),
                             "endpoints[0].timeout_ms")

    def test_empty_backends(self):
        self.assert_rejected(with_(lambda c: c["endpoints"][1].update(backends=[])),
                             "endpoints[1].backends")

    def test_backend_count_limit(self):
        def n_backends(n):
            return with_(lambda c: c["endpoints"][1].update(backends=[
                {"name": f"b{i}", "url": "http://127.0.0.1:9/"} for i in range(n)]))
        rc, out, err, _ = run_check_config(n_backends(1000))
        self.assertEqual(rc, 0, err)
        self.assert_rejected(n_backends(1001), "endpoints[1].backends")

    def test_empty_endpoints(self):
        self.assert_rejected(with_(lambda c: c.update(endpoints=[])), "endpoints")

    def test_duplicate_backend_names(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][1].update(name="a")),
            "endpoints[0].backends[1].name")

    def test_empty_backend_name(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][0].update(name="")),
            "endpoints[0].backends[0].name")

    def test_unset_env_var(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][0].update(
                headers={"X-Token": "${GD_SURELY_UNSET_VAR}"})),
            "endpoints[0].backends[0].headers", "GD_SURELY_UNSET_VAR",
            env={"GD_SURELY_UNSET_VAR": None})

    def test_header_not_string(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][0].update(headers={"X-N": 5})),
            "endpoints[0].backends[0].headers")

    def test_backend_timeout_over_endpoint(self):
        self.assert_rejected(
            with_(lambda c: c["endpoints"][0]["backends"][1].update(timeout_ms=3001)),
            "endpoints[0].backends[1].timeout_ms")

    def test_workers_negative(self):
        self.assert_rejected(with_(lambda c: c.update(workers=-1)), "workers")

    def test_workers_too_many(self):
        self.assert_rejected(with_(lambda c: c.update(workers=257)), "workers")

    def test_ranges(self):
        for key, bad in [("worker_connections", 0), ("idle_timeout_ms", 99),
                         ("drain_timeout_ms", -1), ("max_body_bytes", 0),
                         ("max_body_bytes", 1073741825), ("upstream_idle_connections", 0),
                         ("upstream_max_host_connections", 100001),
                         ("header_timeout_ms", 99), ("header_timeout_ms", "10"),
                         ("send_timeout_ms", 3600001), ("max_unsent_answer_bytes", 1023)]:
            with self.subTest(key=key, value=bad):
                self.assert_rejected(with_(lambda c: c.update({key: bad})), key)

    def test_bad_log_level(self):
        self.assert_rejected(with_(lambda c: c.update(log_level="loud")), "log_level")

    def test_access_log_not_bool(self):
        self.assert_rejected(with_(lambda c: c.update(access_log="yes")), "access_log")

    def test_bad_trusted_proxy(self):
        self.assert_rejected(with_(lambda c: c.update(trusted_proxies=["not-an-ip"])),
                             "trusted_proxies")

    def test_bad_listen(self):
        for spec, reason in BAD_LISTEN:
            with self.subTest(listen=spec):
                self.assert_rejected(with_(lambda c: c.update(listen=spec)),
                                     f'listen: "{spec}": {reason}')

    def test_listen_forms_accepted(self):
        for spec in GOOD_LISTEN:
            with self.subTest(listen=spec):
                rc, out, err, _ = run_check_config(with_(lambda c: c.update(listen=spec)))
                self.assertEqual(rc, 0, err)
                self.assertIn(f"listen {spec},", out)

    def test_top_level_not_object(self):
        self.assert_rejected("[1, 2]")

    def test_empty_file(self):
        self.assert_rejected("")


class CommandLineTest(unittest.TestCase):
    def test_version(self):
        rc, out, err = run_bin(["--version"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out + err, r"\d+\.\d+\.\d+")

    def test_help(self):
        rc, out, err = run_bin(["--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("--config", out + err)

    def test_unknown_flag(self):
        rc, out, err = run_bin(["--no-such-flag"])
        self.assertEqual(rc, 2)

    def test_missing_config_file(self):
        rc, out, err = run_bin(["--check-config", "--config", "/nonexistent/gatherd.json"])
        self.assertEqual(rc, 2)
        self.assertIn("/nonexistent/gatherd.json", err)

    def test_invalid_config_at_start(self):
        g = Gatherd(with_(lambda c: c.update(bogus=1)), wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2)
        self.assertIn("bogus", g.stderr_text())
        g.stop()

    def test_port_in_use_exit_1(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            g = Gatherd(valid(), args=["--listen", f"127.0.0.1:{port}"], wait_listening=False)
            self.assertEqual(g.wait_exit(15), 1, g.stderr_text())
            g.stop()

    def test_bad_listen_flag(self):
        # A syntax error in --listen is a usage error (2), caught by --check-config too; only
        # failing to bind is a runtime failure (1).
        for spec, reason in BAD_LISTEN:
            with self.subTest(listen=spec):
                rc, out, err = run_bin(["--check-config", "--listen", spec])
                self.assertEqual(rc, 2, out + err)
                self.assertIn(f'--listen: "{spec}": {reason}', err)
        g = Gatherd(valid(), args=["--listen", "nonsense"], wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2, g.stderr_text())
        self.assertIn('--listen: "nonsense"', g.stderr_text())
        g.stop()

    def test_bad_listen_at_start(self):
        g = Gatherd(with_(lambda c: c.update(listen="1.2.3.4:99999")), listen=None,
                    wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2, g.stderr_text())
        self.assertIn('listen: "1.2.3.4:99999": PORT must be a number', g.stderr_text())
        g.stop()

    def test_bad_port_env(self):
        no_listen = with_(lambda c: c.pop("listen"))
        for port in ["http", "99999", "-1", " 80", "1:2", "0x50"]:
            with self.subTest(PORT=port):
                rc, out, err, _ = run_check_config(no_listen, env={"PORT": port})
                self.assertEqual(rc, 2, out + err)
                self.assertIn(f'PORT: "{port}" is not a port number', err)
        rc, out, err, _ = run_check_config(no_listen, env={"PORT": "8080"})
        self.assertEqual(rc, 0, err)
        self.assertIn("listen 0.0.0.0:8080,", out)
        g = Gatherd(no_listen, listen=None, env={"PORT": "http"}, wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2, g.stderr_text())
        g.stop()

    def test_bad_workers_flag(self):
        rc, out, err = run_bin(["--check-config", "--workers", "-1"])
        self.assertEqual(rc, 2)


class LogLevelTest(unittest.TestCase):
    """--log-level sets the lowest level of the stderr lines, over the config's log_level; the
    access log on stdout is not a level and stays."""

    # libmicrohttpd answers this 400 itself and reports it, at debug: a client's mistake.
    BAD_HEADER = b"GET /healthz HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n"

    def test_error_hides_info_and_debug(self):
        port = free_port()
        # At error nothing announces the start: wait on the socket instead of `listening`.
        g = Gatherd(with_(lambda c: c.update(log_level="debug")), args=["--log-level", "error"],
                    listen=f"127.0.0.1:{port}", wait_listening=False)
        try:
            g.wait_accepting(port)
            self.assertEqual(http_get(g.url("/healthz"), headers={"X-Request-Id": "lvl-1"})[0],
                             200)
            self.assertTrue(raw_request(port, self.BAD_HEADER).startswith(b"HTTP/1.1 400"))
            self.assertEqual(g.wait_access_id("lvl-1")["status"], 200)
        finally:
            rc = g.stop()
        self.assertEqual(rc, 0, g.stderr_text())
        lines = g.log_lines()
        self.assertEqual([o for o in lines if o.get("level") != "error"], [],
                         "only error lines at --log-level error")
        self.assertNotIn("listening", [o.get("msg") for o in lines])

    def test_debug_shows_debug(self):
        # The config asks for error; the flag wins, so `listening` (info) is there too.
        with Gatherd(with_(lambda c: c.update(log_level="error")),
                     args=["--log-level", "debug"]) as g:
            self.assertEqual(g.listening.get("level"), "info")
            self.assertTrue(raw_request(g.port, self.BAD_HEADER).startswith(b"HTTP/1.1 400"))
            line = g.wait_log("http", pred=lambda o: o.get("level") == "debug")
            self.assertEqual(line.get("source"), "libmicrohttpd")

    def test_info_hides_debug(self):
        with Gatherd(valid(), args=["--log-level", "info"]) as g:
            self.assertTrue(raw_request(g.port, self.BAD_HEADER).startswith(b"HTTP/1.1 400"))
        self.assertEqual([o for o in g.log_lines() if o.get("level") == "debug"], [])
        self.assertEqual(g.log_lines()[-1].get("msg"), "stopped")

    def test_invalid_flag(self):
        for bad in ["loud", ""]:
            with self.subTest(level=bad):
                rc, out, err = run_bin(["--check-config", "--log-level", bad])
                self.assertEqual(rc, 2, out + err)
                self.assertIn("--log-level", err)
                self.assertIn("debug, info, warn or error", err)
        g = Gatherd(valid(), args=["--log-level", "loud"], wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2, g.stderr_text())
        self.assertIn("--log-level", g.stderr_text())
        g.stop()


if __name__ == "__main__":
    unittest.main()
