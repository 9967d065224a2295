# Shared steps of bench/instructions.sh and bench/syscalls.sh: one gatherd worker serving /agg
# from K backends of tests/upstream/fakeup.py. Sourced, not run, from the repository's root;
# the caller has made "$tmp" and kills its jobs on exit.

# The gatherd to measure: $GATHERD_BIN, or build-release's (set up and built when needed).
oneworker_bin() {
    if [ -n "${GATHERD_BIN:-}" ]; then
        echo "$GATHERD_BIN"
        return
    fi
    [ -f build-release/build.ninja ] || meson setup build-release --buildtype=release >/dev/null
    ninja -C build-release >/dev/null
    echo build-release/src/gatherd
}

# Starts fakeup on HOST and writes the configuration to "$tmp/cfg.json": K backends on it, all
# at 127.0.0.1, or with SPREAD=1 backend i at 127.0.0.(i+1) (HOST 0.0.0.0), an origin each.
# UPSTREAM_DELAY_MS=N has every backend wait N ms before answering.
oneworker_setup() { # K HOST SPREAD
    python3 tests/upstream/fakeup.py --host "$2" --port 0 >"$tmp/up" &
    for _ in $(seq 100); do [ -s "$tmp/up" ] && break; sleep 0.1; done
    local port
    port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$tmp/up")
    python3 - "$1" "$port" "$3" "${UPSTREAM_DELAY_MS:-}" >"$tmp/cfg.json" <<'PY'
import json, sys
k, port, spread = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
q = f"?delay_ms={sys.argv[4]}" if sys.argv[4] else ""
fx = ["bitbank_btc_jpy_ticker.json", "btcbox_ticker.json", "coincheck_ticker.json"]
host = lambda i: f"127.0.0.{i + 1}" if spread else "127.0.0.1"
print(json.dumps({"workers": 1, "access_log": False, "endpoints": [
    {"path": "/agg", "backends": [{"name": f"b{i}", "url": f"http://{host(i)}:{port}/json/{fx[i % 3]}{q}"}
                                  for i in range(k)]}]}))
PY
}

# Waits for the address gatherd logs to ERRFILE once it listens, and prints it.
oneworker_addr() { # ERRFILE
    local addr=""
    for _ in $(seq 300); do
        addr=$(grep -o '"addr":"[^"]*"' "$1" 2>/dev/null | cut -d'"' -f4 || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    echo "$addr"
}
