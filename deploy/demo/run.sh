#!/usr/bin/env bash
# The offline demo: installs what is needed, builds gatherd, starts a local fake exchange that
# serves the three tickers' real payload shapes (with 120, 80 and 40 ms of latency), and runs
# gatherd in front of it on port 5042. Try, from another terminal:
#   curl -s localhost:5042/tickers            # three tickers in ~120 ms, not 240
#   curl -i localhost:5042/tickers-cached     # from memory: Age and Cache-Status say how old,
#                                             # refreshed in the background every second
#   curl -s localhost:5042/tickers-degraded   # one 503 and one timeout become error entries
#   curl -s localhost:5042/metrics
# Ctrl-C (or SIGTERM to this script) drains gatherd and stops both.
#
#   deploy/demo/run.sh [--no-install]
#
# --no-install skips deploy/install-deps.sh (apt-get). Environment: GATHERD_BIN, a gatherd
# already built (default: build one in build-release/); DEMO_PORT, gatherd's port (5042);
# DEMO_FAKE_PORT, the fake exchange's (8081; config/demo.json reads it as ${DEMO_FAKE_PORT}).
set -euo pipefail
cd "$(dirname "$0")/../.."
install=1
for arg in "$@"; do
    case $arg in
    --no-install) install=0 ;;
    *)
        echo "usage: deploy/demo/run.sh [--no-install]" >&2
        exit 2
        ;;
    esac
done
port=${DEMO_PORT:-5042}
export DEMO_FAKE_PORT=${DEMO_FAKE_PORT:-8081}

# Job control gives each background process its own process group, so Ctrl-C reaches only
# this script, which hands it to gatherd once (gatherd would warn about a second SIGINT).
set -m
fake="" gd="" tmp=""
# shellcheck disable=SC2317 # both run from traps
cleanup() {
    if [ -n "$fake" ]; then
        kill "$fake" 2>/dev/null || true
        wait "$fake" 2>/dev/null || true
    fi
    [ -z "$tmp" ] || rm -rf "$tmp"
}
# shellcheck disable=SC2317
stop() {
    [ -n "$gd" ] || exit 1 # nothing to drain yet
    kill -s "$1" "$gd" 2>/dev/null || true
}
trap cleanup EXIT
trap 'stop INT' INT
trap 'stop TERM' TERM

[ "$install" = 0 ] || deploy/install-deps.sh
gatherd=${GATHERD_BIN:-}
if [ -z "$gatherd" ]; then
    [ -d build-release ] || meson setup build-release --buildtype=release >/dev/null
    ninja -C build-release >/dev/null
    gatherd=build-release/src/gatherd
fi

# fakeup prints one line once it listens: wait for it, so gatherd's first request finds it.
tmp=$(mktemp -d)
mkfifo "$tmp/fake-ready"
python3 tests/upstream/fakeup.py --port "$DEMO_FAKE_PORT" --fixtures tests/fixtures/exchanges \
    >"$tmp/fake-ready" &
fake=$!
if ! read -r -t 30 _ <"$tmp/fake-ready"; then
    echo "deploy/demo/run.sh: the fake exchange did not start on port $DEMO_FAKE_PORT" >&2
    exit 1
fi
echo "fake exchange on 127.0.0.1:$DEMO_FAKE_PORT; gatherd on :$port (Ctrl-C to stop)" >&2
"$gatherd" --config config/demo.json --listen "0.0.0.0:$port" &
gd=$!
# A trapped signal ends `wait` early; wait again for gatherd's own exit status.
status=0
wait "$gd" || status=$?
while kill -0 "$gd" 2>/dev/null; do
    status=0
    wait "$gd" || status=$?
done
exit "$status"
