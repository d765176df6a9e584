//! Preferences and timing: email off, muted types, hourly digests (urgent bypasses them), and
//! email-if-unseen.

use crate::helpers::*;
use chrono::Utc;
use herald_worker::jobs::period_end;
use serde_json::json;

#[tokio::test]
async fn email_off_and_muted_types_send_nothing() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    let w = s.worker(Some(&smtp), "w").await;
    assert_eq!(
        s.put(
            "off",
            "/api/notifications/preferences",
            Some(json!({"email_enabled": false}))
        )
        .await,
        200
    );
    assert_eq!(
        s.put(
            "muter",
            "/api/notifications/preferences",
            Some(json!({"muted_types": ["goal_assigned"]}))
        )
        .await,
        200
    );
    s.email("off", "Not wanted", json!({})).await;
    s.email("muter", "Muted", json!({})).await;
    s.email("muter", "Not muted", json!({"type": "review_due_soon"}))
        .await;
    let p = outbox(&w).pass(Utc::now()).await.unwrap();
    assert_eq!((p.sent, p.skipped), (1, 2));
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("Subject: Not muted"));
}

#[tokio::test]
async fn an_hourly_digest_gathers_pending_emails_into_one_message_at_the_hours_end() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    let w = s.worker(Some(&smtp), "w").await;
    assert_eq!(
        s.put(
            "alice",
            "/api/notifications/preferences",
            Some(json!({"digest": "hourly"}))
        )
        .await,
        200
    );
    for t in ["First", "Second", "Third"] {
        s.email("alice", t, json!({})).await;
    }
    s.email("alice", "Server down", json!({"priority": "urgent"}))
        .await;
    let t0 = Utc::now();
    let p = outbox(&w).pass(t0).await.unwrap();
    assert_eq!((p.sent, p.deferred), (1, 3), "urgent bypasses the digest");
    assert_eq!(
        outbox(&w).pass(at(t0, 1)).await.unwrap().sent,
        0,
        "nothing before the hour ends"
    );
    let end = period_end(t0, "hourly");
    let p = outbox(&w).pass(end).await.unwrap();
    assert_eq!(p.digests, 1);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 2);
    assert!(mail[0].contains("Subject: Server down"));
    let digest = &mail[1];
    assert!(digest.contains("Subject: 3 new notifications"), "{digest}");
    for t in ["First", "Second", "Third"] {
        assert!(digest.contains(t), "{t} is in the digest");
    }
    assert_eq!(
        outbox(&w).pass(at(end, 120)).await.unwrap(),
        Default::default(),
        "sent once"
    );
}

#[tokio::test]
async fn email_if_unseen_sends_only_what_was_not_seen_in_time() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    let w = s.worker(Some(&smtp), "w").await;
    let seen = s
        .email(
            "alice",
            "Seen in the app",
            json!({"email_if_unseen_minutes": 5}),
        )
        .await;
    s.email(
        "alice",
        "Never looked at",
        json!({"email_if_unseen_minutes": 5}),
    )
    .await;
    let read = s
        .email(
            "alice",
            "Read in the app",
            json!({"email_if_unseen_minutes": 5}),
        )
        .await;
    let t0 = Utc::now();
    assert_eq!(
        outbox(&w).pass(t0).await.unwrap(),
        Default::default(),
        "not due for 5 minutes"
    );
    // A tab acknowledged one (what `ack:<id>` on the WebSocket does) and the user read another.
    assert_eq!(
        s.put(
            "alice",
            &format!("/api/notifications/{}/seen", seen["id"].as_str().unwrap()),
            None
        )
        .await,
        200
    );
    assert_eq!(
        s.put(
            "alice",
            &format!("/api/notifications/{}/read", read["id"].as_str().unwrap()),
            None
        )
        .await,
        200
    );
    let p = outbox(&w).pass(at(t0, 6)).await.unwrap();
    assert_eq!((p.sent, p.skipped), (1, 2));
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("Subject: Never looked at"));
}
