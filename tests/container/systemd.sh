#!/bin/bash
# systemd test: deploy/systemd/gatherd.service run by a real systemd (PID 1 of a podman
# container made from the gatherd image plus Debian's systemd), as an operator would:
# enable --now, reload, a bad config, stop. Checks that the hardening is in force on the
# running process (dynamic non-root user, no capabilities, no_new_privs, seccomp, file
# limit), that ExecReload applies a new config, that exit 2 (bad config) is not restarted in
# a loop, and that stop drains and exits 0.
#
# procps (/bin/kill, for ExecReload) is added as on any standard Debian host.
# The container is --privileged because systemd's sandboxing (ProtectSystem=, PrivateTmp=,
# ...) creates mount namespaces, which an unprivileged container may not; on a host that is
# a given. Its network is podman's bridge: nothing is published, all requests are made
# inside it; the configs used point only at 127.0.0.1.
#
#   tests/container/systemd.sh        # exit 0 ok, 1 failure, 77 skipped
set -euo pipefail
CT_NAME=systemd
. "$(dirname "$0")/lib.sh"
CTR="gatherd-systemd-$$"
SYSD_IMAGE=localhost/gatherd-test-systemd:latest
ct_cleanup_extra() { podman rm -f -t 0 "$CTR" >/dev/null 2>&1 || true; }

ct_setup
ct_base_image
ct_build_image || { summary; exit 1; }

mkdir -p "$WORK/sysd"
cat > "$WORK/sysd/Containerfile" <<EOF
FROM $IMAGE
USER root
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      systemd systemd-sysv curl procps \\
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
CMD ["/sbin/init"]
STOPSIGNAL SIGRTMIN+3
EOF
old_id=$(podman image inspect --format '{{.Id}}' "$SYSD_IMAGE" 2>/dev/null || true)
podman build --network host --pull=never -t "$SYSD_IMAGE" "$WORK/sysd" >"$WORK/sysd.log" 2>&1 \
  || { tail -n 30 "$WORK/sysd.log"; fail "systemd image"; summary; exit 1; }
new_id=$(podman image inspect --format '{{.Id}}' "$SYSD_IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
say "image $SYSD_IMAGE ready"

podman run -d --name "$CTR" --privileged --systemd=always --network bridge \
  -v "$SRC/deploy/systemd/gatherd.service:/etc/systemd/system/gatherd.service:ro" \
  "$SYSD_IMAGE" >/dev/null
x() { podman exec "$CTR" "$@"; }
xi() { podman exec -i "$CTR" "$@"; }   # with stdin
state=""
for _ in $(seq 1 300); do
  state=$(x systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.1
done
case "$state" in running|degraded) ok "systemd up ($state)" ;; *) fail "systemd: '$state'"; summary; exit 1 ;; esac

# A config that only talks to 127.0.0.1 (no external traffic from this test).
cfg() {  # extra endpoint JSON (may be empty)
  printf '{"endpoints":[{"path":"/t","timeout_ms":2000,"backends":[{"name":"self","url":"http://127.0.0.1:5042/healthz"}]}%s]}\n' "$1"
}
cfg "" | xi sh -c 'cat > /etc/gatherd/gatherd.json'
until_active() {  # wait (bounded) for the unit to reach state $1
  local s=""
  for _ in $(seq 1 200); do
    s=$(x systemctl is-active gatherd 2>/dev/null || true)
    [ "$s" = "$1" ] && return 0
    [ "$s" = failed ] && break
    sleep 0.05
  done
  say "unit state '$s', wanted '$1'"; return 1
}
journal_has() {  # wait (bounded) for a journal line matching $1
  for _ in $(seq 1 200); do x journalctl -u gatherd -o cat --no-pager 2>/dev/null | grep -q "$1" && return 0; sleep 0.05; done
  return 1
}
get() { x curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:5042$1" || true; }

x systemd-analyze verify /etc/systemd/system/gatherd.service >"$WORK/verify.log" 2>&1 \
  && ok "systemd-analyze verify" || fail "systemd-analyze verify: $(cat "$WORK/verify.log")"

x systemctl enable --now gatherd >/dev/null 2>&1 || true
if until_active active && journal_has '"msg":"listening"'; then ok "enable --now: active, listening"
else fail "gatherd.service did not start: $(x journalctl -u gatherd -o cat --no-pager | tail -n 5)"; fi
code=""
for _ in $(seq 1 100); do code=$(get /healthz); [ "$code" = 200 ] && break; sleep 0.05; done
[ "$code" = 200 ] && ok "GET /healthz 200" || fail "GET /healthz '$code'"
[ "$(get /t)" = 200 ] && ok "GET /t 200 (configured endpoint)" || fail "GET /t"

pid=$(x systemctl show -p MainPID --value gatherd)
status=$(x cat "/proc/$pid/status")
uid=$(printf '%s\n' "$status" | awk '/^Uid:/ {print $2}')
[ -n "$uid" ] && [ "$uid" != 0 ] && ok "runs as non-root uid $uid" || fail "uid '$uid'"
printf '%s\n' "$status" | grep -q '^CapEff:[[:space:]]*0000000000000000' && ok "no effective capabilities" \
  || fail "capabilities: $(printf '%s\n' "$status" | grep ^Cap)"
printf '%s\n' "$status" | grep -q '^NoNewPrivs:[[:space:]]*1' && ok "no_new_privs" || fail "NoNewPrivs not set"
printf '%s\n' "$status" | grep -q '^Seccomp:[[:space:]]*2' && ok "seccomp filter active" || fail "no seccomp filter"
# LimitNOFILE=65536, or this machine's hard limit where that is lower (systemd clamps)
hard=$(ulimit -Hn); want=$(( hard < 65536 ? hard : 65536 ))
x cat "/proc/$pid/limits" | grep -q "^Max open files[[:space:]]*$want[[:space:]]*$want" && ok "LimitNOFILE in force ($want)" \
  || fail "limits: $(x cat "/proc/$pid/limits" | grep 'open files'), wanted $want"
x systemd-analyze security gatherd --no-pager >"$WORK/security.txt" 2>&1 || true
score=$(grep -o 'Overall exposure level for gatherd.service: [0-9.]* [A-Z]*' "$WORK/security.txt" || true)
say "systemd-analyze security: ${score:-?}"
level=$(printf '%s' "$score" | awk '{print $NF}')
case "$level" in OK|SAFE) ok "exposure level $level" ;; *) fail "exposure level '$level'" ;; esac

# ExecReload: a changed config is applied (a new endpoint appears)
cfg ',{"path":"/t2","backends":[{"name":"self","url":"http://127.0.0.1:5042/readyz"}]}' \
  | xi sh -c 'cat > /etc/gatherd/gatherd.json.new && mv /etc/gatherd/gatherd.json.new /etc/gatherd/gatherd.json'
x systemctl reload gatherd
if journal_has '"msg":"reloaded"'; then ok "systemctl reload: reloaded"; else fail "no reloaded line"; fi
[ "$(get /t2)" = 200 ] && ok "GET /t2 200 after reload" || fail "GET /t2 after reload"
[ "$(x systemctl show -p MainPID --value gatherd)" = "$pid" ] && ok "same process after reload" || fail "process changed on reload"

# stop: SIGTERM, drain, exit 0, quickly
ts=$(date +%s.%N)
x systemctl stop gatherd
stop_s=$(since "$ts")
result=$(x systemctl show -p Result --value gatherd)
main_status=$(x systemctl show -p ExecMainStatus --value gatherd)
say "systemctl stop took ${stop_s}s; Result=$result ExecMainStatus=$main_status"
[ "$result" = success ] && [ "$main_status" = 0 ] && ok "stopped cleanly (exit 0)" || fail "stop: Result=$result status=$main_status"
awk -v s="$stop_s" 'BEGIN{exit !(s < 5)}' && ok "stop under 5s" || fail "stop took ${stop_s}s"
journal_has '"msg":"stopped"' && ok "journal has stopped" || fail "journal lacks stopped"

# a bad config: exit 2, and RestartPreventExitStatus=2 keeps it from restarting in a loop
echo '{"endpoints": []}' | xi sh -c 'cat > /etc/gatherd/gatherd.json'
x systemctl start gatherd >/dev/null 2>&1 || true
if until_active failed; then
  st=$(x systemctl show -p ExecMainStatus --value gatherd); nr=$(x systemctl show -p NRestarts --value gatherd)
  [ "$st" = 2 ] && [ "$nr" = 0 ] && ok "bad config: exit 2, failed, not restarted" || fail "bad config: status $st, restarts $nr"
else
  fail "bad config did not leave the unit failed"
fi
summary
