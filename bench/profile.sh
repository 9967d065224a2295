#!/usr/bin/env bash
# Profiles gatherd under load: runs one scenario (default k3: K=3, zero delay, 64 connections,
# 2 workers) and records it with
#   perf record -F 999 -e cpu-clock --call-graph dwarf -p <gatherd pid>
# then prints the share per library and the top symbols of perf report --stdio --no-children.
# Without a working perf it runs the scenario under valgrind --tool=callgrind instead.
#
#   bench/profile.sh [SCENARIO] [--profile-seconds N] [--top N] [--keep] [--valgrind]
#   bench/profile.sh k3 --syscalls     system calls and context switches per request instead
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scenario=k3
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then scenario=$1; shift; fi

bench_install_deps
bench_raise_nofile
bin=$(bench_build) || { echo "bench: gatherd does not build" >&2; exit 1; }

extra=()
if [[ " $* " != *" --valgrind "* ]]; then
    command -v perf >/dev/null 2>&1 || bench_apt linux-perf || true
    # perf must both exist and be allowed to sample; otherwise fall back to callgrind.
    if ! command -v perf >/dev/null 2>&1 || ! perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
        echo "bench: perf is not usable here; using valgrind --tool=callgrind" >&2
        bench_apt valgrind
        extra=(--valgrind)
    fi
fi
cd "$ROOT"
exec "$(bench_python)" "$BENCH_DIR/bench.py" --gatherd "$bin" --profile "$scenario" "${extra[@]}" "$@"
