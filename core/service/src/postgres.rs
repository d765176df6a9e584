//! Postgres as Herald's services use it: one way to open the pool, the schema's migrations
//! (`api/migrations/`, applied by whichever service starts first), and statistics that keep up
//! with young tables.
//!
//! Why statistics here: autovacuum analyzes a table once a tenth of it changed, checking once a
//! minute; a new deployment's tables grow from nothing much faster than that, and a generic plan
//! cached while a table held a page (a sequential scan) stays in use until the next ANALYZE.
//! [`keep_statistics_current`] looks every second for Herald tables that grew by half since
//! their last ANALYZE and analyzes them: a handful of times while a table is young, never in
//! the steady state autovacuum covers (ARCHITECTURE.md, "Counts and pages").

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Opens a pool on `url`. Every connection runs without JIT (it only pays off for long
/// analytical queries; on stale statistics a JIT compile once took 31 ms of a 0.3 ms query),
/// plus the service's own `settings`.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    settings: &[(&str, &str)],
) -> anyhow::Result<PgPool> {
    let mut options = vec![("jit", "off")];
    options.extend_from_slice(settings);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(
            PgConnectOptions::from_str(url)
                .context("DATABASE_URL")?
                .options(options),
        )
        .await
        .context("connecting to Postgres (DATABASE_URL)")
}

/// Applies the migrations not applied yet; when there were any, collects fresh statistics of
/// the tables that hold rows right away (a migration can move or create many), rather than
/// leave the planner guessing until autovacuum gets round to it. Empty tables are left
/// unanalyzed: statistics saying "empty" would let a plan cached now scan them sequentially
/// once they are not ([`keep_statistics_current`] takes over as they grow).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    const APPLIED: &str = "SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'
                           AND schemaname = current_schema()";
    let applied = async || -> Result<i64, sqlx::Error> {
        if sqlx::query_scalar::<_, i64>(APPLIED)
            .fetch_one(pool)
            .await?
            == 0
        {
            return Ok(0);
        }
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
    };
    let before = applied().await.context("reading applied migrations")?;
    sqlx::migrate!("../../api/migrations")
        .run(pool)
        .await
        .context("running database migrations")?;
    if applied().await.context("reading applied migrations")? > before {
        analyze_filled(pool)
            .await
            .context("ANALYZE after migrations")?;
    }
    Ok(())
}

/// How often [`keep_statistics_current`] looks at the tables.
const EVERY: Duration = Duration::from_secs(1);

/// The tables the hot queries read.
const TABLES: [&str; 6] = [
    "notifications",
    "inbox_entries",
    "personal_counts",
    "shared_counts",
    "shared_marks",
    "email_jobs",
];

/// Tables that grew by more than 500 rows plus half of what they held when last analyzed (or
/// vacuumed): live rows against `reltuples`, so updates in place (the counters) never count.
const GROWN: &str =
    "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                      WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
                        AND s.n_live_tup - greatest(c.reltuples, 0)
                            > 500 + 0.5 * greatest(c.reltuples, 0)";

/// Runs until the process ends (see the module docs); a failed look is tried again at the next.
pub async fn keep_statistics_current(pool: PgPool) {
    let tables: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    loop {
        tokio::time::sleep(EVERY).await;
        let grown = sqlx::query_scalar::<_, String>(GROWN)
            .bind(&tables)
            .fetch_all(&pool)
            .await;
        let analyzed = match grown {
            Ok(grown) => analyze(&pool, &grown).await,
            Err(err) => Err(err),
        };
        if let Err(err) = analyzed {
            tracing::debug!(cause = %err, "could not refresh table statistics");
        }
    }
}

/// Analyzes every table of the list that holds a row.
async fn analyze_filled(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut filled = Vec::new();
    for table in TABLES {
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table})"
        )))
        .fetch_one(pool)
        .await?;
        if any {
            filled.push(table.to_owned());
        }
    }
    analyze(pool, &filled).await
}

async fn analyze(pool: &PgPool, tables: &[String]) -> Result<(), sqlx::Error> {
    for table in tables {
        // Names from the fixed list above (matched by pg_stat_user_tables or taken from it).
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(pool)
            .await?;
    }
    Ok(())
}
