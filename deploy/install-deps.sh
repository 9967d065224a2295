#!/usr/bin/env bash
# Installs what gatherd needs on Debian 12, from Debian's own archive only.
#   deploy/install-deps.sh          build and run
#   deploy/install-deps.sh --test   also what the whole test suite uses
set -euo pipefail
pkgs=(build-essential meson ninja-build pkg-config python3 ca-certificates curl libssl-dev
      libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libevent-dev)
if [ "${1:-}" = "--test" ]; then
    pkgs+=(clang libclang-rt-14-dev nginx-light wrk iproute2 procps prometheus valgrind openssl
           podman runc debootstrap uidmap fuse-overlayfs slirp4netns catatonit podman-compose
           golang-github-containernetworking-plugin-dnsname)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
