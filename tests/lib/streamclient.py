"""A client for gatherd's streamed answers (NDJSON and Server-Sent Events) over a raw socket,
which notes when each line or event arrived: what a streaming test judges is the time a piece
left gatherd, which a client that reads the whole body first cannot see.

    s = StreamClient(port, "/x", accept="application/x-ndjson", rid="r1")
    s.head()                 # (status, headers), waiting for the head
    for t, line in s.lines():  # NDJSON: (arrival, parsed object) until the terminating chunk
    for t, ev in s.events():   # SSE: (arrival, {"event", "id", "data", "comments"})

Times are time.monotonic() seconds, the clock fakeup's log uses too; ``t0`` is when the request
was sent.  Chunked framing is checked as it is undone: a malformed chunk fails the test.
"""

import json
import socket
import time


class StreamError(AssertionError):
    pass


class StreamClient:
    def __init__(self, port, target, accept=None, rid=None, host="127.0.0.1", timeout=30,
                 extra=(), method="GET", rcvbuf=None):
        """``rcvbuf``: SO_RCVBUF set before connecting (a small one makes a client that does
        not read hold the server's writes back sooner)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.raw = bytearray()   # bytes received and not yet parsed
        self.body = bytearray()  # dechunked body not yet split into pieces
        self.scanned = 0         # body[:scanned] holds no separator
        self.head_seen = None   # (status, headers)
        self.t_head = None
        self.ended = False      # the terminating chunk arrived
        self.closed = False     # the server closed the connection
        self.chunked = False
        lines = [f"{method} {target} HTTP/1.1", "Host: t"]
        if accept is not None:
            lines.append(f"Accept: {accept}")
        if rid is not None:
            lines.append(f"X-Request-Id: {rid}")
        lines += list(extra)
        self.t0 = time.monotonic()
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"nothing more within {self.timeout}s; have {self.body[:200]!r}")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        return True

    def head(self):
        """(status, headers with lower-case names); waits for the head."""
        if self.head_seen is not None:
            return self.head_seen
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.raw:
            if not self._recv(deadline):
                raise StreamError(f"closed before a head: {self.raw[:200]!r}")
        self.t_head = time.monotonic()
        end = self.raw.find(b"\r\n\r\n")
        head = bytes(self.raw[:end])
        del self.raw[:end + 4]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.head_seen = (status, headers)
        return self.head_seen

    def _dechunk(self):
        """Moves the complete chunks of raw into body; notes the terminating chunk."""
        while not self.ended:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            try:
                size = int(self.raw[:i].split(b";")[0], 16)
            except ValueError:
                raise StreamError(f"bad chunk size line {self.raw[:i]!r}")
            if size == 0:
                if not self.raw.startswith(b"\r\n", i + 2):
                    return
                del self.raw[:i + 4]
                self.ended = True
                return
            if len(self.raw) < i + 2 + size + 2:
                return
            if self.raw[i + 2 + size:i + 4 + size] != b"\r\n":
                raise StreamError("a chunk does not end with CRLF")
            self.body += self.raw[i + 2:i + 2 + size]
            del self.raw[:i + 4 + size]

    def _pieces(self, sep):
        """Yields (arrival time, piece) for each sep-terminated piece of the body until the
        body ends (terminating chunk, or close for an unchunked body)."""
        self.head()
        deadline = time.monotonic() + self.timeout
        while True:
            if self.chunked:
                self._dechunk()
            else:
                self.body += self.raw
                del self.raw[:]
            now = time.monotonic()
            while True:
                k = self.body.find(sep, max(self.scanned - len(sep) + 1, 0))
                if k < 0:
                    self.scanned = len(self.body)
                    break
                piece = bytes(self.body[:k])
                del self.body[:k + len(sep)]
                self.scanned = 0
                yield now, piece
                deadline = time.monotonic() + self.timeout
            if self.ended or self.closed:
                return
            self._recv(deadline)

    def lines(self):
        """NDJSON: (arrival, parsed object) per line."""
        for t, piece in self._pieces(b"\n"):
            try:
                yield t, json.loads(piece)
            except ValueError:
                raise StreamError(f"not a JSON line: {piece[:300]!r}")

    def events(self):
        """SSE: (arrival, {"event", "id", "data" (parsed), "comments": [...]}) per event; a
        block of comment lines alone comes as an event whose "event" is None."""
        for t, piece in self._pieces(b"\n\n"):
            ev = {"event": None, "id": None, "data": None, "comments": []}
            for line in piece.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    ev["comments"].append(line[1:].strip())
                    continue
                k, _, v = line.partition(":")
                v = v[1:] if v.startswith(" ") else v
                if k == "data":
                    ev["data"] = json.loads(v)
                elif k in ("event", "id"):
                    ev[k] = v
                else:
                    raise StreamError(f"unexpected SSE line {line!r}")
            yield t, ev

    def all_lines(self):
        return list(self.lines())

    def all_events(self):
        return list(self.events())
