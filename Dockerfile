# The depharness image: the static binary alone, FROM scratch (no shell, no
# libc, no package manager). Build it with `make image`, which first builds
# bin/depharness with CGO_ENABLED=0 and makes the empty directory
# bin/image/data that becomes /data, owned by the unprivileged user.
#
# Every subcommand runs from this one image: `docker run depharness:local proxy`,
# `... fake-cloud`, `... gateway`. Healthchecks use `depharness healthcheck --url`.
FROM scratch

LABEL org.opencontainers.image.title="depharness" \
      org.opencontainers.image.description="Reference proxy, fakes, simulator and compliance suite of the balena dependent-device API, in one static binary"

COPY bin/depharness /depharness
# /data is the proxy's DATA_DIR. A named volume mounted here starts as a copy
# of this directory, so it inherits the non-root owner.
COPY --chown=65532:65532 bin/image/data /data

USER 65532:65532
WORKDIR /data
ENV DATA_DIR=/data \
    DEPHARNESS_LISTEN_HOST=0.0.0.0

# No EXPOSE: each subcommand listens on its own port (docker-compose.yml
# publishes them per service).

ENTRYPOINT ["/depharness"]
CMD ["help"]
