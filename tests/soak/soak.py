#!/usr/bin/env python3
"""Soak: gatherd (2 workers) under a steady mixed load for SOAK_SECONDS, loopback only.

Upstreams (fakeup) mix healthy backends with delays, 503s, resets before and during the body,
hangs cut off by backend timeouts, stalled bodies and bodies over max_body_bytes, and one
endpoint whose calls are coalesced (shared by concurrent clients).  A pool of
client threads (keep-alive and fresh connections) sends requests for the whole duration
(bounded by SOAK_MAX_REQUESTS too), and one more client keeps abandoning requests mid-flight
(the cancel path). Hostile clients run beside them: one that asks for a 6 MiB answer and never
reads it (gatherd must drop it at send_timeout_ms and close the connection) and one that sends
its head a byte every 0.4 s (it must get 408 at header_timeout_ms), each over and over.  Every few seconds gatherd's VmRSS and open descriptors are sampled.

Pass: every request sent was answered (abandoned ones aside), every non-reader's connection
closed by gatherd and every slow head answered 408, each endpoint with exactly its
expected status (200, or 502 for the all-failing one) and the expected error kinds; RSS and
descriptors flat (the last third's maximum within +15 % / +20 of the first third's maximum,
after a warm-up); exit 0 at SIGTERM.  Prints a table of samples and appends a summary to
bench/SOAK.md.

Environment: SOAK_SECONDS (120), SOAK_CLIENTS (32), SOAK_MAX_REQUESTS (2000000),
SOAK_SAMPLE_SECONDS (duration / 24, at least 2), GATHERD_BIN, SOAK_REPORT (bench/SOAK.md;
empty: do not write).
"""

import datetime
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import gd  # noqa: E402
from gd import FakeUpstream, Gatherd, config, endpoint, http_get  # noqa: E402

DURATION = float(os.environ.get("SOAK_SECONDS", "120"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "32"))
MAX_REQUESTS = int(os.environ.get("SOAK_MAX_REQUESTS", "2000000"))
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_SECONDS", "0")) or max(2.0, DURATION / 24)
REPORT = os.environ.get("SOAK_REPORT", os.path.join(gd.SRC, "bench", "SOAK.md"))
HEADER_TIMEOUT_MS = 2000
SEND_TIMEOUT_MS = 2000
WARMUP_FRACTION = 0.2
RSS_SLACK = 0.15
FD_SLACK = 20


def build_config(up):
    u = up.url
    eps = [
        endpoint("/healthy", [
            ("a", u("/ok?id=a")),
            ("b", u("/json/btcbox_ticker.json")),
            ("c", u("/ok?id=c&delay_ms=20")),
        ], timeout_ms=5000),
        endpoint("/mixed", [
            ("ok", u("/ok?id=ok&delay_ms=10")),
            ("s503", u("/status/503")),
            ("reset", u("/reset_mid?hold_ms=20")),
            ("hang", u("/hang"), {"timeout_ms": 300}),
        ], timeout_ms=5000),
        endpoint("/flaky", [
            ("early_reset", u("/reset_before")),
            ("slowok", u("/ok?id=s&delay_ms=100")),
        ], timeout_ms=5000),
        endpoint("/slow", [
            ("delayed", u("/ok?id=d&delay_ms=150")),
            ("stall", u("/stall_body"), {"timeout_ms": 250}),
            ("big", u("/huge_chunked?bytes=200000"), {"max_body_bytes": 100000}),
        ], timeout_ms=5000),
        # Coalesced: concurrent clients share these calls, and leave them mid-flight.
        endpoint("/shared", [
            ("ok", u("/ok?id=sh&delay_ms=50")),
            ("reset", u("/reset_mid?hold_ms=20")),
            ("hang", u("/hang"), {"timeout_ms": 300}),
        ], timeout_ms=5000, coalesce=True),
        endpoint("/allbad", [
            ("s503", u("/status/503")),
            ("reset", u("/reset_before")),
            ("hang", u("/hang"), {"timeout_ms": 200}),
        ], timeout_ms=5000),
    ]
    # The non-readers' answers: more than the socket buffers take (4 MiB + a small window).
    eps.append(endpoint("/big", [(f"b{i}", u(f"/huge_length?bytes={1 << 20}&id={i}"))
                                 for i in range(6)], timeout_ms=5000))
    return config(*eps, upstream_max_host_connections=128, idle_timeout_ms=30000,
                  header_timeout_ms=HEADER_TIMEOUT_MS, send_timeout_ms=SEND_TIMEOUT_MS)


# path -> (status, sorted error kinds)
EXPECT = {
    "/healthy": (200, []),
    "/mixed": (200, ["http_status", "timeout", "transfer"]),
    "/flaky": (200, ["transfer"]),
    "/slow": (200, ["timeout", "too_large"]),
    "/allbad": (502, ["http_status", "timeout", "transfer"]),
    "/shared": (200, ["timeout", "transfer"]),
    "/healthz": (200, None),
}
# The request mix, cycled by each client from its own offset.
MIX = ["/healthy", "/healthy", "/mixed", "/healthy", "/flaky", "/slow", "/healthy", "/allbad",
       "/healthz", "/mixed", "/shared", "/healthy", "/shared"]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.answered = 0
        self.abandoned = 0
        self.non_readers = 0      # connections that asked for /big and read nothing
        self.dropped = 0          # ... that gatherd closed (the send timeout)
        self.slow_heads = 0       # heads sent a byte at a time
        self.got_408 = 0          # ... answered 408
        self.by = {}          # (path, status) -> count
        self.failures = []    # first few problems

    def problem(self, text):
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(text)


def check_answer(path, status, body):
    want_status, want_kinds = EXPECT[path]
    if status != want_status:
        return f"{path}: status {status}, want {want_status}: {body[:200]!r}"
    if want_kinds is None:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return f"{path}: answer is not JSON: {body[:200]!r}"
    kinds = sorted(e["error"] for e in doc["errors"])
    if kinds != want_kinds:
        return f"{path}: errors {kinds}, want {want_kinds}"
    return None


def client(idx, port, deadline, tally, stop):
    keepalive = idx % 3 != 0          # a third of the clients open a connection per request
    conn = None
    i = idx
    while not stop.is_set() and time.monotonic() < deadline:
        with tally.lock:
            if tally.sent >= MAX_REQUESTS:
                return
            tally.sent += 1
        path = MIX[i % len(MIX)]
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path, headers={"X-Request-Id": f"soak-{idx}-{i}"})
            r = conn.getresponse()
            body = r.read()
            status = r.status
            if not keepalive or r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            tally.problem(f"{path}: no answer: {type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
            conn = None
            continue
        with tally.lock:
            tally.answered += 1
            tally.by[(path, status)] = tally.by.get((path, status), 0) + 1
        bad = check_answer(path, status, body)
        if bad:
            tally.problem(bad)
    if conn is not None:
        conn.close()


def abandoner(port, deadline, tally, stop):
    """Sends /mixed or /shared and leaves (RST) 50 ms later, while it is parked on its hanging
    backend (on /shared, often a flight other clients still wait on)."""
    n = 0
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            path = b"/shared" if n % 2 else b"/mixed"
            s.sendall(b"GET %s HTTP/1.1\r\nHost: soak\r\nX-Request-Id: soak-abandon-%d\r\n\r\n"
                      % (path, n))
            stop.wait(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
            n += 1
            with tally.lock:
                tally.abandoned += 1
        except OSError as e:
            tally.problem(f"abandoner: {e}")
        stop.wait(0.1)


def non_reader(port, deadline, tally, stop):
    """Asks for a 6 MiB answer with a 4 KiB receive window and reads nothing; gatherd must give
    up on it (send_timeout_ms) and close the connection, seen here as the end of the stream
    once it is finally read."""
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(30)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: soak\r\n\r\n")
            with tally.lock:
                tally.non_readers += 1
            stop.wait(SEND_TIMEOUT_MS / 1000 + 3)   # more than the send timeout, reading nothing
            closed = False
            try:
                while True:
                    if not s.recv(1 << 20):
                        closed = True
                        break
            except ConnectionResetError:
                closed = True
            except socket.timeout:
                pass
            s.close()
            if closed:
                with tally.lock:
                    tally.dropped += 1
            elif not stop.is_set():
                tally.problem("non-reader: gatherd kept sending past the send timeout")
        except OSError as e:
            tally.problem(f"non-reader: {e}")


def slow_head(port, deadline, tally, stop):
    """Sends a head a byte every 0.4 s (the idle timeout restarts on every byte); it must be
    answered 408 once header_timeout_ms has passed since its first byte."""
    head = b"GET /healthy HTTP/1.1\r\nHost: soak\r\n" + b"X-Slow: y\r\n" * 20 + b"\r\n"
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            with tally.lock:
                tally.slow_heads += 1
            got = b""
            for i in range(len(head)):
                s.sendall(head[i:i + 1])
                if stop.wait(0.4):
                    break
                s.settimeout(0.001)
                try:
                    got += s.recv(4096)
                except socket.timeout:
                    continue
                break
            s.settimeout(10)
            try:
                while b"\r\n\r\n" not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (socket.timeout, ConnectionResetError):
                pass
            s.close()
            if got.startswith(b"HTTP/1.1 408 "):
                with tally.lock:
                    tally.got_408 += 1
            elif not stop.is_set():
                tally.problem(f"slow head: not a 408: {got[:80]!r}")
        except OSError as e:
            if not stop.is_set():
                tally.problem(f"slow head: {e}")


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def main():
    up = FakeUpstream()
    g = None
    try:
        g = Gatherd(build_config(up), workers=2)
        pid = g.proc.pid
        tally = Tally()
        stop = threading.Event()
        t0 = time.monotonic()
        deadline = t0 + DURATION
        threads = [threading.Thread(target=client, args=(k, g.port, deadline, tally, stop))
                   for k in range(CLIENTS)]
        for hostile in (abandoner, non_reader, slow_head):
            threads.append(threading.Thread(target=hostile,
                                            args=(g.port, deadline, tally, stop)))
        for t in threads:
            t.start()
        samples = []
        print(f"soak: {DURATION:.0f}s, {CLIENTS} clients + 1 abandoning + 1 non-reading + 1 "
              f"slow head, gatherd pid {pid} "
              f"({gd.BIN}), sample every {SAMPLE_S:.1f}s", flush=True)
        print(f"{'t(s)':>6} {'VmRSS(KiB)':>11} {'fds':>5} {'answered':>9} {'req/s':>7}",
              flush=True)
        last_n, last_t = 0, t0
        next_t = t0
        while True:
            now = time.monotonic()
            if now >= next_t:
                rss, fds = sample(pid)
                with tally.lock:
                    n = tally.answered
                rate = (n - last_n) / max(now - last_t, 1e-6)
                last_n, last_t = n, now
                samples.append((now - t0, rss, fds, n))
                print(f"{now - t0:6.1f} {rss:11d} {fds:5d} {n:9d} {rate:7.0f}", flush=True)
                next_t += SAMPLE_S
            if now >= deadline or not any(t.is_alive() for t in threads):
                break
            stop.wait(min(0.5, max(0.0, next_t - now)))
        stop.set()
        for t in threads:
            t.join(60)
        hung = [t for t in threads if t.is_alive()]
        elapsed = time.monotonic() - t0
        rss_end, fds_end = sample(pid)
        samples.append((elapsed, rss_end, fds_end, tally.answered))
        print(f"{elapsed:6.1f} {rss_end:11d} {fds_end:5d} {tally.answered:9d}   (after the load)")

        # Flatness: the last third's maxima against the first third's, after the warm-up.
        warm = [s for s in samples if s[0] >= WARMUP_FRACTION * elapsed]
        span = elapsed - WARMUP_FRACTION * elapsed
        first = [s for s in warm if s[0] < WARMUP_FRACTION * elapsed + span / 3]
        last = [s for s in warm if s[0] >= elapsed - span / 3]
        problems = list(tally.failures)
        if hung:
            problems.append(f"{len(hung)} client threads did not finish")
        if not first or not last:
            problems.append("too few samples to judge RSS and descriptors")
        else:
            rss_first, rss_last = max(s[1] for s in first), max(s[1] for s in last)
            # Descriptors follow the connections in flight, so one sample can jump by dozens
            # and fall back at the next: a third is judged by its median, which a leak moves
            # and a passing burst does not. A leak also stays once the load stops, so the
            # count after the load is held to the same bound.
            fd_first = statistics.median_low([s[2] for s in first])
            fd_last = statistics.median_low([s[2] for s in last])
            print(f"soak: RSS max first third {rss_first} KiB, last third {rss_last} KiB "
                  f"({(rss_last / rss_first - 1) * 100:+.1f} %); fds median {fd_first} -> "
                  f"{fd_last}, {fds_end} after the load")
            if rss_last > rss_first * (1 + RSS_SLACK):
                problems.append(f"RSS grew {rss_first} -> {rss_last} KiB (> +{RSS_SLACK:.0%})")
            if fd_last > fd_first + FD_SLACK:
                problems.append(f"descriptors grew {fd_first} -> {fd_last} (medians of the "
                                f"first and last thirds, > +{FD_SLACK})")
            if fds_end > fd_first + FD_SLACK:
                problems.append(f"descriptors after the load {fds_end}, against a median of "
                                f"{fd_first} in the first third (> +{FD_SLACK})")
        if tally.sent != tally.answered:
            problems.append(f"sent {tally.sent}, answered {tally.answered}")
        if tally.non_readers == 0 or tally.slow_heads == 0:
            problems.append("the hostile clients did not run")
        print(f"soak: non-readers {tally.non_readers} (closed by gatherd {tally.dropped}), "
              f"slow heads {tally.slow_heads} (408: {tally.got_408})")
        statuses = sorted({st for (_, st) in tally.by})
        if set(statuses) - {200, 502}:
            problems.append(f"unexpected statuses {statuses}")
        print("soak: sent %d, answered %d, abandoned %d; by endpoint and status: %s" % (
            tally.sent, tally.answered, tally.abandoned,
            ", ".join(f"{p} {st}: {n}" for (p, st), n in sorted(tally.by.items()))))
        # gatherd is still healthy, then drains and exits 0.
        st, _, _ = http_get(g.url("/healthz"))
        if st != 200:
            problems.append(f"/healthz {st} after the soak")
        rc = g.stop(timeout=30)
        if rc != 0:
            problems.append(f"exit {rc} at SIGTERM; stderr tail:\n{g.stderr_text()[-2000:]}")
        g = None
        ok = not problems
        for p in problems:
            print("soak: FAIL: " + p)
        rss0 = first[0][1] if first else samples[0][1]
        fd0 = first[0][2] if first else samples[0][2]
        summary = (f"| {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
                   f"| {elapsed:.0f} s | {build_name()}"
                   f" | {tally.sent} | {tally.answered} | {tally.abandoned} "
                   f"| {tally.non_readers} / {tally.dropped} | {tally.slow_heads} / {tally.got_408} "
                   f"| {samples[0][1]} / {rss0} / {rss_end} "
                   f"| {samples[0][2]} / {fd0} / {fds_end} "
                   f"| {tally.answered / elapsed:.0f} | {'pass' if ok else 'FAIL'} |")
        write_report(summary)
        print("soak: " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        if g is not None:
            g.kill()
        up.stop()


def build_name():
    """"build" or "build-asan": the build directory the binary came from."""
    return os.path.basename(os.path.dirname(os.path.dirname(gd.BIN)))


def write_report(line):
    if not REPORT:
        return
    header = ("# Soak runs\n\n"
              "Appended by `tests/soak/run.sh` (one line per run): gatherd with 2 workers under a "
              "steady mixed load (healthy, slow, 503, reset, hanging, stalled and oversized "
              "upstreams) on loopback, plus a client abandoning requests mid-flight. RSS in KiB "
              "and open descriptors as: at start / after the warm-up / at the end.\n\n"
              "| date | duration | build | requests sent | answered | abandoned "
              "| non-readers / closed | slow heads / 408 "
              "| RSS start / warm / end | fds start / warm / end | req/s | result |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    new = not os.path.exists(REPORT)
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "a") as f:
        if new:
            f.write(header)
        f.write(line + "\n")
    print(f"soak: summary appended to {REPORT}")


if __name__ == "__main__":
    sys.exit(main())
