#!/bin/bash
# Container test: builds the real Dockerfile with podman and checks the image as an operator
# would run it. Everything runs as root on loopback; no registry is needed (the
# debian:bookworm-slim base is made locally with debootstrap and cached in podman's store).
#
#   tests/container/run.sh            # from anywhere; exit 0 ok, 1 failure, 77 skipped
#
# Environment:
#   GATHERD_SRC        source tree (default: this script's ../..)
#   GATHERD_IMAGE      tag to build (default: localhost/gatherd:test)
#   GATHERD_TEST_PORT  loopback port to publish (default: a free one)
#   REBUILD_BASE=1     throw away the cached base image and debootstrap again
set -euo pipefail

T0=$(date +%s.%N)
SRC="${GATHERD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
IMAGE="${GATHERD_IMAGE:-localhost/gatherd:test}"
BASE=debian:bookworm-slim
CTR="gatherd-ctest-$$"

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
say()   { printf '[container %6ss] %s\n' "$(since "$T0")" "$*"; }
fail()  { say "FAIL: $*"; FAILED=$((FAILED + 1)); }
ok()    { say "ok: $*"; PASSED=$((PASSED + 1)); }
skip()  { say "SKIP: $*"; echo "SKIP: $*"; exit 77; }
PASSED=0
FAILED=0

[ "$(id -u)" = 0 ] || skip "needs root (podman as root with runc)"

# ---------------------------------------------------------------- tools (idempotent)
need=()
for p in podman runc debootstrap fuse-overlayfs uidmap curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    skip "cannot install ${need[*]} with apt-get"
  fi
fi

# ---------------------------------------------------------------- podman configuration
# Private containers.conf (never /etc): runc as runtime, cgroupfs (no systemd here), and
# default ulimits below this machine's hard limits (podman's defaults are higher and make
# every container start fail with "setrlimit: operation not permitted").
WORK=$(mktemp -d /tmp/gatherd-ctest.XXXXXX)
hard_nofile=$(ulimit -Hn); [ "$hard_nofile" = unlimited ] && hard_nofile=1048576
nofile=$(( hard_nofile < 20000 ? hard_nofile : 20000 ))
hard_nproc=$(ulimit -Hu); [ "$hard_nproc" = unlimited ] && hard_nproc=32768
nproc=$(( hard_nproc < 32768 ? hard_nproc : 32768 ))
cat > "$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"

cleanup() {
  for c in "$CTR" "$CTR-ro" "$CTR-hc"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

podman info >"$WORK/podman-info.txt" 2>&1 || skip "podman info fails: $(tail -n 3 "$WORK/podman-info.txt" | tr '\n' ' ')"
say "podman $(podman version --format '{{.Client.Version}}'), runtime runc, storage $(podman info --format '{{.Store.GraphDriverName}}')"

# ---------------------------------------------------------------- base image (cached)
# Stands in for the registry's debian:bookworm-slim: a debootstrap minbase with the same
# slimming (no docs/man/locales, apt lists cleaned) so image sizes stay comparable.
if [ "${REBUILD_BASE:-0}" = 1 ]; then podman rmi -f "$BASE" >/dev/null 2>&1 || true; fi
if podman image exists "$BASE"; then
  say "base $BASE cached"
else
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security \
           | head -n 1 | tr -d ' ' || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
  say "debootstrap --variant=minbase bookworm from $mirror"
  root="$WORK/rootfs"
  if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log"
    skip "debootstrap failed (no Debian mirror reachable?)"
  fi
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" > "$root/etc/apt/sources.list"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' \
    > "$root/etc/dpkg/dpkg.cfg.d/docker"
  printf '%s\n' 'APT::Install-Recommends "false";' > "$root/etc/apt/apt.conf.d/docker-no-recommends"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/var/lib/apt/lists/* \
         "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* \
         "$root"/usr/share/locale/*
  tar --numeric-owner -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
  say "base imported: $(podman image inspect --format '{{.Size}}' "$BASE" | awk '{printf "%.1f MB", $1/1e6}')"
fi

# ---------------------------------------------------------------- build
[ -f "$SRC/Dockerfile" ] || { echo "no Dockerfile in $SRC"; exit 1; }
say "podman build --format docker -t $IMAGE $SRC"
tb=$(date +%s)
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if ! podman build --format docker --network host --pull=never -t "$IMAGE" -f "$SRC/Dockerfile" "$SRC" \
      >"$WORK/build.log" 2>&1; then
  tail -n 40 "$WORK/build.log"
  fail "image build"
  echo "container: 0 passed, 1 failed"
  exit 1
fi
ok "image built in $(( $(date +%s) - tb ))s"
# drop the previous build's final image (intermediate layers stay: they are the build cache)
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
[ -n "$old_id" ] && [ "$old_id" != "$new_id" ] && podman rmi "$old_id" >/dev/null 2>&1 || true

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
say "image size: $(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}') (base $(awk -v s="$base_size" 'BEGIN{printf "%.1f MB", s/1e6}'), gatherd layers +$(awk -v s="$size" -v b="$base_size" 'BEGIN{printf "%.1f MB", (s-b)/1e6}'))"

# ---------------------------------------------------------------- image metadata
hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" 2>/dev/null || echo null)
if echo "$hc" | grep -q 'gatherd-healthcheck'; then ok "HEALTHCHECK in image: $hc"; else fail "no HEALTHCHECK in image config: $hc"; fi
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
case "$user" in ""|0|0:*|root|root:*) fail "image USER is root ('$user')" ;; *) ok "image USER $user" ;; esac
stopsig=$(podman image inspect --format '{{.Config.StopSignal}}' "$IMAGE")
[ "$stopsig" = SIGTERM ] && ok "STOPSIGNAL SIGTERM" || fail "STOPSIGNAL is '$stopsig'"
ports=$(podman image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE")
echo "$ports" | grep -q '5042/tcp' && ok "EXPOSE 5042" || fail "ExposedPorts $ports"

# ---------------------------------------------------------------- run
port="${GATHERD_TEST_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
# Port published on loopback only. --health-interval=disable: no systemd timers on this
# machine; the check is run explicitly below with `podman healthcheck run`.
say "podman run -p 127.0.0.1:$port:5042 $IMAGE"
if ! podman run -d --name "$CTR" --network bridge -p "127.0.0.1:$port:5042" \
     --health-interval=disable "$IMAGE" >"$WORK/run.log" 2>&1; then
  # bridge networking may be unavailable (no iptables/netavark); host networking is the fallback
  say "bridge network unavailable ($(tail -n 1 "$WORK/run.log")); using --network host, port $port"
  podman rm -f "$CTR" >/dev/null 2>&1 || true
  podman run -d --name "$CTR" --network host -e "PORT=$port" -e "GATHERD_HEALTH_PORT=$port" \
     --health-interval=disable --entrypoint /usr/local/bin/gatherd "$IMAGE" \
     --config /etc/gatherd/gatherd.json --listen "127.0.0.1:$port" >"$WORK/run.log" 2>&1 \
    || { cat "$WORK/run.log"; fail "podman run"; echo "container: $PASSED passed, $FAILED failed"; exit 1; }
fi

# wait (bounded) for the `listening` line, not a fixed sleep
listening=""
for _ in $(seq 1 200); do
  if podman logs "$CTR" 2>&1 | grep -q '"msg":"listening"'; then listening=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$CTR")" = true ] || break
  sleep 0.05
done
if [ -n "$listening" ]; then ok "gatherd logged listening: $(podman logs "$CTR" 2>&1 | grep -m1 '"msg":"listening"')"
else podman logs "$CTR" 2>&1 | tail -n 20; fail "no listening line"; fi

code=""
for _ in $(seq 1 100); do
  code=$(curl -s -o "$WORK/healthz.body" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/healthz" || true)
  [ "$code" = 200 ] && break
  sleep 0.05
done
[ "$code" = 200 ] && ok "GET /healthz from the host: 200 $(cat "$WORK/healthz.body")" || fail "GET /healthz from the host: '$code'"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz" || true)
[ "$code" = 200 ] && ok "GET /readyz: 200" || fail "GET /readyz: '$code'"
if curl -s --max-time 2 "http://127.0.0.1:$port/metrics" | grep -q '^gatherd_build_info'; then ok "/metrics has gatherd_build_info"
else fail "/metrics lacks gatherd_build_info"; fi

uid=$(podman exec "$CTR" id -u 2>/dev/null || echo "?")
[ "$uid" != 0 ] && [ "$uid" != "?" ] && ok "process runs as uid $uid (podman exec id -u)" || fail "container uid '$uid'"
top_user=$(podman top "$CTR" user huser args 2>/dev/null | awk 'NR>1 && /gatherd/ {print $1" (host "$2")"; exit}')
case "$top_user" in root*|"") fail "podman top: gatherd runs as '$top_user'" ;; *) ok "podman top: gatherd runs as $top_user" ;; esac

if podman healthcheck run "$CTR" >"$WORK/hc.log" 2>&1; then ok "podman healthcheck run: $(tr '\n' ' ' < "$WORK/hc.log")healthy"
else fail "podman healthcheck run: $(cat "$WORK/hc.log")"; fi

# read-only root filesystem, as in the Kubernetes manifest: gatherd must not need to write
ro="$CTR-ro"
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if podman run -d --name "$ro" --read-only --network host --health-interval=disable "$IMAGE" \
     --config /etc/gatherd/gatherd.json --listen "127.0.0.1:$rport" >/dev/null 2>&1; then
  rcode=""
  for _ in $(seq 1 100); do
    rcode=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$rport/healthz" || true)
    [ "$rcode" = 200 ] && break; sleep 0.05
  done
  [ "$rcode" = 200 ] && ok "runs with --read-only root fs" || fail "--read-only: /healthz '$rcode': $(podman logs "$ro" 2>&1 | tail -n 3)"
  podman rm -f -t 0 "$ro" >/dev/null 2>&1 || true
else
  fail "--read-only run"; podman rm -f -t 0 "$ro" >/dev/null 2>&1 || true
fi

# the probe is not vacuous: gatherd on another port -> unhealthy; told the port -> healthy
hc="$CTR-hc"
if podman run -d --name "$hc" --network bridge --health-interval=disable "$IMAGE" \
     --config /etc/gatherd/gatherd.json --listen 0.0.0.0:5043 >/dev/null 2>&1; then
  for _ in $(seq 1 200); do
    podman logs "$hc" 2>&1 | grep -q '"msg":"listening"' && break; sleep 0.05
  done
  if podman healthcheck run "$hc" >/dev/null 2>&1; then fail "healthcheck passes although nothing listens on 5042"
  else ok "healthcheck fails when gatherd does not answer on the probed port"; fi
  podman rm -f -t 0 "$hc" >/dev/null 2>&1 || true
  podman run -d --name "$hc" --network bridge --health-interval=disable -e GATHERD_HEALTH_PORT=5043 \
    "$IMAGE" --config /etc/gatherd/gatherd.json --listen 0.0.0.0:5043 >/dev/null 2>&1
  for _ in $(seq 1 200); do
    podman logs "$hc" 2>&1 | grep -q '"msg":"listening"' && break; sleep 0.05
  done
  if podman healthcheck run "$hc" >/dev/null 2>&1; then ok "GATHERD_HEALTH_PORT points the probe at another port"
  else fail "healthcheck with GATHERD_HEALTH_PORT=5043"; fi
  podman rm -f -t 0 "$hc" >/dev/null 2>&1 || true
else
  fail "podman run (healthcheck variants)"; podman rm -f -t 0 "$hc" >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- stop = SIGTERM drain
ts=$(date +%s.%N)
podman stop -t 10 "$CTR" >/dev/null 2>"$WORK/stop.err" || { cat "$WORK/stop.err"; fail "podman stop"; }
stop_s=$(since "$ts")
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$CTR")
say "podman stop took ${stop_s}s, exit code $exit_code"
[ "$exit_code" = 0 ] && ok "exit code 0 after SIGTERM" || fail "exit code $exit_code after podman stop (137 = SIGKILL after timeout)"
if awk -v s="$stop_s" 'BEGIN{exit !(s < 5)}'; then ok "stopped in ${stop_s}s (< 5s, stop timeout 10s)"; else fail "stop took ${stop_s}s"; fi
podman logs "$CTR" >"$WORK/ctr.log" 2>&1 || true
if grep -q '"msg":"draining"' "$WORK/ctr.log"; then ok "log has draining"; else fail "log lacks \"msg\":\"draining\""; fi
if grep -q '"msg":"stopped"' "$WORK/ctr.log"; then ok "log has stopped: $(grep -m1 '"msg":"stopped"' "$WORK/ctr.log")"
else tail -n 10 "$WORK/ctr.log"; fail "log lacks \"msg\":\"stopped\""; fi

say "total $(since "$T0")s"
echo "container: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
