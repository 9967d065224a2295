#!/usr/bin/env python3
"""Listen address forms and precedence: --listen, config `listen`, $PORT, IPv6 literal, unix
socket (mode 0660, stale file replaced); several workers, and how many by default."""

import concurrent.futures
import json
import os
import shutil
import socket
import stat
import tempfile
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, free_port, http_get, parse_response, \
    unix_request, wait_until


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def usable_cpus():
    """What gatherd runs with workers 0 (src/runtime/app.c usable_cpus()): the CPUs of the affinity
    mask, capped by a cgroup v2 CPU quota rounded up, at most 256."""
    n = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and int(period) > 0:
            c = -(-int(quota) // int(period))
            if 1 <= c < n:
                n = c
    except (OSError, ValueError):
        pass
    return min(n, 256)


class ListenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        cls.eps = [endpoint("/t", [("a", cls.up.url("/ok?id=a")), ("b", cls.up.url("/ok?id=b"))],
                            timeout_ms=10000)]

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()

    def check(self, g, host="127.0.0.1"):
        status, _, body = http_get(f"http://{host}:{g.port}/t")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["errors"], [])

    def test_config_listen(self):
        port = free_port()
        with Gatherd(config(*self.eps, listen=f"127.0.0.1:{port}"), listen=None) as g:
            self.assertEqual(g.port, port)
            self.assertEqual(g.addr, f"127.0.0.1:{port}")
            self.check(g)

    def test_flag_beats_config(self):
        port = free_port()
        with Gatherd(config(*self.eps, listen="127.0.0.1:1"),
                     args=["--listen", f"127.0.0.1:{port}"]) as g:
            self.assertEqual(g.port, port)
            self.check(g)

    def test_config_beats_port_env(self):
        port = free_port()
        with Gatherd(config(*self.eps, listen=f"127.0.0.1:{port}"), listen=None,
                     env={"PORT": "1"}) as g:
            self.assertEqual(g.port, port)

    def test_port_env(self):
        port = free_port()
        with Gatherd(config(*self.eps), listen=None, env={"PORT": str(port)}) as g:
            self.assertEqual(g.addr, f"0.0.0.0:{port}")
            self.check(g)

    def test_port_zero_resolved(self):
        with Gatherd(config(*self.eps)) as g:
            self.assertNotEqual(g.port, 0)
            self.assertRegex(g.addr, r"^127\.0\.0\.1:\d+$")

    @unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6(self):
        with Gatherd(config(*self.eps), listen="[::1]:0") as g:
            self.assertRegex(g.addr, r"^\[::1\]:\d+$")
            self.check(g, host="[::1]")

    def test_unix_socket(self):
        d = tempfile.mkdtemp(prefix="gatherd-unix-")
        path = os.path.join(d, "gd.sock")
        # A stale socket file left by a previous run must be replaced.
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        with Gatherd(config(*self.eps), listen=f"unix:{path}") as g:
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o660)
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
            raw = unix_request(path, b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status, _, body = parse_response(raw)
            self.assertEqual(status, 200, raw)
            self.assertEqual(json.loads(body)["errors"], [])
        os.unlink(path) if os.path.exists(path) else None
        os.rmdir(d)

    def test_default_workers_is_usable_cpus(self):
        # Neither the config nor the command line sets workers: one per usable CPU.
        with Gatherd(config(*self.eps), workers=None) as g:
            self.assertEqual(g.listening.get("workers"), usable_cpus())

    @unittest.skipUnless(shutil.which("taskset"), "no taskset")
    def test_default_workers_follow_affinity(self):
        # One CPU in the affinity mask, however many the machine has: one worker.
        cpu = str(min(os.sched_getaffinity(0)))
        with Gatherd(config(*self.eps), workers=None, prefix=["taskset", "-c", cpu]) as g:
            self.assertEqual(g.listening.get("workers"), 1)
            self.check(g)

    def test_workers_flag_beats_config(self):
        with Gatherd(config(*self.eps, workers=1), workers=2) as g:
            self.assertEqual(g.listening.get("workers"), 2)
        with Gatherd(config(*self.eps, workers=2), workers=None) as g:
            self.assertEqual(g.listening.get("workers"), 2)

    def test_workers_zero_is_usable_cpus(self):
        with Gatherd(config(*self.eps), workers=0) as g:
            self.assertEqual(g.listening.get("workers"), usable_cpus())
            self.check(g)

    def test_several_workers(self):
        with Gatherd(config(*self.eps), workers=2) as g:
            self.assertEqual(g.listening.get("workers"), 2)
            with concurrent.futures.ThreadPoolExecutor(16) as ex:
                got = list(ex.map(lambda _: http_get(g.url("/t")), range(64)))
            self.assertEqual([s for s, _, _ in got], [200] * 64)
            # Both loops took connections (each request above had its own): the access lines
            # say which worker served each. 64 connections all landing on one of two loops
            # would mean the other never accepts.
            lines = wait_until(lambda: [l for l in g.access_lines() if l.get("path") == "/t"]
                               if len(g.access_lines()) >= 64 else None, 10, "64 access lines")
            workers = {l["worker"] for l in lines}
            self.assertEqual(workers, {0, 1}, "connections were not spread over both loops")


if __name__ == "__main__":
    unittest.main()
