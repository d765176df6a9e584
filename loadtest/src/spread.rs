//! `fanout --processes P`: one broadcast audience larger than a process may hold (~19.9k
//! sockets each here), spread over P child processes of this same binary (`fanout-part`).
//!
//! The parent publishes and times; each child holds its share of the connections, counts the
//! frames it reads and, once it has all of a round, prints `DONE <round> <unix µs of its last
//! frame>` on stdout. Every process reads the same wall clock (CLOCK_REALTIME), so the last
//! recipient of a round is the latest of the children's last frames, minus the moment the parent
//! published. When the parent closes a child's stdin the child prints `TOTAL <frames>` and exits.

use crate::clients::{self, Seen};
use crate::gateway::{FanoutReport, Target, mint, publish_burst, run_id};
use crate::stats::Latencies;
use herald_core::secret::Secret;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

/// How long a child may take to open its connections.
const CONNECT_WAIT: Duration = Duration::from_secs(600);
/// How long a round may take before its missing frames count as lost.
const ROUND_WAIT: Duration = Duration::from_secs(60);

fn unix_us(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// What a child was asked to do.
#[derive(clap::Args, Clone)]
pub struct Part {
    #[command(flatten)]
    pub target: Target,
    /// The role every connection holds.
    #[arg(long)]
    pub role: String,
    /// Distinguishes this child's users from the other children's.
    #[arg(long)]
    pub part: usize,
    /// Events per round.
    #[arg(long, default_value_t = 1)]
    pub burst: usize,
}

/// A child: connect, say READY, then report each complete round until stdin closes.
pub async fn part(secret: &Secret, p: Part) -> anyhow::Result<()> {
    let t = &p.target;
    let protocol = t.protocol(&format!("/{}", p.role));
    let (conns, _) = t
        .connect(t.connections, &protocol, |i| {
            mint(
                secret,
                &format!("{}-p{}-{i}", p.role, p.part),
                &[p.role.as_str()],
                None,
            )
        })
        .await?;
    let per_round = conns.len() * p.burst.max(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for ws in conns {
        clients::spawn_reader(ws, protocol.clone(), (), tx.clone());
    }
    drop(tx);
    // Receipt times are monotonic instants; one reading of both clocks maps them to wall time.
    let (mono, wall) = (Instant::now(), SystemTime::now());
    println!("READY {}", per_round / p.burst.max(1));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let (mut got, mut round, mut latest) = (0usize, 0usize, mono);
    loop {
        tokio::select! {
            seen = rx.recv() => match seen {
                Some((_, Seen::Frame(_, at))) => {
                    got += 1;
                    latest = latest.max(at);
                    if got == (round + 1) * per_round {
                        let last = wall + latest.duration_since(mono);
                        println!("DONE {round} {}", unix_us(last));
                        round += 1;
                    }
                }
                Some((_, Seen::Closed)) => {}
                None => break,
            },
            line = stdin.next_line() => if !matches!(line, Ok(Some(_))) { break },
        }
    }
    println!("TOTAL {got}");
    Ok(())
}

struct PartProcess {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

impl PartProcess {
    /// The next line the child prints, split into words, within `wait`.
    async fn next(&mut self, wait: Duration) -> anyhow::Result<Vec<String>> {
        let line = tokio::time::timeout(wait, self.out.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("a fanout-part process did not answer in time"))??
            .ok_or_else(|| anyhow::anyhow!("a fanout-part process ended early"))?;
        Ok(line.split_whitespace().map(str::to_owned).collect())
    }
}

/// The parent: `processes` children share `t.connections`; `rounds` rounds of `burst` events.
pub async fn fanout(
    api: &str,
    secret: &Secret,
    t: &Target,
    rounds: usize,
    burst: usize,
    processes: usize,
) -> anyhow::Result<FanoutReport> {
    let (burst, processes) = (burst.max(1), processes.max(1));
    let role = format!("lt{}", run_id());
    let exe = std::env::current_exe()?;
    let gateways: Vec<String> = t.gateway.iter().map(|g| g.to_string()).collect();
    let mut children = Vec::with_capacity(processes);
    for k in 0..processes {
        let share = t.connections / processes + usize::from(k < t.connections % processes);
        // Each child its own source addresses: a source address has ~28k ephemeral ports.
        let first = t.first_source as usize + k * t.sources as usize;
        anyhow::ensure!(
            first + t.sources as usize <= 255,
            "too many source addresses"
        );
        let mut child = Command::new(&exe)
            .env("HERALD_JWT_SECRET", secret.expose())
            .args([
                "--api",
                api,
                "fanout-part",
                "--gateway",
                &gateways.join(","),
            ])
            .args(["--connections", &share.to_string()])
            .args(["--sources", &t.sources.to_string()])
            .args(["--first-source", &first.to_string()])
            .args(["--connect-concurrency", &t.connect_concurrency.to_string()])
            .args(["--protocol", &t.protocol, "--role", &role])
            .args(["--part", &k.to_string(), "--burst", &burst.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        children.push(PartProcess { child, out });
    }
    let mut n = 0;
    for (k, c) in children.iter_mut().enumerate() {
        let ready = c.next(CONNECT_WAIT).await?;
        anyhow::ensure!(
            ready.first().map(String::as_str) == Some("READY"),
            "{ready:?}"
        );
        n += ready
            .get(1)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        eprintln!("fanout: part {}/{processes} connected ({n} so far)", k + 1);
    }

    let http = reqwest::Client::new();
    let publisher = mint(secret, "loadtest", &[], Some("publish"));
    let (mut last, mut cpu, mut completed) = (Vec::with_capacity(rounds), 0.0, 0);
    'rounds: for r in 0..rounds {
        let cpu_before = t.cpu_seconds()?;
        let sent = unix_us(SystemTime::now());
        publish_burst(&http, api, &publisher, &role, r, burst).await?;
        let mut latest = sent;
        for c in &mut children {
            match c.next(ROUND_WAIT).await {
                Ok(done) if done.first().map(String::as_str) == Some("DONE") => {
                    let at = done.get(2).and_then(|v| v.parse().ok()).unwrap_or(sent);
                    latest = latest.max(at);
                }
                // A round that does not complete ends the run; what is missing counts as lost.
                _ => break 'rounds,
            }
        }
        completed += 1;
        last.push(Duration::from_micros(latest - sent));
        if let (Some(b), Some(a)) = (cpu_before, t.cpu_seconds()?) {
            cpu += a - b;
        }
        eprintln!(
            "fanout: round {}/{rounds}: last recipient after {:.1} ms",
            r + 1,
            (latest - sent) as f64 / 1000.0
        );
    }
    let attempted = (completed + usize::from(completed < rounds)).min(rounds);
    let mut delivered = 0;
    for mut c in children {
        drop(c.child.stdin.take());
        loop {
            let words = c.next(ROUND_WAIT).await?;
            if words.first().map(String::as_str) == Some("TOTAL") {
                delivered += words.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                break;
            }
        }
        c.child.wait().await?;
    }
    let lat = Latencies::new(last);
    Ok(FanoutReport {
        connections: n,
        rounds: completed,
        delivered,
        lost: (attempted * n * burst).saturating_sub(delivered),
        last_p50_ms: lat.ms(50.0),
        last_p99_ms: lat.ms(99.0),
        gateway_cpu_s: cpu,
        deliveries_per_cpu_s: (cpu > 0.0).then(|| delivered as f64 / cpu),
    })
}
