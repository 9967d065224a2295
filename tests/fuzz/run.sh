#!/usr/bin/env bash
# Builds every libFuzzer harness in tests/fuzz with clang (-fsanitize=fuzzer,address,undefined)
# against the pure modules of src/ (base, config, core, obs), then runs each for FUZZ_SECONDS (default 30) seconds.
#
#   tests/fuzz/run.sh [TARGET...]        targets: config envsubst jsonv agg netacl items reqhead (default all)
#
# Environment: FUZZ_SECONDS (0: only replay the committed corpus, a quick regression run),
# FUZZ_BUILD_DIR (default: a temporary directory, removed afterwards), FUZZ_CC (default clang),
# FUZZ_JOBS (parallel fuzzing processes per target, default 1; targets run side by side on the
# CPUs left).
# The committed seed corpus (tests/fuzz/corpus/<target>) is read, never written: new inputs go
# to a scratch corpus in the build directory. A crash, leak, sanitizer report or failed check
# makes the script exit 1; the reproducer is kept as tests/fuzz/artifacts/<target>-crash-*.
# Reproduce one with: <build dir>/fuzz_<target> tests/fuzz/artifacts/<file>
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${FUZZ_SECONDS:-30}
cc=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-1}
all=(config envsubst jsonv agg netacl items reqhead)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

if ! command -v "$cc" >/dev/null; then
    echo "tests/fuzz/run.sh: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi
if [ -n "${FUZZ_BUILD_DIR:-}" ]; then
    out=$FUZZ_BUILD_DIR
    mkdir -p "$out"
else
    out=$(mktemp -d /tmp/gatherd-fuzz.XXXXXX)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$here/artifacts"

incs=()
for d in "$root"/src/*/; do incs+=(-I"$d"); done
cflags=(-g -O1 -std=c17 -D_GNU_SOURCE '-DGATHERD_VERSION="fuzz"' "${incs[@]}"
        -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all)
python3 "$root/src/config/embed_config.py" "$root/config/gatherd.json" "$out/config_default.c" ||
    exit 1

# Every source but main.c, as meson's layer libraries: the harnesses call only the pure
# modules, and linking the rest keeps this script independent of how src/ splits them into files.
# Waits until fewer than $1 of this script's background jobs run.
throttle() {
    while [ "$(jobs -rp | wc -l)" -ge "$1" ]; do wait -n; done
}

objs=()
for f in "$root"/src/*/*.c "$out/config_default.c"; do
    o=$out/obj-$(basename "$f" .c).o
    throttle "$(nproc)"
    { "$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link -c -o "$o" "$f" ||
        echo "$f" >>"$out/compile-failed"; } &
    objs+=("$o")
done
wait
if [ -s "$out/compile-failed" ]; then
    echo "fuzz: cannot compile $(tr '\n' ' ' <"$out/compile-failed")" >&2
    exit 1
fi
libs=$(pkg-config --libs libmicrohttpd libcurl jansson libevent_core libevent_pthreads libssl libcrypto) ||
    exit 1

failed=()
for t in "${targets[@]}"; do
    [ -f "$here/fuzz_$t.c" ] || { echo "unknown fuzz target: $t" >&2; exit 2; }
    # shellcheck disable=SC2086
    if ! "$cc" "${cflags[@]}" -fsanitize=fuzzer -Wall -Wextra -Werror -o "$out/fuzz_$t" \
            "$here/fuzz_$t.c" "${objs[@]}" $libs -lm -pthread; then
        echo "FUZZ BUILD FAILED: $t" >&2
        failed+=("$t (build)")
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: build failed: ${failed[*]}" >&2; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Runs target $1 and writes its verdict to $out/$1.result: "ok" or "FAILED", then the line to
# print (and, on failure, the tail of its log and its reproducers).
fuzz_one() {
    local t=$1 seeds=$here/corpus/$1 dict=() rc start took runs
    [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
    start=$(date +%s)
    if [ "$secs" = 0 ]; then
        # Replay only: every committed input once.
        mapfile -t inputs < <(find "$seeds" -type f 2>/dev/null | sort)
        "$out/fuzz_$t" -artifact_prefix="$here/artifacts/$t-" "${inputs[@]}" \
            >"$out/$t.log" 2>&1
        rc=$?
    else
        mkdir -p "$out/corpus-$t" "$out/run-$t"
        par=()
        # With -jobs, libFuzzer writes fuzz-N.log into the current directory: a directory of
        # the target's own, since targets run side by side.
        [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
        (cd "$out/run-$t" && exec "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 \
            -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "${par[@]}" \
            -artifact_prefix="$here/artifacts/$t-" "${dict[@]}" \
            "$out/corpus-$t" "$seeds") >"$out/$t.log" 2>&1
        rc=$?
        [ "$jobs" -gt 1 ] && cat "$out/run-$t"/fuzz-*.log >>"$out/$t.log" 2>/dev/null
    fi
    took=$(( $(date +%s) - start ))
    if [ "$secs" = 0 ]; then
        runs=$(grep -a -c '^Executed ' "$out/$t.log")
    else
        runs=$(grep -a '^stat::number_of_executed_units' "$out/$t.log" | tail -1 |
               grep -oE '[0-9]+' | head -1)
    fi
    if [ $rc -eq 0 ]; then
        printf 'ok\nfuzz %s: ok (%s runs, %ss)\n' "$t" "${runs:-?}" "$took" >"$out/$t.result"
    else
        {
            echo FAILED
            echo "fuzz $t: FAILED (exit $rc after ${took}s); last lines of the log:"
            grep -a -v '^#[0-9]' "$out/$t.log" | tail -40 | sed 's/^/    /'
            ls -1 "$here/artifacts/$t-"* 2>/dev/null | sed 's/^/    reproducer: /'
        } >"$out/$t.result"
    fi
}
# Targets run side by side, as many at a time as there are CPUs divided by FUZZ_JOBS: each is
# CPU-bound for its whole time, so this divides the wall time and not a target's share.
slots=$(( $(nproc) / jobs ))
[ "$slots" -ge 1 ] || slots=1
for t in "${targets[@]}"; do
    throttle "$slots"
    fuzz_one "$t" &
done
wait
for t in "${targets[@]}"; do
    tail -n +2 "$out/$t.result"
    [ "$(head -1 "$out/$t.result")" = ok ] || failed+=("$t")
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
