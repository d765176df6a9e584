//! Publishing: the 201 answer, the Redis frame for each audience, idempotent retries, live
//! events, and a 10,000-recipient fan-out.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_personal_notification_is_stored_and_published_on_the_users_channel() {
    let app = spawn_app().await;
    let mut sub = subscribe(&[app.user_channel("alice"), app.user_channel("bob")]).await;
    let created = app
        .publish(json!({
            "recipients": [{"id": "alice", "email": "alice@example.com", "name": "Alice"}],
            "type": "goal_assigned", "priority": "high", "title": "New Goal Assigned to You",
            "message": "John Doe has assigned you a new goal", "action_url": "/goals/g1/respond",
            "data": {"goal_id": "g1"}, "triggered_by_name": "John Doe"
        }))
        .await;
    assert_eq!(created["audience"], "users");
    assert_eq!(created["recipient_count"], 1);
    let n = &created["notification"];
    assert_eq!(n["title"], "New Goal Assigned to You");
    assert_eq!(n["is_read"], false);
    let (channel, frame) = sub.next().await;
    assert_eq!(channel, app.user_channel("alice"));
    assert_eq!(
        frame,
        json!({"type": "new_notification", "notification": n})
    );
    let listed = app.inbox(&token("alice", &[], None), "").await.body;
    assert_eq!(
        &listed["notifications"][0], n,
        "the inbox shows what was published"
    );
    sub.close().await;
}

#[tokio::test]
async fn role_and_broadcast_notifications_are_published_once_on_their_channel() {
    let app = spawn_app().await;
    let mut sub = subscribe(&[app.role_channel("admin"), app.broadcast_channel()]).await;
    app.publish(json!({"roles": ["admin"], "type": "new_ticket", "title": "T", "message": ""}))
        .await;
    app.publish(
        json!({"broadcast": true, "type": "system_announcement", "title": "B", "message": ""}),
    )
    .await;
    let (c1, f1) = sub.next().await;
    let (c2, f2) = sub.next().await;
    assert_eq!(
        (c1.as_str(), f1["notification"]["title"].as_str()),
        (app.role_channel("admin").as_str(), Some("T"))
    );
    assert_eq!(
        (c2.as_str(), f2["notification"]["title"].as_str()),
        (app.broadcast_channel().as_str(), Some("B"))
    );
    sub.close().await;
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_creates_nothing_new() {
    let app = spawn_app().await;
    let body = json!({"recipients": ["alice", "bob"], "type": "t", "title": "once", "message": "", "idempotency_key": "order-42"});
    let first = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&publisher_token()),
            Some(&body),
        )
        .await;
    let retry = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&publisher_token()),
            Some(&body),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, first.body, "the first answer, verbatim");
    assert_eq!(retry.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.stored_rows().await, (1, 2));

    let mut changed = body.clone();
    changed["title"] = json!("twice?");
    let clash = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&publisher_token()),
            Some(&changed),
        )
        .await;
    assert_eq!(clash.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        clash.body["detail"][0]["loc"],
        json!(["body", "idempotency_key"])
    );
    assert_eq!(app.stored_rows().await, (1, 2), "nothing changed");
    assert_eq!(
        app.inbox(&token("alice", &[], None), "").await.body["total"],
        1
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_notification() {
    let app = std::sync::Arc::new(spawn_app().await);
    let body = json!({"recipients": ["alice"], "type": "t", "title": "once", "message": "", "idempotency_key": "k"});
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.publish(body).await["id"].clone() })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "every retry got the same id"
    );
    assert_eq!(app.stored_rows().await, (1, 1));
}

#[tokio::test]
async fn live_events_reach_their_channels_and_are_not_stored() {
    let app = spawn_app().await;
    let mut sub = subscribe(&[app.role_channel("admin"), app.user_channel("reporter-1")]).await;
    let ticket = json!({"ticket_id": 7, "title": "Printer on fire", "status": "open"});
    let a = app
        .call(
            Method::POST,
            "/api/events",
            Some(&publisher_token()),
            Some(&json!({"event": "new_ticket", "roles": ["admin"], "data": ticket})),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(
        sub.next().await,
        (
            app.role_channel("admin"),
            json!({"type": "event", "event": "new_ticket", "data": ticket})
        )
    );
    app.call(Method::POST, "/api/events", Some(&publisher_token()), Some(&json!({"event": "ticket_updated", "recipients": ["reporter-1"], "data": {"ticket_id": 7}})))
        .await;
    let (channel, frame) = sub.next().await;
    assert_eq!(
        (channel, frame["event"].clone()),
        (app.user_channel("reporter-1"), json!("ticket_updated"))
    );
    assert_eq!(
        app.stored_rows().await,
        (0, 0),
        "events are not notifications"
    );
    sub.close().await;
}

#[tokio::test]
async fn ten_thousand_recipients_are_accepted_and_each_gets_the_notification() {
    let app = spawn_app().await;
    let recipients: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let mut sub = subscribe(&[app.user_channel("user-0"), app.user_channel("user-9999")]).await;
    let created = app
        .publish(json!({"recipients": recipients, "type": "system_announcement", "title": "All hands", "message": ""}))
        .await;
    assert_eq!(created["recipient_count"], 10_000);
    let mut channels = vec![sub.next().await.0, sub.next().await.0];
    channels.sort();
    assert_eq!(
        channels,
        [app.user_channel("user-0"), app.user_channel("user-9999")]
    );
    let last = app.inbox(&token("user-9999", &[], None), "").await.body;
    assert_eq!(last["notifications"][0]["title"], "All hands");
    sub.close().await;
}

#[tokio::test]
async fn notifications_stored_together_do_not_fail_with_one_postgres_refuses() {
    let app = spawn_app().await;
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let batcher = herald_api::publishing::Batcher::start(
        pool.clone(),
        herald_api::publishing::Deadlines {
            acquire: Duration::from_secs(2),
            request: Duration::from_secs(10),
        },
    );
    // All eleven are queued before a writer runs (one thread, one poll of join_all), so they go
    // to Postgres as one batch; the NUL (which the HTTP layer refuses) makes that batch fail.
    let answers = futures::future::join_all((0..11).map(|i| {
        let title = if i == 5 {
            "bad\u{0}".to_owned()
        } else {
            format!("n{i}")
        };
        let batcher = batcher.clone();
        async move { batcher.create("pub", personal("alice", &title)).await }
    }))
    .await;
    let mut seqs: Vec<i64> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok().map(|c| c.notification.seq))
        .collect();
    assert!(
        answers[5].is_err(),
        "the refused one is answered with an error"
    );
    assert_eq!(seqs.len(), 10, "the other ten are stored");
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 10, "each has its own position");
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM notifications ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(titles.len(), 10);
    assert!(!titles.iter().any(|t| t.starts_with("bad")));
}
