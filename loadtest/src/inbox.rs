//! Inbox reads as the inbox grows: one user who sees `size` notifications (personal, role and
//! broadcast, half of them read), then sequential reads through the public entry (nginx in the
//! local stack): the first page (`GET /api/notifications`), the bell's unread page
//! (`?limit=10&unread_only=true`) and `/stats`; p50 and p99 of each.

use crate::stats::Latencies;
use herald_core::secret::Secret;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Notifications the user sees.
    #[arg(long, default_value_t = 50_000)]
    size: usize,
    /// Sequential requests of each kind measured.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Where the reads go (nginx in front of the api).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    entry: String,
    /// Concurrent publishers while filling the inbox.
    #[arg(long, default_value_t = 16)]
    fill_concurrency: usize,
    /// Read the inbox an earlier run filled (its run id, printed by it) instead of filling one.
    #[arg(long)]
    reuse: Option<String>,
    /// Send the broadcast share as personal notifications instead: a broadcast reaches every
    /// user of the stack, also those of other tests that share it (the smoke run).
    #[arg(long)]
    no_broadcast: bool,
}

impl Args {
    /// A few seconds' worth, for the smoke run.
    pub fn small(entry: &str) -> Self {
        Self {
            size: 60,
            requests: 10,
            entry: entry.to_owned(),
            fill_concurrency: 4,
            reuse: None,
            no_broadcast: true,
        }
    }
}

/// The `i`-th notification of the fill: 60 % personal, 25 % for the run's role, 15 % broadcast
/// (personal instead with `no_broadcast`), over four types and four priorities.
fn body(i: usize, user: &str, role: &str, broadcast: bool) -> Value {
    let kind = ["task_due", "goal_assigned", "mention", "review_requested"][i % 4];
    let priority = ["low", "medium", "high", "urgent"][(i / 4) % 4];
    let mut b = json!({
        "type": kind,
        "priority": priority,
        "title": format!("notification {i}"),
        "message": "A message of a realistic length about a goal, a task or a review.",
    });
    match i % 20 {
        12..17 => b["roles"] = json!([role]),
        17.. if broadcast => b["broadcast"] = json!(true),
        _ => b["recipients"] = json!([user]),
    }
    b
}

pub async fn run(api: &str, secret: &Secret, args: Args) -> anyhow::Result<Value> {
    let run = args.reuse.clone().unwrap_or_else(crate::gateway::run_id);
    let (user, role) = (format!("lt-inbox-{run}"), format!("lt-role-{run}"));
    let publisher = crate::gateway::mint(secret, "loadtest", &[], Some("publish"));
    let reader = crate::gateway::mint(secret, &user, &[role.as_str()], None);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Fill: the first half, all of it read, then the second half, unread.
    let half = args.size / 2;
    let fills = if args.reuse.is_some() {
        vec![]
    } else {
        vec![0..half, half..args.size]
    };
    let broadcast = !args.no_broadcast;
    let (u, r) = (user.clone(), role.clone());
    let make: std::sync::Arc<dyn Fn(usize) -> Value + Send + Sync> =
        std::sync::Arc::new(move |i| body(i, &u, &r, broadcast));
    for range in fills {
        let first = range.start;
        fill(
            &http,
            api,
            &publisher,
            range,
            args.fill_concurrency,
            make.clone(),
        )
        .await?;
        if first == 0 {
            let resp = http
                .put(format!("{api}/api/notifications/mark-all-read"))
                .bearer_auth(&reader)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status() == 200,
                "mark-all-read answered {}",
                resp.status()
            );
        }
    }

    println!("inbox run {run}: user {user}");
    let mut out =
        json!({"scenario": "inbox", "size": args.size, "requests": args.requests, "run": run});
    for (name, path) in [
        ("list", "/api/notifications"),
        ("unread", "/api/notifications?limit=10&unread_only=true"),
        ("stats", "/api/notifications/stats"),
    ] {
        let url = format!("{}{path}", args.entry);
        let mut samples = Vec::with_capacity(args.requests);
        let mut last = Value::Null;
        for _ in 0..args.requests {
            let sent = Instant::now();
            let resp = http.get(&url).bearer_auth(&reader).send().await?;
            anyhow::ensure!(resp.status() == 200, "{path} answered {}", resp.status());
            last = resp.json().await?;
            samples.push(sent.elapsed());
        }
        let lat = Latencies::new(samples);
        println!(
            "inbox of {}: {name:<6} p50={:.2}ms p99={:.2}ms ({path})",
            args.size,
            lat.ms(50.0),
            lat.ms(99.0)
        );
        out[format!("{name}_p50_ms")] = json!(lat.ms(50.0));
        out[format!("{name}_p99_ms")] = json!(lat.ms(99.0));
        if name == "stats" {
            out["seen_total"] = last["total_count"].clone();
            out["seen_unread"] = last["unread_count"].clone();
        }
    }
    let seen = out["seen_total"].as_u64().unwrap_or(0) as usize;
    anyhow::ensure!(
        seen >= args.size,
        "the user sees {seen} notifications, fewer than the {} published",
        args.size
    );
    println!("RESULT {out}");
    Ok(out)
}

/// Publishes `body(i)` for every `i` of `range`, `concurrency` at a time.
async fn fill(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
    body: std::sync::Arc<dyn Fn(usize) -> Value + Send + Sync>,
) -> anyhow::Result<()> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(range.start));
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, next) = (http.clone(), next.clone());
            let (url, token) = (format!("{api}/api/notifications"), token.to_owned());
            let (body, end) = (body.clone(), range.end);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= end {
                        return Ok::<_, anyhow::Error>(());
                    }
                    crate::gateway::post(&http, url.clone(), &token, body(i)).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}
