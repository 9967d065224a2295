#!/usr/bin/env python3
"""Start-up failures, injected with the failcall shim (tests/fault/failcall.c) into the real
binary: whichever worker cannot start (the first, a middle or the last of three), and whether its
daemon or its thread is what fails, gatherd exits 1 at once with the reason on stderr, having
stopped the workers already running. Before the fix a first worker's failure left the control
loop running forever (SIGTERM then logged signal_ignored), and a failed pthread_create was
followed by pthread_join of the descriptor glibc had freed.

The shim is preloaded into gatherd only. In an ASan build the sanitizer runtime must come first
in the process, so it is preloaded ahead of the shim (found with ldd)."""

import os
import re
import subprocess
import unittest

import gd
from faultlib import Gatherd, main
from gd import HarnessError, config, endpoint

WORKERS = 3
# Exiting takes at most the drain of the workers already running (nothing is in flight: well
# under a second); the margin is for an ASan build on a loaded machine. A hang shows as this.
EXIT_TIMEOUT = 60


def asan_runtime():
    """The path of the ASan runtime gatherd is linked with, or None for a plain build."""
    out = subprocess.run(["ldd", gd.BIN], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"^\s*libasan\.so\S*\s+=>\s+(\S+)", out, re.M)
    return m.group(1) if m else None


ASAN = asan_runtime()


def failing(func, call, errno="EAGAIN"):
    """The environment that makes gatherd's call number ``call`` of ``func`` fail."""
    shim = os.environ["GD_FAILCALL"]
    return {
        "LD_PRELOAD": ":".join(p for p in (ASAN, shim) if p),
        "GD_FAIL_FUNC": func,
        "GD_FAIL_CALL": str(call),
        "GD_FAIL_ERRNO": errno,
    }


def cfg():
    # Nothing is requested: the upstream only has to be a valid URL.
    return config(endpoint("/t", [("a", "http://127.0.0.1:9/ok")]))


class StartupFaultTest(unittest.TestCase):
    def run_failing(self, func, call, workers=WORKERS, errno="EAGAIN"):
        """Starts gatherd with the fault and waits for it to exit; returns its stderr after
        checking what every failed start must show: exit 1, the fault really injected, the
        reason, and no 'listening'."""
        g = Gatherd(cfg(), workers=workers, env=failing(func, call, errno),
                    wait_listening=False)
        try:
            try:
                rc = g.wait_exit(EXIT_TIMEOUT)
            except HarnessError:
                self.fail(f"gatherd still running {EXIT_TIMEOUT}s after {func} call {call} "
                          f"failed; stderr:\n{g.stderr_text()}")
        finally:
            g.kill()
        err = g.stderr_text()
        self.assertIn(f"failcall: {func} call {call} fails with {errno}", err)
        self.assertEqual(rc, 1, err)
        names = [o.get("msg") for o in g.log_lines()]
        self.assertNotIn("listening", names, err)
        self.assertNotIn("signal_ignored", names, err)
        return err

    def assert_worker_failed(self, err, worker, reason):
        line = [ln for ln in err.splitlines() if ln.startswith("gatherd: ")]
        self.assertEqual(len(line), 1, err)
        self.assertRegex(line[0], rf"^gatherd: cannot start worker {worker} of {WORKERS}: "
                         + reason, err)

    # The daemon: MHD_start_daemon call k+1 is worker k's.

    def test_daemon_fails_in_first_worker(self):
        err = self.run_failing("MHD_start_daemon", 1)
        self.assert_worker_failed(err, 0, "libmicrohttpd could not start a daemon")

    def test_daemon_fails_in_middle_worker(self):
        err = self.run_failing("MHD_start_daemon", 2)
        self.assert_worker_failed(err, 1, "libmicrohttpd could not start a daemon")

    def test_daemon_fails_in_last_worker(self):
        err = self.run_failing("MHD_start_daemon", 3)
        self.assert_worker_failed(err, 2, "libmicrohttpd could not start a daemon")

    def test_daemon_fails_in_only_worker(self):
        err = self.run_failing("MHD_start_daemon", 1, workers=1)
        self.assertRegex(err, r"(?m)^gatherd: cannot start worker 0 of 1: ")

    # The thread: pthread_create call 1 is the log writer's, call k+2 worker k's.

    def test_thread_fails_for_first_worker(self):
        err = self.run_failing("pthread_create", 2)
        self.assert_worker_failed(err, 0, "cannot create its thread: Resource temporarily "
                                  "unavailable")

    def test_thread_fails_for_middle_worker(self):
        err = self.run_failing("pthread_create", 3)
        self.assert_worker_failed(err, 1, "cannot create its thread: Resource temporarily "
                                  "unavailable")

    def test_thread_fails_for_last_worker(self):
        err = self.run_failing("pthread_create", 4, errno="ENOMEM")
        self.assert_worker_failed(err, 2, "cannot create its thread: Cannot allocate memory")

    def test_thread_fails_for_log_writer(self):
        err = self.run_failing("pthread_create", 1)
        self.assertRegex(err, r"(?m)^gatherd: cannot start the log writer thread", err)

    # The loop: event_base_new_with_config call 1 is the control thread's (event_base_new()
    # calls it through the exported symbol), call k+2 worker k's.

    def test_event_loop_fails_in_middle_worker(self):
        err = self.run_failing("event_base_new_with_config", 3, errno="ENOMEM")
        self.assert_worker_failed(err, 1, "cannot create an event loop")

    def test_shim_passes_other_calls_through(self):
        # The control: a fault numbered past every call never fires, and gatherd serves and
        # stops as usual under the shim (MHD_start_daemon's arguments were passed on intact).
        env = failing("MHD_start_daemon", WORKERS + 1)
        with Gatherd(cfg(), workers=WORKERS, env=env) as g:
            self.assertEqual(g.listening.get("workers"), WORKERS)
            status, _, body = gd.http_get(g.url("/healthz"))
            self.assertEqual(status, 200, body)
        self.assertNotIn("failcall:", g.stderr_text())


if __name__ == "__main__":
    main()
