//! Inbox counts come from counters, not from counting the inbox: they must stay exact while
//! publishers, readers and deleters work at once, for every role set a token may carry.

use crate::helpers::*;
use herald_api::testing::counts_both_ways;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// A publish of kind `i`: personal to one or two users, to one or two roles, or broadcast, with
/// types and priorities spread so the counters have several rows.
fn body(i: usize) -> Value {
    let kind = ["task_due", "goal_assigned"][i % 2];
    let priority = ["low", "high", "urgent"][i % 3];
    let mut b =
        json!({"type": kind, "priority": priority, "title": format!("n{i}"), "message": ""});
    match i % 6 {
        0 => b["recipients"] = json!(["alice", "bob"]),
        1 => b["recipients"] = json!(["carol"]),
        2 => b["roles"] = json!(["staff"]),
        3 => b["roles"] = json!(["admin", "staff"]),
        4 => b["roles"] = json!(["admin"]),
        _ => b["broadcast"] = json!(true),
    }
    b
}

/// One user's changes: reads (each sent twice at once), deletes racing a read of the same
/// notification, then everything read.
async fn change(app: Arc<TestApp>, user: &'static str, roles: &'static [&'static str]) {
    let t = token(user, roles, None);
    let page = app.inbox(&t, "?limit=100").await.body;
    let ids: Vec<String> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    let mut work = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let read = format!("/api/notifications/{id}/read");
        let gone = format!("/api/notifications/{id}");
        let (app, t) = (app.clone(), t.clone());
        work.push(tokio::spawn(async move {
            match i % 4 {
                0 | 1 => {
                    let (a, b) = tokio::join!(
                        app.call(Method::PUT, &read, Some(&t), None),
                        app.call(Method::PUT, &read, Some(&t), None)
                    );
                    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
                }
                2 => {
                    let (_, d) = tokio::join!(
                        app.call(Method::PUT, &read, Some(&t), None),
                        app.call(Method::DELETE, &gone, Some(&t), None)
                    );
                    assert!(d.status.is_success(), "delete: {}", d.status);
                }
                _ => {}
            }
        }));
    }
    for w in work {
        w.await.unwrap();
    }
    if user == "bob" {
        let a = app
            .call(
                Method::PUT,
                "/api/notifications/mark-all-read",
                Some(&t),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn counters_stay_exact_under_concurrent_publishes_reads_and_deletes() {
    let app = Arc::new(spawn_app().await);
    for i in 0..36 {
        app.publish(body(i)).await;
    }
    // More publishes while three users read, delete and mark everything read.
    let mut tasks = Vec::new();
    for p in 0..3 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..24 {
                app.publish(body(p * 100 + i)).await;
            }
        }));
    }
    for (user, roles) in [
        ("alice", &["staff"][..]),
        ("bob", &["staff", "admin"][..]),
        ("carol", &[][..]),
    ] {
        tasks.push(tokio::spawn(change(app.clone(), user, roles)));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    // Every user with the roles they acted with, and with role sets they did not: counts follow
    // the token's roles at read time.
    for (user, roles) in [
        ("alice", &["staff"][..]),
        ("alice", &["admin"][..]),
        ("alice", &[][..]),
        ("bob", &["staff", "admin"][..]),
        ("bob", &["staff"][..]),
        ("carol", &[][..]),
        ("carol", &["admin"][..]),
        ("dave", &["staff"][..]),
    ] {
        let (counters, rows) = counts_both_ways(&pool, user, roles).await;
        assert_eq!(counters, rows, "{user} with {roles:?}");
        assert!(!rows.is_empty(), "{user} with {roles:?} sees something");

        // And as a user reads them: /stats and the list's totals.
        let t = token(user, roles, None);
        let stats = app
            .call(Method::GET, "/api/notifications/stats", Some(&t), None)
            .await
            .body;
        let total: i64 = rows.iter().map(|r| r.2).sum();
        let unread: i64 = rows.iter().map(|r| r.3).sum();
        assert_eq!(stats["total_count"], total, "{user} {roles:?}: {stats}");
        assert_eq!(stats["unread_count"], unread, "{user} {roles:?}: {stats}");
        let urgent: i64 = rows.iter().filter(|r| r.1 == "urgent").map(|r| r.2).sum();
        assert_eq!(stats["by_priority"]["urgent"].as_i64().unwrap_or(0), urgent);
        let list = app
            .inbox(&t, "?unread_only=true&notification_type=task_due&limit=100")
            .await
            .body;
        let unread_tasks: i64 = rows.iter().filter(|r| r.0 == "task_due").map(|r| r.3).sum();
        assert_eq!(list["total"], unread_tasks, "{user} {roles:?}");
        assert_eq!(
            list["notifications"].as_array().unwrap().len() as i64,
            unread_tasks.min(100)
        );
        assert_eq!(list["unread_count"], unread, "{user} {roles:?}");
    }
}
