//! Sending: what arrives, retries on 4xx, failure on 5xx, two workers, a dead worker's lease.

use crate::helpers::*;
use chrono::Utc;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn an_email_arrives_with_both_parts_the_subject_recipient_link_and_message_id() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    let w = s.worker(Some(&smtp), "w1").await;
    let created = s
        .email("alice", "New Goal Assigned to You", json!({}))
        .await;
    let pass = outbox(&w).pass(Utc::now()).await.unwrap();
    assert_eq!(pass.sent, 1);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    assert!(m.contains("Subject: New Goal Assigned to You"), "{m}");
    assert!(
        m.contains("To: \"User alice\" <alice@example.com>")
            || m.contains("To: User alice <alice@example.com>"),
        "{m}"
    );
    assert!(m.contains("multipart/alternative"), "{m}");
    assert!(
        m.contains("Content-Type: text/plain") && m.contains("Content-Type: text/html"),
        "{m}"
    );
    assert!(
        m.contains("http://127.0.0.1:8000/goals/42/respond"),
        "the link is resolved against the public URL: {m}"
    );
    assert!(m.contains("About New Goal Assigned to You") && m.contains("John Doe"));
    let id = created["id"].as_str().unwrap();
    assert!(m.contains(&format!("Message-ID: <{id}.1@herald>")), "{m}");
    assert!(
        m.contains("List-Unsubscribe: <http://127.0.0.1:8000/#preferences>"),
        "{m}"
    );
    assert_eq!(s.jobs().await, [("sent".to_owned(), 1, None)]);
    assert_eq!(
        outbox(&w).pass(Utc::now()).await.unwrap().sent,
        0,
        "sent once"
    );
}

#[tokio::test]
async fn three_451s_then_success_deliver_exactly_once() {
    let s = stack().await;
    let smtp = Smtp::start(&["--tempfail", "3"]);
    let w = s.worker(Some(&smtp), "w1").await;
    s.email("alice", "Retry me", json!({})).await;
    let t0 = Utc::now();
    let mut retried = 0;
    // Backoff never exceeds an hour, so a pass two hours later always finds the job due.
    for i in 0..4 {
        let p = outbox(&w).pass(at(t0, 120 * i)).await.unwrap();
        retried += p.retried;
        if i < 3 {
            assert_eq!((p.sent, p.retried), (0, 1), "attempt {}", i + 1);
            let (status, _, error) = &s.jobs().await[0];
            assert_eq!(status, "pending");
            assert!(error.as_deref().unwrap_or("").contains("451"), "{error:?}");
        } else {
            assert_eq!(p.sent, 1);
        }
    }
    assert_eq!(retried, 3);
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(s.jobs().await[0].0, "sent");
    assert_eq!(s.jobs().await[0].1, 4, "four attempts");
}

#[tokio::test]
async fn a_550_is_recorded_as_a_failure_with_its_reason_and_never_retried() {
    let s = stack().await;
    let smtp = Smtp::start(&["--reject"]);
    let w = s.worker(Some(&smtp), "w1").await;
    s.email("ghost", "Nobody home", json!({})).await;
    let t0 = Utc::now();
    assert_eq!(outbox(&w).pass(t0).await.unwrap().failed, 1);
    let (status, attempts, error) = s.jobs().await.remove(0);
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(error.unwrap().contains("550"));
    assert_eq!(
        outbox(&w).pass(at(t0, 600)).await.unwrap(),
        Default::default(),
        "no retry"
    );
    assert!(smtp.messages().is_empty());
    let metrics = outbox(&w).metrics.render();
    assert!(
        metrics.contains(r#"herald_worker_emails_failed_total{reason="permanent"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn two_workers_on_one_queue_never_send_the_same_message_twice() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    let recipients: Vec<_> = (0..60)
        .map(|i| json!({"id": format!("u{i}"), "email": format!("u{i}@example.com")}))
        .collect();
    s.publish(json!({"recipients": recipients, "type": "system_announcement", "title": "All hands", "message": "", "channels": ["email"]})).await;
    let (a, b) = (
        s.worker(Some(&smtp), "a").await,
        s.worker(Some(&smtp), "b").await,
    );
    let now = Utc::now();
    let mut sent = 0;
    for _ in 0..10 {
        let (pa, pb) = tokio::join!(outbox(&a).pass(now), outbox(&b).pass(now));
        sent += pa.unwrap().sent + pb.unwrap().sent;
    }
    assert_eq!(sent, 60);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 60, "each recipient exactly once");
    let ids: HashSet<String> = mail
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), 60, "distinct messages");
    let to: HashSet<String> = mail
        .iter()
        .filter_map(|m| m.lines().find(|l| l.starts_with("To:")).map(str::to_owned))
        .collect();
    assert_eq!(to.len(), 60, "distinct recipients");
}

#[tokio::test]
async fn a_killed_workers_claimed_jobs_are_sent_by_another_after_the_lease() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    for u in ["a", "b", "c"] {
        s.email(u, "Leased", json!({})).await;
    }
    let t0 = Utc::now();
    let dead = s.worker(Some(&smtp), "dead").await;
    assert_eq!(
        outbox(&dead).claim_only(t0).await.unwrap(),
        3,
        "claimed, then the worker died"
    );
    drop(dead);
    let alive = s.worker(Some(&smtp), "alive").await;
    assert_eq!(
        outbox(&alive).pass(t0).await.unwrap().sent,
        0,
        "still leased"
    );
    let p = outbox(&alive)
        .pass(t0 + chrono::Duration::seconds(61))
        .await
        .unwrap();
    assert_eq!(p.sent, 3, "picked up after the 60 s lease");
    assert_eq!(smtp.messages().len(), 3);
}

#[tokio::test]
async fn without_smtp_the_email_is_written_as_a_readable_eml_file() {
    let s = stack().await;
    let w = s.worker(None, "files").await;
    s.email("alice", "To a file", json!({})).await;
    assert_eq!(outbox(&w).pass(Utc::now()).await.unwrap().sent, 1);
    assert_eq!(s.jobs().await[0].0, "sent");
    let files: Vec<_> = std::fs::read_dir(s.mail_dir("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = decode_qp(&std::fs::read_to_string(&files[0]).unwrap());
    assert!(
        eml.contains("Subject: To a file")
            && eml.contains("To: \"User alice\" <alice@example.com>"),
        "{eml}"
    );
    assert!(eml.contains("http://127.0.0.1:8000/goals/42/respond"));
}
