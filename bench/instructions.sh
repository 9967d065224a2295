#!/usr/bin/env bash
# Instructions gatherd spends per aggregate request, counted by callgrind: far steadier than
# wall-clock benchmarks on 2 shared cores, but not exact: how curl's work splits between timer
# and socket events depends on timing, so runs of one binary differ by up to ~5 %. Compare
# medians of several interleaved runs.
#   bench/instructions.sh [K] [N]    K backends (default 3), N requests (default 300)
#   GATHERD_BIN=/other/gatherd bench/instructions.sh   compare another build
# Runs gatherd (one worker) under callgrind twice, with N and 3N keep-alive requests, and
# prints (I(3N) - I(N)) / 2N, so start-up and shutdown cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-3}
N=${2:-300}
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
BIN=${GATHERD_BIN:-}
if [ -z "$BIN" ]; then
    [ -f build-release/build.ninja ] || meson setup build-release --buildtype=release >/dev/null
    ninja -C build-release >/dev/null
    BIN=build-release/src/gatherd
fi
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 tests/upstream/fakeup.py --port 0 >"$tmp/up" &
for _ in $(seq 100); do [ -s "$tmp/up" ] && break; sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$tmp/up")
python3 - "$K" "$port" >"$tmp/cfg.json" <<'PY'
import json, sys
k, port = int(sys.argv[1]), sys.argv[2]
fx = ["bitbank_btc_jpy_ticker.json", "btcbox_ticker.json", "coincheck_ticker.json"]
print(json.dumps({"workers": 1, "access_log": False, "endpoints": [
    {"path": "/agg", "backends": [{"name": f"b{i}", "url": f"http://127.0.0.1:{port}/json/{fx[i % 3]}"}
                                  for i in range(k)]}]}))
PY
count() { # requests -> instructions
    local n=$1 out="$tmp/cg.$1"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" --config "$tmp/cfg.json" --listen 127.0.0.1:0 \
        2>"$tmp/err.$n" >/dev/null &
    local pid=$!
    local addr=""
    for _ in $(seq 300); do
        addr=$(grep -o '"addr":"[^"]*"' "$tmp/err.$n" 2>/dev/null | cut -d'"' -f4 || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
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
