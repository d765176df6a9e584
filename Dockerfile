# Herald service binaries: a build stage with the Rust toolchain, a small non-root runtime stage.
# The api uses runtime-checked SQL (no query macros), so the build needs no database.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald-api

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 herald
COPY --from=build /src/target/release/herald-api /usr/local/bin/herald-api
USER herald
ENV HERALD_API_ADDR=0.0.0.0:8001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8001/healthz || exit 1
ENTRYPOINT ["herald-api"]
