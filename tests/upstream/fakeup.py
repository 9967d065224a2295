#!/usr/bin/env python3
"""fakeup: a fault-injecting HTTP/1.1 upstream for gatherd's tests.

A real, non-blocking server (asyncio streams) with keep-alive.  It prints one line
``{"port": N}`` on stdout once it listens, and nothing else on stdout.

Every route accepts ``delay_ms=N`` (wait before the status line) and ``status=N`` (override
the status); simple routes also accept ``framing=close`` (no Content-Length, the body ends at
close) and ``close_after=1`` (close the kept-alive connection right after the response, without
saying so), and ``reset_next=1`` (answer, then reset the next request on this connection
before any byte of it is answered: the race of a server closing an idle kept-alive connection
just as the client reuses it; counted in ``reset_next``).  See ``ROUTES`` below for the list.  Control routes (``/_stats``, ``/_reset``,
``/_wait``) and connections that carry ``X-Fakeup-Control: 1`` are never counted.

Counters:
  connections_opened  non-control TCP connections accepted
  connections_active  of those, the ones still open
  requests            non-control requests whose head was read
  responses           non-control responses sent completely
  aborted             requests whose client went away (EOF or reset) before the whole
                      response was sent; this is how tests see gatherd cancel transfers
  paths               {path: requests}
``/_wait?<counter>=<value>[&...]&timeout_ms=N`` long-polls until every named counter is >=
its value (``path:/x=N`` waits on ``paths["/x"]``, ``le:<counter>=N`` waits until the counter is
<= N, e.g. ``le:connections_active=1``); 200 with the stats, 408 on timeout.

Request log (``/_log``, emptied by ``/_reset``): one entry per non-control request, in arrival
order: ``{"seq", "t", "target", "path", "request_id", "active", "end", "outcome", "method",
"content_type", "headers", "body"}`` (``headers`` by lower-case name, the last of a repeated one;
``body`` the request's body as text: for a sink of POSTs).  ``t`` and
``end`` are ``time.monotonic()`` (CLOCK_MONOTONIC, the clock a test process reads too) when the
request head was read and when it finished; ``target`` is the request target exactly as sent
(percent-encoding untouched); ``active`` counts the requests in flight, this one included, at its
arrival; ``outcome`` is ``responded``, ``aborted`` (the client left), ``closed`` (fakeup closed
on purpose) or null while in flight.  ``active`` is also a counter for ``/_wait``
(``le:active=0``: nothing in flight).

TLS (``--tls-cert FILE --tls-key FILE``): every route over HTTPS (HTTP/1.1), optionally
requiring a client certificate from ``--tls-client-ca FILE`` and capped at
``--tls-max-version 1.2``.  ``--tls-fault MODE`` instead serves a port where no handshake ever
completes: ``reset`` resets the connection once the ClientHello arrived (a reset in the middle of
the handshake), ``stall`` reads it and never answers (until the client leaves), ``alert`` answers
it with a fatal TLS alert (handshake_failure) and closes.  Those connections count in
``connections_opened``/``connections_active``.  ``--control-port 0`` adds a plain-HTTP listener
for the control routes (the startup line then also has ``"control_port"``), for ports whose own
protocol cannot carry them.
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import struct
import sys
import time
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 64 * 1024
CHUNK = 16 * 1024
REASONS = {
    200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ClientGone(Exception):
    """The client closed or reset the connection before the response was complete."""


class ServerClosed(Exception):
    """fakeup closed the connection on purpose (a reset route); not an abort by the client."""


class Stats:
    def __init__(self):
        self.changed = asyncio.Event()
        self.reset()

    def reset(self):
        # connections_active is a gauge of open connections: a reset keeps it truthful.
        self.connections_opened = 0
        self.connections_active = getattr(self, "connections_active", 0)
        self.requests = 0
        self.responses = 0
        self.aborted = 0
        self.reset_next = 0
        self.paths = {}
        # Requests in flight is a gauge, kept across a reset like connections_active.
        self.active = getattr(self, "active", 0)
        self.log = []
        self.notify()

    def notify(self):
        # Wake every waiter; each re-checks its own condition.
        self.changed.set()
        self.changed = asyncio.Event()

    def snapshot(self):
        return {
            "connections_opened": self.connections_opened,
            "connections_active": self.connections_active,
            "requests": self.requests,
            "responses": self.responses,
            "aborted": self.aborted,
            "reset_next": self.reset_next,
            "paths": dict(self.paths),
        }

    def arrived(self, target, path, headers, method="GET", body=b""):
        """Log a non-control request whose head was read; the entry to pass to finished()."""
        self.active += 1
        entry = {"seq": len(self.log), "t": time.monotonic(), "target": target, "path": path,
                 "request_id": headers.get("x-request-id"), "active": self.active,
                 "end": None, "outcome": None, "method": method,
                 "content_type": headers.get("content-type"), "headers": dict(headers),
                 "body": body.decode("utf-8", "replace")}
        self.log.append(entry)
        return entry

    def finished(self, entry, outcome):
        self.active -= 1
        entry["end"] = time.monotonic()
        entry["outcome"] = outcome

    def value(self, name):
        if name.startswith("path:"):
            return self.paths.get(name[5:], 0)
        v = getattr(self, name, None)
        if not isinstance(v, int):
            raise KeyError(name)
        return v


class Conn:
    """One client connection: a pump task reads into ``buf`` and notes EOF, so a handler
    can notice the client leaving while it delays, hangs or streams."""

    def __init__(self, server, reader, writer):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False
        self.data = asyncio.Event()
        self.counted = False      # counted in connections_opened / active
        self.control = False
        self.framing_close = False  # this response is delimited by closing the connection
        self.reset_next = False     # reset the next request on this connection

    async def pump(self):
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                self.buf += chunk
                self.data.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof = True
            self.data.set()

    async def need(self):
        """Wait for more bytes; raises ClientGone on EOF."""
        if self.eof:
            raise ClientGone()
        self.data.clear()
        await self.data.wait()

    async def wait_gone(self, timeout=None):
        """Sleep ``timeout`` seconds (forever if None) while watching for the client leaving.
        Bytes that arrive meanwhile (a pipelined request) are kept.  Raises ClientGone."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.eof:
            self.data.clear()
            if self.eof:
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(self.data.wait(), remaining)
            except asyncio.TimeoutError:
                return
        raise ClientGone()

    async def read_request(self):
        """Return (method, target, version, headers(list of (lower name, value)), body) or None
        at a clean EOF between requests."""
        while True:
            if self.buf[:1] == b"\x16":
                # A TLS ClientHello on this plain-HTTP port: answer in plain HTTP (the client's
                # handshake fails at once) rather than wait for a blank line that never comes.
                return "bad"
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                return "too_big"
            if self.eof:
                return None
            await self.need_quiet()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        lines = head.split("\r\n")
        # Tolerate leading empty lines (RFC 9112 2.2).
        while lines and lines[0] == "":
            lines.pop(0)
        parts = lines[0].split(" ") if lines else []
        if len(parts) != 3:
            return "bad"
        method, target, version = parts
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return "bad"
            headers.append((name.strip().lower(), value.strip()))
        hd = dict(headers)
        body = b""
        if "chunked" in hd.get("transfer-encoding", "").lower():
            body = await self.read_chunked()
        elif "content-length" in hd:
            n = int(hd["content-length"])
            while len(self.buf) < n:
                await self.need()
            body = bytes(self.buf[:n])
            del self.buf[:n]
        return method, target, version, headers, body

    async def need_quiet(self):
        if self.eof:
            return
        self.data.clear()
        if self.eof:
            return
        await self.data.wait()

    async def read_chunked(self):
        body = bytearray()
        while True:
            while b"\r\n" not in self.buf:
                await self.need()
            i = self.buf.find(b"\r\n")
            size = int(bytes(self.buf[:i]).split(b";")[0], 16)
            del self.buf[:i + 2]
            if size == 0:
                # Trailers until an empty line.
                while True:
                    while b"\r\n" not in self.buf:
                        await self.need()
                    i = self.buf.find(b"\r\n")
                    line = self.buf[:i]
                    del self.buf[:i + 2]
                    if not line:
                        return bytes(body)
            while len(self.buf) < size + 2:
                await self.need()
            body += self.buf[:size]
            del self.buf[:size + 2]

    async def send(self, data):
        if self.eof:
            raise ClientGone()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise ClientGone() from e

    def rst(self):
        """Close with RST (SO_LINGER 0)."""
        reset_writer(self.writer)


def reset_writer(writer):
    """Close a connection with RST (SO_LINGER 0) rather than FIN."""
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def filler(n):
    """Exactly n bytes of valid JSON (a string) for n >= 2; for n < 2, a digit or nothing."""
    if n >= 2:
        return b'"' + b"a" * (n - 2) + b'"'
    return b"1" * n


def filler_parts(n):
    """Yield filler(n) in pieces of at most CHUNK bytes without building it whole."""
    if n < 2:
        yield filler(n)
        return
    yield b'"'
    left = n - 2
    block = b"a" * CHUNK
    while left > 0:
        k = min(left, CHUNK)
        yield block[:k]
        left -= k
    yield b'"'


class Server:
    def __init__(self, fixtures):
        self.fixtures = fixtures
        self.stats = Stats()
        self.cycles = {}  # /cycle query -> requests answered
        self.switches = {}  # /switch key -> the status it answers now (/_switch sets it)

    async def handle(self, reader, writer):
        conn = Conn(self, reader, writer)
        pump = asyncio.create_task(conn.pump())
        st = self.stats
        try:
            while True:
                req = await conn.read_request()
                if req is None:
                    break
                if req in ("bad", "too_big"):
                    self.count_conn(conn)
                    code = 400 if req == "bad" else 431
                    await self.respond(conn, code, json_bytes({"error": code}), close=True)
                    break
                method, target, version, headers, body = req
                hd = dict(headers)
                url = urlsplit(target)
                path = unquote(url.path)
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                control = path.startswith("/_") or hd.get("x-fakeup-control") == "1"
                if not control and conn.reset_next:
                    # The request raced with our (simulated) close of this idle connection: it
                    # is reset before any byte of an answer, as a real server's kernel does.
                    st.reset_next += 1
                    st.notify()
                    conn.rst()
                    break
                if not control:
                    self.count_conn(conn)
                    st.requests += 1
                    st.paths[path] = st.paths.get(path, 0) + 1
                    entry = st.arrived(target, path, hd, method, body)
                    st.notify()
                conn_hdr = hd.get("connection", "").lower()
                close = ("close" in conn_hdr or
                         (version == "HTTP/1.0" and "keep-alive" not in conn_hdr))
                conn.framing_close = query.get("framing") == "close"
                try:
                    keep = await self.route(conn, method, path, url.query, query, headers, body,
                                            close, control)
                    if not control:
                        st.responses += 1
                        st.finished(entry, "responded")
                        st.notify()
                except ClientGone:
                    if not control:
                        st.aborted += 1
                        st.finished(entry, "aborted")
                        st.notify()
                    break
                except ServerClosed:
                    if not control:
                        st.finished(entry, "closed")
                        st.notify()
                    break
                if not keep or close:
                    break
                if not control and query.get("reset_next") == "1":
                    conn.reset_next = True
                if not control and query.get("close_after") == "1":
                    # Close right after a keep-alive response without announcing it: the
                    # client's pooled connection goes stale.
                    break
        except ClientGone:
            pass
        except Exception as e:  # a bug in fakeup; say so on stderr, never on stdout
            print(f"fakeup: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            pump.cancel()
            if not conn.counted and not conn.control:
                # A connection that closed before sending a request is still a connection.
                st.connections_opened += 1
                st.notify()
            if conn.counted:
                st.connections_active -= 1
                st.notify()
            try:
                writer.close()
            except Exception:
                pass

    def count_conn(self, conn):
        if not conn.counted:
            conn.counted = True
            self.stats.connections_opened += 1
            self.stats.connections_active += 1
            self.stats.notify()

    async def respond(self, conn, status, body, ctype="application/json", close=False,
                      extra=(), head_only=False, length=None):
        hdrs = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        if ctype:
            hdrs.append(f"Content-Type: {ctype}")
        if conn.framing_close:
            # No Content-Length: the body ends when the connection closes (RFC 9112 6.3).
            close = True
        else:
            hdrs.append(f"Content-Length: {len(body) if length is None else length}")
        for k, v in extra:
            hdrs.append(f"{k}: {v}")
        if close:
            hdrs.append("Connection: close")
        data = ("\r\n".join(hdrs) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += body
        await conn.send(data)
        return not close

    async def route(self, conn, method, path, rawq, q, headers, body, close, control):
        """Serve one request; return True to keep the connection open."""
        if control:
            return await self.control(conn, path, q, close)

        def qint(name, default):
            try:
                return int(q.get(name, default))
            except ValueError:
                return default

        delay = qint("delay_ms", 0)
        if delay > 0:
            await conn.wait_gone(delay / 1000.0)
        status = qint("status", 200)
        head_only = method == "HEAD"

        def r(body, st=None, **kw):
            return self.respond(conn, st if st is not None else status, body, close=close,
                                head_only=head_only, **kw)

        if path.startswith("/json/"):
            name = os.path.basename(path[len("/json/"):])
            try:
                with open(os.path.join(self.fixtures, name), "rb") as f:
                    data = f.read()
            except OSError:
                return await r(json_bytes({"error": "no fixture", "name": name}), 404)
            return await r(data)
        if path == "/ok":
            return await r(json_bytes({"ok": True, "id": q.get("id", "")}))
        if path == "/sink":
            # A notification sink: what it was sent is in the request log (/_log).
            return await r(b"{}")
        if path == "/echo":
            hmap = {}
            for k, v in headers:
                hmap[k] = v if k not in hmap else hmap[k] + ", " + v
            return await r(json_bytes({"method": method, "path": path, "query": rawq,
                                       "headers": hmap, "body_bytes": len(body)}))
        if path == "/body":
            # Arbitrary body from the query: b=<percent-encoded bytes>, ct=<content type>.
            raw = [v for k, v in parse_qs(rawq, keep_blank_values=True,
                                           encoding="latin-1").items() if k == "b"]
            data = raw[0][-1].encode("latin-1") if raw else b""
            return await r(data, ctype=q.get("ct", "application/json"))
        if path.startswith("/status/"):
            try:
                code = int(path[len("/status/"):])
            except ValueError:
                code = 400
            return await r(json_bytes({"error": code}), code)
        if path == "/cycle":
            # The same URL answers bodies of changing size: the nth request for this query
            # gets {"n": n, "pad": "xx..."} with a pad of sizes[n % len(sizes)] bytes.
            sizes = [int(v) for v in q.get("sizes", "0").split(",")]
            n = self.cycles.get(rawq, 0)
            self.cycles[rawq] = n + 1
            return await r(json_bytes({"n": n, "pad": "x" * sizes[n % len(sizes)]}))
        if path == "/switch":
            # A backend a test turns bad and good again: answers the status /_switch last set
            # for its key (200 at first) and {"key", "n"} with n counting its requests.
            key = q.get("key", "")
            n = self.cycles.get("switch:" + key, 0)
            self.cycles["switch:" + key] = n + 1
            code = self.switches.get(key, 200)
            return await r(json_bytes({"key": key, "n": n, "pad": "x" * qint("pad", 0)}), code)
        if path == "/empty":
            return await r(b"")
        if path == "/truncated":
            return await r(b'{"a":[1,2')
        if path == "/nonjson":
            return await r(b"<html>oops</html>", ctype="text/html")
        if path == "/badutf8":
            return await r(b'{"s":"caf\xc3\x28\xff\xfe"}')
        if path == "/redirect":
            return await r(json_bytes({"redirect": "/ok"}), 302 if "status" not in q else None,
                           extra=[("Location", "/ok")])
        if path == "/garbage":
            # Not HTTP at all, then close.
            await conn.send(b"SPAM SPAM SPAM\r\n\r\n{}")
            raise ServerClosed()
        if path == "/reset_before":
            conn.rst()
            raise ServerClosed()
        if path == "/reset_mid":
            head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            await conn.send(head.encode() + b'{"a":"0123')
            # Let the client read the head and the first bytes before the reset, so it sees
            # a reset in the middle of the body rather than before the answer.
            await conn.wait_gone(qint("hold_ms", 100) / 1000.0)
            conn.rst()
            raise ServerClosed()
        if path == "/hang":
            await conn.wait_gone(None)
        if path == "/stall_body":
            head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Length: 100\r\n\r\n")
            await conn.send(head.encode() + b'{"a":')
            await conn.wait_gone(None)
        if path == "/dribble":
            n = max(qint("bytes", 20), 2)
            interval = qint("interval_ms", 50) / 1000.0
            data = filler(n)
            head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {n}\r\n"
                    + ("Connection: close\r\n" if close else "") + "\r\n")
            await conn.send(head.encode())
            for i in range(n):
                if i:
                    await conn.wait_gone(interval)
                await conn.send(data[i:i + 1])
            return not close
        if path == "/huge_chunked":
            n = qint("bytes", 1000000)
            head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                    + ("Connection: close\r\n" if close else "") + "\r\n")
            await conn.send(head.encode())
            if not head_only:
                for part in filler_parts(n):
                    await conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
                await conn.send(b"0\r\n\r\n")
            return not close
        if path == "/huge_length":
            n = qint("bytes", 1000000)
            head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {n}\r\n"
                    + ("Connection: close\r\n" if close else "") + "\r\n")
            await conn.send(head.encode())
            if not head_only:
                for part in filler_parts(n):
                    await conn.send(part)
            return not close
        return await r(json_bytes({"error": "no route", "path": path}), 404)

    async def control(self, conn, path, q, close):
        conn.control = True
        st = self.stats
        if path == "/_stats":
            return await self.respond(conn, 200, json_bytes(st.snapshot()), close=close)
        if path == "/_log":
            return await self.respond(conn, 200, json_bytes(st.log), close=close)
        if path == "/_switch":
            self.switches[q.get("key", "")] = int(q.get("status", "200"))
            return await self.respond(conn, 200, json_bytes(self.switches), close=close)
        if path == "/_reset":
            st.reset()
            return await self.respond(conn, 200, json_bytes(st.snapshot()), close=close)
        if path == "/_wait":
            loop = asyncio.get_running_loop()
            timeout = int(q.get("timeout_ms", 10000)) / 1000.0
            try:
                want = [(k[3:], True, int(v)) if k.startswith("le:") else (k, False, int(v))
                        for k, v in q.items() if k != "timeout_ms"]
                for k, _, _ in want:
                    st.value(k)
            except (KeyError, ValueError) as e:
                return await self.respond(conn, 400, json_bytes({"error": f"bad counter {e}"}),
                                          close=close)

            def met():
                return all((st.value(k) <= v) if le else (st.value(k) >= v) for k, le, v in want)

            deadline = loop.time() + timeout
            while not met():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return await self.respond(conn, 408, json_bytes(st.snapshot()), close=close)
                ev = st.changed
                try:
                    await asyncio.wait_for(ev.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                if conn.eof:
                    raise ClientGone()
            return await self.respond(conn, 200, json_bytes(st.snapshot()), close=close)
        return await self.respond(conn, 404, json_bytes({"error": "no control route"}),
                                  close=close)


# A fatal TLS alert record, handshake_failure (40), as a server sends when it refuses a hello.
TLS_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])


class TLSFault:
    """``--tls-fault``: a port that speaks just enough TLS to fail a handshake (see the module
    docstring), counted in the server's connection counters."""

    def __init__(self, mode, stats):
        self.mode = mode
        self.stats = stats

    async def handle(self, reader, writer):
        st = self.stats
        st.connections_opened += 1
        st.connections_active += 1
        st.notify()
        try:
            hello = await reader.read(65536)
            if self.mode == "reset" and hello:
                reset_writer(writer)
                return
            if self.mode == "alert" and hello:
                writer.write(TLS_ALERT)
                await writer.drain()
            elif self.mode == "stall":
                while await reader.read(65536):
                    pass
        except (ConnectionError, OSError):
            pass
        finally:
            st.connections_active -= 1
            st.notify()
            writer.close()


def tls_context(args):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.tls_client_ca)
    if args.tls_max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else 1 << 20, hard))
        except (ValueError, OSError):
            pass


async def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fixtures", default=os.path.join(here, "..", "fixtures", "exchanges"))
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca")
    ap.add_argument("--tls-max-version", choices=("1.2", "1.3"))
    ap.add_argument("--tls-fault", choices=("reset", "stall", "alert"))
    ap.add_argument("--control-port", type=int)
    args = ap.parse_args()
    raise_nofile()
    srv = Server(os.path.abspath(args.fixtures))
    handler, ssl_ctx = srv.handle, None
    if args.tls_fault:
        handler = TLSFault(args.tls_fault, srv.stats).handle
    elif args.tls_cert:
        ssl_ctx = tls_context(args)
    server = await asyncio.start_server(handler, args.host, args.port, backlog=4096,
                                        reuse_address=True, ssl=ssl_ctx)
    ready = {"port": server.sockets[0].getsockname()[1]}
    servers = [server]
    if args.control_port is not None:
        control = await asyncio.start_server(srv.handle, args.host, args.control_port,
                                             reuse_address=True)
        ready["control_port"] = control.sockets[0].getsockname()[1]
        servers.append(control)
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
