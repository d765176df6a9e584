//! WebSocket clients for the load scenarios: many connections spread over several 127.0.0.x
//! source addresses (a process here holds ~19.9k sockets; one source address, ~28k ports),
//! speaking Herald's raw protocol or Socket.IO (Engine.IO v4 over WebSocket, written out here so
//! Herald and the Socket.IO peers are driven by the same code), plus /proc readings.

use futures::{SinkExt, StreamExt};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// tungstenite zero-fills its whole read buffer before every read (128 KiB by default): with
/// 50,000 clients that memset was most of the generator's CPU and the bottleneck of every
/// large fan-out. Server frames here are small; 4 KiB reads keep the generator cheap.
fn config() -> Option<WebSocketConfig> {
    Some(WebSocketConfig::default().read_buffer_size(4 * 1024))
}

pub type Ws = WebSocketStream<TcpStream>;

/// Which protocol a connection speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// `/api/notifications/ws?token=` (Herald, and the FastAPI peer).
    Raw,
    /// Socket.IO v5 on the given namespace, token in the handshake auth.
    SocketIo(String),
}

/// One client-side event: a notification or event frame arrived (its text, and when it was
/// read off the socket — latencies use this, not when the scenario got round to it), or the
/// connection ended.
#[derive(Debug)]
pub enum Seen {
    Frame(String, std::time::Instant),
    Closed,
}

async fn tcp(gateway: SocketAddr, source: u8) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
        0,
    ))?;
    let stream = socket.connect(gateway).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed during the handshake"))??;
        if let Message::Text(t) = msg {
            return Ok(t.to_string());
        }
    }
}

/// Opens one connection from 127.0.0.`source` and completes the protocol's greeting.
/// `since` resumes (raw protocol only).
pub async fn connect(
    gateway: SocketAddr,
    source: u8,
    token: &str,
    protocol: &Protocol,
    since: Option<&str>,
) -> anyhow::Result<Ws> {
    let stream = tcp(gateway, source).await?;
    match protocol {
        Protocol::Raw => {
            let mut url = format!("ws://{gateway}/api/notifications/ws?token={token}");
            if let Some(s) = since {
                url.push_str(&format!("&since={s}"));
            }
            let (mut ws, _) = client_async_with_config(url, stream, config()).await?;
            let hello = next_text(&mut ws).await?;
            anyhow::ensure!(
                hello.contains("connection_established"),
                "unexpected greeting: {hello}"
            );
            Ok(ws)
        }
        Protocol::SocketIo(ns) => {
            let (mut ws, _) = client_async_with_config(
                format!("ws://{gateway}/socket.io/?EIO=4&transport=websocket"),
                stream,
                config(),
            )
            .await?;
            let open = next_text(&mut ws).await?;
            anyhow::ensure!(open.starts_with('0'), "unexpected Engine.IO open: {open}");
            ws.send(Message::text(format!(
                "40{ns},{}",
                serde_json::json!({ "token": token })
            )))
            .await?;
            loop {
                let reply = next_text(&mut ws).await?;
                if reply == "2" {
                    ws.send(Message::text("3")).await?;
                } else if reply.starts_with(&format!("40{ns},")) {
                    return Ok(ws);
                } else {
                    anyhow::bail!("namespace refused: {reply}");
                }
            }
        }
    }
}

/// Opens `n` connections (`concurrency` at a time), token `token_for(i)`, round-robin over
/// `gateways` and over the source addresses 127.0.0.`first`..`first + count - 1`; returns them
/// and the connect rate per second.
pub async fn connect_many(
    gateways: &[SocketAddr],
    n: usize,
    (first, count): (u8, u8),
    concurrency: usize,
    protocol: &Protocol,
    token_for: impl Fn(usize) -> String,
) -> anyhow::Result<(Vec<Ws>, f64)> {
    anyhow::ensure!(!gateways.is_empty(), "no gateway to connect to");
    let started = std::time::Instant::now();
    let tokens: Vec<String> = (0..n).map(&token_for).collect();
    let results: Vec<anyhow::Result<Ws>> = futures::stream::iter(tokens.into_iter().enumerate())
        .map(|(i, t)| async move {
            connect(
                gateways[i % gateways.len()],
                first.saturating_add((i % count.max(1) as usize) as u8),
                &t,
                protocol,
                None,
            )
            .await
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

/// Reads a connection until it ends, answering Engine.IO pings, and reports every notification
/// or event frame (tagged with `tag`).
pub fn spawn_reader<T: Clone + Send + 'static>(
    ws: Ws,
    protocol: Protocol,
    tag: T,
    tx: mpsc::UnboundedSender<(T, Seen)>,
) {
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            let text = text.to_string();
            let frame = match &protocol {
                Protocol::Raw => (text != "pong").then_some(text),
                Protocol::SocketIo(_) if text == "2" => {
                    if sink.send(Message::text("3")).await.is_err() {
                        break;
                    }
                    None
                }
                Protocol::SocketIo(_) => text.starts_with("42").then_some(text),
            };
            if let Some(f) = frame
                && tx
                    .send((tag.clone(), Seen::Frame(f, std::time::Instant::now())))
                    .is_err()
            {
                return;
            }
        }
        let _ = tx.send((tag, Seen::Closed));
    });
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
