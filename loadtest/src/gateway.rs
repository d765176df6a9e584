//! Scenarios against a gateway: `hold` (idle connections: connect rate, RSS per connection),
//! `fanout` (one event to every connection of a role: deliveries per second of gateway CPU and
//! last-recipient latency) and `targeted` (per-user notifications through the api at a fixed
//! rate: publish-to-receive latency, loss).

use crate::clients::{self, Ws};
use crate::stats::Latencies;
use futures::StreamExt;
use herald_core::auth::{TokenClaims, mint_hs256, now_unix};
use herald_core::secret::Secret;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(clap::Args, Clone)]
pub struct Target {
    /// Gateway address (host:port), direct or through nginx.
    #[arg(long, default_value = "127.0.0.1:8011")]
    gateway: SocketAddr,
    /// The gateway's pid, to read its RSS and CPU time from /proc.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Connections to open.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Source addresses 127.0.0.1..=N to spread connections over.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

fn mint(secret: &Secret, sub: &str, roles: &[&str], scope: Option<&str>) -> String {
    mint_hs256(
        secret,
        &TokenClaims {
            sub: sub.to_owned(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            name: None,
            email: None,
            scope: scope.map(str::to_owned),
            exp: now_unix() + 3_600,
            iss: None,
            aud: None,
        },
    )
}

pub async fn hold(secret: &Secret, t: Target, hold_secs: u64) -> anyhow::Result<()> {
    let before = t.gateway_pid.map(clients::rss_kib).transpose()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (conns, rate) = clients::connect_many(
        t.gateway,
        t.connections,
        t.sources,
        t.connect_concurrency,
        |i| mint(secret, &format!("hold-{run}-{i}"), &[], None),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let after = t.gateway_pid.map(clients::rss_kib).transpose()?;
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some((a.saturating_sub(b)) as f64 * 1024.0 / conns.len() as f64),
        _ => None,
    };
    println!(
        "hold: connections={} connect_rate={:.0}/s gateway_rss_before={:?}KiB after={:?}KiB per_connection={}",
        conns.len(),
        rate,
        before,
        after,
        per_conn
            .map(|b| format!("{:.0} B", b))
            .unwrap_or_else(|| "n/a (give --gateway-pid)".into())
    );
    println!(
        "RESULT {}",
        json!({"scenario": "hold", "connections": conns.len(), "connect_rate": rate, "rss_before_kib": before, "rss_after_kib": after, "bytes_per_connection": per_conn})
    );
    drop(conns);
    Ok(())
}

/// Reads every connection; sends (connection index, arrival) for each event frame.
fn spawn_readers(conns: Vec<Ws>, tx: mpsc::UnboundedSender<Instant>) {
    for ws in conns {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (_, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                if msg.is_text() && tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
    }
}

pub async fn fanout(api: &str, secret: &Secret, t: Target, rounds: usize) -> anyhow::Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let role = format!("lt{}", &run[..12]);
    let (conns, rate) = clients::connect_many(
        t.gateway,
        t.connections,
        t.sources,
        t.connect_concurrency,
        |i| mint(secret, &format!("fan-{run}-{i}"), &[role.as_str()], None),
    )
    .await?;
    let n = conns.len();
    let (tx, mut rx) = mpsc::unbounded_channel();
    spawn_readers(conns, tx);
    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    let mut last = Vec::with_capacity(rounds);
    let mut cpu = 0.0;
    for r in 0..rounds {
        let cpu_before = t.gateway_pid.map(clients::cpu_seconds).transpose()?;
        let sent = Instant::now();
        let resp = http
            .post(format!("{api}/api/events"))
            .bearer_auth(&publisher)
            .json(&json!({"event": "fanout", "roles": [role], "data": {"round": r}}))
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 202, "event answered {}", resp.status());
        let mut got = 0;
        let mut latest = sent;
        while got < n {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("readers ended"))?;
            latest = latest.max(at);
            got += 1;
        }
        last.push(latest - sent);
        if let (Some(b), Some(pid)) = (cpu_before, t.gateway_pid) {
            cpu += clients::cpu_seconds(pid)? - b;
        }
    }
    let lat = Latencies::new(last);
    let deliveries = (n * rounds) as f64;
    let per_cpu_s = if cpu > 0.0 {
        Some(deliveries / cpu)
    } else {
        None
    };
    println!(
        "fanout: connections={n} rounds={rounds} connect_rate={rate:.0}/s last_recipient p50={:.1}ms p99={:.1}ms max={:.1}ms gateway_cpu={cpu:.2}s deliveries_per_cpu_s={}",
        lat.ms(50.0),
        lat.ms(99.0),
        lat.ms(100.0),
        per_cpu_s
            .map(|d| format!("{d:.0}"))
            .unwrap_or_else(|| "n/a (give --gateway-pid)".into())
    );
    println!(
        "RESULT {}",
        json!({"scenario": "fanout", "connections": n, "rounds": rounds, "last_p50_ms": lat.ms(50.0), "last_p99_ms": lat.ms(99.0), "gateway_cpu_s": cpu, "deliveries_per_cpu_s": per_cpu_s})
    );
    Ok(())
}

pub async fn targeted(
    api: &str,
    secret: &Secret,
    t: Target,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<String> = (0..t.connections)
        .map(|i| format!("tg-{run}-{i}"))
        .collect();
    let (conns, _) = clients::connect_many(
        t.gateway,
        users.len(),
        t.sources,
        t.connect_concurrency,
        |i| mint(secret, &users[i], &[], None),
    )
    .await?;
    // Each frame carries its send time in `data.sent_us` (µs since `epoch`).
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Duration>();
    for ws in conns {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (_, mut stream) = ws.split();
            while let Some(Ok(msg)) = stream.next().await {
                let Ok(text) = msg.to_text() else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                    continue;
                };
                if let Some(us) = v["notification"]["data"]["sent_us"].as_u64() {
                    let _ = tx.send(epoch.elapsed().saturating_sub(Duration::from_micros(us)));
                }
            }
        });
    }
    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    let total = rate as u64 * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut errors = 0u64;
    let (etx, mut erx) = mpsc::unbounded_channel::<bool>();
    for i in 0..total {
        tick.tick().await;
        let (http, publisher, etx, url) = (
            http.clone(),
            publisher.clone(),
            etx.clone(),
            format!("{api}/api/notifications"),
        );
        let user = users[i as usize % users.len()].clone();
        let sent_us = epoch.elapsed().as_micros() as u64;
        tokio::spawn(async move {
            let ok = http
                .post(url)
                .bearer_auth(&publisher)
                .json(&json!({"recipients": [user], "type": "loadtest", "title": "t", "message": "", "data": {"sent_us": sent_us}}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 201);
            let _ = etx.send(ok);
        });
    }
    drop(etx);
    while let Some(ok) = erx.recv().await {
        if !ok {
            errors += 1;
        }
    }
    let mut samples = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (samples.len() as u64) < total - errors && Instant::now() < deadline {
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            samples.push(d);
        }
    }
    let received = samples.len() as u64;
    let lat = Latencies::new(samples);
    println!(
        "targeted: rate={rate}/s sent={total} errors={errors} received={received} lost={} publish_to_receive p50={:.2}ms p90={:.2}ms p99={:.2}ms p99.9={:.2}ms",
        total - errors - received,
        lat.ms(50.0),
        lat.ms(90.0),
        lat.ms(99.0),
        lat.ms(99.9)
    );
    println!(
        "RESULT {}",
        json!({"scenario": "targeted", "rate": rate, "sent": total, "errors": errors, "received": received, "p50_ms": lat.ms(50.0), "p90_ms": lat.ms(90.0), "p99_ms": lat.ms(99.0), "p999_ms": lat.ms(99.9)})
    );
    Ok(())
}
