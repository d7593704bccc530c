# syntax=docker/dockerfile:1
#
# dds-certsync container image: a static (musl) binary on distroless, running as non-root.
#
#   docker build -t dds-certsync .
#   docker run --rm \
#     -v "$PWD/config.toml:/etc/dds-certsync/config.toml:ro" \
#     -v "$PWD/tls:/etc/mongodb/tls" \
#     dds-certsync --once
#
# Arguments given to `docker run` replace the default CMD, so pass `--config` again when you
# add flags:  docker run ... dds-certsync --config /etc/dds-certsync/config.toml --once
#
# The certificate output and `sync.state_dir` must be writable by uid 65532; mount
# DIRECTORIES there, never single files (a rename onto a single-file bind mount fails with
# EBUSY). See deploy/README.md for Kubernetes.

# ---------------------------------------------------------------------------------------------
# Build stage: static x86_64 binary. The crate uses rustls with ring and no OpenSSL; ring's C
# and assembly parts are compiled with musl-gcc from musl-tools.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
ARG RUST_TARGET=x86_64-unknown-linux-musl

# musl-tools is left unpinned on purpose: the rust:1-bookworm base moves with Debian point
# releases, and an exact pin would break the build at the next one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${RUST_TARGET}"

WORKDIR /src
# The whole workspace (filtered by .dockerignore) is needed: Cargo loads every member manifest.
COPY . .

# Cache mounts keep the registry and target dir between builds (BuildKit). The binary is copied
# out of the cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target "${RUST_TARGET}" -p dds-certsync --bin dds-certsync \
    && install -D -m 0755 "target/${RUST_TARGET}/release/dds-certsync" /out/dds-certsync \
    && install -d -m 0700 /out/state \
    && install -d -m 0755 /out/tls

# ---------------------------------------------------------------------------------------------
# Runtime stage. distroless/static ships CA roots (/etc/ssl/certs/ca-certificates.crt, used to
# verify the cloud API and the download host), /etc/passwd with `nonroot` (65532), tzdata, and
# no shell. Extra roots: set `cloud.ca_file` in the config, or SSL_CERT_FILE.
FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="dds-certsync" \
      org.opencontainers.image.description="Keeps the TLS CA certificates of Huawei Cloud DDS current on disk" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/dds-certsync /usr/local/bin/dds-certsync
# Default locations, owned by the runtime user so the image also works without volumes.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/dds-certsync
COPY --from=builder --chown=65532:65532 /out/tls /etc/mongodb/tls

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# /healthz, /readyz and /metrics when `[server] listen` is set (off by default).
EXPOSE 9464

ENTRYPOINT ["/usr/local/bin/dds-certsync"]
CMD ["--config", "/etc/dds-certsync/config.toml"]
