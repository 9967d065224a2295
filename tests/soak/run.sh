#!/usr/bin/env bash
# Soak test: gatherd (2 workers) under a steady mixed load for SOAK_SECONDS (default 120),
# loopback only; checks every request is answered as expected and RSS and descriptors stay
# flat, then appends a summary line to bench/SOAK.md. See tests/soak/soak.py for the details
# and the other knobs (SOAK_CLIENTS, SOAK_MAX_REQUESTS, SOAK_SAMPLE_SECONDS, SOAK_REPORT).
# GATHERD_BIN selects the binary (default build/src/gatherd, built here if missing). The
# RSS check is meant for the plain build: ASan's quarantine makes RSS grow by design.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${GATHERD_BIN:-}" ]; then
    [ -f build/build.ninja ] || meson setup build >/dev/null
    ninja -C build src/gatherd >/dev/null
    export GATHERD_BIN=$PWD/build/src/gatherd
fi
export GATHERD_SRC=$PWD PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
exec python3 tests/soak/soak.py
