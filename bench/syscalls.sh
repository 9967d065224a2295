#!/usr/bin/env bash
# System calls gatherd makes per aggregate request, by kind, counted by perf's syscall
# tracepoints over a fixed number of requests: unlike wall-clock figures, this does not move
# when other work shares the machine (only the batching of events per epoll_wait does, and
# little with few clients).
#   bench/syscalls.sh [K] [N] [CONNS]   K backends (default 3), N requests (default 2000) over
#                                       CONNS keep-alive clients (default 4), after a warm-up
#   GATHERD_BIN=/other/gatherd bench/syscalls.sh   compare another build
# One worker; the upstream is tests/upstream/fakeup.py (its own system calls are not counted),
# reached as 127.0.0.1, .2, ... so that each backend is an origin of its own, as in bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-3}
N=${2:-2000}
CONNS=${3:-4}
. bench/oneworker.sh
BIN=$(oneworker_bin)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
oneworker_setup "$K" 0.0.0.0 1
"$BIN" --config "$tmp/cfg.json" --listen 127.0.0.1:0 2>"$tmp/err" >/dev/null &
pid=$!
addr=$(oneworker_addr "$tmp/err")
# The client keeps its connections open between the warm-up and the counted run, so the
# count holds keep-alive requests only: no accept, no connect.
mkfifo "$tmp/ready" "$tmp/go" "$tmp/done"
python3 - "$addr" "$N" "$CONNS" "$tmp/ready" "$tmp/go" "$tmp/done" <<'PY' &
import http.client, sys, threading
host, port = sys.argv[1].rsplit(":", 1)
n, conns = int(sys.argv[2]), int(sys.argv[3])
cs = [http.client.HTTPConnection(host, int(port), timeout=60) for _ in range(conns)]
def run(c, k):
    for _ in range(k):
        c.request("GET", "/agg"); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
def burst(k):
    ts = [threading.Thread(target=run, args=(c, k)) for c in cs]
    [t.start() for t in ts]; [t.join() for t in ts]
burst(max(50 // conns, 1))
open(sys.argv[4], "w").write("x")
open(sys.argv[5]).read()
burst(n // conns)
open(sys.argv[6], "w").write("x")
PY
client=$!
cat "$tmp/ready" >/dev/null
perf stat -x, -e 'raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_*' -p "$pid" \
    -o "$tmp/stat" &
perfpid=$!
sleep 1
echo go >"$tmp/go"
cat "$tmp/done" >/dev/null
kill -INT $perfpid; wait $perfpid || true
wait $client
kill -TERM $pid; wait $pid || true
total=$(( N / CONNS * CONNS ))
echo "K=$K, $total requests over $CONNS connections, one worker: system calls per request"
awk -F, -v n="$total" '$1 ~ /^[0-9]+$/ && $1 > 0 {
    name = $3; sub(/^syscalls:sys_enter_/, "", name); sub(/^raw_syscalls:sys_enter$/, "ALL", name)
    printf "  %-18s %8.3f\n", name, $1 / n }' "$tmp/stat" | sort -k2 -rn
