#!/bin/bash
# Container HEALTHCHECK probe for gatherd: GET /healthz over loopback, healthy iff 200.
#
# Why bash and not curl: bash (and coreutils' `timeout`) are Essential in every Debian image,
# so this probe costs zero extra packages; curl would add ~0.5 MB and one more binary an
# attacker could use inside the container. gatherd itself has no client mode.
#
# Port: $GATHERD_HEALTH_PORT, else $PORT (gatherd's own fallback listen port), else 5042.
# Only meaningful for TCP listeners; with `unix:` listeners disable the HEALTHCHECK.
port="${GATHERD_HEALTH_PORT:-${PORT:-5042}}"
exec timeout 3 bash -c '
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf "GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: gatherd-healthcheck\r\nConnection: close\r\n\r\n" >&3
  IFS=" " read -r proto status _ <&3 || exit 1
  [ "$status" = 200 ]
' healthcheck "$port"
