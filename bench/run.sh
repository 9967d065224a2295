#!/usr/bin/env bash
# Measures gatherd against nginx, nginx+Lua and Go references and prints one Markdown table,
# appended to bench/RESULTS.md. Installs what it needs with apt-get and builds a release
# gatherd first.
#
#   bench/run.sh                 full run (10 s per scenario, about 6 minutes)
#   bench/run.sh --quick         smoke run (3 s per scenario)
#   bench/run.sh --only k3,k20   some scenarios (the references they compare with are added)
#   bench/run.sh --only compare  gatherd, nginx+Lua, Go and R2 at K=3 and K=20 (groups: --list)
#   bench/run.sh --list          scenario names
#   bench/run.sh --refs-only     skip building gatherd; measure the references only
#   bench/run.sh --no-record     do not append to bench/RESULTS.md
# GATHERD_BIN=/path/to/gatherd uses that binary instead of building one.
# BENCH_PORT_BASE (default 18000) moves every port: 127.0.0.1:BASE+81..BASE+199.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

refs_only=0
args=()
for a in "$@"; do
    case "$a" in
        --refs-only) refs_only=1 ;;
        -h|--help|--list) exec "$(bench_python)" "$BENCH_DIR/bench.py" "$a" ;;
        *) args+=("$a") ;;
    esac
done

bench_install_deps
bench_raise_nofile
gatherd=()
if [ "$refs_only" -eq 0 ]; then
    if bin=$(bench_build); then
        gatherd=(--gatherd "$bin")
    else
        echo "bench: gatherd does not build; measuring the references only" >&2
    fi
fi
cd "$ROOT"
exec "$(bench_python)" "$BENCH_DIR/bench.py" "${gatherd[@]}" "${args[@]}" \
    --command "bench/run.sh${*:+ $*}"
