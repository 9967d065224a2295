#!/bin/bash
# Compose test: runs deploy/compose.yaml itself with podman-compose, offline (the `fakeup`
# service serves the exchange fixtures, GATHERD_CONFIG_DIR=./offline), and checks the chain
# client -> nginx (deploy/nginx/gatherd.conf) -> gatherd image -> fakeup end to end.
#
# No registry is reachable here, so the two third-party images the file names are replaced,
# through the file's own NGINX_IMAGE / FAKEUP_IMAGE variables, by local stand-ins built on
# the same debootstrapped debian:bookworm-slim: Debian's nginx laid out like the official
# image (conf.d/, logs to stdout/stderr, pid in /var/run), and Debian's python3. The gatherd
# image is the real Dockerfile build. Published on 127.0.0.1 only.
#
#   tests/container/compose.sh        # exit 0 ok, 1 failure, 77 skipped
set -euo pipefail
CT_NAME=compose
. "$(dirname "$0")/lib.sh"
PROJECT="gatherd-ctest$$"
NGINX_STANDIN=localhost/gatherd-test-nginx:bookworm
PYTHON_STANDIN=localhost/gatherd-test-python:bookworm

compose() {
  (cd "$SRC/deploy" && podman-compose -p "$PROJECT" -f compose.yaml "$@")
}
ct_cleanup_extra() {
  compose down -t 5 >/dev/null 2>&1 || true
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}

ct_setup podman-compose golang-github-containernetworking-plugin-dnsname
ct_base_image
ct_build_image || { summary; exit 1; }

standin() {   # tag, Containerfile text (rebuilt when the text changes)
  local sum; sum=$(printf '%s' "$2" | sha256sum | cut -c1-12)
  if [ "$(podman image inspect --format '{{index .Labels "gatherd.test.recipe"}}' "$1" 2>/dev/null)" = "$sum" ]; then say "stand-in $1 cached"; return 0; fi
  mkdir -p "$WORK/standin"
  printf '%s\nLABEL gatherd.test.recipe=%s\n' "$2" "$sum" > "$WORK/standin/Containerfile"
  say "building stand-in $1"
  podman build --format docker --network host --pull=never -t "$1" "$WORK/standin" \
    >"$WORK/standin.log" 2>&1 || { tail -n 30 "$WORK/standin.log"; fail "stand-in $1"; summary; exit 1; }
}
standin "$NGINX_STANDIN" "FROM $BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \\
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \\
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log \\
 && sed -i -e 's|^pid .*|pid /var/run/nginx.pid;|' \
        -e 's|^http {|http {\\n\\tclient_body_temp_path /var/cache/nginx/client_temp; proxy_temp_path /var/cache/nginx/proxy_temp;\\n\\tfastcgi_temp_path /var/cache/nginx/fastcgi_temp; uwsgi_temp_path /var/cache/nginx/uwsgi_temp; scgi_temp_path /var/cache/nginx/scgi_temp;|' \
        /etc/nginx/nginx.conf && mkdir -p /var/cache/nginx && nginx -t
STOPSIGNAL SIGQUIT
CMD [\"nginx\", \"-g\", \"daemon off;\"]"
standin "$PYTHON_STANDIN" "FROM $BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \\
 && rm -rf /var/lib/apt/lists/*"

export GATHERD_IMAGE="$IMAGE" NGINX_IMAGE="$NGINX_STANDIN" FAKEUP_IMAGE="$PYTHON_STANDIN"
export GATHERD_CONFIG_DIR=./offline
# This machine's container runtime cannot raise RLIMIT_NOFILE above the host's hard limit.
hard=$(ulimit -Hn); export GATHERD_NOFILE=$(( hard < 65536 ? hard : 65536 ))
export GATHERD_HTTP_PORT="$(free_port)"
URL="http://127.0.0.1:$GATHERD_HTTP_PORT"

say "podman-compose up -d (project $PROJECT, nginx on 127.0.0.1:$GATHERD_HTTP_PORT)"
if ! compose up -d >"$WORK/up.log" 2>&1; then
  tail -n 30 "$WORK/up.log"; fail "podman-compose up"; summary; exit 1
fi
GD="${PROJECT}_gatherd_1"; NG="${PROJECT}_nginx_1"; FU="${PROJECT}_fakeup_1"
for c in "$GD" "$NG" "$FU"; do
  if [ "$(podman inspect --format '{{.State.Running}}' "$c" 2>/dev/null)" = true ]; then ok "$c running"
  else fail "$c not running: $(podman logs "$c" 2>&1 | tail -n 5)"; fi
done

[ "$FAILED" = 0 ] || { compose logs >"$WORK/logs.txt" 2>&1 || true; tail -n 40 "$WORK/logs.txt"; summary; exit 1; }

# wait (bounded) until the chain answers; nothing sleeps for a fixed time
code=""
for _ in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/healthz" || true)
  [ "$code" = 200 ] && break
  sleep 0.05
done
[ "$code" = 200 ] && ok "GET /healthz through nginx: 200" || fail "GET /healthz through nginx: '$code'; $(podman logs "$NG" 2>&1 | tail -n 5)"

# the offline demo: /tickers joins the three fixtures, byte for byte
status=$(curl -s -o "$WORK/tickers.json" -D "$WORK/tickers.h" -w '%{http_code}' --max-time 10 \
         -H 'X-Request-Id: compose-test-1' -H 'X-Forwarded-For: 203.0.113.7' "$URL/tickers" || true)
if [ "$status" = 200 ] && python3 - "$WORK/tickers.json" "$SRC/tests/fixtures/exchanges" <<'PY'
import json, os, sys
body = json.load(open(sys.argv[1]))
names = ["bitbank_btc_jpy_ticker.json", "btcbox_ticker.json", "coincheck_ticker.json"]
want = [json.load(open(os.path.join(sys.argv[2], n))) for n in names]
assert body["errors"] == [], body["errors"]
assert body["results"] == want, body
PY
then ok "GET /tickers through nginx: 200, results = the 3 fixtures, no errors"
else fail "GET /tickers: $status $(head -c 300 "$WORK/tickers.json" 2>/dev/null)"; fi
grep -qi '^x-request-id: compose-test-1' "$WORK/tickers.h" && ok "X-Request-Id comes back" \
  || fail "X-Request-Id not returned: $(cat "$WORK/tickers.h")"
line=""
for _ in $(seq 1 100); do
  line=$(podman logs "$GD" 2>/dev/null | grep '"request_id":"compose-test-1"' || true)
  [ -n "$line" ] && break; sleep 0.05
done
if [ -n "$line" ]; then
  ok "gatherd access line: $line"
  # nginx's peer (the compose network) is trusted in offline/gatherd.json: the client is the
  # rightmost untrusted X-Forwarded-For entry, i.e. the published-port peer or 203.0.113.7
  client=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["client"])')
  case "$client" in
    10.*|172.1[6-9].*|172.2[0-9].*|172.3[01].*|192.168.*) fail "gatherd logged the proxy's address $client as client" ;;
    *) ok "gatherd logged client $client (not the proxy)" ;;
  esac
else
  fail "no gatherd access line for compose-test-1"
fi
if podman logs "$NG" 2>/dev/null | grep -q '"request_id":"compose-test-1"'; then ok "nginx access log (stdout) has the request"
else fail "nginx access log lacks the request"; fi
podman healthcheck run "$GD" >/dev/null 2>&1 && ok "gatherd healthcheck healthy" || fail "gatherd healthcheck"

# reload through the mounted config directory
podman kill --signal HUP "$GD" >/dev/null
rl=""
for _ in $(seq 1 100); do
  rl=$(podman logs "$GD" 2>&1 | grep -E '"msg":"(reloaded|reload_failed)"' || true)
  [ -n "$rl" ] && break; sleep 0.05
done
case "$rl" in *'"msg":"reloaded"'*) ok "SIGHUP: $rl" ;; *) fail "SIGHUP: '$rl'" ;; esac

# stop: gatherd drains and exits 0 within its grace period
ts=$(date +%s.%N)
compose stop >"$WORK/stop.log" 2>&1 || true
say "podman-compose stop took $(since "$ts")s"
rc=$(podman inspect --format '{{.State.ExitCode}}' "$GD" 2>/dev/null || echo "?")
[ "$rc" = 0 ] && ok "gatherd exit code 0 after stop" || fail "gatherd exit code $rc after stop"
podman logs "$GD" 2>&1 | grep -q '"msg":"stopped"' && ok "gatherd log has stopped" || fail "gatherd log lacks stopped"
summary
