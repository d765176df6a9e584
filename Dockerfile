# Herald service binaries: a build stage with the Rust toolchain, a small non-root runtime stage.
# The api uses runtime-checked SQL (no query macros), so the build needs no database.
# Run one service per container: `herald-api` (default) or `herald-gateway`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald-api -p herald-gateway

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 herald
COPY --from=build /src/target/release/herald-api /src/target/release/herald-gateway /usr/local/bin/
USER herald
ENV HERALD_API_ADDR=0.0.0.0:8001 HERALD_GATEWAY_ADDR=0.0.0.0:8011
EXPOSE 8001 8011
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8001/healthz || curl -fsS http://127.0.0.1:8011/healthz || exit 1
ENTRYPOINT ["herald-api"]
