# syntax=docker/dockerfile:1
#
# The stevedore controller as a small image that runs as a non-root user.
#
#   docker build -t stevedore .
#   docker run --rm stevedore validate --help
#
# Two stages: the build stage compiles the release binary with the same
# toolchain and Debian release the tests run on; the runtime stage is
# distroless (no shell, no package manager), with glibc, CA certificates
# and a `nonroot` user (uid 65532), and nothing else but the binary. The
# binary links only libc, libm, libgcc_s and the dynamic loader, all of
# which that image has (a test, `the_binary_needs_only_what_the_runtime_image_has`,
# checks this on every build). It reaches AWS and git hosts over
# rustls, so it needs no OpenSSL.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# Symbols stripped: 31 MB instead of 44 MB (measured on x86_64); a panic
# still reports its message and source location.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# The registry and target directories are cache mounts, so a rebuild after a
# source change does not download or compile the dependencies again.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stevedore \
    && cp target/release/stevedore /stevedore

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /stevedore /usr/local/bin/stevedore
USER nonroot:nonroot
# /healthz, /readyz, /metrics and /status (`run --listen`).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/stevedore"]
CMD ["--help"]
