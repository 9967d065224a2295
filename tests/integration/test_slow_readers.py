#!/usr/bin/env python3
"""Clients that never read their answers (issue 14): an answer whose client takes no byte for
send_timeout_ms is dropped and its connection closed, and past max_unsent_answer_bytes held for
unread answers, new aggregate requests get 503 with Retry-After instead of growing memory."""

import socket
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, parse_response, \
    read_response, stop_checked, wait_until

MIB = 1 << 20
NBACKENDS = 8          # 8 x 1 MiB: more than the kernel's socket buffers absorb (4 MiB + 4 KiB)
BOUND = 4 * MIB
SEND_TIMEOUT_MS = 2000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def non_reader(port, rid):
    """Sends a request for the big answer and reads nothing (a 4 KiB receive buffer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\nX-Request-Id: %s\r\n\r\n" % rid.encode())
    return s


class SlowReadersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/big", [(f"b{i}", u(f"/huge_length?bytes={MIB}&id={i}"))
                              for i in range(NBACKENDS)], timeout_ms=20000),
            endpoint("/small", [("ok", u("/ok"))]),
            send_timeout_ms=SEND_TIMEOUT_MS, max_unsent_answer_bytes=BOUND,
            idle_timeout_ms=60000))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def big_status(self):
        status, headers, body = http_get(self.gd.url("/big"), timeout=30)
        return status, headers

    def test_bound_then_send_timeout(self):
        status, _ = self.big_status()    # a reading client: answered in full
        self.assertEqual(status, 200)
        held = non_reader(self.gd.port, "non-reader-0")
        others = []
        try:
            # Once its 8 MiB answer is held unsent (beyond what the socket buffers took), the
            # bound is passed: the next aggregate request is refused, not rendered.
            got = wait_until(lambda: (lambda st: st if st[0] == 503 else None)(self.big_status()),
                             15, "a 503 once an unread answer is held")
            self.assertEqual(got[1].get("retry-after"), "1")
            # gatherd's own endpoints and small answers are not aggregates past the bound...
            status, _, _ = http_get(self.gd.url("/healthz"))
            self.assertEqual(status, 200)
            # ...and more clients that never read get 503 at once instead of 8 MiB each
            # (without the bound, RSS grew by 8 MiB per such client).
            base = rss_kib(self.gd.proc.pid)
            t0 = time.monotonic()
            for i in range(1, 9):
                others.append(non_reader(self.gd.port, f"non-reader-{i}"))
            for s in others:
                status, headers, _ = parse_response(read_response(s, 10))
                self.assertEqual(status, 503)
            self.assertLess(time.monotonic() - t0, 10)
            grown = rss_kib(self.gd.proc.pid) - base
            self.assertLess(grown, 16 * 1024, f"RSS grew {grown} KiB with 8 more non-readers")
            # The send timeout drops the unread answer and closes its connection: then
            # aggregates are served again.
            wait_until(lambda: self.big_status()[0] == 200, SEND_TIMEOUT_MS / 1000 + 15,
                       "aggregates served again after the send timeout")
            line = self.gd.wait_access_id("non-reader-0", timeout=15)
            self.assertEqual(line["bytes"], 0, line)
            # The held connection was closed by gatherd: reading it ends (EOF or reset) well
            # before the 60 s idle timeout.
            held.settimeout(20)
            try:
                while held.recv(1 << 20):
                    pass
            except ConnectionResetError:
                pass
        finally:
            held.close()
            for s in others:
                s.close()


if __name__ == "__main__":
    unittest.main()
