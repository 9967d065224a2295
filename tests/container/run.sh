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
CT_NAME=container
. "$(dirname "$0")/lib.sh"
CTR="gatherd-ctest-$$"
FAKEUP_PID=""
TLSUP_PID=""
ct_cleanup_extra() {
  for c in "$CTR" "$CTR-ro" "$CTR-hc" "$CTR-drain" "$CTR-tls"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  [ -z "$FAKEUP_PID" ] || kill "$FAKEUP_PID" 2>/dev/null || true
  [ -z "$TLSUP_PID" ] || kill "$TLSUP_PID" 2>/dev/null || true
}

ct_setup openssl
ct_base_image
ct_build_image || { summary; exit 1; }

# ---------------------------------------------------------------- image size and contents
# "As small as Debian allows": what gatherd's layers add on top of the base (today ~15 MB: the
# runtime libraries and gatherd) must stay under a bound with headroom, so that a build
# toolchain or a dev package slipping into the runtime stage fails here.
MAX_ADDED=${GATHERD_MAX_ADDED_BYTES:-25000000}
added=$((IMAGE_SIZE - BASE_SIZE))
if [ "$added" -le "$MAX_ADDED" ]; then ok "gatherd layers add $(mb "$added") (bound $(mb "$MAX_ADDED"))"
else fail "gatherd layers add $(mb "$added") over the base, more than $(mb "$MAX_ADDED") (image $(mb "$IMAGE_SIZE"), base $(mb "$BASE_SIZE"))"; fi
# No compiler, linker or build tool, and no -dev package (build-essential pulls dpkg-dev too).
# The package listing must name the runtime libraries, or the check would prove nothing.
podman run --rm --network none --health-interval=disable --entrypoint sh "$IMAGE" -c '
  for t in cc c++ gcc g++ cpp clang tcc ld as make meson ninja pkg-config pkgconf; do
    p=$(command -v "$t") && echo "tool $t: $p"
  done
  dpkg-query -W -f="\${db:Status-Abbrev} \${Package}\n" | awk "\$1 ~ /^.i/ {print \"pkg \" \$2}"
' >"$WORK/contents.txt" 2>"$WORK/contents.err" || true
if ! grep -q '^pkg libmicrohttpd12' "$WORK/contents.txt"; then
  fail "cannot list the image's packages: $(tail -n 3 "$WORK/contents.err" | tr '\n' ' ')"
else
  tools=$(sed -n 's/^tool //p' "$WORK/contents.txt" | tr '\n' ' ')
  [ -z "$tools" ] && ok "no compiler or build tool in the image" || fail "build tools in the runtime image: $tools"
  devs=$(awk '$1 == "pkg" && ($2 ~ /-dev(:|$)/ || $2 ~ /^(build-essential|binutils|gcc|g\+\+|cpp|make|meson|ninja-build|pkgconf?)(-[0-9]+)?(:|$)/) {print $2}' \
         "$WORK/contents.txt" | tr '\n' ' ')
  [ -z "$devs" ] && ok "no -dev or toolchain package among $(grep -c '^pkg ' "$WORK/contents.txt") installed" \
    || fail "dev/toolchain packages in the runtime image: $devs"
fi

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
# The image's own configuration (config/gatherd.json) refreshes /tickers from the real exchanges
# from start-up on, and a test never calls them: the runs below mount a configuration of the
# same shape (a cached, refreshed /tickers) whose backend is gatherd's own /healthz on the
# container's loopback. The shipped file itself is checked by --check-config in the image build
# and runs under --network none in kube.sh.
local_cfg() {  # listen port inside the container -> path of a config file for it
  local d="$WORK/local-$1"
  mkdir -p "$d"; chmod 0755 "$d"
  cat > "$d/gatherd.json" <<JSON
{"endpoints": [{"path": "/tickers", "timeout_ms": 2000,
  "cache": {"ttl_ms": 2000, "stale_while_revalidate_ms": 1000}, "refresh_ms": 1000,
  "backends": [{"name": "self", "url": "http://127.0.0.1:$1/healthz"}]}]}
JSON
  chmod 0644 "$d/gatherd.json"
  printf '%s' "$d/gatherd.json"
}
port="${GATHERD_TEST_PORT:-$(free_port)}"
# Port published on loopback only. --health-interval=disable: no systemd timers on this
# machine; the check is run explicitly below with `podman healthcheck run`.
say "podman run -p 127.0.0.1:$port:5042 $IMAGE"
if ! podman run -d --name "$CTR" --network bridge -p "127.0.0.1:$port:5042" \
     -v "$(local_cfg 5042):/etc/gatherd/gatherd.json:ro" \
     --health-interval=disable "$IMAGE" >"$WORK/run.log" 2>&1; then
  # bridge networking may be unavailable (no iptables/netavark); host networking is the fallback
  say "bridge network unavailable ($(tail -n 1 "$WORK/run.log")); using --network host, port $port"
  podman rm -f "$CTR" >/dev/null 2>&1 || true
  podman run -d --name "$CTR" --network host -e "PORT=$port" -e "GATHERD_HEALTH_PORT=$port" \
     -v "$(local_cfg "$port"):/etc/gatherd/gatherd.json:ro" \
     --health-interval=disable --entrypoint /usr/local/bin/gatherd "$IMAGE" \
     --config /etc/gatherd/gatherd.json --listen "127.0.0.1:$port" >"$WORK/run.log" 2>&1 \
    || { cat "$WORK/run.log"; fail "podman run"; summary; exit 1; }
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
# /readyz is 503 "warming" until /tickers' first background refresh ends.
for _ in $(seq 1 200); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz" || true)
  [ "$code" = 200 ] && break
  sleep 0.05
done
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
rport=$(free_port)
if podman run -d --name "$ro" --read-only --network host --health-interval=disable \
     -v "$(local_cfg "$rport"):/etc/gatherd/gatherd.json:ro" "$IMAGE" \
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
if podman run -d --name "$hc" --network bridge --health-interval=disable \
     -v "$(local_cfg 5043):/etc/gatherd/gatherd.json:ro" "$IMAGE" \
     --config /etc/gatherd/gatherd.json --listen 0.0.0.0:5043 >/dev/null 2>&1; then
  for _ in $(seq 1 200); do
    podman logs "$hc" 2>&1 | grep -q '"msg":"listening"' && break; sleep 0.05
  done
  if podman healthcheck run "$hc" >/dev/null 2>&1; then fail "healthcheck passes although nothing listens on 5042"
  else ok "healthcheck fails when gatherd does not answer on the probed port"; fi
  podman rm -f -t 0 "$hc" >/dev/null 2>&1 || true
  podman run -d --name "$hc" --network bridge --health-interval=disable -e GATHERD_HEALTH_PORT=5043 \
    -v "$(local_cfg 5043):/etc/gatherd/gatherd.json:ro" "$IMAGE" --config /etc/gatherd/gatherd.json --listen 0.0.0.0:5043 >/dev/null 2>&1
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

# ---------------------------------------------------------------- stop with a request in flight
# gatherd on the host network, one endpoint whose only backend is fakeup (on the host's
# loopback) answering after 2 s. A request is sent, fakeup is asked (long poll) until it has
# the upstream request, then `podman stop -t 20`: the drain must let the request finish with
# its whole 200 answer, refuse new connections meanwhile, and exit 0. Nothing sleeps.
drain="$CTR-drain"
SLOW_MS=2000
exec {fu}< <(exec python3 "$SRC/tests/upstream/fakeup.py" --host 127.0.0.1 --port 0 2>"$WORK/fakeup.err")
FAKEUP_PID=$!
fline=""; read -r -t 20 -u "$fu" fline || true
exec {fu}<&-
fport=$(printf '%s' "$fline" | sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p')
dport=$(free_port)
mkdir -p "$WORK/drain"; chmod 0755 "$WORK/drain"
cat > "$WORK/drain/gatherd.json" <<JSON
{"endpoints": [{"path": "/slow", "timeout_ms": 15000,
  "backends": [{"name": "slow", "url": "http://127.0.0.1:$fport/ok?delay_ms=$SLOW_MS&id=drain"}]}]}
JSON
chmod 0644 "$WORK/drain/gatherd.json"
if [ -z "$fport" ]; then
  fail "fakeup did not start: $(tail -n 3 "$WORK/fakeup.err" | tr '\n' ' ')"
elif ! podman run -d --name "$drain" --network host --health-interval=disable \
       -v "$WORK/drain:/etc/gatherd-drain:ro" "$IMAGE" \
       --config /etc/gatherd-drain/gatherd.json --listen "127.0.0.1:$dport" >"$WORK/drain-run.log" 2>&1; then
  fail "podman run (in-flight stop): $(tail -n 2 "$WORK/drain-run.log" | tr '\n' ' ')"
elif ! ct_await_log "$drain" '"msg":"listening"' 20; then
  fail "in-flight stop: gatherd did not log listening: $(podman logs "$drain" 2>&1 | tail -n 3 | tr '\n' ' ')"
else
  curl -s -o "$WORK/slow.body" -w '%{http_code}' --max-time 30 "http://127.0.0.1:$dport/slow" \
    >"$WORK/slow.code" 2>"$WORK/slow.err" &
  slow_pid=$!
  stop_s=""
  # the upstream request is at fakeup (its head read, the 2 s delay begun): in flight now
  got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H 'X-Fakeup-Control: 1' \
        "http://127.0.0.1:$fport/_wait?path:/ok=1&timeout_ms=15000" || true)
  if [ "$got" != 200 ]; then
    fail "the request never reached fakeup (/_wait: '$got')"
  else
    ts=$(date +%s.%N)
    podman stop -t 20 "$drain" >/dev/null 2>"$WORK/drain-stop.err" &
    stop_pid=$!
    if ct_await_log "$drain" '"msg":"draining"' 20; then
      # the listener is closed once `draining` is logged: a new connection must be refused
      refused=0; curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$dport/healthz" 2>/dev/null || refused=$?
      pending=0; kill -0 "$slow_pid" 2>/dev/null && pending=1
      if echo "$LOG_LINE" | grep -q '"in_flight":1'; then ok "draining with the request in flight: $LOG_LINE"
      else fail "draining line does not count the request in flight: $LOG_LINE"; fi
      if [ "$refused" = 7 ] && [ "$pending" = 1 ]; then ok "new connection refused during the drain (request still in flight)"
      elif [ "$refused" = 7 ]; then say "new connection refused, but the request had already finished: not counted"
      else fail "new connection during the drain: curl exit $refused (7 = refused)"; fi
    else
      fail "no draining line after podman stop: $(podman logs "$drain" 2>&1 | tail -n 3 | tr '\n' ' ')"
    fi
    stop_rc=0; wait "$stop_pid" || stop_rc=$?
    stop_s=$(since "$ts")
    [ "$stop_rc" = 0 ] || fail "podman stop -t 20 (in flight): exit $stop_rc $(cat "$WORK/drain-stop.err")"
  fi
  wait "$slow_pid" || true
  code=$(cat "$WORK/slow.code")
  if [ "$code" = 200 ] && python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if j["results"] == [{"ok": True, "id": "drain"}] and j["errors"] == [] else 1)' "$WORK/slow.body" 2>/dev/null
  then ok "in-flight request answered in full during the drain: 200 $(cat "$WORK/slow.body")"
  else fail "in-flight request: '$code' $(cat "$WORK/slow.body" "$WORK/slow.err" 2>/dev/null | head -c 300)"; fi
  exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$drain")
  say "podman stop with a request in flight took ${stop_s:-?}s, exit code $exit_code"
  [ "$exit_code" = 0 ] && ok "exit code 0 after draining a request in flight" \
    || fail "exit code $exit_code after podman stop -t 20 with a request in flight (137 = SIGKILL)"
  podman logs "$drain" >"$WORK/drain.log" 2>&1 || true
  if grep -q '"msg":"draining"' "$WORK/drain.log" && grep -q '"msg":"stopped"' "$WORK/drain.log"; then
    ok "log has draining and stopped"
  else tail -n 10 "$WORK/drain.log"; fail "in-flight stop: log lacks draining or stopped"; fi
fi
podman rm -f -t 0 "$drain" >/dev/null 2>&1 || true

# ---------------------------------------------------------------- HTTPS with the image's CA bundle
# The default configuration's exchanges are verified against the image's own bundle: it must
# be there (ca-certificates in the runtime stage) and load (--check-config parses it). And the
# image verifies for real: a local chain made now (tests/lib/tlsca.py) is accepted through
# ca_file, and refused as an unknown issuer against the system bundle alone.
ncert=$(podman run --rm --network none --health-interval=disable --entrypoint sh "$IMAGE" -c \
  'test -s /etc/ssl/certs/ca-certificates.crt && grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt' \
  2>/dev/null || echo 0)
[ "${ncert:-0}" -ge 100 ] && ok "system CA bundle in the image: $ncert certificates" \
  || fail "no system CA bundle in the image (/etc/ssl/certs/ca-certificates.crt: '$ncert' certificates)"
if podman run --rm --network none --health-interval=disable "$IMAGE" --config /etc/gatherd/gatherd.json \
     --check-config >"$WORK/check.log" 2>&1; then ok "default configuration loads the bundle: $(head -c 200 "$WORK/check.log")"
else fail "--check-config of the default configuration: $(tail -n 3 "$WORK/check.log" | tr '\n' ' ')"; fi
tlsctr="$CTR-tls"
mkdir -p "$WORK/tls"; chmod 0755 "$WORK/tls"
if ! PYTHONPATH="$SRC/tests/lib" python3 -c 'import sys, tlsca; tlsca.TestPKI(sys.argv[1])' "$WORK/tls/pki" \
     2>"$WORK/pki.err"; then
  fail "cannot make the test PKI: $(tail -n 2 "$WORK/pki.err" | tr '\n' ' ')"
else
  chmod -R a+rX "$WORK/tls"
  exec {tu}< <(exec python3 "$SRC/tests/upstream/fakeup.py" --host 127.0.0.1 --port 0 --control-port 0 \
    --tls-cert "$WORK/tls/pki/server.crt" --tls-key "$WORK/tls/pki/server.key" 2>"$WORK/tlsup.err")
  TLSUP_PID=$!
  tline=""; read -r -t 20 -u "$tu" tline || true
  exec {tu}<&-
  tport=$(printf '%s' "$tline" | sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p')
  sport=$(free_port)
  cat > "$WORK/tls/gatherd.json" <<JSON
{"endpoints": [
  {"path": "/chain", "backends": [{"name": "local", "url": "https://127.0.0.1:$tport/ok?id=tls",
                                  "tls": {"ca_file": "/etc/gatherd-tls/pki/ca.crt"}}]},
  {"path": "/system", "backends": [{"name": "local", "url": "https://127.0.0.1:$tport/ok?id=tls"}]}]}
JSON
  chmod 0644 "$WORK/tls/gatherd.json"
  if [ -z "$tport" ]; then
    fail "TLS fakeup did not start: $(tail -n 3 "$WORK/tlsup.err" | tr '\n' ' ')"
  elif ! podman run -d --name "$tlsctr" --network host --health-interval=disable \
         -v "$WORK/tls:/etc/gatherd-tls:ro" "$IMAGE" \
         --config /etc/gatherd-tls/gatherd.json --listen "127.0.0.1:$sport" >"$WORK/tls-run.log" 2>&1 \
       || ! ct_await_log "$tlsctr" '"msg":"listening"' 20; then
    fail "gatherd with a TLS backend did not start: $(podman logs "$tlsctr" 2>&1 | tail -n 3 | tr '\n' ' ')"
  else
    body=$(curl -s --max-time 10 "http://127.0.0.1:$sport/chain" || true)
    case "$body" in *'"results":[{"ok":true,"id":"tls"}]'*) ok "local chain verified through ca_file: $body" ;;
      *) fail "local chain through ca_file: $body" ;; esac
    body=$(curl -s --max-time 10 "http://127.0.0.1:$sport/system" || true)
    case "$body" in *'"error":"connect"'*'unknown issuer'*) ok "the system bundle alone refuses the local CA: unknown issuer" ;;
      *) fail "against the system bundle, the local chain was not refused as an unknown issuer: $body" ;; esac
  fi
  kill "$TLSUP_PID" 2>/dev/null || true
fi
podman rm -f -t 0 "$tlsctr" >/dev/null 2>&1 || true

summary
