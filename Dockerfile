# syntax=docker/dockerfile:1
# gatherd container image.
#   docker build -t gatherd .          (or: podman build --format docker -t gatherd .)
#   docker run --rm -p 5042:5042 gatherd
# The test that proves this file works is tests/container/run.sh.

############################ build stage ############################
FROM debian:bookworm-slim AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential meson ninja-build pkg-config ca-certificates \
      libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libevent-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore keeps build trees, .git and bulky test data out of the context. tests/ itself
# must be present: the top-level meson.build descends into it.
COPY . .
# ca-certificates: --check-config below loads the CA bundle that the https backends of the
# shipped configuration verify against, as the runtime stage does.
# Only the server binary is compiled (not unit tests/fuzzers); installed stripped.
RUN meson setup --buildtype=release build \
 && ninja -C build src/gatherd \
 && install -D -s -m 0755 build/src/gatherd /out/usr/local/bin/gatherd \
 && install -D -m 0755 deploy/container/healthcheck.sh /out/usr/local/bin/gatherd-healthcheck \
 && install -D -m 0644 config/gatherd.json /out/etc/gatherd/gatherd.json \
 && /out/usr/local/bin/gatherd --config /out/etc/gatherd/gatherd.json --check-config

############################ runtime stage ############################
FROM debian:bookworm-slim

# Keep docs, man pages and translations out of every package installed below (the official
# slim image already does this; the line makes it true for any bookworm base).
RUN printf '%s\n' \
      'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
      > /etc/dpkg/dpkg.cfg.d/90-gatherd-nodoc \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libjansson4 \
      libevent-core-2.1-7 libevent-pthreads-2.1-7 ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
           /usr/share/doc/*/changelog* /tmp/* \
 && groupadd --system --gid 10001 gatherd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gatherd

COPY --from=build /out/ /

# Numeric so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 5042
# gatherd drains on SIGTERM (readyz 503, listener closed, in-flight requests finish, exit 0).
# Give it more than drain_timeout_ms (10 s default): docker stop -t 15 / podman stop -t 15.
STOPSIGNAL SIGTERM
# Liveness only (/healthz); readiness (/readyz) belongs to the orchestrator / load balancer.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/gatherd-healthcheck"]

ENTRYPOINT ["/usr/local/bin/gatherd"]
CMD ["--config", "/etc/gatherd/gatherd.json"]
