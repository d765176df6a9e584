//! The JSON that reaches clients: the notification (the seeds' shape, field for field) and the
//! server → client frames of the WebSocket protocol.
//!
//! The api publishes these frames to Redis already serialised; a gateway forwards the same bytes
//! to every matching connection, so what a client receives is exactly what is defined here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How loud a notification is. `urgent` bypasses email digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One notification as a user sees it. `is_read` is the reading user's own state; `seq` is the
/// notification's position in Herald's commit order (extra to the seeds' shape): a larger `seq`
/// was committed later, which is what resume and "everything after" rely on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: Uuid,
    /// Free snake_case kind, e.g. `goal_assigned`, `new_ticket`.
    #[serde(rename = "type")]
    pub kind: String,
    pub priority: Priority,
    pub title: String,
    pub message: String,
    pub action_url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    pub triggered_by_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub is_read: bool,
    pub seq: i64,
}

/// A frame from server to client. Serialised with `"type"` as the tag, e.g.
/// `{"type":"marked_read","notification_id":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    ConnectionEstablished {
        message: String,
        user_id: String,
    },
    NewNotification {
        notification: Notification,
    },
    MarkedRead {
        notification_id: Uuid,
    },
    /// All of the user's notifications were marked read; `count` is how many changed.
    MarkedAllRead {
        count: u64,
    },
    NotificationDeleted {
        notification_id: Uuid,
    },
    Event {
        event: String,
        data: serde_json::Value,
    },
    Error {
        message: String,
    },
    /// The server cannot guarantee the client has every notification (a resume position it
    /// cannot replay from, a gap too large, or an interrupted Redis subscription): the client
    /// must reload its inbox over REST, then carry on.
    Refetch {
        reason: String,
    },
    /// A fresh token (`auth:<jwt>`) replaced the connection's grant: channels of roles it no
    /// longer carries are already left; the connection now ends at `exp` (unix seconds).
    TokenRefreshed {
        exp: u64,
    },
}

impl ServerMessage {
    /// The frame's JSON text. Serialising these types cannot fail (string keys, no maps with
    /// non-string keys), so this returns the text directly.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            id: Uuid::nil(),
            kind: "goal_assigned".into(),
            priority: Priority::High,
            title: "New Goal Assigned to You".into(),
            message: "John Doe has assigned you a goal".into(),
            action_url: Some("/goals/g/respond".into()),
            data: serde_json::json!({"goal_id": "g"}),
            triggered_by_name: Some("John Doe".into()),
            created_at: "2025-11-17T10:30:00Z".parse().unwrap(),
            is_read: false,
            seq: 7,
        }
    }

    #[test]
    fn notification_has_the_seeds_field_names() {
        let v = serde_json::to_value(sample()).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "action_url",
                "created_at",
                "data",
                "id",
                "is_read",
                "message",
                "priority",
                "seq",
                "title",
                "triggered_by_name",
                "type"
            ]
        );
        assert_eq!(v["priority"], "high");
        assert_eq!(v["created_at"], "2025-11-17T10:30:00Z");
    }

    #[test]
    fn frames_are_tagged_by_type() {
        let f = ServerMessage::NewNotification {
            notification: sample(),
        };
        let v: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["type"], "new_notification");
        assert_eq!(v["notification"]["type"], "goal_assigned");
        let back: ServerMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
        let r = ServerMessage::MarkedRead {
            notification_id: Uuid::nil(),
        };
        assert_eq!(
            r.to_json(),
            r#"{"type":"marked_read","notification_id":"00000000-0000-0000-0000-000000000000"}"#
        );
    }

    #[test]
    fn priority_round_trips() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("critical"), None);
    }
}
