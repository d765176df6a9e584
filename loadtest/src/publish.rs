//! The `publish` scenario: how long the api takes to acknowledge (commit) a single-recipient
//! notification, and how many inbox rows per second a large-recipient notification writes.

use crate::stats::Latencies;
use herald_core::secret::Secret;
use serde_json::json;
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
}

impl Args {
    /// A few seconds' worth, for the smoke run.
    pub fn small() -> Self {
        Self {
            count: 20,
            concurrency: 2,
            fanout_recipients: 200,
            fanout_count: 1,
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
    let per_task = args.count.div_ceil(args.concurrency.max(1));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|t| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let body = json!({"recipients": [format!("lt-user-{}", (t * per_task + i) % 1000)],
                        "type": "loadtest", "priority": "low", "title": "load", "message": "m"});
                    let sent = Instant::now();
                    let resp = http.post(&url).bearer_auth(&token).json(&body).send().await?;
                    anyhow::ensure!(resp.status() == 201, "publish answered {}", resp.status());
                    samples.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(samples)
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let elapsed = started.elapsed();
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
        let resp = http
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == 201,
            "fan-out publish answered {}",
            resp.status()
        );
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
