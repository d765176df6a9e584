//! Dependencies that go away: Postgres down → a quick 503 and recovery on its own; Redis down →
//! the write still commits (201) and is published once Redis is back.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

/// Repeats `check` until it holds, failing the test after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_outage_answers_503_without_hanging_and_recovers_by_itself() {
    let proxy = Proxy::start(address_of(&database_url())).await;
    let db = fresh_database().await;
    let app = spawn_with(test_config(&with_address(&db, proxy.addr), &redis_url())).await;
    let alice = token("alice", &[], None);
    assert_eq!(app.inbox(&alice, "").await.status, StatusCode::OK);

    proxy.cut();
    // The client's 15 s timeout would fail this call if the api hung.
    let down = app.inbox(&alice, "").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        down.body,
        json!({"detail": "database is unavailable, try again"})
    );
    let publish = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&publisher_token()),
            Some(&json!({"recipients": ["alice"], "type": "t", "title": "x", "message": ""})),
        )
        .await;
    assert_eq!(publish.status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    eventually(Duration::from_secs(15), "the api serves again", || async {
        app.inbox(&alice, "").await.status == StatusCode::OK
    })
    .await;
    app.notify("alice", "after the outage").await;
    assert_eq!(
        app.inbox(&alice, "").await.body["total"],
        1,
        "the failed publish wrote nothing"
    );
}

#[tokio::test]
async fn redis_outage_still_commits_and_publishes_once_redis_is_back() {
    let proxy = Proxy::start(address_of(&redis_url())).await;
    let db = fresh_database().await;
    let app = spawn_with(test_config(&db, &with_address(&redis_url(), proxy.addr))).await;
    // A subscriber straight on Redis, past the proxy.
    let mut sub = subscribe(&[app.user_channel("alice")]).await;
    app.notify("alice", "before").await;
    assert_eq!(sub.next().await.1["notification"]["title"], "before");

    proxy.cut();
    let created = app.notify("alice", "during the outage").await;
    let event = app
        .call(
            Method::POST,
            "/api/events",
            Some(&publisher_token()),
            Some(&json!({"event": "ping", "broadcast": true})),
        )
        .await;
    assert_eq!(
        event.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a live event cannot be kept"
    );
    assert_eq!(
        app.inbox(&token("alice", &[], None), "").await.body["total"],
        2,
        "committed"
    );

    proxy.restore();
    let (_, frame) = sub.next().await;
    assert_eq!(
        frame["notification"]["id"], created["id"],
        "published after Redis came back"
    );
    sub.close().await;
}
