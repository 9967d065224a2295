# Shared steps of bench/run.sh and bench/profile.sh: install the Debian packages the
# benchmark needs and build a release gatherd. Sourced, not run.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD_DIR=${GATHERD_BENCH_BUILD:-$ROOT/build-release}

# Installs the named Debian packages that are not installed yet; runs apt-get update only
# when something is missing, so a second run does no network work at all.
bench_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "bench: installing ${missing[*]}" >&2
    local sudo=
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# nginx-light became a transitional package in Debian 12; either flavour gives /usr/sbin/nginx.
bench_install_deps() {
    if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        bench_apt nginx-light || bench_apt nginx || return 1
    fi
    bench_apt wrk libnginx-mod-http-echo curl python3 || return 1
    # The other references: nginx + Lua (lua-nginx-module with LuaJIT; lua-cjson for
    # cjson.safe, which Debian's module does not bundle) and Go's net/http, built at bench
    # time from bench/ref-go/main.go with the standard library only.
    bench_apt libnginx-mod-http-lua lua-cjson golang-go || return 1
    # Debian's nginx postinst may start the system service; it listens on :80 and does not
    # get in our way, so it is left alone.
}

# Builds the release binary (configuring build-release once) and prints its path on stdout.
# Returns non-zero when it does not build; the caller decides what to do without it.
bench_build() {
    if [ -n "${GATHERD_BIN:-}" ]; then
        [ -x "$GATHERD_BIN" ] && { echo "$GATHERD_BIN"; return 0; }
        echo "bench: GATHERD_BIN=$GATHERD_BIN is not executable" >&2
        return 1
    fi
    bench_apt meson ninja-build pkg-config gcc libmicrohttpd-dev libcurl4-openssl-dev \
        libjansson-dev libevent-dev libssl-dev >&2 || return 1
    if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        meson setup "$BUILD_DIR" "$ROOT" --buildtype=release -Db_ndebug=true >&2 || return 1
    fi
    ninja -C "$BUILD_DIR" src/gatherd >&2 || ninja -C "$BUILD_DIR" >&2 || return 1
    [ -x "$BUILD_DIR/src/gatherd" ] || return 1
    echo "$BUILD_DIR/src/gatherd"
}

# Several hundred sockets per side at -c 1000: raise the descriptor limit for everything the
# benchmark starts (root may raise the hard limit too).
bench_raise_nofile() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# Prefer Debian's python3: the benchmark needs only the standard library.
bench_python() {
    if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3; fi
}
