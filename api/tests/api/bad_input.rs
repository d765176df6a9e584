//! Bad input gets a clear 422 (or 413) naming the field, and changes nothing.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn base() -> Value {
    json!({"recipients": ["alice"], "type": "goal_assigned", "priority": "high", "title": "t", "message": "m"})
}

fn with(field: &str, value: Value) -> Value {
    let mut b = base();
    b[field] = value;
    b
}

fn loc(a: &Answer) -> Value {
    a.body["detail"][0]["loc"].clone()
}

#[tokio::test]
async fn every_kind_of_bad_publish_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let publisher = publisher_token();

    let malformed = app
        .raw_post(
            "/api/notifications",
            &publisher,
            r#"{"recipients": ["alice"], "type": "#,
        )
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&malformed), json!(["body"]));
    assert!(
        malformed.body["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );

    let too_many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "wrong type",
            with("title", json!(5)),
            json!(["body", "title"]),
        ),
        (
            "missing field",
            {
                let mut b = base();
                b.as_object_mut().unwrap().remove("message");
                b
            },
            json!(["body"]),
        ),
        (
            "unknown priority",
            with("priority", json!("critical")),
            json!(["body", "priority"]),
        ),
        (
            "empty title",
            with("title", json!("   ")),
            json!(["body", "title"]),
        ),
        (
            "NUL in the title",
            with("title", json!("a\u{0}b")),
            json!(["body", "title"]),
        ),
        (
            "NUL deep in data",
            with("data", json!({"ticket": {"tags": ["ok", "x\u{0}"]}})),
            json!(["body", "data", "ticket", "tags", "1"]),
        ),
        (
            "10,001 recipients",
            with("recipients", json!(too_many)),
            json!(["body", "recipients"]),
        ),
        (
            "oversized data",
            with("data", json!({"blob": "x".repeat(17 * 1024)})),
            json!(["body", "data"]),
        ),
        (
            "data not an object",
            with("data", json!("text")),
            json!(["body", "data"]),
        ),
        (
            "script link",
            with("action_url", json!("javascript:alert(1)")),
            json!(["body", "action_url"]),
        ),
        (
            "unknown channel",
            with("channels", json!(["sms"])),
            json!(["body", "channels", "0"]),
        ),
        (
            "bad type",
            with("type", json!("Goal Assigned")),
            json!(["body", "type"]),
        ),
        (
            "two audiences",
            with("broadcast", json!(true)),
            json!(["body"]),
        ),
        (
            "empty recipient",
            with("recipients", json!([""])),
            json!(["body", "recipients", "0"]),
        ),
        (
            "bad role",
            {
                let mut b = base();
                b.as_object_mut().unwrap().remove("recipients");
                b["roles"] = json!(["a b"]);
                b
            },
            json!(["body", "roles", "0"]),
        ),
    ];
    for (name, body, expected) in cases {
        let a = app
            .call(
                Method::POST,
                "/api/notifications",
                Some(&publisher),
                Some(&body),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {}",
            a.body
        );
        assert_eq!(loc(&a), expected, "{name}: {}", a.body);
        assert!(
            !a.body["detail"][0]["msg"].as_str().unwrap().is_empty(),
            "{name} says why"
        );
    }

    let huge = format!(
        r#"{{"recipients":["a"],"type":"t","title":"t","message":"{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    assert_eq!(
        app.raw_post("/api/notifications", &publisher, huge)
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let bad_event = app
        .call(
            Method::POST,
            "/api/events",
            Some(&publisher),
            Some(&json!({"event": "has space", "broadcast": true})),
        )
        .await;
    assert_eq!(loc(&bad_event), json!(["body", "event"]));
    assert_eq!(app.stored_rows().await, (0, 0), "nothing was written");
}

#[tokio::test]
async fn bad_paths_and_queries_name_what_is_wrong() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    let a = app
        .call(
            Method::PUT,
            "/api/notifications/not-a-uuid/read",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&a), json!(["path", "notification_id"]));
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?skip=-1", "skip"),
        ("?unread_only=maybe", "unread_only"),
        ("?priority=loud", "priority"),
        ("?after=7", "after"),
    ] {
        let a = app.inbox(&alice, query).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(loc(&a), json!(["query", field]), "{query}");
    }
}

#[tokio::test]
async fn recipient_addresses_and_names_the_mailer_cannot_write_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let publisher = publisher_token();
    let emailed = |recipient: Value| {
        json!({"recipients": ["alice", recipient], "type": "goal_assigned", "title": "t",
               "message": "m", "channels": ["in_app", "email"]})
    };
    let cases = [
        (
            "CRLF in the name",
            json!({"id": "u1", "email": "u1@example.test", "name": "Ann\r\nX"}),
            "name",
        ),
        (
            "LF in the name",
            json!({"id": "u1", "email": "u1@example.test", "name": "Ann\nBcc: x@evil.test"}),
            "name",
        ),
        (
            "bell in the name",
            json!({"id": "u1", "email": "u1@example.test", "name": "Ann\u{7}"}),
            "name",
        ),
        (
            "line separator in the name",
            json!({"id": "u1", "email": "u1@example.test", "name": "Ann\u{2028}X"}),
            "name",
        ),
        (
            "no domain",
            json!({"id": "u1", "email": "broken@"}),
            "email",
        ),
        (
            "two addresses in one",
            json!({"id": "u1", "email": "a@b.test,c@evil.test"}),
            "email",
        ),
        (
            "CRLF in the address",
            json!({"id": "u1", "email": "u1@example.test\r\nBcc: x@evil.test"}),
            "email",
        ),
        (
            "bad domain",
            json!({"id": "u1", "email": "u1@exa_mple..test", "name": "Ann"}),
            "email",
        ),
    ];
    for (name, recipient, field) in cases {
        let a = app
            .call(
                Method::POST,
                "/api/notifications",
                Some(&publisher),
                Some(&emailed(recipient)),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {}",
            a.body
        );
        assert_eq!(
            loc(&a),
            json!(["body", "recipients", "1", field]),
            "{name}: {}",
            a.body
        );
        let msg = a.body["detail"][0]["msg"].as_str().unwrap();
        assert!(
            msg.starts_with(if field == "email" {
                "not a valid email address"
            } else {
                "not a valid display name"
            }),
            "{name}: {msg}"
        );
    }
    assert_eq!(app.stored_rows().await, (0, 0), "nothing was written");

    // The same rules let real names and addresses through, including non-ASCII ones.
    let good = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&publisher),
            Some(&emailed(json!({"id": "u2", "email": "jos\u{e9}+hr@b\u{fc}ro.example", "name": "Jos\u{e9} \"JJ\" O'Brien, Jr."}))),
        )
        .await;
    assert_eq!(good.status, StatusCode::CREATED, "{}", good.body);
    assert_eq!(app.stored_rows().await, (1, 2));
}

#[tokio::test]
async fn an_action_url_a_browser_would_follow_to_another_host_is_refused() {
    let app = spawn_app().await;
    let publisher = publisher_token();
    for url in [
        "/\\evil.example/x",
        "/\t/evil.example/x",
        "//evil.example/x",
        "https://evil.example/x",
        "javascript:alert(1)",
    ] {
        let a = app
            .call(
                Method::POST,
                "/api/notifications",
                Some(&publisher),
                Some(&with("action_url", json!(url))),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{url:?}");
        assert_eq!(loc(&a), json!(["body", "action_url"]), "{url:?}");
    }
    for url in ["/goals/1/respond", "http://127.0.0.1:8000/inbox"] {
        let a = app
            .call(
                Method::POST,
                "/api/notifications",
                Some(&publisher),
                Some(&with("action_url", json!(url))),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{url:?}");
    }
    assert_eq!(app.stored_rows().await, (2, 2));
}
