#!/usr/bin/env bash
# Instructions gatherd spends per aggregate request, counted by callgrind: far steadier than
# wall-clock benchmarks on 2 shared cores, but not exact: how curl's work splits between timer
# and socket events depends on timing, so runs of one binary differ by up to ~5 %. Compare
# medians of several interleaved runs.
#   bench/instructions.sh [K] [N]    K backends (default 3), N requests (default 300)
#   GATHERD_BIN=/other/gatherd bench/instructions.sh   compare another build
#   UPSTREAM_DELAY_MS=5 bench/instructions.sh   backends answer after 5 ms: under callgrind,
#       gatherd runs ~50x slower than the upstream, which then answers before curl's first look
#       at the socket, unlike at full speed; a delay restores the order of a native run
# Runs gatherd (one worker) under callgrind twice, with N and 3N keep-alive requests, and
# prints (I(3N) - I(N)) / 2N, so start-up and shutdown cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-3}
N=${2:-300}
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
. bench/oneworker.sh
BIN=$(oneworker_bin)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
oneworker_setup "$K" 127.0.0.1 0
count() { # requests -> instructions
    local n=$1 out="$tmp/cg.$1"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" --config "$tmp/cfg.json" --listen 127.0.0.1:0 \
        2>"$tmp/err.$n" >/dev/null &
    local pid=$!
    local addr
    addr=$(oneworker_addr "$tmp/err.$n")
    python3 - "$addr" "$n" <<'PY'
import http.client, sys, threading
host, port = sys.argv[1].rsplit(":", 1)
n, conns = int(sys.argv[2]), 1  # one client: the same event sequence every run
def run(k):
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    for _ in range(k):
        c.request("GET", "/agg"); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
ts = [threading.Thread(target=run, args=(n // conns,)) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
    kill -TERM $pid; wait $pid
    grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
}
a=$(count "$N")
b=$(count $((3 * N)))
echo "K=$K: $(( (b - a) / (2 * N) )) instructions per request ($(( (b - a) / (2 * N * K) )) per upstream leg)"
