//! The `publish` scenario: how long the api takes to acknowledge (commit) a single-recipient
//! notification, and how many inbox rows per second a large-recipient notification writes.

use crate::stats::Latencies;
use herald_core::secret::Secret;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Single-recipient publishes, sent one after another.
    #[arg(long, default_value_t = 2_000)]
    count: usize,
    /// Concurrent publishers for the single-recipient part.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Recipients of each fan-out notification.
    #[arg(long, default_value_t = 10_000)]
    fanout_recipients: usize,
    /// How many fan-out notifications to publish.
    #[arg(long, default_value_t = 10)]
    fanout_count: usize,
    /// After the single-recipient part, read every user's inbox with `?after=` and check it
    /// returns exactly what was acknowledged after the user's first position, in order.
    #[arg(long)]
    verify: bool,
}

impl Args {
    /// A few seconds' worth, for the smoke run.
    pub fn small() -> Self {
        Self {
            count: 20,
            concurrency: 2,
            fanout_recipients: 200,
            fanout_count: 1,
            verify: true,
        }
    }
}

pub async fn run(api: &str, secret: &Secret, args: Args) -> anyhow::Result<()> {
    let token = crate::gateway::mint(secret, "loadtest", &[], Some("publish"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{api}/api/notifications");

    // Single recipient: acknowledged = committed.
    let run = crate::gateway::run_id();
    let per_task = args.count.div_ceil(args.concurrency.max(1));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|t| {
            let (http, url, token, run) = (http.clone(), url.clone(), token.clone(), run.clone());
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_task);
                let mut acked = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let user = format!("lt-{run}-{}", (t * per_task + i) % 1000);
                    let body = json!({"recipients": [user],
                        "type": "loadtest", "priority": "low", "title": "load", "message": "m"});
                    let sent = Instant::now();
                    let created = crate::gateway::post(&http, url.clone(), &token, body).await?;
                    samples.push(sent.elapsed());
                    let id = created["id"].as_str().unwrap_or_default().to_owned();
                    let seq = created["notification"]["seq"].as_i64().unwrap_or_default();
                    acked.push((user, id, seq));
                }
                Ok::<_, anyhow::Error>((samples, acked))
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut acked = Vec::new();
    for t in tasks {
        let (s, a) = t.await??;
        samples.extend(s);
        acked.extend(a);
    }
    let elapsed = started.elapsed();
    if args.verify {
        let users = verify_after(&http, api, secret, acked).await?;
        println!(
            "verified: every acknowledged notification read back exactly once, in order, with ?after= ({users} users)"
        );
    }
    let lat = Latencies::new(samples);
    println!(
        "single-recipient publish: n={} concurrency={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms rate={:.0}/s",
        lat.len(),
        args.concurrency,
        lat.ms(50.0),
        lat.ms(90.0),
        lat.ms(99.0),
        lat.ms(100.0),
        lat.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "RESULT {}",
        json!({"scenario": "publish-single", "n": lat.len(), "concurrency": args.concurrency,
               "p50_ms": lat.ms(50.0), "p90_ms": lat.ms(90.0), "p99_ms": lat.ms(99.0),
               "rate_per_s": lat.len() as f64 / elapsed.as_secs_f64()})
    );

    // Fan-out: one notification to many recipients.
    let recipients: Vec<String> = (0..args.fanout_recipients)
        .map(|i| format!("lt-fan-{i}"))
        .collect();
    let mut fan = Vec::with_capacity(args.fanout_count);
    for _ in 0..args.fanout_count {
        let body = json!({"recipients": recipients, "type": "loadtest", "title": "fan-out", "message": "m"});
        let sent = Instant::now();
        crate::gateway::post(&http, url.clone(), &token, body).await?;
        fan.push(sent.elapsed());
    }
    let fan = Latencies::new(fan);
    let rows_per_s = args.fanout_recipients as f64 / fan.percentile(50.0).as_secs_f64();
    println!(
        "fan-out publish: recipients={} n={} p50={:.1}ms max={:.1}ms => {:.0} inbox rows/s (median)",
        args.fanout_recipients,
        fan.len(),
        fan.ms(50.0),
        fan.ms(100.0),
        rows_per_s
    );
    println!(
        "RESULT {}",
        json!({"scenario": "publish-fanout", "recipients": args.fanout_recipients, "n": fan.len(),
               "p50_ms": fan.ms(50.0), "max_ms": fan.ms(100.0), "rows_per_s": rows_per_s})
    );
    Ok(())
}

/// For each user: everything acknowledged after their first position, read back with `?after=`
/// (paged), must be exactly those notifications, once each, in increasing position. Returns the
/// number of users checked.
async fn verify_after(
    http: &reqwest::Client,
    api: &str,
    secret: &Secret,
    acked: Vec<(String, String, i64)>,
) -> anyhow::Result<usize> {
    let mut by_user: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    for (user, id, seq) in acked {
        by_user.entry(user).or_default().push((seq, id));
    }
    for (user, mut sent) in by_user.iter_mut().map(|(u, s)| (u, std::mem::take(s))) {
        sent.sort();
        let token = crate::gateway::mint(secret, user, &[], None);
        let mut after = sent[0].1.clone();
        let mut got: Vec<(i64, String)> = Vec::new();
        loop {
            let page: Value = http
                .get(format!("{api}/api/notifications?after={after}&limit=100"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for n in page["notifications"].as_array().into_iter().flatten() {
                got.push((
                    n["seq"].as_i64().unwrap_or_default(),
                    n["id"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            if let Some(last) = got.last() {
                after = last.1.clone();
            }
            if page["has_more"] != true {
                break;
            }
        }
        anyhow::ensure!(
            got == sent[1..],
            "{user}: ?after= returned {} notifications, {} were acknowledged after the first (or out of order)",
            got.len(),
            sent.len() - 1
        );
    }
    Ok(by_user.len())
}
