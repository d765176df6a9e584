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

/// Publishes at `rate` per second for `count` requests; each result is (title, status, how long
/// the answer took). An idempotency key is sent when `keyed`.
async fn publish_paced(
    app: &TestApp,
    count: usize,
    rate: u64,
) -> Vec<(String, StatusCode, Duration)> {
    let publisher = publisher_token();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
    let mut sent = Vec::new();
    for i in 0..count {
        tick.tick().await;
        let (http, url, publisher) = (
            app.http.clone(),
            app.url("/api/notifications"),
            publisher.clone(),
        );
        let title = format!("paced-{i}");
        sent.push(tokio::spawn(async move {
            let started = Instant::now();
            let status = http
                .post(url)
                .bearer_auth(publisher)
                .json(&json!({"recipients": ["alice"], "type": "t", "title": title, "message": ""}))
                .send()
                .await
                .map(|r| r.status())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            (title, status, started.elapsed())
        }));
    }
    let mut results = Vec::new();
    for s in sent {
        results.push(s.await.unwrap());
    }
    results
}

/// How Postgres goes away in [`publishes_through_an_outage`].
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// Every connection dropped, new ones refused (the server died).
    Cut,
    /// Every connection open but nothing forwarded, new ones included (a lost route, a hung
    /// server): statements in flight hang.
    Stall,
}

#[tokio::test]
async fn a_publish_answered_503_during_a_cut_is_never_stored_and_every_201_is_delivered() {
    publishes_through_an_outage(Outage::Cut).await;
}

#[tokio::test]
async fn a_publish_answered_503_during_a_stall_is_never_stored_and_every_201_is_delivered() {
    publishes_through_an_outage(Outage::Stall).await;
}

async fn publishes_through_an_outage(kind: Outage) {
    let proxy = Proxy::start(address_of(&database_url())).await;
    let db = fresh_database().await;
    let mut config = test_config(&with_address(&db, proxy.addr), &redis_url());
    config.db_acquire_timeout_ms = 1_000;
    let app = spawn_with(config).await;
    let mut sub = subscribe(&[app.user_channel("alice")]).await;

    // 20 publishes a second for 5 s; Postgres is gone from 1 s to 3.5 s.
    let outage = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        match kind {
            Outage::Cut => proxy.cut(),
            Outage::Stall => proxy.stall(),
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        proxy.restore();
    };
    let (results, ()) = tokio::join!(publish_paced(&app, 100, 20), outage);
    let ok: Vec<&str> = results
        .iter()
        .filter(|r| r.1 == StatusCode::CREATED)
        .map(|r| r.0.as_str())
        .collect();
    let refused: Vec<&(String, StatusCode, Duration)> = results
        .iter()
        .filter(|r| r.1 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(
        ok.len() + refused.len(),
        100,
        "only 201 and 503: {results:?}"
    );
    assert!(
        refused.len() >= 20,
        "the outage was seen: {} refused",
        refused.len()
    );
    assert!(
        ok.len() >= 20,
        "publishing worked around it: {} stored",
        ok.len()
    );
    for (title, _, took) in &refused {
        assert!(
            *took <= Duration::from_millis(1_500),
            "{title}: 503 after {took:?}, more than the acquire timeout (1 s) + 500 ms"
        );
    }

    // Postgres holds exactly the 201s.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let mut stored: Vec<String> = sqlx::query_scalar("SELECT title FROM notifications")
        .fetch_all(&pool)
        .await
        .unwrap();
    stored.sort();
    let mut expected: Vec<String> = ok.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(stored, expected, "stored = answered 201, nothing else");

    // Every 201 is delivered, and only those (the relay publishes from Postgres).
    let mut delivered = Vec::new();
    while delivered.len() < ok.len() {
        let (_, frame) = sub.next().await;
        if let Some(title) = frame["notification"]["title"].as_str() {
            delivered.push(title.to_owned());
        }
    }
    delivered.sort();
    assert_eq!(delivered, expected);

    // A retry with the same idempotency key after an outage creates exactly one notification.
    let keyed = json!({"recipients": ["alice"], "type": "t", "title": "keyed", "message": "",
                       "idempotency_key": "retry-after-503"});
    proxy.cut();
    let down = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&publisher_token()),
            Some(&keyed),
        )
        .await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    proxy.restore();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut a = app
            .call(
                Method::POST,
                "/api/notifications",
                Some(&publisher_token()),
                Some(&keyed),
            )
            .await;
        for _ in 0..50 {
            if a.status != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            // The pool reconnects on its own; retry as a publisher would.
            tokio::time::sleep(Duration::from_millis(100)).await;
            a = app
                .call(
                    Method::POST,
                    "/api/notifications",
                    Some(&publisher_token()),
                    Some(&keyed),
                )
                .await;
        }
        assert_eq!(a.status, StatusCode::CREATED);
        answers.push(a.body["id"].clone());
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer: {answers:?}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE title = 'keyed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    pool.close().await;
    sub.close().await;
}

#[tokio::test]
async fn a_stalled_redis_connection_is_replaced_and_the_relay_publishes_what_committed() {
    let proxy = Proxy::start(address_of(&redis_url())).await;
    let db = fresh_database().await;
    let app = spawn_with(test_config(&db, &with_address(&redis_url(), proxy.addr))).await;
    // A subscriber straight on Redis, past the proxy.
    let mut sub = subscribe(&[app.user_channel("alice")]).await;
    app.notify("alice", "before").await;
    assert_eq!(sub.next().await.1["notification"]["title"], "before");

    // The api's connection stops forwarding without closing: fred still says "connected".
    proxy.freeze_existing();
    let created = app.notify("alice", "during the stall").await;
    let started = Instant::now();
    let (_, frame) = sub.next().await;
    assert_eq!(
        frame["notification"]["id"], created["id"],
        "published on a fresh connection"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the stalled connection was replaced within 3 command timeouts: {:?}",
        started.elapsed()
    );
    sub.close().await;
}
