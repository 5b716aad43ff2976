# syntax=docker/dockerfile:1
#
# One image for every bondnet component: `bondnet` (controller, agent, webhook, plan, crds)
# and the `bond` CNI plugin the agent copies into each node's CNI bin dir. Both binaries are
# static (musl), so the final image is `scratch` with nothing else in it.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t bondnet:0.1.0 .
#
# Each platform builds natively in its own stage (under QEMU emulation for the foreign one),
# which needs no cross linker; TARGETARCH only names the platform in the build log.

FROM rust:1-alpine AS build
ARG TARGETARCH
RUN apk add --no-cache musl-dev bash binutils
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY bond bond
COPY operator operator
COPY plugin plugin
COPY tests tests
COPY scripts scripts
# bond is built by the script the tests use (static, non-PIE: see scripts/build-bond.sh).
# The last step refuses a binary that needs a dynamic loader: scratch has none.
RUN echo "building for ${TARGETARCH:-the build host}" \
 && cargo build --release --locked -p bondnet-operator --bin bondnet \
 && bond="$(scripts/build-bond.sh)" \
 && mkdir /out \
 && cp target/release/bondnet "$bond" /out/ \
 && ! (readelf -l /out/bondnet /out/bond | grep -q "Requesting program interpreter")

FROM scratch
COPY --from=build /out/bondnet /usr/local/bin/bondnet
COPY --from=build /out/bond /usr/local/bin/bond
# The controller and webhook run as this user; the agent's pod sets uid 0 to write the
# host's root-owned CNI bin dir (see charts/bondnet/templates/agent.yaml).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/bondnet"]
