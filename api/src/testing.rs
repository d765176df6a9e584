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

/// A TCP proxy in front of a real dependency (Postgres, Redis), for the fault tests of every
/// service. `cut()` drops every connection and refuses new ones (the server died); `stall()`
/// keeps every connection open and forwards nothing, new ones included, until `restore()` (a
/// hung server); `freeze_existing()` stalls the connections open now, for good, while new ones
/// flow (a half-dead connection behind a NAT or a proxy: only a timeout or a probe notices it).
pub struct Proxy {
    pub addr: SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    flowing: tokio::sync::watch::Sender<bool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<ProxiedConnection>>>,
    accept: tokio::task::AbortHandle,
}

struct ProxiedConnection {
    task: tokio::task::AbortHandle,
    frozen: tokio::sync::watch::Sender<bool>,
}

/// Copies `from` → `to` while the proxy flows and this connection is not frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: tokio::sync::watch::Receiver<bool>,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if flowing.wait_for(|f| *f).await.is_err()
            || frozen.wait_for(|f| !*f).await.is_err()
            || to.write_all(&buf[..n]).await.is_err()
        {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (flowing, _) = tokio::sync::watch::channel(true);
        let live: std::sync::Arc<std::sync::Mutex<Vec<ProxiedConnection>>> = Default::default();
        let (o, l, f) = (open.clone(), live.clone(), flowing.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (frozen, frozen_rx) = tokio::sync::watch::channel(false);
                let (target, flow) = (target.clone(), f.subscribe());
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (ir, iw) = inbound.into_split();
                        let (or, ow) = outbound.into_split();
                        tokio::join!(
                            pump(ir, ow, flow.clone(), frozen_rx.clone()),
                            pump(or, iw, flow, frozen_rx)
                        );
                    }
                });
                l.lock().unwrap().push(ProxiedConnection {
                    task: task.abort_handle(),
                    frozen,
                });
            }
        })
        .abort_handle();
        Proxy {
            addr,
            open,
            flowing,
            live,
            accept,
        }
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.live.lock().unwrap().drain(..) {
            c.task.abort();
        }
    }

    pub fn stall(&self) {
        self.flowing.send_replace(false);
    }

    /// Stalls every connection open now, for good; the next ones flow.
    pub fn freeze_existing(&self) {
        for c in self.live.lock().unwrap().iter() {
            c.frozen.send_replace(true);
        }
    }

    pub fn restore(&self) {
        self.flowing.send_replace(true);
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// What `user` with `roles` sees, by (type, priority): (type, priority, total, unread), sorted.
pub type Counted = Vec<(String, String, i64, i64)>;

/// What `user` with `roles` sees, counted twice: by the inbox counters (as `/stats` and the
/// list's totals do) and row by row from the inbox itself. Tests assert the two agree.
pub async fn counts_both_ways(
    pool: &sqlx::PgPool,
    user: &str,
    roles: &[&str],
) -> (Counted, Counted) {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let counters: Counted = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT type, priority, sum(total)::bigint, sum(unread)::bigint FROM ({}) c
          GROUP BY 1, 2 ORDER BY 1, 2",
        crate::inbox::COUNTS
    )))
    .bind(user)
    .bind(&roles)
    .fetch_all(pool)
    .await
    .expect("count by the counters");
    let rows: Counted = sqlx::query_as(
        "WITH visible AS (
             SELECT n.type, n.priority, e.is_read
               FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
              WHERE e.user_id = $1 AND e.deleted_at IS NULL AND n.audience = 'users'
             UNION ALL
             SELECT n.type, n.priority, coalesce(e.is_read, false)
               FROM notifications n
               LEFT JOIN inbox_entries e ON e.notification_id = n.id AND e.user_id = $1
              WHERE n.audience <> 'users' AND e.deleted_at IS NULL
                AND (n.audience = 'broadcast' OR n.roles && $2::text[])
         )
         SELECT type, priority, count(*), count(*) FILTER (WHERE NOT is_read)
           FROM visible GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(user)
    .bind(&roles)
    .fetch_all(pool)
    .await
    .expect("count row by row");
    (counters, rows)
}
