#!/usr/bin/env python3
"""The deployment files under deploy/ checked against the real binary and real tools.

- Grafana dashboard: a real Prometheus (Debian's `prometheus`, if installed) scrapes a real
  gatherd under load (one endpoint that succeeds, one whose only backend is refused), and every
  panel query and template-variable query of deploy/grafana/gatherd-dashboard.json must return
  data with finite values.  Without Prometheus, every metric name the dashboard uses must at
  least appear in gatherd's /metrics.
- Kubernetes: the ConfigMap's gatherd.json passes `gatherd --check-config` and equals
  config/gatherd.json; the Deployment's probes, ports, user, grace period (> preStop +
  drain_timeout_ms) agree with the image and the interface; Service/HPA/PDB select the pods.
- compose: the files it mounts exist, its configs pass --check-config, and nginx's upstream
  name is the compose service name.
- systemd: `systemd-analyze verify` accepts the unit (with ExecStart pointed at the build).

YAML checks need PyYAML (Debian: python3-yaml) and are skipped without it.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import gd  # noqa: E402

try:
    import yaml
except ImportError:          # pragma: no cover
    yaml = None

DEPLOY = os.path.join(gd.SRC, "deploy")
DASHBOARD = os.path.join(DEPLOY, "grafana", "gatherd-dashboard.json")
PROMETHEUS = shutil.which("prometheus")
DRAIN_DEFAULT_MS = 10000


def read(path):
    with open(path) as f:
        return f.read()


def dashboard_queries():
    """(title, expr) of every panel target, and (name, query) of every query variable."""
    d = json.loads(read(DASHBOARD))
    panels = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            panels.append((f"{p['title']} [{t.get('refId')}]", t["expr"]))
    variables = []
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            variables.append((v["name"], q))
    return panels, variables


def to_promql(expr, rate_interval="20s"):
    """Grafana macros and variables replaced the way Grafana would with 'All' selected."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", "5s")
    expr = re.sub(r"\$\{?(instance|endpoint|backend|job)\}?", ".*", expr)
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", expr)
    if m:                                   # Grafana's label_values(metric, label)
        expr = f"group by ({m.group(2)}) ({m.group(1)})"
    return expr


def metric_names(expr):
    return set(re.findall(r"\b(gatherd_[a-z_]+)", expr))


class Prometheus:
    def __init__(self, target_port, start_timeout=30):
        self.dir = tempfile.mkdtemp(prefix="gatherd-prom-")
        self.port = gd.free_port()
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: gatherd
    static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
""")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir}/prometheus.yml",
             f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.proc.poll() is not None:
                raise gd.HarnessError("prometheus exited: " + read(self.log.name)[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise gd.HarnessError("prometheus not ready: " + read(self.log.name)[-2000:])
            time.sleep(0.1)

    def query(self, expr):
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=10) as r:
            data = json.loads(r.read())
        if data.get("status") != "success":
            raise AssertionError(f"{expr}: {data}")
        return data["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def finite_values(result):
    out = []
    for s in result:
        try:
            v = float(s["value"][1])
        except (KeyError, ValueError, IndexError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


class TestDashboard(unittest.TestCase):

    def test_every_dashboard_query_returns_data_from_a_real_gatherd(self):
        panels, variables = dashboard_queries()
        self.assertGreaterEqual(len(panels), 10)
        up = gd.FakeUpstream()
        refused = gd.closed_port()
        conf = gd.config(
            gd.endpoint("/good", [("fix", up.url("/json/btcbox_ticker.json")),
                                  ("slow", up.url("/ok?delay_ms=15")),
                                  ("down", f"http://127.0.0.1:{refused}/x")]),
            gd.endpoint("/bad", [("down", f"http://127.0.0.1:{refused}/x")]))
        g = gd.Gatherd(conf)
        stop = threading.Event()
        counts = {"n": 0}

        def load():                       # light, bounded traffic while Prometheus scrapes
            while not stop.is_set() and counts["n"] < 5000:
                for path in ("/good", "/good", "/bad"):
                    gd.http_get(g.url(path))
                    counts["n"] += 1
                stop.wait(0.01)

        t = threading.Thread(target=load, daemon=True)
        t.start()
        prom = None
        try:
            # every name in the dashboard is exported
            status, _, body = gd.http_get(g.url("/metrics"))
            self.assertEqual(status, 200)
            exported = set(re.findall(r"^(?:# TYPE )?(gatherd_[a-z_]+)", body.decode(), re.M))
            used = set().union(*(metric_names(e) for _, e in panels + variables))
            missing = {n for n in used
                       if n not in exported
                       and re.sub(r"_(bucket|count|sum)$", "", n) not in exported}
            self.assertEqual(missing, set(), f"dashboard uses metrics gatherd does not export")
            if PROMETHEUS is None:
                self.skipTest("prometheus not installed (apt-get install prometheus): "
                              "queries not evaluated")
            prom = Prometheus(g.port)
            # wait (bounded) until Prometheus has a rate over real traffic
            deadline = time.monotonic() + 60
            probe = to_promql("sum(rate(gatherd_requests_total[$__rate_interval]))")
            while not any(v > 0 for v in finite_values(prom.query(probe))):
                self.assertLess(time.monotonic(), deadline, "no rate data from Prometheus")
                time.sleep(0.5)
            empty = []
            for title, expr in panels + variables:
                q = to_promql(expr)
                res = prom.query(q)
                vals = finite_values(res)
                if not res or (not vals and "label_values" not in expr
                               and not q.startswith("group by")):
                    empty.append((title, q, res))
            self.assertEqual(empty, [], "dashboard queries without data")
            print(f"\n  {len(panels)} panel queries, {len(variables)} variable queries "
                  f"evaluated by Prometheus over {counts['n']} requests", file=sys.stderr)
        finally:
            stop.set()
            t.join(30)
            if prom:
                prom.stop()
            g.stop()
            up.stop()


@unittest.skipIf(yaml is None, "PyYAML (python3-yaml) not installed")
class TestKubernetes(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.docs = {}
        for name in sorted(os.listdir(os.path.join(DEPLOY, "k8s"))):
            if name.endswith(".yaml") and name != "kustomization.yaml":
                for doc in yaml.safe_load_all(read(os.path.join(DEPLOY, "k8s", name))):
                    if doc:
                        cls.docs[doc["kind"]] = doc

    def test_kustomization_lists_every_manifest(self):
        k = yaml.safe_load(read(os.path.join(DEPLOY, "k8s", "kustomization.yaml")))
        files = sorted(f for f in os.listdir(os.path.join(DEPLOY, "k8s"))
                       if f.endswith(".yaml") and f != "kustomization.yaml")
        self.assertEqual(sorted(k["resources"]), files)
        self.assertEqual(set(self.docs), {"ConfigMap", "Deployment", "Service",
                                          "HorizontalPodAutoscaler", "PodDisruptionBudget"})

    def test_configmap_is_the_shipped_config_and_valid(self):
        text = self.docs["ConfigMap"]["data"]["gatherd.json"]
        self.assertEqual(json.loads(text), json.loads(read(os.path.join(gd.SRC, "config",
                                                                          "gatherd.json"))))
        rc, out, err, _ = gd.run_check_config(text)
        self.assertEqual(rc, 0, err)

    def test_deployment_matches_image_and_interface(self):
        dep = self.docs["Deployment"]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports.get("http"), 5042)
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        # grace > preStop + drain limit, with margin
        pre = c["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(pre[0], "sleep")
        cfg = json.loads(self.docs["ConfigMap"]["data"]["gatherd.json"])
        drain_s = cfg.get("drain_timeout_ms", DRAIN_DEFAULT_MS) / 1000
        self.assertGreater(pod["terminationGracePeriodSeconds"], float(pre[1]) + drain_s + 5)
        # non-root user = the image's USER, read-only root fs
        m = re.search(r"^USER\s+(\d+)(?::(\d+))?", read(os.path.join(gd.SRC, "Dockerfile")), re.M)
        self.assertIsNotNone(m, "Dockerfile USER must be numeric")
        self.assertEqual(pod["securityContext"]["runAsUser"], int(m.group(1)))
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        # the args are accepted by the real binary
        args = c["args"]
        i = args.index("--config")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "gatherd.json")
            with open(path, "w") as f:
                f.write(self.docs["ConfigMap"]["data"]["gatherd.json"])
            cargs = list(args)
            cargs[i + 1] = path
            rc, out, err = gd.run_bin(cargs + ["--check-config"])
            self.assertEqual(rc, 0, err)
        mount = [m for m in c["volumeMounts"] if m["name"] == "config"][0]
        self.assertEqual(os.path.dirname(args[i + 1]), mount["mountPath"])
        self.assertEqual(pod["volumes"][0]["configMap"]["name"],
                         self.docs["ConfigMap"]["metadata"]["name"])
        self.assertGreater(c["resources"]["requests"]["cpu"], "")   # HPA needs a CPU request

    def test_service_hpa_pdb_select_the_pods(self):
        dep = self.docs["Deployment"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        svc = self.docs["Service"]["spec"]
        self.assertTrue(set(svc["selector"].items()) <= set(labels.items()))
        names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        self.assertIn(svc["ports"][0]["targetPort"], names)
        pdb = self.docs["PodDisruptionBudget"]
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        self.assertTrue(set(pdb["spec"]["selector"]["matchLabels"].items()) <= set(labels.items()))
        hpa = self.docs["HorizontalPodAutoscaler"]
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], dep["metadata"]["name"])
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)     # PDB can keep one
        self.assertEqual(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu")


@unittest.skipIf(yaml is None, "PyYAML (python3-yaml) not installed")
class TestCompose(unittest.TestCase):

    def test_compose_references_exist_and_configs_are_valid(self):
        c = yaml.safe_load(read(os.path.join(DEPLOY, "compose.yaml")))
        s = c["services"]
        self.assertEqual(os.path.normpath(os.path.join(DEPLOY, s["gatherd"]["build"]["context"],
                                                       s["gatherd"]["build"]["dockerfile"])),
                         os.path.join(gd.SRC, "Dockerfile"))
        for svc in s.values():
            for v in svc.get("volumes", []):
                m = re.match(r"\$\{\w+:-([^}]*)\}", v)
                src = m.group(1) if m else v.split(":")[0]
                self.assertTrue(os.path.exists(os.path.join(DEPLOY, src)), v)
        mount = s["gatherd"]["volumes"][0]
        self.assertRegex(mount, r":/etc/gatherd:ro$")     # the directory the image reads
        for cfg in ("../config/gatherd.json", "offline/gatherd.json"):
            rc, out, err, _ = gd.run_check_config(read(os.path.join(DEPLOY, cfg)))
            self.assertEqual(rc, 0, f"{cfg}: {err}")
        nginx = read(os.path.join(DEPLOY, "nginx", "gatherd.conf"))
        m = re.search(r"upstream\s+gatherd\s*\{[^}]*?server\s+([\w.-]+):(\d+)", nginx, re.S)
        self.assertEqual(m.group(1), "gatherd")          # the compose service name
        self.assertEqual(m.group(2), "5042")
        self.assertIn("5042", [str(p) for p in s["gatherd"]["expose"]])


class TestSystemd(unittest.TestCase):

    @unittest.skipIf(shutil.which("systemd-analyze") is None, "systemd-analyze not installed")
    def test_unit_verifies(self):
        unit = read(os.path.join(DEPLOY, "systemd", "gatherd.service"))
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID", unit)
        m = re.search(r"^TimeoutStopSec=(\d+)", unit, re.M)
        self.assertGreater(int(m.group(1)), DRAIN_DEFAULT_MS / 1000)
        unit = unit.replace("/usr/local/bin/gatherd", gd.BIN)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "gatherd.service")
            with open(path, "w") as f:
                f.write(unit)
            p = subprocess.run(["systemd-analyze", "verify", path], capture_output=True,
                               text=True, timeout=60)
            # only complaints about this unit matter (the host's own units may be odd)
            mine = [l for l in (p.stdout + p.stderr).splitlines() if "gatherd.service" in l]
            self.assertEqual(mine, [], p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
