"""The request-smuggling and framing forms of issue 14, each with a smuggled second request
behind it, and the answer gatherd owes each: shared by tests/integration/test_smuggling.py
(straight to gatherd) and tests/proxy/test_proxy_smuggling.py (through the shipped nginx
configuration). tests/fuzz/corpus/reqhead holds the same forms as fuzz seeds."""

SMUGGLED = b"GET /tickers HTTP/1.1\r\nHost: a\r\nX-Request-Id: smuggled\r\n\r\n"

# name -> (bytes, status)
FORMS = {
    # White space before the colon: libmicrohttpd keeps "Content-Length " as a name of its own
    # and reads the body as the next request.
    "cl_space_before_colon": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length : %d\r\n\r\n"
                              % len(SMUGGLED) + SMUGGLED, 400),
    "te_space_before_colon": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked"
                              b"\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    # Two Transfer-Encoding lines are one list: chunked is not the final coding.
    "te_chunked_then_identity": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                                 b"chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
                                 + SMUGGLED, 400),
    # Chunk lines ended by a bare LF.
    "chunk_bare_lf": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\nabc\n0\n\n" + SMUGGLED, 400),
    "nul_in_header_value": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n" + SMUGGLED,
                            400),
    "nul_in_last_header_value": (b"GET /healthz HTTP/1.1\r\nX-A: b\r\nHost: a\x00\r\n\r\n"
                                 + SMUGGLED, 400),
    # CL.TE and TE.CL: both framings at once.
    "cl_te": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "te_cl": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n" + SMUGGLED, 400),
    "two_content_lengths": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, 400),
    # TE.TE: an obfuscated second coding line.
    "te_te_obfuscated": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         b"Transfer-Encoding: x\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
    "te_folded": (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                  b"0\r\n\r\n" + SMUGGLED, 400),
    "te_in_http10": (b"GET /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                     + SMUGGLED, 400),
}

# Transfer codings other than a final chunked: answered at once, not held until the idle
# timeout. name -> (coding, status)
CODINGS = {
    "identity": (b"identity", 400),
    "gzip_chunked": (b"gzip, chunked", 501),
    "chunked_gzip": (b"chunked, gzip", 400),
    "xchunked": (b"xchunked", 400),
    "chunked_twice": (b"chunked, chunked", 400),
    "empty": (b"", 400),
}
