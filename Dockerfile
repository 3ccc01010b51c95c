# syntax=docker/dockerfile:1
# sts-guard image. Build: docker build -t ghcr.io/sts-guard/sts-guard:0.1.0 .
# (BuildKit, the default since Docker 23, for the cache mounts below.)
#
# Runtime base: distroless/cc (glibc), not distroless/static (musl).
# - The builder is Debian 12 (glibc 2.36), the same as distroless
#   cc-debian12, so the ordinary glibc binary runs there as is; it needs only
#   libc and libgcc_s (checked with ldd), both in the image.
# - It is the same target (x86_64/aarch64-unknown-linux-gnu) that CI builds
#   and tests: no second target to download (`rustup target add ...-musl`),
#   no musl-tools for ring's C code, and `docker buildx --platform
#   linux/amd64,linux/arm64` works without per-arch target names.
# - glibc's allocator copes better with tokio's worker threads than musl's.
# The cost is ~20 MB more image than static; still no shell, no package
# manager. (TLS is rustls + ring: no OpenSSL is linked either way.)

# Pin the toolchain (match rust-version / CI); pin a digest in CI too.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# Everything not excluded by .dockerignore (no target/, .git, keys).
COPY . .
# Dependency caching with BuildKit cache mounts: the crates.io registry and
# target/ persist across builds, so a source change recompiles only
# sts-guard itself. The binary is copied out in the same step because a
# cache mount is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
 && install -D -m 0755 target/release/sts-guard /out/sts-guard

# nonroot tag: user 65532, no shell, CA certificates and tzdata included.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="sts-guard" \
      org.opencontainers.image.description="Kubernetes admission webhook that keeps StatefulSets healthy"
COPY --from=builder /out/sts-guard /usr/local/bin/sts-guard
# Numeric, so kubelet's runAsNonRoot check can verify it without /etc/passwd;
# matches runAsUser/runAsGroup in deploy/base/deployment.yaml.
USER 65532:65532
# glibc keeps 7 freed blocks of each size per thread for reuse, then goes
# to its slower shared lists; an admission frees some 50 small blocks at
# once, so 64 keeps them all: a third less CPU in malloc and free per
# admission, 0.3 MiB more peak RSS (BENCHMARKS.md, issue 26).
ENV GLIBC_TUNABLES=glibc.malloc.tcache_count=64
# 8443: HTTPS webhook + /healthz /readyz; 9090: plain-HTTP /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/sts-guard"]
# Settings come from flags or STS_GUARD_* env (see deploy/). Other
# subcommands: docker run IMAGE certs --out /out --dns ...
CMD ["serve"]
