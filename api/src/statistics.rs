//! Statistics that keep up with young tables. Autovacuum analyzes a table once a tenth of it
//! changed, checking once a minute; a new deployment's tables grow from nothing much faster
//! than that, and a generic plan cached while a table held a page (a sequential scan) stays in
//! use until the next ANALYZE. So every api process looks every few seconds for Herald tables
//! that grew by half since their last ANALYZE and analyzes them: a handful of times while a
//! table is young, never in the steady state that autovacuum covers (ARCHITECTURE.md, "Counts
//! and pages").

use sqlx::PgPool;
use std::time::Duration;

/// How often the tables are looked at.
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

/// Tables changed by more than 500 rows plus half of what they held at their last ANALYZE.
const GROWN: &str = "SELECT relname::text FROM pg_stat_user_tables
                      WHERE schemaname = current_schema() AND relname = ANY($1)
                        AND n_mod_since_analyze
                            > 500 + 0.5 * greatest(n_live_tup - n_mod_since_analyze, 0)";

/// Runs until the process ends; a failed look is tried again at the next one.
pub async fn keep_current(pool: PgPool) {
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

/// Analyzes every table of the list that holds a row (after migrations).
pub async fn analyze_filled(pool: &PgPool) -> Result<(), sqlx::Error> {
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
