//! Retention: old read rows and rows past the hard limit go, in batches; recent and unread rows,
//! and rows with an unsent email, stay; two workers never clean up at once.

use crate::helpers::*;
use chrono::Utc;
use herald_worker::cleanup::{self, CLEANUP_LOCK, Report, Retention};
use serde_json::json;

async fn backdate(s: &Stack, id: &str, days: i32) {
    sqlx::query("UPDATE notifications SET created_at = now() - make_interval(days => $2) WHERE id = $1::uuid")
        .bind(id)
        .bind(days)
        .execute(&s.pool)
        .await
        .unwrap();
}

async fn remaining(s: &Stack) -> Vec<String> {
    sqlx::query_scalar("SELECT title FROM notifications ORDER BY title")
        .fetch_all(&s.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_read_and_very_old_rows_go_in_batches_and_the_rest_stays() {
    let s = stack().await;
    let mut ids = std::collections::HashMap::new();
    for (title, user) in [
        ("old-read-1", "a"),
        ("old-read-2", "a"),
        ("old-read-3", "a"),
        ("old-unread", "a"),
        ("ancient-unread", "a"),
        ("recent-read", "a"),
    ] {
        let n = s
            .publish(json!({"recipients": [user], "type": "t", "title": title, "message": ""}))
            .await;
        ids.insert(title, n["id"].as_str().unwrap().to_owned());
    }
    let pending = s.email("b", "ancient-pending-email", json!({})).await;
    for t in ["old-read-1", "old-read-2", "old-read-3", "recent-read"] {
        assert_eq!(
            s.put("a", &format!("/api/notifications/{}/read", ids[t]), None)
                .await,
            200
        );
    }
    for t in ["old-read-1", "old-read-2", "old-read-3", "old-unread"] {
        backdate(&s, &ids[t], 40).await;
    }
    backdate(&s, &ids["ancient-unread"], 200).await;
    backdate(&s, pending["id"].as_str().unwrap(), 200).await;

    let r = Retention {
        read_days: 30,
        all_days: 180,
        batch: 2,
    };
    let report = cleanup::run(&s.pool, Utc::now(), r)
        .await
        .unwrap()
        .expect("the lock was free");
    assert_eq!(
        report,
        Report {
            past_hard_limit: 1,
            read: 3,
            idempotency_records: 0
        }
    );
    assert_eq!(
        remaining(&s).await,
        ["ancient-pending-email", "old-unread", "recent-read"]
    );
}

#[tokio::test]
async fn a_second_worker_does_not_clean_up_while_one_is() {
    let s = stack().await;
    let n = s
        .publish(json!({"recipients": ["a"], "type": "t", "title": "ancient", "message": ""}))
        .await;
    backdate(&s, n["id"].as_str().unwrap(), 400).await;
    let mut other = s.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(CLEANUP_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    let r = Retention {
        read_days: 30,
        all_days: 180,
        batch: 100,
    };
    assert_eq!(
        cleanup::run(&s.pool, Utc::now(), r).await.unwrap(),
        None,
        "the other worker holds the lock"
    );
    assert_eq!(remaining(&s).await, ["ancient"]);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(CLEANUP_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    assert!(
        cleanup::run(&s.pool, Utc::now(), r)
            .await
            .unwrap()
            .is_some()
    );
    assert!(remaining(&s).await.is_empty());
}

/// Retention removes notifications users have read, deleted or not touched; their inbox counts
/// (`/stats`, the list's totals) must lose exactly those.
#[tokio::test]
async fn inbox_counts_stay_exact_when_retention_removes_notifications() {
    let s = stack().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let body = if i % 3 == 2 {
            json!({"broadcast": true, "type": "t", "priority": "low", "title": format!("n{i}"), "message": ""})
        } else {
            let to = if i % 3 == 1 {
                json!(["a"])
            } else {
                json!(["a", "b"])
            };
            let kind = ["t", "u"][i % 2];
            json!({"recipients": to, "type": kind, "title": format!("n{i}"), "message": ""})
        };
        ids.push(s.publish(body).await["id"].as_str().unwrap().to_owned());
    }
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(
                s.put("a", &format!("/api/notifications/{id}/read"), None)
                    .await,
                200
            );
        }
        if i % 4 == 1 {
            let gone = s
                .http
                .delete(format!("http://{}/api/notifications/{id}", s.api))
                .bearer_auth(token("a", None))
                .send()
                .await
                .unwrap();
            assert!(gone.status().is_success());
        }
        if i < 8 {
            backdate(&s, id, if i % 2 == 0 { 40 } else { 200 }).await;
        }
    }
    let before = herald_api::testing::counts_both_ways(&s.pool, "a", &[]).await;
    assert_eq!(before.0, before.1);
    let r = Retention {
        read_days: 30,
        all_days: 180,
        batch: 3,
    };
    let report = cleanup::run(&s.pool, Utc::now(), r).await.unwrap().unwrap();
    assert!(report.past_hard_limit > 0 && report.read > 0, "{report:?}");
    for user in ["a", "b"] {
        let (counters, rows) = herald_api::testing::counts_both_ways(&s.pool, user, &[]).await;
        assert_eq!(counters, rows, "{user}");
        assert!(!rows.is_empty());
    }
    assert_ne!(
        herald_api::testing::counts_both_ways(&s.pool, "a", &[])
            .await
            .1,
        before.1,
        "retention removed some of what a counted"
    );
}
