//! The hot queries' plans, read with `EXPLAIN (ANALYZE, BUFFERS)` on a database of 100,000
//! notifications where one user sees 43,000: each must read through indexes (no sequential scan
//! of a table that grows with the inbox) and touch a bounded number of pages, both with the
//! plan made for the actual values (custom) and with the generic plan a prepared statement
//! switches to after five runs, which is what the api's connections use.

use crate::fanout::RELAY_READ;
use crate::inbox::{AFTER, COUNTS, GET, list_sql, sql};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

/// Tables that grow with the inbox: never read sequentially by a hot query. (The counters grow
/// with the number of users; while they are small a sequential scan of them is the right plan,
/// and the page budget still holds it.)
const GROWING: [&str; 2] = ["notifications", "inbox_entries"];

/// Pages one hot query may touch. Reading all of the user's notifications touches ~100,000.
const PAGE_BUDGET: i64 = 1_000;

/// 100,000 notifications: three quarters personal (half of them to alice, the rest to 100 other
/// users), the others for roles or everyone; alice has read a third of hers and marked some of
/// the shared ones; counters as the migration computes them.
const POPULATE: &str = "
INSERT INTO notifications (id, seq, audience, roles, type, priority, title, message, publisher,
                           created_at)
SELECT gen_random_uuid(), i,
       CASE WHEN i % 4 = 0 THEN 'roles' WHEN i % 10 = 1 THEN 'broadcast' ELSE 'users' END,
       CASE WHEN i % 4 = 0 THEN ARRAY[(ARRAY['staff', 'admin', 'sales'])[i % 3 + 1]]
            ELSE '{}' END,
       (ARRAY['task_due', 'goal_assigned', 'mention'])[i % 3 + 1],
       (ARRAY['low', 'medium', 'high', 'urgent'])[i % 4 + 1],
       'notification ' || i, 'a message of a realistic length, about a goal or a task', 'test',
       now() - make_interval(secs => 100000 - i)
  FROM generate_series(1, 100000) i;
INSERT INTO inbox_entries (user_id, notification_id, personal_seq, is_read)
SELECT CASE WHEN n.seq % 2 = 0 THEN 'alice' ELSE 'u' || (n.seq % 100) END, n.id, n.seq,
       n.seq % 3 = 0
  FROM notifications n WHERE n.audience = 'users';
INSERT INTO inbox_entries (user_id, notification_id, is_read, deleted_at)
SELECT 'alice', n.id, true, CASE WHEN n.seq % 7 = 0 THEN now() END
  FROM notifications n WHERE n.audience <> 'users' AND n.seq % 5 = 0;
INSERT INTO personal_counts (user_id, type, priority, total, unread)
SELECT e.user_id, n.type, n.priority, count(*), count(*) FILTER (WHERE NOT e.is_read)
  FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
 WHERE n.audience = 'users' AND e.deleted_at IS NULL GROUP BY 1, 2, 3;
INSERT INTO shared_counts (roles, type, priority, total)
SELECT roles, type, priority, count(*) FROM notifications WHERE audience <> 'users'
 GROUP BY 1, 2, 3;
INSERT INTO shared_marks (user_id, roles, type, priority, read, deleted)
SELECT e.user_id, n.roles, n.type, n.priority,
       count(*) FILTER (WHERE e.is_read AND e.deleted_at IS NULL),
       count(*) FILTER (WHERE e.deleted_at IS NOT NULL)
  FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
 WHERE n.audience <> 'users' GROUP BY 1, 2, 3, 4;
ANALYZE;";

/// Every plan node that ran, as (node type, relation).
fn walk(plan: &Value, nodes: &mut Vec<(String, String)>) {
    if plan["Actual Loops"].as_i64().unwrap_or(0) == 0 {
        return;
    }
    nodes.push((
        plan["Node Type"].as_str().unwrap_or("").to_owned(),
        plan["Relation Name"].as_str().unwrap_or("").to_owned(),
    ));
    for child in plan["Plans"].as_array().into_iter().flatten() {
        walk(child, nodes);
    }
}

/// Checks one query, prepared with `types` and run with `args` (SQL literals), under both
/// plan cache modes.
async fn check(conn: &mut PgConnection, name: &str, query: &str, types: &str, args: &str) {
    let text = sql(query).0;
    let text = text.as_str();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE q({types}) AS {text}")))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let explained: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q({args})"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name} ({mode}): {e}"));
        let plan = &explained[0]["Plan"];
        let mut nodes = Vec::new();
        walk(plan, &mut nodes);
        let pages = plan["Shared Hit Blocks"].as_i64().unwrap_or(0)
            + plan["Shared Read Blocks"].as_i64().unwrap_or(0);
        for (node, relation) in &nodes {
            assert!(
                !(node == "Seq Scan" && GROWING.contains(&relation.as_str())),
                "{name} ({mode}) scans {relation} sequentially: {plan:#}"
            );
        }
        assert!(
            pages <= PAGE_BUDGET,
            "{name} ({mode}) touched {pages} pages (budget {PAGE_BUDGET}): {plan:#}"
        );
    }
    sqlx::raw_sql("DEALLOCATE q")
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn hot_queries_read_a_page_through_indexes_whatever_the_inbox_holds() {
    let url = crate::testing::fresh_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    herald_service::postgres::migrate(&pool).await.unwrap();
    sqlx::raw_sql(POPULATE).execute(&pool).await.unwrap();
    let alices: String = sqlx::query_scalar(
        "SELECT notification_id::text FROM inbox_entries
          WHERE user_id = 'alice' AND personal_seq IS NOT NULL ORDER BY personal_seq LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // How many personal and shared notifications match a filter, as the api passes them.
    let matching = async |unread: bool, kind: &str, priority: &str| -> (i64, i64) {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(sum(CASE WHEN NOT shared THEN {n} END), 0)::bigint,
                    coalesce(sum(CASE WHEN shared THEN {n} END), 0)::bigint
               FROM ({COUNTS}) c WHERE ($3::text IS NULL OR type = $3)
                                   AND ($4::text IS NULL OR priority = $4)",
            n = if unread { "unread" } else { "total" }
        )))
        .bind("alice")
        .bind(vec!["staff".to_owned()])
        .bind(Some(kind).filter(|k| !k.is_empty()))
        .bind(Some(priority).filter(|p| !p.is_empty()))
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let (all, unread, typed, absent) = (
        matching(false, "", "").await,
        matching(true, "", "").await,
        matching(false, "mention", "high").await,
        matching(false, "not_sent", "").await,
    );
    assert!(
        all.0 + all.1 > 40_000 && absent == (0, 0),
        "{all:?} {absent:?}"
    );
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let list = "text, text[], bool, text, text";
    let page =
        |limit, skip, (personal, shared): (i64, i64)| list_sql(limit, skip, personal, shared);
    let alice = "'alice', '{staff}'";
    for (name, query, types, args) in [
        (
            "the newest page",
            page(20, 0, all),
            list,
            format!("{alice}, false, NULL, NULL"),
        ),
        (
            "the third page, unread",
            page(20, 40, unread),
            list,
            format!("{alice}, true, NULL, NULL"),
        ),
        (
            "a page of one type",
            page(20, 0, typed),
            list,
            format!("{alice}, false, 'mention', 'high'"),
        ),
        (
            "a page of a type that is not there",
            page(20, 0, absent),
            list,
            format!("{alice}, false, 'not_sent', NULL"),
        ),
        (
            "everything after",
            AFTER.to_owned(),
            "text, text[], bigint, bigint",
            format!("{alice}, 50000, 101"),
        ),
        (
            "one notification",
            GET.to_owned(),
            "text, text[], uuid",
            format!("{alice}, '{alices}'"),
        ),
        (
            "the counts",
            COUNTS.to_owned(),
            "text, text[]",
            "'alice', '{staff,admin}'".to_owned(),
        ),
        (
            "the relay's read",
            RELAY_READ.to_owned(),
            "bigint, bigint",
            "99000, 200".to_owned(),
        ),
    ] {
        check(&mut conn, name, &query, types, &args).await;
    }
}
