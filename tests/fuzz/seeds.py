#!/usr/bin/env python3
"""Writes the binary seed inputs of fuzz_agg and fuzz_netacl (their formats are described at the
top of each harness) into corpus/agg and corpus/netacl.  Run once after changing a format."""
import os
import socket
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# fuzz_agg ------------------------------------------------------------------------------------
def names(*ns):
    out = bytes([len(ns) - 1])
    for n in ns:
        out += bytes([len(n)]) + n
    return out


def start(i):
    return bytes([0, i])


def complete(i, status, body):
    return bytes([1, i]) + struct.pack(">H", status) + bytes([len(body)]) + body


def complete_valid(i, status, which):
    return bytes([2, i]) + struct.pack(">H", status) + bytes([which])


def fail(i, kind, msg=b""):
    return bytes([3, i, kind, len(msg)]) + msg


def cancel(i, kind, msg=b""):
    return bytes([4, i, kind, len(msg)]) + msg


def render():
    return bytes([5, 0])


write("agg", "three_mixed", names(b"a", b'b"q', b"\xff\xfe") + start(0) + start(1) + start(2)
      + complete_valid(0, 200, 0) + complete(1, 503, b'{"e":1}') + fail(2, 1, b"timed out")
      + render())
write("agg", "reverse_order", names(b"first", b"second", b"third") + start(0) + start(1)
      + start(2) + complete(2, 200, b' [1,2] ') + complete(1, 200, b"{bad") + complete(0, 204, b"")
      + render())
write("agg", "cancel_and_invalid", names(b"x", b"y") + start(0) + cancel(1, 2, b"client left")
      + complete(0, 200, b'{"k":"\\ud800"}') + start(5) + fail(0, 9) + cancel(3, 0) + render())
write("agg", "all_fail", names(b"s1", b"s2", b"s3", b"s4") + start(0) + start(1) + start(2)
      + complete(0, 302, b"") + fail(1, 2, b"refused") + fail(2, 5, None or b"\x00\x01")
      + render())
write("agg", "deadline_cut", names(b"pending", b"running") + start(1) + render())


# fuzz_netacl ---------------------------------------------------------------------------------
def netacl(kind, entries, xff, rid, peer, no_xff=False, small=0):
    flags = kind | (4 if no_xff else 0) | (8 if small else 0) | (len(entries) << 4)
    body = b"\n".join(list(entries) + [xff, rid])
    return bytes([flags, small]) + peer.ljust(16, b"\0") + body


v4 = lambda s: socket.inet_pton(socket.AF_INET, s)          # noqa: E731
v6 = lambda s: socket.inet_pton(socket.AF_INET6, s)         # noqa: E731
write("netacl", "trusted_v4", netacl(0, [b"10.0.0.0/8", b"unix"], b"203.0.113.9, 10.0.0.7",
                                     b"abc-123", v4("10.1.2.3")))
write("netacl", "untrusted", netacl(0, [b"192.168.0.0/16"], b"1.2.3.4", b"x" * 129,
                                    v4("8.8.8.8")))
write("netacl", "v6_chain", netacl(1, [b"fd00::/8", b"2001:db8::/32"],
                                   b"2001:db8::1,\t198.51.100.1 , fd00::5", b"id:1/2+3=4@x",
                                   v6("fd00::1")))
write("netacl", "mapped", netacl(2, [b"127.0.0.1"], b"garbage, 127.0.0.1", b"",
                                 b"\0" * 12 + v4("127.0.0.1")))
write("netacl", "unix", netacl(3, [b"unix"], b"10.0.0.1,,10.0.0.2", b"a b", b""))
write("netacl", "small_out", netacl(0, [b"0.0.0.0/0"], b"255.255.255.255", b"ok", v4("1.1.1.1"),
                                    small=7))
write("netacl", "bad_entries", netacl(0, [b"10.0.0.0/33", b"::/129", b"1.2.3.4/", b"/8",
                                          b"1.2.3.4/08", b"::ffff:10.0.0.0/104"],
                                      b"", b"rid", v4("10.9.9.9"), no_xff=True))


# fuzz_reqhead: a flags byte ("1": HTTP/1.1, "0": HTTP/1.0), then the target and one
# "name:value" field per line, as reqhead.c hands them over (values with their NULs). The
# request-smuggling and framing corpus: the forms of issue 14 and the usual CL.TE, TE.CL and
# TE.TE variants, with the plain heads they must not be confused with.
def head(version, target, *fields):
    return version + target + b"".join(b"\n" + f for f in fields)


H = b"Host: a"
REQHEAD = {
    "plain": head(b"1", b"/tickers?x=1", H, b"Accept: */*", b"X-Request-Id: abc"),
    "plain_http10": head(b"0", b"/healthz"),
    "content_length": head(b"1", b"/t", H, b"Content-Length: 5"),
    "cl_space_before_colon": head(b"1", b"/healthz", H, b"Content-Length : 38"),
    "cl_tab_before_colon": head(b"1", b"/healthz", H, b"Content-Length\t: 38"),
    "te_space_before_colon": head(b"1", b"/healthz", H, b"Transfer-Encoding : chunked"),
    "te_chunked_then_identity": head(b"1", b"/", H, b"Transfer-Encoding: chunked",
                                     b"Transfer-Encoding: identity"),
    "te_identity": head(b"1", b"/", H, b"Transfer-Encoding: identity"),
    "te_gzip_chunked": head(b"1", b"/", H, b"Transfer-Encoding: gzip, chunked"),
    "te_chunked_gzip": head(b"1", b"/", H, b"Transfer-Encoding: chunked, gzip"),
    "te_xchunked": head(b"1", b"/", H, b"Transfer-Encoding: xchunked"),
    "te_chunked_twice": head(b"1", b"/", H, b"Transfer-Encoding: chunked, chunked"),
    "te_chunked": head(b"1", b"/", H, b"Transfer-Encoding: chunked"),
    "te_empty_elements": head(b"1", b"/", H, b"Transfer-Encoding: ,, gzip ,\tchunked ,"),
    "te_params": head(b"1", b"/", H, b"Transfer-Encoding: gzip;q=1, chunked"),
    "te_http10": head(b"0", b"/", b"Transfer-Encoding: chunked"),
    "te_case": head(b"1", b"/", H, b"transfer-encoding: CHUNKED"),
    "te_vertical_tab": head(b"1", b"/", H, b"Transfer-Encoding:\x0bchunked"),
    "cl_te": head(b"1", b"/", H, b"Content-Length: 6", b"Transfer-Encoding: chunked"),
    "te_cl": head(b"1", b"/", H, b"Transfer-Encoding: chunked", b"Content-Length: 3"),
    "cl_cl": head(b"1", b"/", H, b"Content-Length: 0", b"Content-Length: 44"),
    "te_te_obfuscated": head(b"1", b"/", H, b"Transfer-Encoding: chunked",
                             b"Transfer-Encoding: x"),
    "te_te_space_name": head(b"1", b"/", H, b"Transfer-Encoding: chunked",
                             b" Transfer-Encoding: identity"),
    "nul_in_value": head(b"1", b"/", H, b"X-A: b\x00c"),
    "nul_in_te": head(b"1", b"/", H, b"Transfer-Encoding: chunked\x00"),
    "nul_in_path_pct": head(b"1", b"/healthz%00junk", H),
    "nul_in_path_raw": head(b"1", b"/healthz\x00junk", H),
    "pct00_in_query": head(b"1", b"/t?a=%00", H),
    "no_host": head(b"1", b"/"),
    "two_hosts": head(b"1", b"/", H, b"host: b"),
    "empty_name": head(b"1", b"/", H, b": v"),
}
for name, data in REQHEAD.items():
    write("reqhead", name, data)
