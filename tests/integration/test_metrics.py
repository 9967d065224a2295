#!/usr/bin/env python3
"""GET /metrics against the contract: the README's metrics table (names, types, labels), the
naming conventions, and what each series counts, with fakeup upstreams and workers=2.  Every
scrape goes through gd.parse_metrics, which rejects anything that is not the text format 0.0.4
(malformed lines or escapes, samples without a TYPE, duplicate series).

Counters are compared as differences between two scrapes.  gatherd counts a request when
libmicrohttpd reports it complete, which can be a moment after the client has the answer, so a
check waits for the expected value and then requires it exactly."""

import http.client
import math
import os
import random
import re
import string
import threading
import time
import unittest
import urllib.parse

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, parse_metrics, scrape, \
    stop_checked, wait_until

WORKERS = 2
KINDS = ("timeout", "connect", "http_status", "invalid_json", "too_large", "transfer")
# Every kind the errors counter has a series for: those above, calls an early end cut off, and
# chained calls whose dependency gave them nothing to use.
METRIC_KINDS = KINDS + ("cancelled", "dependency")
# A path and a backend name that need escaping in a label value (config allows both).
ODD_PATH = '/q"uo\\te'
ODD_BACKEND = 'b"a\\ck'
BUILTIN_ENDPOINTS = ("/healthz", "/readyz", "/metrics", "(unmatched)")


def documented_metrics():
    """{name: (type, labels tuple)} from the README's metrics table."""
    with open(os.path.join(gd.SRC, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^### Metrics.*?\n\n(\|.*?)\n\n", text, re.S | re.M)
    assert m, "no metrics table in README.md"
    out = {}
    for row in m.group(1).splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 3, row
        names = re.findall(r"`([^`]+)`", cells[0])
        types = [t.strip() for t in cells[1].split(",")]
        labels = tuple(re.findall(r"`([^`]+)`", cells[2]))
        if len(types) == 1:
            types *= len(names)
        assert names and len(types) == len(names), row
        for name, t in zip(names, types):
            out[name] = (t, labels)
    return out


def histogram(exp, name, **labels):
    """(sorted [(le, cumulative count)], sum, count) of one histogram series."""
    buckets = []
    for lab, v in exp.series(name + "_bucket"):
        le = lab.pop("le")
        assert gd.FLOAT.fullmatch(le), f"{name}_bucket{labels}: le={le!r} is not a float"
        if lab == labels:
            buckets.append((float(le), v))
    buckets.sort()
    s = exp.get(name + "_sum", **labels)
    c = exp.get(name + "_count", **labels)
    assert buckets and s is not None and c is not None, (name, labels)
    return buckets, s, c


def get_many(port, path, connections, per_connection):
    """``connections`` keep-alive clients at once, each sending ``per_connection`` requests;
    returns the list of statuses (or exceptions)."""
    statuses, lock = [], threading.Lock()
    start = threading.Barrier(connections)

    def client():
        got = []
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            start.wait(30)
            for _ in range(per_connection):
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                got.append(r.status)
        except Exception as e:  # reported as a status the caller does not expect
            got.append(e)
        finally:
            c.close()
            with lock:
                statuses.extend(got)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


class ParserTest(unittest.TestCase):
    """The parser the other tests rely on rejects what the format does not allow."""

    GOOD = ('# HELP a_total A "quoted" help \\\\ with \\n escapes, \\\\n too.\n'
            "# TYPE a_total counter\n"
            'a_total{x="1\\"2\\\\3\\n4",y=""} 5\n'
            "a_total 1e3 1700000000000\n"
            "# a plain comment\n"
            "# TYPE h histogram\n"
            'h_bucket{le="0.1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.3\nh_count 2\n'
            "# TYPE g gauge\ng NaN\ng{a=\"b\",} -Inf\n")

    def test_good(self):
        exp = parse_metrics(self.GOOD)
        self.assertEqual(exp.types, {"a_total": "counter", "h": "histogram", "g": "gauge"})
        self.assertEqual(exp.get("a_total", x='1"2\\3\n4', y=""), 5)
        self.assertEqual(exp.get("a_total"), 1000)
        self.assertEqual(exp.helps["a_total"], 'A "quoted" help \\ with \n escapes, \\n too.')
        self.assertEqual(histogram(exp, "h"), ([(0.1, 1), (math.inf, 2)], 0.3, 2))
        self.assertTrue(math.isnan(exp.get("g")))

    def test_bad(self):
        bad = {
            "no TYPE": "x 1\n",
            "no TYPE (suffix of an untyped family)": "# TYPE x gauge\nx_count 1\n",
            "duplicate series": '# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n',
            "duplicate series, labels reordered": '# TYPE x gauge\nx{a="1",b="2"} 1\n'
                                                  'x{b="2",a="1"} 2\n',
            "bad escape": '# TYPE x gauge\nx{a="\\t"} 1\n',
            "unterminated value": '# TYPE x gauge\nx{a="1} 1\n',
            "unquoted value": "# TYPE x gauge\nx{a=1} 1\n",
            "label twice": '# TYPE x gauge\nx{a="1",a="2"} 1\n',
            "bad label name": '# TYPE x gauge\nx{1a="1"} 1\n',
            "bad value": "# TYPE x gauge\nx one\n",
            "python-only float": "# TYPE x gauge\nx inf\n",
            "no value": "# TYPE x gauge\nx\n",
            "trailing junk": "# TYPE x gauge\nx 1 2 3\n",
            "bad timestamp": "# TYPE x gauge\nx 1 1.5\n",
            "unknown type": "# TYPE x countr\nx 1\n",
            "second TYPE": "# TYPE x gauge\n# TYPE x gauge\nx 1\n",
            "not grouped": "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n",
            "bucket without le": "# TYPE h histogram\nh_bucket 1\n",
            "bare histogram sample": "# TYPE h histogram\nh 1\n",
            "no final line feed": "# TYPE x gauge\nx 1",
            "bad HELP escape": "# HELP x a \\t b\n# TYPE x gauge\nx 1\n",
            "bad metric name": "# TYPE x gauge\n1x 1\n",
            "unclosed labels": '# TYPE x gauge\nx{a="1" 1\n',
            "escaped closing quote": '# TYPE x gauge\nx{a="\\"} 1\n',
            "reserved label name": '# TYPE x gauge\nx{__name__="x"} 1\n',
            "carriage return": "# TYPE x gauge\r\nx 1\r\n",
        }
        for why, text in bad.items():
            with self.subTest(why):
                with self.assertRaises(gd.ExpositionError, msg=why):
                    parse_metrics(text)


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.dead = gd.closed_port()
        dead = f"http://127.0.0.1:{cls.dead}/ok"
        # One backend per error kind, beside one that succeeds, on one endpoint: each kind
        # must land under its own backend label.
        cls.kind_backends = {
            "timeout": {"name": "timeout", "url": u("/hang"), "timeout_ms": 300},
            "connect": {"name": "connect", "url": dead},
            "http_status": {"name": "http_status", "url": u("/status/503")},
            "invalid_json": {"name": "invalid_json", "url": u("/nonjson")},
            "too_large": {"name": "too_large", "url": u("/huge_length?bytes=5000"),
                          "max_body_bytes": 1000},
            "transfer": {"name": "transfer", "url": u("/reset_mid")},
        }
        cls.endpoints = ("/ok", "/cached", "/slow", "/errs", "/allfail", ODD_PATH, "/limited",
                         "/tls", "/notified")
        cls.gd = None
        try:
            cls.gd = Gatherd(config(
                endpoint("/ok", [("a", u("/ok"))], timeout_ms=10000),
                # A cached endpoint has the cache's lookup counters, and a refreshed one the
                # refresh series (test_cache.py and test_refresh.py count them).
                endpoint("/cached", [("a", u("/ok"))], cache={"ttl_ms": 1000}, refresh_ms=1000),
                endpoint("/slow", [("s", u("/ok?delay_ms=300"))], timeout_ms=10000),
                endpoint("/errs", [("ok", u("/ok"))] + list(cls.kind_backends.values()),
                         timeout_ms=10000),
                endpoint("/allfail", [("dead", dead)], timeout_ms=10000),
                endpoint(ODD_PATH, [(ODD_BACKEND, u("/ok"))], timeout_ms=10000),
                # A concurrency limit: its calls wait for slots, which has a histogram.
                endpoint("/limited", [("l1", u("/ok?delay_ms=300")), ("l2", u("/ok"))],
                         timeout_ms=10000,
                         concurrency=1),
                # An https:// backend has TLS failure counters (tests/tls counts them).
                endpoint("/tls", [("t", f"https://127.0.0.1:{cls.dead}/ok")], timeout_ms=10000),
                # Its requests are reported to a sink: notifications have counters.
                endpoint("/notified", [("n", u("/ok"))], timeout_ms=10000,
                         notify={"url": u("/sink"), "queue": 100}),
            ), workers=WORKERS)
            # The refreshed endpoint's first fan-out has ended, so its age is shown.
            gd.wait_until(lambda: http_get(cls.gd.url("/readyz"))[0] == 200, 10, "ready")
            # Give every kind of series something to count, so their labels can be checked.
            for path in ("/ok", "/cached", "/slow", "/errs", "/allfail",
                         urllib.parse.quote(ODD_PATH), "/limited", "/healthz", "/readyz",
                         "/no-such-path", "/metrics", "/notified"):
                http_get(cls.gd.url(path), timeout=20)
        except BaseException:
            if cls.gd is not None:
                cls.gd.kill()
            cls.up.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def scrape_when(self, pred, what, timeout=10, get=None):
        """Scrape (with get(), by default on a new connection) until pred(exposition) holds;
        the exposition that satisfied it."""
        get = get or (lambda: scrape(self.gd))
        return wait_until(lambda: (lambda e: e if pred(e) else None)(get()), timeout, what)

    def requests(self, exp, path, code):
        return exp.get("gatherd_requests_total", endpoint=path, code=str(code)) or 0

    def wait_requests(self, before, path, code, n, get=None):
        """Scrape until requests_total{path,code} grew by n; assert it grew by exactly n."""
        want = self.requests(before, path, code) + n
        after = self.scrape_when(lambda e: self.requests(e, path, code) >= want,
                                 f"gatherd_requests_total{{{path},{code}}} >= {want}", get=get)
        self.assertEqual(self.requests(after, path, code), want, (path, code))
        return after

    # -----------------------------------------------------------------------------------------
    # the documented set

    def test_content_type(self):
        status, headers, body = http_get(self.gd.url("/metrics"))
        self.assertEqual(status, 200)
        ctype = headers.get("content-type", "")
        self.assertTrue(ctype.startswith("text/plain"), ctype)
        self.assertIn("version=0.0.4", ctype)
        parse_metrics(body)

    def test_documented_metrics(self):
        doc = documented_metrics()
        exp = scrape(self.gd)
        for name, (mtype, labels) in doc.items():
            with self.subTest(name):
                self.assertEqual(exp.types.get(name), mtype, f"TYPE of {name}")
                self.assertTrue(exp.helps.get(name), f"HELP of {name}")
                samples = exp.of_family(name)
                self.assertTrue(samples, f"no sample of {name}")
                for sname, lab, _ in samples:
                    if sname.endswith("_bucket") and mtype == "histogram":
                        lab.pop("le")
                    self.assertEqual(sorted(lab), sorted(labels), f"labels of {sname} {lab}")
        self.assertEqual(sorted(set(exp.types) - set(doc)), [],
                         "metrics exposed but not in the README's table")

    def test_naming_conventions(self):
        exp = scrape(self.gd)
        for name, mtype in exp.types.items():
            with self.subTest(name):
                self.assertRegex(name, r"^(gatherd|process)_[a-z0-9_]+$")
                if mtype == "counter":
                    self.assertTrue(name.endswith("_total"), f"counter {name} lacks _total")
                else:
                    self.assertFalse(name.endswith("_total"), f"{mtype} {name} ends in _total")
                if mtype == "histogram" or re.search(r"duration|latency|_time", name):
                    self.assertTrue(name.endswith("_seconds"), f"{name} is not in seconds")

    def test_label_values(self):
        """Endpoint and backend labels are exactly the configured ones plus gatherd's own,
        escaped so that they read back as they were configured."""
        exp = self.scrape_when(lambda e: self.requests(e, ODD_PATH, 200) >= 1,
                               "the request to the odd path to be counted")
        eps = {lab["endpoint"] for key in exp.samples for lab in [dict(key[1])]
               if "endpoint" in lab}
        self.assertEqual(eps, set(self.endpoints) | set(BUILTIN_ENDPOINTS))
        self.assertEqual(self.requests(exp, ODD_PATH, 200), 1)
        self.assertIsNotNone(exp.get("gatherd_upstream_errors_total", endpoint=ODD_PATH,
                                     backend=ODD_BACKEND, kind="timeout"))
        _, _, count = histogram(exp, "gatherd_upstream_duration_seconds", endpoint=ODD_PATH,
                                backend=ODD_BACKEND)
        self.assertEqual(count, 1)

    def test_build_info_and_start_time(self):
        exp = scrape(self.gd)
        info = exp.series("gatherd_build_info")
        self.assertEqual(len(info), 1, info)
        labels, value = info[0]
        self.assertEqual(value, 1)
        self.assertEqual(sorted(labels),
                         sorted(["version", "libmicrohttpd", "libcurl", "libevent", "jansson"]))
        for k, v in labels.items():
            self.assertRegex(v, r"^\S+$", f"build_info {k}")
        start = exp.get("process_start_time_seconds")
        self.assertLess(abs(time.time() - start), 60, start)
        self.assertEqual(exp.get("gatherd_workers"), WORKERS)
        self.assertEqual(exp.get("gatherd_draining"), 0)

    def test_notify_counts(self):
        """gatherd_notify_total counts a notification sent per request, only for endpoints with
        a notify, and has a series for every result."""
        def sent(exp):
            return exp.get("gatherd_notify_total", endpoint="/notified", result="sent") or 0

        before = scrape(self.gd)
        for _ in range(3):
            self.assertEqual(http_get(self.gd.url("/notified"), timeout=20)[0], 200)
        after = self.scrape_when(lambda e: sent(e) >= sent(before) + 3, "3 notifications sent")
        self.assertEqual(sent(after), sent(before) + 3)
        for result in ("failed", "dropped"):
            self.assertEqual(after.get("gatherd_notify_total", endpoint="/notified",
                                       result=result), 0, result)
        eps = {lab["endpoint"] for lab, _ in after.series("gatherd_notify_total")}
        self.assertEqual(eps, {"/notified"})

    # -----------------------------------------------------------------------------------------
    # upstream errors

    def test_upstream_error_kinds(self):
        rounds = 2
        before = scrape(self.gd)
        for _ in range(rounds):
            status, _, doc = gd.get_json(self.gd.url("/errs"), timeout=30)
            self.assertEqual(status, 200)
            self.assertEqual(sorted(e["error"] for e in doc["errors"]), sorted(KINDS), doc)
        after = self.wait_requests(before, "/errs", 200, rounds)

        def errors(exp, backend, kind):
            return exp.get("gatherd_upstream_errors_total", endpoint="/errs", backend=backend,
                           kind=kind)

        backends = ["ok"] + [b["name"] for b in self.kind_backends.values()]
        for backend in backends:
            for kind in METRIC_KINDS:
                with self.subTest(backend=backend, kind=kind):
                    self.assertIsNotNone(errors(after, backend, kind), "series missing")
                    want = rounds if self.kind_backends.get(kind, {}).get("name") == backend \
                        else 0
                    self.assertEqual(errors(after, backend, kind) - errors(before, backend, kind),
                                     want)
            with self.subTest(backend=backend, what="duration count"):
                c0 = histogram(before, "gatherd_upstream_duration_seconds", endpoint="/errs",
                               backend=backend)[2]
                c1 = histogram(after, "gatherd_upstream_duration_seconds", endpoint="/errs",
                               backend=backend)[2]
                self.assertEqual(c1 - c0, rounds)
        kinds = {lab["kind"] for lab, _ in after.series("gatherd_upstream_errors_total")}
        self.assertEqual(kinds, set(METRIC_KINDS))

    # -----------------------------------------------------------------------------------------
    # histograms

    def check_histograms(self, exp):
        """Every series of both duration histograms is well formed."""
        for name in ("gatherd_request_duration_seconds", "gatherd_upstream_duration_seconds",
                     "gatherd_upstream_slot_wait_seconds"):
            groups = set()
            for sname, lab, _ in exp.of_family(name):
                lab.pop("le", None)
                groups.add(tuple(sorted(lab.items())))
            self.assertTrue(groups, name)
            for g in groups:
                buckets, s, c = histogram(exp, name, **dict(g))
                les = [le for le, _ in buckets]
                self.assertEqual(les[-1], math.inf, f"{name}{g}: no +Inf bucket")
                self.assertEqual(len(set(les)), len(les))
                counts = [v for _, v in buckets]
                self.assertEqual(counts, sorted(counts), f"{name}{g}: not cumulative")
                self.assertEqual(counts[-1], c, f"{name}{g}: +Inf bucket != _count")
                self.assertGreaterEqual(s, 0)
                self.assertTrue(all(v == int(v) >= 0 for v in counts + [c]))

    def test_histograms(self):
        before = scrape(self.gd)
        self.check_histograms(before)
        status, _, doc = gd.get_json(self.gd.url("/slow"), timeout=30)
        self.assertEqual((status, doc["errors"]), (200, []))
        after = self.wait_requests(before, "/slow", 200, 1)
        self.check_histograms(after)
        for name, labels in (("gatherd_request_duration_seconds", {"endpoint": "/slow"}),
                             ("gatherd_upstream_duration_seconds",
                              {"endpoint": "/slow", "backend": "s"})):
            with self.subTest(name):
                b0, s0, c0 = histogram(before, name, **labels)
                b1, s1, c1 = histogram(after, name, **labels)
                self.assertEqual(c1 - c0, 1)
                self.assertGreater(s1, s0)
                # fakeup waits 300 ms before answering: at least 0.3 s; the upper margin is
                # wide for a loaded machine.
                self.assertGreaterEqual(s1 - s0, 0.3)
                self.assertLess(s1 - s0, 5)
                self.assertEqual([le for le, _ in b0], [le for le, _ in b1])
                for (le, v0), (_, v1) in zip(b0, b1):
                    if le < 0.3:
                        self.assertEqual(v1 - v0, 0, f"le={le} counted a 300 ms request")
                    elif le >= 5:
                        self.assertEqual(v1 - v0, 1, f"le={le} missed a 300 ms request")
                    else:
                        self.assertIn(v1 - v0, (0, 1), f"le={le}")

    def test_slot_wait(self):
        """Each call of an endpoint with a concurrency limit observes its wait for a slot when
        it starts: l2 waits for l1's 300 ms; endpoints without a limit have no series."""
        name = "gatherd_upstream_slot_wait_seconds"
        before = scrape(self.gd)
        status, _, doc = gd.get_json(self.gd.url("/limited"), timeout=30)
        self.assertEqual((status, doc["errors"]), (200, []))
        after = self.wait_requests(before, "/limited", 200, 1)
        self.check_histograms(after)
        waits = {}
        for backend in ("l1", "l2"):
            _, s0, c0 = histogram(before, name, endpoint="/limited", backend=backend)
            _, s1, c1 = histogram(after, name, endpoint="/limited", backend=backend)
            self.assertEqual(c1 - c0, 1, backend)
            waits[backend] = s1 - s0
        self.assertLess(waits["l1"], 0.25, waits)
        self.assertGreaterEqual(waits["l2"], 0.3, waits)
        self.assertLess(waits["l2"], 5, waits)
        self.assertEqual({lab["endpoint"] for _, lab, _ in after.of_family(name)}, {"/limited"})

    # -----------------------------------------------------------------------------------------
    # requests by endpoint and code

    def test_unmatched_paths(self):
        rnd = random.Random()
        alphabet = string.ascii_letters + string.digits + "-._~"

        def word(n):
            return "".join(rnd.choice(alphabet) for _ in range(n))

        shapes = [
            lambda: "/" + word(12),
            lambda: "/ok/" + word(8),
            lambda: "/" + word(6) + "/" + word(6) + "/" + word(6),
            lambda: "/x" + word(300),
            lambda: "/%22" + word(8) + "%5C%22",          # a quote and a backslash
            lambda: "/%E3%81%82" + word(8),               # UTF-8
            lambda: "/" + word(8) + "?q=" + word(8),      # the query is ignored
            lambda: "/OK" + word(4),
        ]
        paths = set()
        while len(paths) < 50:
            paths.add(rnd.choice(shapes)())
        before = scrape(self.gd)
        for p in paths:
            status, _, _ = http_get(self.gd.url(p))
            self.assertEqual(status, 404, p)
        after = self.wait_requests(before, "(unmatched)", 404, len(paths))
        new = set(after.samples) - set(before.samples)
        self.assertEqual(new, set(), "new series after 50 unknown paths")
        eps = {dict(k[1]).get("endpoint") for k in after.samples} - {None}
        self.assertEqual(eps, set(self.endpoints) | set(BUILTIN_ENDPOINTS))
        c0 = histogram(before, "gatherd_request_duration_seconds", endpoint="(unmatched)")[2]
        c1 = histogram(after, "gatherd_request_duration_seconds", endpoint="(unmatched)")[2]
        self.assertEqual(c1 - c0, len(paths))

    def test_status_codes(self):
        cases = [
            ("GET", "/no-such-path", "(unmatched)", 404),
            ("POST", "/ok", "/ok", 405),
            ("DELETE", "/healthz", "/healthz", 405),
            ("GET", "/allfail", "/allfail", 502),
        ]
        for method, path, label, code in cases:
            with self.subTest(method=method, path=path):
                before = scrape(self.gd)
                status, headers, _ = http_get(self.gd.url(path), method=method, timeout=20)
                self.assertEqual(status, code)
                after = self.wait_requests(before, label, code, 1)
                # Nothing else moved for that endpoint.
                for lab, v in after.series("gatherd_requests_total"):
                    if lab["endpoint"] == label and lab["code"] != str(code):
                        self.assertEqual(v, self.requests(before, label, lab["code"]), lab)

    def test_many_connections(self):
        conns, per = 40, 5
        n = conns * per
        # Scrapes on one kept-alive connection, so that they open no connection themselves.
        sc = http.client.HTTPConnection("127.0.0.1", self.gd.port, timeout=10)
        self.addCleanup(sc.close)

        def get():
            sc.request("GET", "/metrics")
            r = sc.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200)
            return parse_metrics(body)

        before = get()
        statuses = []
        t = threading.Thread(target=lambda: statuses.extend(get_many(self.gd.port, "/ok",
                                                                     conns, per)))
        t.start()
        # Scrapes while the workers write: still well formed, histograms still consistent.
        while t.is_alive():
            self.check_histograms(get())
        t.join()
        self.assertEqual(statuses, [200] * n)
        after = self.wait_requests(before, "/ok", 200, n, get=get)
        c0 = histogram(before, "gatherd_request_duration_seconds", endpoint="/ok")[2]
        c1 = histogram(after, "gatherd_request_duration_seconds", endpoint="/ok")[2]
        self.assertEqual(c1 - c0, n)
        self.assertEqual(after.get("gatherd_http_connections_opened_total")
                         - before.get("gatherd_http_connections_opened_total"), conns)
        # Idle again: the only request in flight, and the only connection open, is the scrape
        # that reports them.
        idle = self.scrape_when(
            lambda e: e.get("gatherd_requests_in_flight") == 1
            and e.get("gatherd_http_connections_open") == 1,
            "requests_in_flight and http_connections_open back to the scrape's own", get=get)
        self.assertEqual(idle.get("gatherd_workers"), WORKERS)


class UpstreamConnectionsTest(unittest.TestCase):
    """gatherd's upstream connection counters against what fakeup accepted, on a keep-alive
    run with its own fakeup and gatherd (so nothing else opens connections)."""

    def test_against_fakeup(self):
        with FakeUpstream() as up:
            u = up.url
            with Gatherd(config(
                    endpoint("/ka", [("a", u("/ok?id=a")), ("b", u("/ok?id=b&delay_ms=20"))],
                             timeout_ms=10000)), workers=WORKERS) as g:
                conns, per = 10, 5
                statuses = get_many(g.port, "/ka", conns, per)
                self.assertEqual(statuses, [200] * (conns * per))
                upstream_requests = 2 * conns * per
                st = up.wait("requests", upstream_requests, timeout=20)
                self.assertEqual(st["requests"], upstream_requests)

                last = {}

                def consistent():
                    st = up.stats()
                    exp = scrape(g)
                    last.update(fakeup=st, opened=exp.get(
                        "gatherd_upstream_connections_opened_total"),
                        open=exp.get("gatherd_upstream_connections_open"))
                    return (last["opened"] == st["connections_opened"]
                            and last["open"] == st["connections_active"])

                try:
                    wait_until(consistent, 10, "gatherd's counters to match fakeup's")
                except AssertionError:
                    self.fail(f"upstream counters disagree with fakeup: {last}")
                self.assertGreater(last["open"], 0, "keep-alive kept no connection")
                self.assertLessEqual(last["open"], last["opened"])
                self.assertLess(last["opened"], upstream_requests, "no connection was reused")


if __name__ == "__main__":
    unittest.main()
