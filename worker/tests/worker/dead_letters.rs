//! Dead letters: a job the mailer can never send is `failed` with its reason after one attempt
//! while the others go out, a job never runs past its attempts, and the running worker survives
//! all of it. The api refuses such recipients, so the poisoned rows are written straight into
//! Postgres (as an older api, or a hand-written row, could have left them).

use crate::helpers::*;
use chrono::Utc;
use herald_worker::startup::Worker;
use serde_json::json;
use std::time::{Duration, Instant};

/// (user, status, attempts, failure_reason, last_error) of every job, oldest first.
async fn outcomes(s: &Stack) -> Vec<(String, String, i32, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT user_id, status, attempts, failure_reason, last_error FROM email_jobs ORDER BY id",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap()
}

/// Runs `update` (an UPDATE of email_jobs with `$1` for the user id) on `user`'s one job.
async fn poison(s: &Stack, user: &str, update: &'static str) {
    let done = sqlx::query(update)
        .bind(user)
        .execute(&s.pool)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

/// Waits until `smtp` holds `n` messages and no job is pending (each is marked right after its
/// send); panics at `deadline`.
async fn delivered(s: &Stack, smtp: &Smtp, n: usize, deadline: Instant, what: &str) {
    loop {
        let got = smtp.messages().len();
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM email_jobs WHERE status = 'pending'")
                .fetch_one(&s.pool)
                .await
                .unwrap();
        if got >= n && pending == 0 {
            assert_eq!(got, n, "{what}: exactly {n} messages");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {got} of {n} messages, {pending} jobs pending by the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The dead-letter query documented in docs/email.md, as written there.
fn documented_query() -> String {
    let doc = include_str!("../../../docs/email.md");
    let section = &doc[doc
        .find("## Dead letters")
        .expect("docs/email.md has the section")..];
    let start = section.find("```sql\n").expect("with an SQL block") + "```sql\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_owned()
}

#[tokio::test]
async fn poisoned_jobs_are_dead_lettered_and_the_running_worker_delivers_the_rest_within_two_polls()
{
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    // Published fine, then poisoned: a name lettre panicked on, an address it cannot parse, and
    // two addresses in one.
    for user in ["ann", "bob", "cat"] {
        s.email(user, "Poisoned", json!({})).await;
    }
    let name = "UPDATE email_jobs SET name = E'Ann\\r\\nX' WHERE user_id = $1";
    poison(&s, "ann", name).await;
    let address = "UPDATE email_jobs SET email = 'broken@' WHERE user_id = $1";
    poison(&s, "bob", address).await;
    let two = "UPDATE email_jobs SET email = 'a@b.test,c@evil.test' WHERE user_id = $1";
    poison(&s, "cat", two).await;

    let mut config = s.worker_config(Some(&smtp), "runner");
    config.poll_ms = 1_000;
    let poll = Duration::from_millis(config.poll_ms);
    let worker = Worker::build(&config).await.unwrap();
    let outbox = worker.outbox.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until_stopped(listener, async {
        let _ = stopped.await;
    }));

    for i in 0..10 {
        s.email(&format!("good{i}"), "Still delivered", json!({}))
            .await;
    }
    delivered(&s, &smtp, 10, Instant::now() + 2 * poll, "ten good emails").await;

    let jobs = outcomes(&s).await;
    for (user, field) in [("ann", "name"), ("bob", "email"), ("cat", "email")] {
        let (_, status, attempts, reason, error) =
            jobs.iter().find(|j| j.0 == user).unwrap().clone();
        assert_eq!(
            (status.as_str(), attempts, reason.as_deref()),
            ("failed", 1, Some("bad_address")),
            "{user}: dead-lettered after one attempt"
        );
        let error = error.unwrap();
        assert!(
            error.starts_with(&format!("recipient {field}: ")),
            "{user}: {error}"
        );
    }
    let good: Vec<_> = jobs.iter().filter(|j| j.0.starts_with("good")).collect();
    assert_eq!(good.len(), 10);
    assert!(good.iter().all(|j| j.1 == "sent" && j.2 == 1), "{good:?}");
    let to: Vec<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| m.lines().find(|l| l.starts_with("To:")).map(str::to_owned))
        .collect();
    assert!(
        to.iter().all(|l| l.contains("@example.com>")),
        "only the good recipients got mail: {to:?}"
    );

    // The worker lives on: its loop sends the next email, and it answers /healthz.
    assert!(!running.is_finished(), "the worker is still running");
    s.email("late", "After the poison", json!({})).await;
    delivered(&s, &smtp, 11, Instant::now() + 2 * poll, "the next email").await;
    let health = reqwest::get(format!("http://{ops}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    // Visible: by reason in the metrics, and in the query docs/email.md gives operators.
    let metrics = reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"herald_worker_emails_failed_total{reason="bad_address"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_worker_emails_sent_total 11"),
        "{metrics}"
    );
    let listed: Vec<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, failure_reason FROM ({}) AS dead",
        documented_query().trim().trim_end_matches(';')
    )))
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|(_, r)| r.as_deref() == Some("bad_address"))
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
    assert_eq!(outbox.metrics.failed.with_label_values(&["panic"]).get(), 0);
}

#[tokio::test]
async fn in_a_digest_only_the_poisoned_job_is_dead_lettered() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    let w = s.worker(Some(&smtp), "w").await;
    assert_eq!(
        s.put(
            "dana",
            "/api/notifications/preferences",
            Some(json!({"digest": "hourly"}))
        )
        .await,
        200
    );
    for title in ["First", "Poisoned", "Third"] {
        s.email("dana", title, json!({})).await;
    }
    sqlx::query(
        "UPDATE email_jobs SET name = E'Dana\\u0007' FROM notifications n
          WHERE n.id = email_jobs.notification_id AND n.title = 'Poisoned'",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    let t0 = Utc::now();
    assert_eq!(outbox(&w).pass(t0).await.unwrap().deferred, 3);
    let p = outbox(&w).pass(at(t0, 61)).await.unwrap();
    assert_eq!((p.digests, p.sent, p.failed), (1, 1, 1), "{p:?}");
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert!(
        mail[0].contains("Subject: 2 new notifications") && !mail[0].contains("Poisoned"),
        "{}",
        mail[0]
    );
    let statuses: Vec<(String, Option<String>)> =
        outcomes(&s).await.into_iter().map(|j| (j.1, j.3)).collect();
    assert_eq!(
        statuses,
        [
            ("sent".to_owned(), None),
            ("failed".to_owned(), Some("bad_address".to_owned())),
            ("sent".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn a_job_is_attempted_at_most_max_attempts_times_even_when_no_attempt_finishes() {
    let s = stack().await;
    let smtp = Smtp::start(&[]);
    s.email("eve", "Crashes its workers", json!({})).await;
    // Each worker claims the job and dies before recording an outcome (what a job that killed
    // its process would do); the next one takes it when the lease ends.
    let t0 = Utc::now();
    let lease = chrono::Duration::seconds(61);
    for attempt in 0..5 {
        let dying = s.worker(Some(&smtp), &format!("dying{attempt}")).await;
        assert_eq!(
            outbox(&dying)
                .claim_only(t0 + lease * attempt)
                .await
                .unwrap(),
            1
        );
    }
    let last = s.worker(Some(&smtp), "last").await;
    assert_eq!(
        outbox(&last).claim_only(t0 + lease * 5).await.unwrap(),
        0,
        "five attempts are the maximum"
    );
    let p = outbox(&last).pass(t0 + lease * 5).await.unwrap();
    assert_eq!((p.sent, p.failed), (0, 1));
    let (_, status, attempts, reason, error) = outcomes(&s).await.remove(0);
    assert_eq!(
        (status.as_str(), attempts, reason.as_deref()),
        ("failed", 5, Some("attempts_exhausted"))
    );
    assert!(error.unwrap().starts_with("gave up after 5 attempts"));
    assert!(smtp.messages().is_empty());
    assert_eq!(
        outbox(&last).pass(t0 + lease * 9).await.unwrap(),
        Default::default()
    );
    assert_eq!(outcomes(&s).await[0].2, 5, "never past the maximum");
}

#[tokio::test]
async fn transient_failures_end_in_a_dead_letter_at_exactly_max_attempts() {
    let s = stack().await;
    let smtp = Smtp::start(&["--tempfail", "100"]);
    let w = s.worker(Some(&smtp), "w").await;
    s.email("fay", "Always busy", json!({})).await;
    let t0 = Utc::now();
    for i in 0..5 {
        let p = outbox(&w).pass(at(t0, 120 * i)).await.unwrap();
        let expected = if i < 4 { (1, 0) } else { (0, 1) };
        assert_eq!((p.retried, p.failed), expected, "attempt {}", i + 1);
    }
    assert_eq!(
        outbox(&w).pass(at(t0, 1_200)).await.unwrap(),
        Default::default()
    );
    let (_, status, attempts, reason, error) = outcomes(&s).await.remove(0);
    assert_eq!(
        (status.as_str(), attempts, reason.as_deref()),
        ("failed", 5, Some("attempts_exhausted"))
    );
    assert!(error.unwrap().contains("451"));
    let metrics = outbox(&w).metrics.render();
    assert!(
        metrics.contains(r#"herald_worker_emails_failed_total{reason="attempts_exhausted"} 1"#),
        "{metrics}"
    );
}
