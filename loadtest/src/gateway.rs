//! Scenarios against gateways (Herald's, or a peer speaking the same protocol): `hold` (idle
//! connections: connect rate, RSS per connection), `fanout` (one event to every connection of a
//! role: last-recipient latency, deliveries per second of gateway CPU), `targeted` (per-user
//! notifications through the api at a fixed rate: publish-to-receive latency, loss),
//! `slow-client` (one client stops reading: it is cut off, the others lose nothing) and
//! `reconnect-storm` (a gateway is killed: time until every client is back and resumed, loss).
//! Each returns a report; `main` prints it as a line of text and a JSON line.

use crate::clients::{self, Protocol, Seen};
use crate::stats::Latencies;
use herald_core::auth::{TokenClaims, mint_hs256};
use herald_core::secret::Secret;
use serde::Serialize;
use serde_json::json;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(clap::Args, Clone)]
pub struct Target {
    /// Gateway address (host:port), direct or through nginx; several (comma-separated or
    /// repeated) spread the connections round-robin.
    #[arg(long, default_value = "127.0.0.1:8011", value_delimiter = ',')]
    pub gateway: Vec<SocketAddr>,
    /// The gateways' pids, to read their RSS and CPU time from /proc (summed over all).
    #[arg(long, value_delimiter = ',')]
    pub gateway_pid: Vec<u32>,
    /// Connections to open.
    #[arg(long, default_value_t = 1_000)]
    pub connections: usize,
    /// Source addresses to spread connections over: 127.0.0.F..F+N-1 (F = --first-source).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    #[arg(long, default_value_t = 1)]
    pub first_source: u8,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// `raw` (the WebSocket protocol) or `socketio`.
    #[arg(long, default_value = "raw")]
    pub protocol: String,
}

impl Target {
    /// The protocol, on `namespace` when it is Socket.IO.
    pub fn protocol(&self, namespace: &str) -> Protocol {
        if self.protocol == "socketio" {
            Protocol::SocketIo(namespace.to_owned())
        } else {
            Protocol::Raw
        }
    }

    /// The first gateway (scenarios that need just one connection).
    pub fn first(&self) -> SocketAddr {
        self.gateway[0]
    }

    /// Opens `n` connections over every gateway and source address.
    pub async fn connect(
        &self,
        n: usize,
        protocol: &Protocol,
        token_for: impl Fn(usize) -> String,
    ) -> anyhow::Result<(Vec<clients::Ws>, f64)> {
        clients::connect_many(
            &self.gateway,
            n,
            (self.first_source, self.sources),
            self.connect_concurrency,
            protocol,
            token_for,
        )
        .await
    }

    /// CPU seconds used by all the gateways, if their pids are known.
    pub fn cpu_seconds(&self) -> anyhow::Result<Option<f64>> {
        self.sum_over_pids(clients::cpu_seconds)
    }

    /// Resident memory of all the gateways, if their pids are known.
    pub fn rss_kib(&self) -> anyhow::Result<Option<u64>> {
        self.sum_over_pids(clients::rss_kib)
    }

    fn sum_over_pids<T: std::iter::Sum>(
        &self,
        read: impl Fn(u32) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        if self.gateway_pid.is_empty() {
            return Ok(None);
        }
        self.gateway_pid
            .iter()
            .map(|p| read(*p))
            .sum::<anyhow::Result<T>>()
            .map(Some)
    }
}

pub fn mint(secret: &Secret, sub: &str, roles: &[&str], scope: Option<&str>) -> String {
    mint_hs256(
        secret,
        &TokenClaims::new(sub, roles.iter().copied(), scope, 3_600),
    )
}

pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// POSTs `body` as JSON with a bearer token; fails unless the answer is 2xx; its JSON body.
pub async fn post(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let resp = http.post(url).bearer_auth(token).json(&body).send().await?;
    let status = resp.status();
    anyhow::ensure!(
        status.is_success(),
        "{} answered {status}",
        resp.url().path()
    );
    Ok(resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[derive(Debug, Serialize)]
pub struct HoldReport {
    pub connections: usize,
    pub connect_rate: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub bytes_per_connection: Option<f64>,
}

pub async fn hold(secret: &Secret, t: &Target, hold_secs: u64) -> anyhow::Result<HoldReport> {
    let before = t.rss_kib()?;
    let run = run_id();
    let (conns, rate) = t
        .connect(t.connections, &t.protocol("/user"), |i| {
            mint(secret, &format!("hold-{run}-{i}"), &[], None)
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    let after = t.rss_kib()?;
    let per = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 * 1024.0 / conns.len() as f64),
        _ => None,
    };
    Ok(HoldReport {
        connections: conns.len(),
        connect_rate: rate,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_connection: per,
    })
}

/// Round `round` of a fan-out: `burst` events to `role`, published at once (concurrent
/// requests), as a spike of events would arrive.
pub async fn publish_burst(
    http: &reqwest::Client,
    api: &str,
    publisher: &str,
    role: &str,
    round: usize,
    burst: usize,
) -> anyhow::Result<()> {
    futures::future::try_join_all((0..burst).map(|k| {
        post(
            http,
            format!("{api}/api/events"),
            publisher,
            json!({"event": "fanout", "roles": [role], "data": {"round": round, "k": k}}),
        )
    }))
    .await?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub connections: usize,
    pub rounds: usize,
    pub delivered: usize,
    pub lost: usize,
    pub last_p50_ms: f64,
    pub last_p99_ms: f64,
    pub gateway_cpu_s: f64,
    pub deliveries_per_cpu_s: Option<f64>,
}

/// `rounds` rounds of `burst` events published at once, each round waiting until every
/// connection has every event (`burst` > 1 measures the saturated regime, where frames queue
/// up per connection).
pub async fn fanout(
    api: &str,
    secret: &Secret,
    t: &Target,
    rounds: usize,
    burst: usize,
) -> anyhow::Result<FanoutReport> {
    let burst = burst.max(1);
    let run = run_id();
    let role = format!("lt{run}");
    let protocol = t.protocol(&format!("/{role}"));
    let (conns, _) = t
        .connect(t.connections, &protocol, |i| {
            mint(secret, &format!("fan-{run}-{i}"), &[role.as_str()], None)
        })
        .await?;
    let n = conns.len();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for ws in conns {
        clients::spawn_reader(ws, protocol.clone(), (), tx.clone());
    }
    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    let (mut last, mut cpu, mut delivered, mut lost) = (Vec::with_capacity(rounds), 0.0, 0, 0);
    for r in 0..rounds {
        let cpu_before = t.cpu_seconds()?;
        let sent = Instant::now();
        publish_burst(&http, api, &publisher, &role, r, burst).await?;
        let (mut got, mut latest) = (0, sent);
        let deadline = sent + Duration::from_secs(60);
        let want = n * burst;
        while got < want {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((_, Seen::Frame(_, at)))) => {
                    latest = latest.max(at);
                    got += 1;
                }
                Ok(Some((_, Seen::Closed))) => {}
                _ => break,
            }
        }
        delivered += got;
        lost += want - got;
        last.push(latest - sent);
        if let (Some(b), Some(a)) = (cpu_before, t.cpu_seconds()?) {
            cpu += a - b;
        }
    }
    let lat = Latencies::new(last);
    Ok(FanoutReport {
        connections: n,
        rounds,
        delivered,
        lost,
        last_p50_ms: lat.ms(50.0),
        last_p99_ms: lat.ms(99.0),
        gateway_cpu_s: cpu,
        deliveries_per_cpu_s: (cpu > 0.0).then(|| delivered as f64 / cpu),
    })
}

#[derive(Debug, Serialize)]
pub struct TargetedReport {
    pub rate: u32,
    pub sent: u64,
    pub errors: u64,
    pub received: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

/// What `targeted` sends each user.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `POST /api/notifications`: stored, then delivered (Herald, the FastAPI peer).
    Notifications,
    /// `POST /api/events` to `recipients`: live only (every server, the Socket.IO peers too).
    Events,
}

/// The `sent_us` stamp a targeted frame carries, whichever protocol and kind brought it.
fn sent_stamp(frame: &str) -> Option<u64> {
    // Socket.IO: `42/user,["loadtest",{...}]`; raw: a JSON object.
    let json = match frame.find('[') {
        Some(i) if frame.starts_with("42") => &frame[i..],
        _ => frame,
    };
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["notification"]["data"]["sent_us"]
        .as_u64()
        .or_else(|| v["data"]["sent_us"].as_u64())
        .or_else(|| v[1]["sent_us"].as_u64())
}

pub async fn targeted(
    api: &str,
    secret: &Secret,
    t: &Target,
    rate: u32,
    seconds: u64,
    via: Via,
) -> anyhow::Result<TargetedReport> {
    let run = run_id();
    let users: Vec<String> = (0..t.connections)
        .map(|i| format!("tg-{run}-{i}"))
        .collect();
    let protocol = t.protocol("/user");
    let (conns, _) = t
        .connect(users.len(), &protocol, |i| {
            mint(secret, &users[i], &[], None)
        })
        .await?;
    // Each message carries its send time in `data.sent_us` (µs since `epoch`).
    let epoch = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for ws in conns {
        clients::spawn_reader(ws, protocol.clone(), (), tx.clone());
    }
    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    let total = u64::from(rate) * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let (etx, mut erx) = mpsc::unbounded_channel::<bool>();
    let url = match via {
        Via::Notifications => format!("{api}/api/notifications"),
        Via::Events => format!("{api}/api/events"),
    };
    for i in 0..total {
        tick.tick().await;
        let (http, publisher, etx, url) =
            (http.clone(), publisher.clone(), etx.clone(), url.clone());
        let user = users[i as usize % users.len()].clone();
        let sent_us = epoch.elapsed().as_micros() as u64;
        tokio::spawn(async move {
            let data = json!({"sent_us": sent_us});
            let body = match via {
                Via::Notifications => {
                    json!({"recipients": [user], "type": "loadtest", "title": "t", "message": "", "data": data})
                }
                Via::Events => json!({"event": "loadtest", "recipients": [user], "data": data}),
            };
            let _ = etx.send(post(&http, url, &publisher, body).await.is_ok());
        });
    }
    drop(etx);
    let mut errors = 0;
    while let Some(ok) = erx.recv().await {
        errors += u64::from(!ok);
    }
    let mut samples = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (samples.len() as u64) < total - errors && Instant::now() < deadline {
        if let Ok(Some((_, Seen::Frame(text, at)))) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
            && let Some(us) = sent_stamp(&text)
        {
            samples.push(
                at.duration_since(epoch)
                    .saturating_sub(Duration::from_micros(us)),
            );
        }
    }
    let received = samples.len() as u64;
    let lat = Latencies::new(samples);
    Ok(TargetedReport {
        rate,
        sent: total,
        errors,
        received,
        lost: total - errors - received,
        p50_ms: lat.ms(50.0),
        p90_ms: lat.ms(90.0),
        p99_ms: lat.ms(99.0),
        p999_ms: lat.ms(99.9),
    })
}

#[cfg(test)]
mod tests {
    use super::sent_stamp;

    #[test]
    fn the_send_stamp_is_found_in_every_kind_of_frame() {
        let n = r#"{"type":"new_notification","notification":{"data":{"sent_us":7}}}"#;
        let e = r#"{"type":"event","event":"loadtest","data":{"sent_us":8}}"#;
        let s = r#"42/user,["loadtest",{"sent_us":9}]"#;
        assert_eq!(
            [n, e, s, "pong"].map(sent_stamp),
            [Some(7), Some(8), Some(9), None]
        );
    }
}

#[derive(Debug, Serialize)]
pub struct SlowReport {
    pub events: usize,
    pub healthy_clients: usize,
    pub healthy_lost: usize,
    pub slow_client_cut_off: bool,
}

/// One client reads nothing while `events` events of 15 KB go to a role it shares with healthy
/// clients: the slow one must be cut off, the healthy ones must get every event.
pub async fn slow_client(
    api: &str,
    secret: &Secret,
    t: &Target,
    events: usize,
) -> anyhow::Result<SlowReport> {
    let run = run_id();
    let role = format!("slow{run}");
    let slow = clients::connect(
        t.first(),
        t.first_source,
        &mint(secret, &format!("slow-{run}"), &[role.as_str()], None),
        &Protocol::Raw,
        None,
    )
    .await?;
    let healthy_n = t.connections.max(1);
    let (conns, _) = t
        .connect(healthy_n, &Protocol::Raw, |i| {
            mint(secret, &format!("ok-{run}-{i}"), &[role.as_str()], None)
        })
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for ws in conns {
        clients::spawn_reader(ws, Protocol::Raw, (), tx.clone());
    }
    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    let blob = "x".repeat(15_000);
    for i in 0..events {
        post(
            &http,
            format!("{api}/api/events"),
            &publisher,
            json!({"event": "bulk", "roles": [role], "data": {"i": i, "blob": blob}}),
        )
        .await?;
    }
    let expected = events * healthy_n;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < expected && Instant::now() < deadline {
        if let Ok(Some((_, Seen::Frame(..)))) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            got += 1;
        }
    }
    // Now drain the slow client: it must end (closed by the server), not go on forever.
    let (stx, mut srx) = mpsc::unbounded_channel();
    clients::spawn_reader(slow, Protocol::Raw, (), stx);
    let mut cut_off = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), srx.recv()).await {
            Ok(Some((_, Seen::Closed))) | Ok(None) => {
                cut_off = true;
                break;
            }
            _ => {}
        }
    }
    Ok(SlowReport {
        events,
        healthy_clients: healthy_n,
        healthy_lost: expected - got,
        slow_client_cut_off: cut_off,
    })
}

#[derive(Debug, Serialize)]
pub struct StormReport {
    pub clients: usize,
    pub killed_pid: u32,
    pub all_back_ms: Option<f64>,
    pub lost: usize,
}

/// `n` clients through `entry` (nginx), one user each, all resuming with `since` after any
/// disconnect (backoff with full jitter up to 1 s). The gateway `kill_pid` is SIGKILLed, one
/// notification goes to every user meanwhile: how long until each client has it, and how many
/// never do.
pub async fn reconnect_storm(
    api: &str,
    secret: &Secret,
    entry: SocketAddr,
    kill_pid: u32,
    n: usize,
    sources: u8,
) -> anyhow::Result<StormReport> {
    let run = run_id();
    let users: Vec<String> = (0..n).map(|i| format!("storm-{run}-{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, String)>();
    for (i, user) in users.iter().enumerate() {
        let (token, tx, stop) = (mint(secret, user, &[], None), tx.clone(), stop.clone());
        tokio::spawn(async move {
            let mut since: Option<String> = None;
            let mut attempt = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let source = 1 + (i % sources.max(1) as usize) as u8;
                let Ok(ws) =
                    clients::connect(entry, source, &token, &Protocol::Raw, since.as_deref()).await
                else {
                    attempt += 1;
                    let cap = 100u64 << attempt.min(4);
                    tokio::time::sleep(Duration::from_millis(fastrand_ms(cap))).await;
                    continue;
                };
                attempt = 0;
                let (ftx, mut frx) = mpsc::unbounded_channel();
                clients::spawn_reader(ws, Protocol::Raw, (), ftx);
                while let Some((_, seen)) = frx.recv().await {
                    match seen {
                        Seen::Frame(text, _) => {
                            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                                && let Some(id) = v["notification"]["id"].as_str()
                            {
                                since = Some(id.to_owned());
                                let _ = tx.send((i, id.to_owned()));
                            }
                        }
                        Seen::Closed => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(fastrand_ms(1_000))).await;
            }
        });
    }
    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    // Everyone connected and holding a resume position.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = post(
        &http,
        format!("{api}/api/notifications"),
        &publisher,
        json!({"recipients": users, "type": "loadtest", "title": "before", "message": ""}),
    )
    .await?;
    let got = wait_all(
        &mut rx,
        first["id"].as_str().unwrap_or_default(),
        n,
        Duration::from_secs(30),
    )
    .await;
    anyhow::ensure!(
        got == n,
        "only {got} of {n} clients were connected before the kill"
    );
    let killed = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &kill_pid.to_string()])
        .status();
    let second = post(
        &http,
        format!("{api}/api/notifications"),
        &publisher,
        json!({"recipients": users, "type": "loadtest", "title": "during", "message": ""}),
    )
    .await?;
    let got = wait_all(
        &mut rx,
        second["id"].as_str().unwrap_or_default(),
        n,
        Duration::from_secs(30),
    )
    .await;
    let back = killed.elapsed();
    stop.store(true, Ordering::SeqCst);
    Ok(StormReport {
        clients: n,
        killed_pid: kill_pid,
        all_back_ms: (got == n).then_some(back.as_secs_f64() * 1000.0),
        lost: n - got,
    })
}

/// Waits until each of the `n` clients reported notification `id`; returns how many did.
async fn wait_all(
    rx: &mut mpsc::UnboundedReceiver<(usize, String)>,
    id: &str,
    n: usize,
    limit: Duration,
) -> usize {
    let mut have = vec![false; n];
    let mut count = 0;
    let deadline = Instant::now() + limit;
    while count < n && Instant::now() < deadline {
        if let Ok(Some((i, got))) =
            tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
            && got == id
            && !have[i]
        {
            have[i] = true;
            count += 1;
        }
    }
    count
}

/// A random delay in 0..max ms (full jitter).
fn fastrand_ms(max: u64) -> u64 {
    fastrand::u64(0..max.max(1))
}

/// Prints a report as a line of text and a `RESULT` JSON line.
pub fn print<R: Serialize + std::fmt::Debug>(name: &str, report: &R) {
    println!("{name}: {report:?}");
    let mut v = serde_json::to_value(report).unwrap_or_default();
    v["scenario"] = json!(name);
    println!("RESULT {v}");
}
