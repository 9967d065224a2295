#!/bin/bash
# Kubernetes manifest test, without a cluster: `podman kube play` runs deploy/k8s's ConfigMap
# and Deployment with the image built from the Dockerfile, and the pod must come up as the
# manifest says: config from the ConfigMap at the path in args, --workers 1, uid 10001,
# read-only root filesystem, no capabilities, no_new_privs, the memory limit; then a stop
# (SIGTERM) drains and exits 0.
#
# What podman cannot stand in for is left out of the copy it plays: replicas (1 instead of
# 2), `ports` (podman 4.3 would publish containerPort on the host's 0.0.0.0) and the probes
# (podman turns httpGet probes into curl healthchecks, and the image has no curl; the kubelet
# needs none). The pod runs with --network none; requests are made inside it, on loopback.
# tests/proxy/test_deploy.py checks the probes, Service, HPA and PDB statically.
#
#   tests/container/kube.sh           # exit 0 ok, 1 failure, 77 skipped
set -euo pipefail
CT_NAME=kube
. "$(dirname "$0")/lib.sh"
K8S="$SRC/deploy/k8s"
ct_cleanup_extra() {
  [ -f "$WORK/deployment.yaml" ] && podman kube down "$WORK/deployment.yaml" >/dev/null 2>&1 || true
}

# a python with PyYAML: the one on PATH, else Debian's with python3-yaml (installed if needed)
PY=""
for p in python3 /usr/bin/python3; do "$p" -c 'import yaml' 2>/dev/null && { PY="$p"; break; }; done
if [ -n "$PY" ]; then ct_setup catatonit; else ct_setup catatonit python3-yaml; PY=/usr/bin/python3; fi
"$PY" -c 'import yaml' 2>/dev/null || die "python3-yaml installed, yet $PY cannot import yaml"
ct_base_image
ct_build_image || { summary; exit 1; }

# the copy podman plays, and the facts to check, from the real manifests
"$PY" - "$K8S" "$WORK" <<'PY'
import json, os, sys, yaml
k8s, work = sys.argv[1], sys.argv[2]
dep = yaml.safe_load(open(os.path.join(k8s, "deployment.yaml")))
cm = yaml.safe_load(open(os.path.join(k8s, "configmap.yaml")))
dep["spec"]["replicas"] = 1
c = dep["spec"]["template"]["spec"]["containers"][0]
for k in ("ports", "startupProbe", "readinessProbe", "livenessProbe"):
    c.pop(k, None)
yaml.safe_dump(dep, open(os.path.join(work, "deployment.yaml"), "w"))
facts = {
    "image": c["image"],
    "name": dep["metadata"]["name"],
    "container": c["name"],
    "uid": dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
    "config_path": c["args"][c["args"].index("--config") + 1],
    "workers": int(c["args"][c["args"].index("--workers") + 1]) if "--workers" in c["args"] else None,
    "memory": c["resources"]["limits"]["memory"],
    "grace": dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
}
open(os.path.join(work, "facts.sh"), "w").write(
    "".join(f"K_{k.upper()}={json.dumps(str(v))}\n" for k, v in facts.items()))
open(os.path.join(work, "configmap.json"), "w").write(cm["data"]["gatherd.json"])
PY
. "$WORK/facts.sh"
case "$K_MEMORY" in *Mi) mem_bytes=$(( ${K_MEMORY%Mi} * 1048576 )) ;; *Gi) mem_bytes=$(( ${K_MEMORY%Gi} * 1073741824 )) ;; *) mem_bytes="$K_MEMORY" ;; esac

# the image the manifest names, resolved locally (imagePullPolicy IfNotPresent)
local_ref="localhost/${K_IMAGE#localhost/}"
podman tag "$IMAGE" "$local_ref"
say "podman kube play (image $K_IMAGE -> $local_ref, network none)"
if ! podman kube play --network none --configmap "$K8S/configmap.yaml" "$WORK/deployment.yaml" \
     >"$WORK/play.log" 2>&1; then
  cat "$WORK/play.log"; fail "podman kube play"; summary; exit 1
fi
ctr=$(podman ps -a --format '{{.Names}}' | grep -E "^${K_NAME}-pod-[0-9]+-${K_CONTAINER}\$" | head -n 1 || true)
pod=$(podman inspect --format '{{.Pod}}' "$ctr" 2>/dev/null || true)
[ -n "$ctr" ] && ok "pod started: container $ctr" || { fail "no container for $K_NAME"; podman ps -a; summary; exit 1; }

line=""
for _ in $(seq 1 200); do
  line=$(podman logs "$ctr" 2>&1 | grep '"msg":"listening"' || true)
  [ -n "$line" ] && break
  [ "$(podman inspect --format '{{.State.Running}}' "$ctr")" = true ] || break
  sleep 0.05
done
[ -n "$line" ] && ok "listening: $line" || { fail "no listening line: $(podman logs "$ctr" 2>&1 | tail -n 5)"; summary; exit 1; }
if [ "$K_WORKERS" != None ]; then
  printf '%s' "$line" | grep -q "\"workers\":$K_WORKERS[,}]" && ok "workers = $K_WORKERS (args)" || fail "workers: $line"
fi
podman exec "$ctr" cat "$K_CONFIG_PATH" > "$WORK/mounted.json" 2>/dev/null || true
cmp -s "$WORK/mounted.json" "$WORK/configmap.json" && ok "$K_CONFIG_PATH is the ConfigMap's gatherd.json" \
  || fail "$K_CONFIG_PATH differs from the ConfigMap"
podman exec "$ctr" /usr/local/bin/gatherd-healthcheck && ok "GET /healthz 200 inside the pod" || fail "healthz inside the pod"
# /readyz says "warming" until /tickers' first background refresh ends (it cannot reach the
# exchanges under --network none, so it fails at once or at its 5 s deadline): poll, bounded.
ready=""
for _ in $(seq 1 60); do
  ready=$(podman exec "$ctr" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5042; printf "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" >&3; head -n 1 <&3' 2>/dev/null | tr -d '\r' || true)
  case "$ready" in *" 200"*) break ;; esac
  sleep 0.2
done
case "$ready" in *" 200"*) ok "GET /readyz: $ready" ;; *) fail "GET /readyz: '$ready'" ;; esac

uid=$(podman exec "$ctr" id -u 2>/dev/null || echo "?")
[ "$uid" = "$K_UID" ] && ok "runs as uid $uid (runAsUser)" || fail "uid '$uid', manifest says $K_UID"
[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$ctr")" = true ] && ok "read-only root filesystem" || fail "root fs writable"
podman exec "$ctr" bash -c ': > /probe' 2>/dev/null && fail "could write /probe" || ok "writing / is refused"
status=$(podman exec "$ctr" cat /proc/1/status 2>/dev/null || true)
printf '%s\n' "$status" | grep -q '^CapEff:[[:space:]]*0000000000000000' && ok "no effective capabilities (drop ALL)" \
  || fail "capabilities: $(printf '%s\n' "$status" | grep ^CapEff)"
printf '%s\n' "$status" | grep -q '^NoNewPrivs:[[:space:]]*1' && ok "no_new_privs (allowPrivilegeEscalation: false)" || fail "NoNewPrivs not set"
mem=$(podman inspect --format '{{.HostConfig.Memory}}' "$ctr")
[ "$mem" = "$mem_bytes" ] && ok "memory limit $K_MEMORY" || fail "memory limit $mem, manifest $K_MEMORY"

# stop = what the kubelet does after preStop: SIGTERM, then the grace period
ts=$(date +%s.%N)
podman pod stop -t "$K_GRACE" "$pod" >/dev/null 2>&1 || true
stop_s=$(since "$ts")
rc=$(podman inspect --format '{{.State.ExitCode}}' "$ctr")
say "pod stop took ${stop_s}s, gatherd exit code $rc"
[ "$rc" = 0 ] && ok "exit 0 after SIGTERM" || fail "exit code $rc"
awk -v s="$stop_s" 'BEGIN{exit !(s < 5)}' && ok "stopped well within the ${K_GRACE}s grace period" || fail "stop took ${stop_s}s"
podman logs "$ctr" 2>&1 | grep -q '"msg":"stopped"' && ok "log has stopped" || fail "log lacks stopped"
summary
