#!/usr/bin/env python3
"""Who owns a unix: socket's file. A stale socket (nothing accepts on it) is replaced; a live
one, where another gatherd serves, is refused with exit 1 and left alone; anything else at the
path is refused; and on exit gatherd removes the file only if it is still the one it bound.
Before this rule a second gatherd on a live socket replaced its file, and when the first one
exited it deleted the second one's."""

import json
import os
import shutil
import socket
import stat
import tempfile
import unittest

from gd import Gatherd, HarnessError, config, endpoint, parse_response, unix_request

GET = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class UnixListenTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gatherd-unix-")
        self.path = os.path.join(self.dir, "gd.sock")
        self.listen = f"unix:{self.path}"
        self.cfg = config(endpoint("/t", [("a", "http://127.0.0.1:9/ok")]))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def healthy(self):
        status, _, body = parse_response(unix_request(self.path, GET))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "ok"})

    def refused(self, why):
        """Starts a gatherd on the path that must not start: exit 1 with `why` on stderr."""
        g = Gatherd(self.cfg, listen=self.listen, wait_listening=False)
        try:
            rc = g.wait_exit(30)
        except HarnessError:
            g.kill()
            raise
        g.kill()
        err = g.stderr_text()
        self.assertEqual(rc, 1, err)
        self.assertIn(f"gatherd: listen: {self.listen}: {why}", err)
        self.assertNotIn('"listening"', err)

    def test_stale_socket_replaced_and_removed_at_exit(self):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()
        with Gatherd(self.cfg, listen=self.listen) as g:
            self.assertEqual(g.addr, self.listen)
            self.healthy()
        self.assertFalse(os.path.lexists(self.path))

    def test_live_socket_refused_and_left_serving(self):
        with Gatherd(self.cfg, listen=self.listen) as first:
            ino = os.stat(self.path).st_ino
            self.refused("another process is accepting connections on it")
            # The first one's file is untouched and it still serves through it.
            self.assertEqual(os.stat(self.path).st_ino, ino)
            self.healthy()
            self.assertTrue(first.alive())
        self.assertFalse(os.path.lexists(self.path))

    def test_exit_leaves_a_file_it_did_not_create(self):
        other = socket.socket(socket.AF_UNIX)
        try:
            with Gatherd(self.cfg, listen=self.listen):
                # Someone removes gatherd's socket file and serves on the path themselves.
                os.unlink(self.path)
                other.bind(self.path)
                other.listen(1)
                ino = os.stat(self.path).st_ino
            self.assertTrue(os.path.lexists(self.path), "gatherd removed a socket not its own")
            self.assertEqual(os.stat(self.path).st_ino, ino)
            with socket.socket(socket.AF_UNIX) as c:
                c.settimeout(10)
                c.connect(self.path)
        finally:
            other.close()

    def test_not_a_socket_refused(self):
        with open(self.path, "w") as f:
            f.write("keep me\n")
        self.refused("exists and is not a socket")
        with open(self.path) as f:
            self.assertEqual(f.read(), "keep me\n")

    def test_file_mode(self):
        with Gatherd(self.cfg, listen=self.listen):
            st = os.stat(self.path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)


if __name__ == "__main__":
    unittest.main()
