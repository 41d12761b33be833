# The node, jobs and operator images: CRATE is the package, BINARY its binary, and each image's
# ports and entrypoint are in the stage named after its binary.
#   node:     WebSocket (5501) and HTTP API (8001).
#   jobs:     minerpool-job rewards|validators|payouts|decay|audit --config FILE.
#   operator: minerpool-operator run; metrics and probes on 8080.
# Build from the workspace root, where a registry is reachable:
#   DOCKER_BUILDKIT=1 docker build --build-arg CRATE=minerpool-node --build-arg BINARY=minerpool-node -t minerpool/minerpool-node .
#   DOCKER_BUILDKIT=1 docker build --build-arg CRATE=minerpool-jobs --build-arg BINARY=minerpool-job -t minerpool/minerpool-jobs .
#   DOCKER_BUILDKIT=1 docker build --build-arg CRATE=minerpool-operator --build-arg BINARY=minerpool-operator -t minerpool/minerpool-operator .
# Without a registry, `make images` builds the same runtime stage from binaries compiled here
# (BINARIES_FROM) on a base assembled from this machine's libraries (RUNTIME_IMAGE).
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES_FROM=compile
ARG BINARY

FROM ${RUST_IMAGE} AS compile
ARG CRATE
ARG BINARY
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    test -n "$CRATE" -a -n "$BINARY" \
    && cargo build --locked --release -p "$CRATE" --bin "$BINARY" \
    && install -D -m 0755 "target/release/$BINARY" "/out/$BINARY"

# BuildKit builds only the stages the result needs: with BINARIES_FROM set, `compile` is skipped.
FROM ${BINARIES_FROM} AS binaries

FROM ${RUNTIME_IMAGE} AS runtime
ARG BINARY
COPY --from=binaries /out/${BINARY} /usr/local/bin/${BINARY}
# Numeric, so that the kubelet can check runAsNonRoot.
USER 65532:65532

FROM runtime AS minerpool-node
EXPOSE 8001 5501
ENTRYPOINT ["/usr/local/bin/minerpool-node"]

FROM runtime AS minerpool-job
ENTRYPOINT ["/usr/local/bin/minerpool-job"]

FROM runtime AS minerpool-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/minerpool-operator"]

# The image: the stage of BINARY.
FROM ${BINARY}
