#!/usr/bin/env bash
# The offline demo: installs what is needed, builds gatherd, starts a local fake exchange that
# serves the three tickers' real payload shapes (with 120, 80 and 40 ms of latency), and runs
# gatherd in front of it on port 5042. Try, from another terminal:
#   curl -s localhost:5042/tickers            # three tickers in ~120 ms, not 240
#   curl -s localhost:5042/tickers-degraded   # one 503 and one timeout become error entries
#   curl -s localhost:5042/metrics
# Ctrl-C drains gatherd and stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/install-deps.sh
[ -d build-release ] || meson setup build-release --buildtype=release >/dev/null
ninja -C build-release >/dev/null
python3 tests/upstream/fakeup.py --port 8081 --fixtures tests/fixtures/exchanges >/dev/null &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT
echo "fake exchange on 127.0.0.1:8081; gatherd on :5042 (Ctrl-C to stop)" >&2
build-release/src/gatherd --config config/demo.json
