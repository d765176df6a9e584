# Herald's container image: the three service binaries (herald-api, herald-gateway,
# herald-worker) on a small non-root Debian runtime.
#
# Stages: `chef` (the Rust toolchain plus cargo-chef), `planner` (computes recipe.json, the
# dependency graph, from the manifests), `builder` (first builds only the dependencies from
# recipe.json, a layer that stays cached until Cargo.toml/Cargo.lock change, then the workspace),
# `runtime` (debian:bookworm-slim, ca-certificates and curl, user `herald`).
#
#   docker build -t herald .
#
# One image, three services. The entrypoint is herald-api; run the others by overriding it:
#   docker run herald                                      # the api (0.0.0.0:8001)
#   docker run --entrypoint herald-gateway herald          # a gateway (0.0.0.0:8011)
#   docker run --entrypoint herald-worker herald           # the worker (0.0.0.0:8021)
#   docker run herald mint-token --sub alice               # arguments go to herald-api
# (in compose: `entrypoint: ["herald-gateway"]`; see deploy/compose.yaml). A plain command override
# (`docker run herald herald-gateway`) would pass "herald-gateway" to herald-api as an argument.
# Every service reads its configuration from the environment: docs/operations.md.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The api and worker use runtime-checked SQL (sqlx::query, no query! macros), so the build needs
# neither a database nor `.sqlx/` offline data. SQLX_OFFLINE=true makes a future macro use fail
# the build loudly instead of reaching for a database. (sqlx::migrate! only embeds the files in
# api/migrations.)
ENV SQLX_OFFLINE=true
COPY --from=planner /src/recipe.json recipe.json
# The vendored, patched fastwebsockets and engineioxide ([patch.crates-io] in Cargo.toml) are
# dependencies, not workspace members: the cook step needs their sources, like any other
# dependency's.
COPY vendor vendor
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    -p herald-api -p herald-gateway -p herald-worker
COPY . .
RUN cargo build --release --locked -p herald-api -p herald-gateway -p herald-worker

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/herald --create-home herald
COPY --from=builder \
     /src/target/release/herald-api \
     /src/target/release/herald-gateway \
     /src/target/release/herald-worker \
     /usr/local/bin/
USER herald
WORKDIR /var/lib/herald
# Listen on every interface inside the container (the binaries default to 127.0.0.1); .eml files
# (when no SMTP_HOST is set) go to the herald user's home.
ENV HERALD_API_ADDR=0.0.0.0:8001 \
    HERALD_GATEWAY_ADDR=0.0.0.0:8011 \
    HERALD_WORKER_ADDR=0.0.0.0:8021 \
    HERALD_MAIL_DIR=/var/lib/herald/mail
EXPOSE 8001 8011 8021
# Liveness of whichever service runs here, on its default port (the process answers). Compose
# overrides this per service with /readyz, which also checks Postgres/Redis.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8001/healthz \
     || curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8011/healthz \
     || curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8021/healthz \
     || exit 1
ENTRYPOINT ["herald-api"]
