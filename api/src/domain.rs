//! Publish requests validated at the edge into types the rest of the api can trust: an
//! [`Audience`], a [`NewNotification`], a [`NewEvent`]. Every rule lives here, and every
//! violation names its field.

use crate::error::{ApiError, FieldError};
use herald_core::auth::{MAX_USER_ID_CHARS, valid_role, valid_user_id};
use herald_core::mailbox;
use herald_core::origins::AllowedOrigins;
use herald_core::wire::Priority;
use serde::Deserialize;
use std::collections::HashSet;

/// Most recipients of one notification or event.
pub const MAX_RECIPIENTS: usize = 10_000;
/// Most roles one notification or event may name.
pub const MAX_ROLES: usize = 100;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_MESSAGE_CHARS: usize = 4_000;
pub const MAX_TYPE_CHARS: usize = 64;
pub const MAX_URL_CHARS: usize = 2_048;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// A recipient as sent: a user id, or `{"id", "email", "name"}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum RecipientInput {
    Id(String),
    Full {
        id: String,
        email: Option<String>,
        name: Option<String>,
    },
}

/// Who receives a notification or an event: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Users(Vec<Recipient>),
    Roles(Vec<String>),
    Broadcast,
}

impl Audience {
    pub fn kind(&self) -> &'static str {
        match self {
            Audience::Users(_) => "users",
            Audience::Roles(_) => "roles",
            Audience::Broadcast => "broadcast",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// The audience fields shared by notification and event bodies.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct AudienceInput {
    /// 1..10,000 user ids or `{id, email, name}` objects.
    pub recipients: Option<Vec<RecipientInput>>,
    /// Role names, e.g. `["admin"]`: everyone whose token carries one of them.
    pub roles: Option<Vec<String>>,
    /// `true`: everyone.
    pub broadcast: Option<bool>,
}

/// `POST /api/notifications` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct PublishNotificationBody {
    #[serde(flatten)]
    pub audience: AudienceInput,
    /// snake_case kind, e.g. `goal_assigned`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `low`, `medium` (default), `high` or `urgent`.
    pub priority: Option<String>,
    pub title: String,
    pub message: String,
    pub action_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    pub triggered_by_name: Option<String>,
    /// `in_app` and/or `email`; default `["in_app"]`.
    pub channels: Option<Vec<String>>,
    /// A retry with the same key returns the first answer and creates nothing.
    pub idempotency_key: Option<String>,
    /// With the `email` channel: email only if the user has not seen (or read) the notification
    /// in the app within this many minutes (1..10080).
    pub email_if_unseen_minutes: Option<u32>,
}

/// `POST /api/events` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct PublishEventBody {
    #[serde(flatten)]
    pub audience: AudienceInput,
    /// Event name, e.g. `new_ticket`.
    pub event: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    InApp,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
            Channel::Email => "email",
        }
    }
}

/// A notification that passed every rule.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub audience: Audience,
    pub kind: String,
    pub priority: Priority,
    pub title: String,
    pub message: String,
    pub action_url: Option<String>,
    pub data: serde_json::Value,
    pub triggered_by_name: Option<String>,
    pub channels: Vec<Channel>,
    pub idempotency_key: Option<String>,
    pub email_if_unseen_minutes: Option<u32>,
}

/// A live event that passed every rule.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub audience: Audience,
    pub event: String,
    pub data: serde_json::Value,
}

/// Collects every violation so the client learns them all at once.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.push(FieldError::body(field, msg));
    }

    fn into_result<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn check_audience(input: &AudienceInput, p: &mut Problems) -> Option<Audience> {
    let given = [
        input.recipients.is_some(),
        input.roles.is_some(),
        input.broadcast == Some(true),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        p.add(
            "",
            "give exactly one audience: recipients, roles, or broadcast: true",
        );
        return None;
    }
    if let Some(list) = &input.recipients {
        if list.is_empty() || list.len() > MAX_RECIPIENTS {
            p.add(
                "recipients",
                format!("must hold 1 to {MAX_RECIPIENTS} recipients"),
            );
            return None;
        }
        let mut seen = HashSet::with_capacity(list.len());
        let mut out = Vec::with_capacity(list.len());
        for (i, r) in list.iter().enumerate() {
            let (id, email, name) = match r {
                RecipientInput::Id(id) => (id, None, None),
                RecipientInput::Full { id, email, name } => (id, email.as_ref(), name.as_ref()),
            };
            if !valid_user_id(id) {
                p.add(
                    &format!("recipients.{i}"),
                    format!(
                        "user id must be 1 to {MAX_USER_ID_CHARS} characters without control characters"
                    ),
                );
                continue;
            }
            // The worker's own parser: what passes here can be written in a `To:` header.
            if let Some(Err(e)) = email.map(|e| mailbox::address(e)) {
                p.add(&format!("recipients.{i}.{}", e.field()), e.to_string());
            }
            if let Some(Err(e)) = name.map(|n| mailbox::display_name(n)) {
                p.add(&format!("recipients.{i}.{}", e.field()), e.to_string());
            }
            if seen.insert(id.as_str()) {
                out.push(Recipient {
                    id: id.clone(),
                    email: email.cloned(),
                    name: name.cloned(),
                });
            }
        }
        return Some(Audience::Users(out));
    }
    if let Some(roles) = &input.roles {
        if roles.is_empty() || roles.len() > MAX_ROLES {
            p.add("roles", format!("must hold 1 to {MAX_ROLES} roles"));
            return None;
        }
        for (i, r) in roles.iter().enumerate() {
            if !valid_role(r) {
                p.add(
                    &format!("roles.{i}"),
                    "role names are 1 to 64 characters of letters, digits, '_', '-', '.'",
                );
            }
        }
        let mut unique: Vec<String> = roles.clone();
        unique.sort();
        unique.dedup();
        return Some(Audience::Roles(unique));
    }
    Some(Audience::Broadcast)
}

fn check_data(data: &Option<serde_json::Value>, max_bytes: usize, p: &mut Problems) {
    let Some(value) = data else { return };
    if !value.is_object() {
        p.add("data", "must be a JSON object");
        return;
    }
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        p.add(
            "data",
            format!("is {size} bytes of JSON; the limit is {max_bytes}"),
        );
    }
}

/// Is `kind` a notification type: snake_case, 1 to [`MAX_TYPE_CHARS`] characters.
pub fn valid_type(kind: &str) -> bool {
    !kind.is_empty() && chars(kind) <= MAX_TYPE_CHARS && is_snake_case(kind)
}

fn is_snake_case(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// A safe link: a path on the host app that starts with exactly one `/` and holds no
/// backslash, whitespace or control character, or an absolute http(s) URL on an allowed origin
/// (`links`: the public origin, `CORS_ALLOWED_ORIGINS`, `HERALD_LINK_ORIGINS`). Anything else
/// could run script or leave the site when a page renders it: browsers follow `//evil`,
/// `/\evil` and `/<TAB>/evil` to another host.
fn is_safe_link(url: &str, links: &AllowedOrigins) -> bool {
    if let Some(path) = url.strip_prefix('/') {
        !path.starts_with('/')
            && !url
                .chars()
                .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    } else {
        links.allows_url(url)
    }
}

impl NewNotification {
    pub fn parse(
        body: PublishNotificationBody,
        max_data_bytes: usize,
        links: &AllowedOrigins,
    ) -> Result<Self, ApiError> {
        let mut p = Problems::default();
        let audience = check_audience(&body.audience, &mut p);
        let kind = body.kind.trim().to_owned();
        if kind.is_empty() || chars(&kind) > MAX_TYPE_CHARS || !is_snake_case(&kind) {
            p.add(
                "type",
                format!("must be snake_case, 1 to {MAX_TYPE_CHARS} characters"),
            );
        }
        let priority = match body.priority.as_deref() {
            None => Some(Priority::Medium),
            Some(s) => {
                let parsed = Priority::parse(s);
                if parsed.is_none() {
                    p.add("priority", "must be one of low, medium, high, urgent");
                }
                parsed
            }
        };
        let title = body.title.trim().to_owned();
        if title.is_empty() || chars(&title) > MAX_TITLE_CHARS {
            p.add(
                "title",
                format!("must be 1 to {MAX_TITLE_CHARS} characters"),
            );
        }
        if chars(&body.message) > MAX_MESSAGE_CHARS {
            p.add("message", format!("at most {MAX_MESSAGE_CHARS} characters"));
        }
        if let Some(url) = &body.action_url
            && (url.len() > MAX_URL_CHARS || !is_safe_link(url, links))
        {
            p.add(
                "action_url",
                "must be a path starting with a single '/' (no backslash, space or control \
                 character) or an http(s) URL on an allowed origin, at most 2048 characters",
            );
        }
        check_data(&body.data, max_data_bytes, &mut p);
        if body
            .triggered_by_name
            .as_deref()
            .is_some_and(|n| chars(n) > MAX_NAME_CHARS)
        {
            p.add(
                "triggered_by_name",
                format!("at most {MAX_NAME_CHARS} characters"),
            );
        }
        let mut channels = Vec::new();
        match &body.channels {
            None => channels.push(Channel::InApp),
            Some(list) if list.is_empty() => p.add("channels", "must not be empty"),
            Some(list) => {
                for (i, c) in list.iter().enumerate() {
                    let parsed = match c.as_str() {
                        "in_app" => Channel::InApp,
                        "email" => Channel::Email,
                        _ => {
                            p.add(&format!("channels.{i}"), "must be 'in_app' or 'email'");
                            continue;
                        }
                    };
                    if !channels.contains(&parsed) {
                        channels.push(parsed);
                    }
                }
            }
        }
        if let Some(key) = &body.idempotency_key
            && (key.is_empty() || chars(key) > MAX_IDEMPOTENCY_KEY_CHARS)
        {
            p.add(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
            );
        }
        if let Some(minutes) = body.email_if_unseen_minutes {
            if !(1..=10_080).contains(&minutes) {
                p.add("email_if_unseen_minutes", "must be 1 to 10080 minutes");
            } else if !channels.contains(&Channel::Email) {
                p.add("email_if_unseen_minutes", "needs 'email' in channels");
            }
        }
        let (Some(audience), Some(priority)) = (audience, priority) else {
            return Err(ApiError::Invalid(p.0));
        };
        p.into_result(NewNotification {
            audience,
            kind,
            priority,
            title,
            message: body.message,
            action_url: body.action_url,
            data: body.data.unwrap_or_else(|| serde_json::json!({})),
            triggered_by_name: body.triggered_by_name,
            channels,
            idempotency_key: body.idempotency_key,
            email_if_unseen_minutes: body.email_if_unseen_minutes,
        })
    }
}

impl NewEvent {
    pub fn parse(body: PublishEventBody, max_data_bytes: usize) -> Result<Self, ApiError> {
        let mut p = Problems::default();
        let audience = check_audience(&body.audience, &mut p);
        let name_ok = !body.event.is_empty()
            && body.event.len() <= MAX_TYPE_CHARS
            && body
                .event
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !name_ok {
            p.add(
                "event",
                "must be 1 to 64 characters of letters, digits, '_', '-', '.', ':'",
            );
        }
        check_data(&body.data, max_data_bytes, &mut p);
        let Some(audience) = audience else {
            return Err(ApiError::Invalid(p.0));
        };
        p.into_result(NewEvent {
            audience,
            event: body.event,
            data: body.data.unwrap_or_else(|| serde_json::json!({})),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> PublishNotificationBody {
        serde_json::from_value(json).unwrap()
    }

    fn links() -> AllowedOrigins {
        AllowedOrigins::parse(&["https://app.example"], "http://127.0.0.1:8000").unwrap()
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Invalid(list) => list.into_iter().map(|f| f.loc.join(".")).collect(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn a_good_notification_parses_with_defaults() {
        let n = NewNotification::parse(
            body(serde_json::json!({
                "recipients": ["u1", {"id": "u2", "email": "u2@example.com"}, "u1"],
                "type": "goal_assigned", "title": " Hi ", "message": "m"
            })),
            1024,
            &links(),
        )
        .unwrap();
        assert_eq!(n.priority, Priority::Medium);
        assert_eq!(n.title, "Hi");
        assert_eq!(n.channels, vec![Channel::InApp]);
        match n.audience {
            Audience::Users(r) => assert_eq!(r.len(), 2, "duplicates are folded"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn action_url_is_a_single_slash_path_or_a_url_on_an_allowed_origin() {
        for (url, ok) in [
            ("/goals/1/respond?x=1#y", true),
            ("https://app.example/goals/1", true),
            ("http://127.0.0.1:8000/inbox", true),
            ("//evil.example/x", false),
            ("/\\evil.example/x", false),
            ("/\t/evil.example/x", false),
            ("/a b", false),
            ("/ok\u{0}", false),
            ("https://evil.example/x", false),
            ("https://app.example.evil.example/", false),
            ("javascript:alert(1)", false),
            ("goals/1", false),
        ] {
            let result = NewNotification::parse(
                body(serde_json::json!({
                    "recipients": ["u1"], "type": "t", "title": "x", "message": "",
                    "action_url": url
                })),
                1024,
                &links(),
            );
            match (result, ok) {
                (Ok(_), true) => {}
                (Err(e), false) => assert_eq!(fields(e), ["body.action_url"], "{url:?}"),
                (r, _) => panic!("{url:?}: {:?}", r.is_ok()),
            }
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = NewNotification::parse(
            body(serde_json::json!({
                "roles": ["admin", "no spaces"], "type": "Bad-Type", "priority": "critical",
                "title": "  ", "message": "m", "action_url": "javascript:alert(1)",
                "data": [1], "channels": ["sms"]
            })),
            1024,
            &links(),
        )
        .unwrap_err();
        assert_eq!(
            fields(err),
            [
                "body.roles.1",
                "body.type",
                "body.priority",
                "body.title",
                "body.action_url",
                "body.data",
                "body.channels.0"
            ]
        );
    }

    #[test]
    fn recipient_addresses_and_names_are_checked_with_the_mailers_parser() {
        let err = NewNotification::parse(
            body(serde_json::json!({
                "recipients": [
                    {"id": "u0", "email": "broken@"},
                    {"id": "u1", "email": "u1@example.test", "name": "Ann\r\nX"},
                    {"id": "u2", "email": "a@b.test,c@evil.test", "name": "bell\u{7}"},
                    {"id": "u3", "email": "u3@example.test", "name": "Ann Lee"}
                ],
                "type": "t", "title": "x", "message": "", "channels": ["email"]
            })),
            1024,
            &links(),
        )
        .unwrap_err();
        assert_eq!(
            fields(err),
            [
                "body.recipients.0.email",
                "body.recipients.1.name",
                "body.recipients.2.email",
                "body.recipients.2.name"
            ]
        );
    }

    #[test]
    fn audience_must_be_exactly_one() {
        let two = body(serde_json::json!({
            "recipients": ["u"], "broadcast": true, "type": "t", "title": "x", "message": ""
        }));
        assert_eq!(
            fields(NewNotification::parse(two, 10, &links()).unwrap_err()),
            ["body"]
        );
        let none = body(serde_json::json!({"type": "t", "title": "x", "message": ""}));
        assert_eq!(
            fields(NewNotification::parse(none, 10, &links()).unwrap_err()),
            ["body"]
        );
    }

    #[test]
    fn data_over_the_limit_is_refused() {
        let big = body(serde_json::json!({
            "broadcast": true, "type": "t", "title": "x", "message": "",
            "data": {"blob": "x".repeat(100)}
        }));
        assert_eq!(
            fields(NewNotification::parse(big, 50, &links()).unwrap_err()),
            ["body.data"]
        );
    }
}
