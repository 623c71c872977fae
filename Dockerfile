# syntax=docker/dockerfile:1
#
# backstop container image: a static release binary on an empty (scratch) base.
#
#   docker build -t backstop .
#   docker run --rm -p 8080:8080 -p 9090:9090 backstop
#   # apps: OPENAI_BASE_URL=http://<host>:8080/v1   probes: http://<host>:9090/healthz, /readyz
#
# The image holds only /backstop, the CA bundle, /etc/passwd + /etc/group (user 65532),
# /etc/nsswitch.conf, the config at /etc/backstop/backstop.toml (listening on 0.0.0.0) and
# an empty /data/failures owned by the runtime user. Mount your own config over
# /etc/backstop/backstop.toml (SIGHUP reloads it) or set BACKSTOP_CONFIG; mount a volume
# on /data to keep failure logs.
#
# The binary is built for x86_64-unknown-linux-gnu, so build on (or for) linux/amd64:
# on an arm64 machine use `docker build --platform linux/amd64 .`.

# ---- builder ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# Statically linked glibc binary: runs on scratch. Passing --target makes RUSTFLAGS apply
# to the binary only, not to build scripts and proc-macros (which cannot be static).
ARG TARGET=x86_64-unknown-linux-gnu
ENV RUSTFLAGS="-C target-feature=+crt-static"

WORKDIR /src

# Dependency cache: build every dependency against stub sources, in a layer that only
# changes when Cargo.toml or Cargo.lock does. Editing src/ then rebuilds just backstop.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --target "${TARGET}" \
    && rm -rf src

# The real build. COPY keeps the sources' old mtimes, so touch them: otherwise cargo
# could take the stub's build as up to date.
COPY src ./src
COPY config/container.toml ./config/container.toml
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target "${TARGET}" \
    && cp "target/${TARGET}/release/backstop" /backstop \
    && /backstop --version \
    && /backstop check-config --config config/container.toml > /dev/null

# Files for the scratch stage: a passwd/group entry for the numeric runtime user (some
# libraries look the user up), NSS defaults for static glibc name lookups, and the
# writable failure-log directory.
RUN mkdir -p /rootfs/etc /rootfs/data/failures \
    && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /rootfs/etc/passwd \
    && echo 'nonroot:x:65532:' > /rootfs/etc/group \
    && echo 'hosts: files dns' > /rootfs/etc/nsswitch.conf

# ---- runtime ---------------------------------------------------------------------------
FROM scratch

LABEL org.opencontainers.image.title="backstop" \
      org.opencontainers.image.description="Sidecar HTTP proxy that makes LLM API calls survive real-world failures" \
      org.opencontainers.image.licenses="Apache-2.0"

# CA bundle from the builder (Debian's ca-certificates), so https upstreams verify;
# backstop also bundles Mozilla's roots (tls.native_roots reads this file as well).
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /rootfs/etc/ /etc/
COPY --from=builder --chown=65532:65532 /rootfs/data/ /data/
COPY --from=builder /backstop /backstop
COPY config/container.toml /etc/backstop/backstop.toml

ENV BACKSTOP_CONFIG=/etc/backstop/backstop.toml \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532

# 8080: the proxy (apps connect here). 9090: admin, /healthz (alive) and /readyz (ready).
EXPOSE 8080 9090

# No HEALTHCHECK: scratch has no shell, curl or wget, and backstop has no self-probe
# command, so an image-level check could not run. Let the orchestrator probe the admin
# port instead: liveness GET http://<pod>:9090/healthz, readiness GET :9090/readyz
# (503 while starting and while draining after SIGTERM).

# Exec form: backstop is PID 1 and gets SIGTERM directly (drains for shutdown_grace).
ENTRYPOINT ["/backstop"]
CMD ["serve"]
