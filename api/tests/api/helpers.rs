//! `spawn_app()`: the api on port 0 with a fresh database and a private Redis prefix, plus a
//! handle with one method per endpoint, token minting, a Redis subscriber, and a TCP proxy
//! that can cut a dependency off to test outages.

use fred::clients::SubscriberClient;
use fred::prelude::*;
use herald_api::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

pub const SECRET: &str = "test-secret-for-integration-tests";

pub use herald_api::testing::{Proxy, database_url, fresh_database, redis_url};

/// Replaces host:port of a URL (for routing a dependency through a [`Proxy`]).
pub fn with_address(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let userinfo = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// host:port of a URL.
pub fn address_of(url: &str) -> String {
    let rest = url.split_once("://").expect("URL with a scheme").1;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority)
        .to_owned()
}

pub fn test_config(database_url: &str, redis_url: &str) -> Config {
    herald_api::testing::config(database_url, redis_url, SECRET)
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub prefix: String,
    pub database_url: String,
    _api: herald_api::testing::RunningApi,
}

pub async fn spawn_app() -> TestApp {
    let db = fresh_database().await;
    spawn_with(test_config(&db, &redis_url())).await
}

pub async fn spawn_with(config: Config) -> TestApp {
    let api = herald_api::testing::spawn_api(config).await;
    TestApp {
        addr: api.addr,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap(),
        prefix: api.prefix.clone(),
        database_url: api.database_url.clone(),
        _api: api,
    }
}

pub fn token(sub: &str, roles: &[&str], scope: Option<&str>) -> String {
    herald_api::testing::token(SECRET, sub, roles, scope, 600)
}

pub fn publisher_token() -> String {
    token("host-app", &[], Some("publish"))
}

/// A status and a JSON body (Null when the body is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request reaches the api");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        }
    }

    pub async fn raw_post(
        &self,
        path: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches the api");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        }
    }

    /// Publishes with a publisher token and asserts 201; returns the answer body.
    pub async fn publish(&self, body: Value) -> Value {
        let a = self
            .call(
                Method::POST,
                "/api/notifications",
                Some(&publisher_token()),
                Some(&body),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "publish failed: {}", a.body);
        a.body
    }

    /// A personal notification for `user` with the given title.
    pub async fn notify(&self, user: &str, title: &str) -> Value {
        self.publish(json!({
            "recipients": [user], "type": "goal_assigned", "priority": "high",
            "title": title, "message": format!("message of {title}"),
        }))
        .await
    }

    pub async fn inbox(&self, token: &str, query: &str) -> Answer {
        self.call(
            Method::GET,
            &format!("/api/notifications{query}"),
            Some(token),
            None,
        )
        .await
    }

    /// Number of notifications stored in this test's database, for "nothing changed" checks.
    pub async fn stored_rows(&self) -> (i64, i64) {
        let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
        let e: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox_entries")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        (n, e)
    }

    pub fn user_channel(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    pub fn role_channel(&self, role: &str) -> String {
        format!("{}:role:{role}", self.prefix)
    }

    pub fn broadcast_channel(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }
}

/// A real Redis subscriber.
pub struct Subscription {
    client: SubscriberClient,
    rx: tokio::sync::broadcast::Receiver<fred::types::Message>,
}

pub async fn subscribe(channels: &[String]) -> Subscription {
    let client = Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap())
        .with_performance_config(|p| p.broadcast_channel_capacity = 10_000)
        .build_subscriber_client()
        .unwrap();
    client.init().await.expect("connect to Redis");
    let rx = client.message_rx();
    client
        .subscribe(channels.to_vec())
        .await
        .expect("subscribe");
    Subscription { client, rx }
}

impl Subscription {
    /// The next message as (channel, JSON), failing the test if none comes within 10 s.
    pub async fn next(&mut self) -> (String, Value) {
        let msg = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a Redis message within 10 s")
            .expect("subscription open");
        let text: String = msg.value.convert().unwrap();
        (
            msg.channel.to_string(),
            serde_json::from_str(&text).unwrap(),
        )
    }

    pub async fn close(self) {
        let _ = self.client.quit().await;
    }
}

/// A notification as the domain layer hands it to `publishing::store`: type `t`, medium, in the
/// app only.
pub fn new_notification(
    audience: herald_api::domain::Audience,
    title: &str,
) -> herald_api::domain::NewNotification {
    herald_api::domain::NewNotification {
        audience,
        kind: "t".to_owned(),
        priority: herald_core::wire::Priority::Medium,
        title: title.to_owned(),
        message: String::new(),
        action_url: None,
        data: json!({}),
        triggered_by_name: None,
        channels: vec![herald_api::domain::Channel::InApp],
        idempotency_key: None,
        email_if_unseen_minutes: None,
    }
}

/// A personal notification for `user` (see [`new_notification`]).
pub fn personal(user: &str, title: &str) -> herald_api::domain::NewNotification {
    new_notification(
        herald_api::domain::Audience::Users(vec![herald_api::domain::Recipient {
            id: user.to_owned(),
            email: None,
            name: None,
        }]),
        title,
    )
}
