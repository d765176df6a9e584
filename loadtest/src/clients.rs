//! WebSocket clients for the load scenarios: many connections spread over several 127.0.0.x
//! source addresses (a process here holds ~19.9k sockets; one source address, ~28k ports), each
//! waiting for the gateway's greeting, plus reading the gateway process's RSS and CPU from /proc.

use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{WebSocketStream, client_async};

pub type Ws = WebSocketStream<TcpStream>;

/// Opens one connection from source address 127.0.0.`source` and waits for the greeting.
pub async fn connect(gateway: SocketAddr, source: u8, token: &str) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
        0,
    ))?;
    let stream = socket.connect(gateway).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{gateway}/api/notifications/ws?token={token}");
    let (mut ws, _) = client_async(url, stream).await?;
    let hello = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed before the greeting"))??;
    anyhow::ensure!(
        hello.to_text()?.contains("connection_established"),
        "unexpected greeting"
    );
    Ok(ws)
}

/// Opens `n` connections (`concurrency` at a time), `token_for(i)` each, spread over `sources`
/// source addresses; returns them and the connect rate per second.
pub async fn connect_many(
    gateway: SocketAddr,
    n: usize,
    sources: u8,
    concurrency: usize,
    token_for: impl Fn(usize) -> String,
) -> anyhow::Result<(Vec<Ws>, f64)> {
    let started = std::time::Instant::now();
    let tokens: Vec<String> = (0..n).map(&token_for).collect();
    let results: Vec<anyhow::Result<Ws>> =
        futures::stream::iter(tokens.into_iter().enumerate())
            .map(|(i, t)| async move {
                connect(gateway, 1 + (i % sources.max(1) as usize) as u8, &t).await
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut out = Vec::with_capacity(n);
    for r in results {
        out.push(r?);
    }
    Ok((out, n as f64 / started.elapsed().as_secs_f64()))
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))
}

/// CPU time (user + system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    Ok(ticks / 100.0)
}
