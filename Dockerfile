# syntax=docker/dockerfile:1
# llm-emu as a container that stands where a vLLM pod stands: same port (8000), same routes
# (/v1/*, /health, /metrics), no GPU. Build: `docker build -t llm-emu .` (see docs/deploy.md).

# Build stage: the full Rust image, because the tokenizer crate compiles a C++ helper (esaxx-rs)
# that the slim image has no g++ for (mimalloc, the allocator, is C). The toolchain is pinned;
# the lock file is honoured.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p llm-emu \
    && install -D -m 0755 target/release/llm-emu /out/llm-emu

# Runtime stage: distroless "cc" holds glibc, libgcc and libstdc++, which is all the binary links
# against (no OpenSSL: the server speaks plain HTTP), and runs as the unprivileged user 65532.
# It has no shell and no curl, so there is no HEALTHCHECK here: Kubernetes ignores Docker's
# HEALTHCHECK anyway and probes /health itself (deploy/), and `docker run` users can curl it.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/llm-emu /usr/local/bin/llm-emu
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["llm-emu"]
CMD ["serve", "--host", "0.0.0.0"]
