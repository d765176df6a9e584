//! Test support shared by the api's, the gateway's and the worker's integration tests: the real
//! Postgres and Redis of this machine (`DATABASE_URL`, `REDIS_URL`), a fresh database per test, a
//! private Redis prefix, the api served on port 0, and tokens. Not used by the service itself.

use crate::config::Config;
use crate::startup::App;
use herald_core::auth::{TokenClaims, mint_hs256};
use herald_core::secret::Secret;
use std::net::SocketAddr;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| crate::config::defaults::DATABASE_URL.to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Replaces the database name (path) of a Postgres URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let cut = base.rfind('/').expect("a Postgres URL has a path");
    let mut out = format!("{}/{name}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Creates an empty database `herald_test_<uuid>` and returns its URL (`deploy/local.sh test`
/// drops leftovers before each run).
pub async fn fresh_database() -> String {
    let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    let admin = with_database(&database_url(), "postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to Postgres (is it running? see deploy/local.sh)");
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create a test database");
    with_database(&database_url(), &name)
}

/// A config for tests: every default, a private Redis prefix, a fast relay poll.
pub fn config(database_url: &str, redis_url: &str, jwt_secret: &str) -> Config {
    let mut config = Config::new(database_url, redis_url, jwt_secret);
    config.redis_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    config.relay_poll_ms = 50;
    config
}

/// The api serving on 127.0.0.1 (port 0) until dropped.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub prefix: String,
    pub database_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_api(config: Config) -> RunningApi {
    herald_core::telemetry::init_for_tests();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let prefix = config.redis_prefix.clone();
    let database_url = config.database_url.expose().to_owned();
    let app = App::build(config, listener).await.expect("the api builds");
    let addr = app.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    RunningApi {
        addr,
        prefix,
        database_url,
        _stop: stop,
    }
}

/// An HS256 token valid for `ttl_secs`.
pub fn token(
    secret: &str,
    sub: &str,
    roles: &[&str],
    scope: Option<&str>,
    ttl_secs: u64,
) -> String {
    mint_hs256(
        &Secret::new(secret),
        &TokenClaims::new(sub, roles.iter().copied(), scope, ttl_secs),
    )
}
