//! The gateway's calls to the api, made with the connected user's own token: the resume read
//! ("everything after") and `mark_read`. The gateway never touches Postgres itself.

use herald_core::wire::Notification;
use serde::Deserialize;
use std::time::Duration;
use uuid::Uuid;

/// Notifications asked for per page while replaying.
const PAGE: usize = 100;

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

/// How a replay ended when it could not deliver everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The api does not know that position (410): refetch.
    Unknown,
    /// More than the replay limit is missing: refetch.
    TooMany,
    /// The api could not answer.
    Unavailable(String),
}

#[derive(Deserialize)]
struct Page {
    notifications: Vec<Notification>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MarkRead {
    Done,
    NotFound,
    Failed(String),
}

impl ApiClient {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(32)
                .build()
                .expect("a plain HTTP client builds"),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Everything after notification `since` for the token's user, oldest first, at most `max`.
    pub async fn replay(
        &self,
        token: &str,
        since: Uuid,
        max: usize,
    ) -> Result<Vec<Notification>, ReplayError> {
        let mut out: Vec<Notification> = Vec::new();
        let mut after = since;
        loop {
            let resp = self
                .http
                .get(format!("{}/api/notifications", self.base))
                .query(&[("after", after.to_string()), ("limit", PAGE.to_string())])
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| ReplayError::Unavailable(e.without_url().to_string()))?;
            match resp.status().as_u16() {
                200 => {}
                410 | 404 => return Err(ReplayError::Unknown),
                s => return Err(ReplayError::Unavailable(format!("api answered {s}"))),
            }
            let page: Page = resp
                .json()
                .await
                .map_err(|e| ReplayError::Unavailable(e.without_url().to_string()))?;
            if let Some(last) = page.notifications.last() {
                after = last.id;
            }
            out.extend(page.notifications);
            if out.len() > max {
                return Err(ReplayError::TooMany);
            }
            if !page.has_more {
                return Ok(out);
            }
        }
    }

    /// Persists a read through the api (which tells every tab of the user).
    pub async fn mark_read(&self, token: &str, id: Uuid) -> MarkRead {
        self.put_state(token, id, "read").await
    }

    /// Records that a tab displayed the notification (for email-if-unseen).
    pub async fn mark_seen(&self, token: &str, id: Uuid) -> MarkRead {
        self.put_state(token, id, "seen").await
    }

    async fn put_state(&self, token: &str, id: Uuid, state: &str) -> MarkRead {
        let sent = self
            .http
            .put(format!("{}/api/notifications/{id}/{state}", self.base))
            .bearer_auth(token)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => MarkRead::Done,
            Ok(r) if r.status() == 404 => MarkRead::NotFound,
            Ok(r) => MarkRead::Failed(format!("api answered {}", r.status().as_u16())),
            Err(e) => MarkRead::Failed(e.without_url().to_string()),
        }
    }
}
