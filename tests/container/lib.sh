# Shared by tests/container/*.sh (sourced, not run): podman set-up for this machine, the
# locally made debian:bookworm-slim base, and building the gatherd image from the Dockerfile.
#
# The caller sets CT_NAME (log prefix) and may define ct_cleanup_extra; then calls
#   ct_setup [extra Debian packages...]; ct_base_image; ct_build_image
# Variables: SRC, IMAGE, BASE, WORK; counters PASSED/FAILED via ok/fail.
# Exit 77 (skip) only where this cannot be tested at all: not root, or podman cannot run a
# container here. Anything else that stops the set-up (an apt-get install, debootstrap) is a
# failure: on a machine where podman runs, a skip there would hide a missing install step.

T0=$(date +%s.%N)
SRC="${GATHERD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
IMAGE="${GATHERD_IMAGE:-localhost/gatherd:test}"
BASE=debian:bookworm-slim
PASSED=0
FAILED=0
WORK=""

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
say()   { printf '[%s %6ss] %s\n' "${CT_NAME:-container}" "$(since "$T0")" "$*"; }
fail()  { say "FAIL: $*"; FAILED=$((FAILED + 1)); }
ok()    { say "ok: $*"; PASSED=$((PASSED + 1)); }
skip()  { say "SKIP: $*"; echo "SKIP: $*"; exit 77; }
die()   { fail "$*"; summary; exit 1; }
summary() { say "total $(since "$T0")s"; echo "${CT_NAME:-container}: $PASSED passed, $FAILED failed"; [ "$FAILED" = 0 ]; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mb() { awk -v s="$1" 'BEGIN{printf "%.1f MB", s/1e6}'; }

# ct_await_log CTR ERE SECONDS: follows CTR's log (podman logs -f) until a line matches, at
# most SECONDS; sets LOG_LINE to it. Non-zero if none came (time out, or the log ended).
ct_await_log() {
  local fd pid rc=0
  exec {fd}< <(exec podman logs -f "$1" 2>&1)
  pid=$!
  LOG_LINE=$(timeout "$3" grep -m1 -E -- "$2" <&"$fd") || rc=1
  exec {fd}<&-
  kill "$pid" 2>/dev/null || true
  return "$rc"
}

ct_cleanup() {
  if declare -F ct_cleanup_extra >/dev/null; then ct_cleanup_extra || true; fi
  [ -n "$WORK" ] && rm -rf "$WORK"
}

ct_setup() {
  [ "$(id -u)" = 0 ] || skip "needs root (podman as root with runc)"
  # tools, idempotently
  local need=() p
  for p in podman runc debootstrap fuse-overlayfs uidmap curl "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
      die "cannot install ${need[*]} with apt-get (a failure, not a skip: the test needs them)"
    fi
  fi
  # Private containers.conf (never /etc): runc as runtime, cgroupfs (no systemd here), and
  # default ulimits below this machine's hard limits (podman's defaults are higher and make
  # every container start fail with "setrlimit: operation not permitted").
  WORK=$(mktemp -d /tmp/gatherd-ctest.XXXXXX)
  trap ct_cleanup EXIT
  local hard_nofile hard_nproc nofile nproc
  hard_nofile=$(ulimit -Hn); [ "$hard_nofile" = unlimited ] && hard_nofile=1048576
  nofile=$(( hard_nofile < 20000 ? hard_nofile : 20000 ))
  hard_nproc=$(ulimit -Hu); [ "$hard_nproc" = unlimited ] && hard_nproc=32768
  nproc=$(( hard_nproc < 32768 ? hard_nproc : 32768 ))
  cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$WORK/containers.conf"
  podman info >"$WORK/podman-info.txt" 2>&1 \
    || skip "podman info fails: $(tail -n 3 "$WORK/podman-info.txt" | tr '\n' ' ')"
  say "podman $(podman version --format '{{.Client.Version}}'), runtime runc, storage $(podman info --format '{{.Store.GraphDriverName}}')"
  ct_probe_run
}

# Can podman run a container here at all? If not, that is a skip, not a failure. Asked before
# the base image is made, of a tiny image of the host's own /bin/true and its libraries, so
# that a failure to make the base (debootstrap) is known to be one on a machine where podman
# runs.
PROBE=localhost/gatherd-ctest-probe:latest
ct_probe_run() {
  local root="$WORK/probe-root" f
  if ! podman image exists "$PROBE"; then
    mkdir -p "$root/bin"
    cp -L /bin/true "$root/bin/true"
    for f in $(ldd /bin/true | grep -oE '/[^ ]+'); do
      mkdir -p "$root$(dirname "$f")"; cp -L "$f" "$root$f"
    done
    tar --numeric-owner -C "$root" -c . | podman import - "$PROBE" >"$WORK/probe.log" 2>&1 \
      || skip "podman cannot store an image here: $(grep -v '^time=' "$WORK/probe.log" | tail -n 2 | tr '\n' ' ')"
    rm -rf "$root"
  fi
  if ! podman run --rm --network none "$PROBE" /bin/true >"$WORK/probe.log" 2>&1; then
    skip "podman cannot run a container here: $(grep -v '^time=' "$WORK/probe.log" | tail -n 2 | tr '\n' ' ')"
  fi
}

# Stands in for the registry's debian:bookworm-slim: a debootstrap minbase with the same
# slimming (no docs/man/locales, apt lists cleaned) so image sizes stay comparable. Cached in
# podman's store; REBUILD_BASE=1 makes it again.
ct_base_image() {
  if [ "${REBUILD_BASE:-0}" = 1 ]; then podman rmi -f "$BASE" >/dev/null 2>&1 || true; fi
  if podman image exists "$BASE"; then
    say "base $BASE cached"
    return 0
  fi
  local mirror root
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security \
           | head -n 1 | tr -d ' ' || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
  say "debootstrap --variant=minbase bookworm from $mirror"
  root="$WORK/rootfs"
  if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log"
    die "debootstrap of the $BASE base failed (podman runs here, so this is a failure; mirror $mirror, log above)"
  fi
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" > "$root/etc/apt/sources.list"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' \
    > "$root/etc/dpkg/dpkg.cfg.d/docker"
  printf '%s\n' 'APT::Install-Recommends "false";' > "$root/etc/apt/apt.conf.d/docker-no-recommends"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/var/lib/apt/lists/* \
         "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* \
         "$root"/usr/share/locale/*
  tar --numeric-owner -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$BASE" >"$WORK/import.log" 2>&1 \
    || die "podman import of the debootstrapped $BASE: $(grep -v '^time=' "$WORK/import.log" | tail -n 2 | tr '\n' ' ')"
  rm -rf "$root"
  say "base imported: $(mb "$(podman image inspect --format '{{.Size}}' "$BASE")")"
}

# podman build --format docker (keeps HEALTHCHECK) of the repository's Dockerfile as $IMAGE;
# sets IMAGE_SIZE and BASE_SIZE (bytes).
ct_build_image() {
  [ -f "$SRC/Dockerfile" ] || { fail "no Dockerfile in $SRC"; return 1; }
  say "podman build --format docker -t $IMAGE $SRC"
  local tb old_id new_id
  tb=$(date +%s)
  old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  if ! podman build --format docker --network host --pull=never -t "$IMAGE" -f "$SRC/Dockerfile" "$SRC" \
        >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log"
    fail "image build"
    return 1
  fi
  ok "image built in $(( $(date +%s) - tb ))s"
  # drop the previous build's final image (intermediate layers stay: they are the build cache)
  new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
  IMAGE_SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  BASE_SIZE=$(podman image inspect --format '{{.Size}}' "$BASE")
  say "image size: $(mb "$IMAGE_SIZE") (base $(mb "$BASE_SIZE"), gatherd layers +$(mb $((IMAGE_SIZE - BASE_SIZE))))"
}
