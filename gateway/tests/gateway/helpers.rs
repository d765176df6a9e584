//! The stack for gateway tests: the api in-process on a fresh database, gateways in-process or as
//! child processes (so they can be SIGKILLed), a private nginx in front, and a WebSocket client.

use futures::{SinkExt, StreamExt};
use herald_gateway::config::Config as GatewayConfig;
use herald_gateway::startup::Gateway;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "gateway-test-secret";

pub use herald_api::testing::redis_url;

pub fn token(sub: &str, roles: &[&str]) -> String {
    token_with(sub, roles, None, 600)
}

pub fn token_with(sub: &str, roles: &[&str], scope: Option<&str>, ttl: u64) -> String {
    herald_api::testing::token(SECRET, sub, roles, scope, ttl)
}

/// The api, in-process, on a fresh database and a private Redis prefix.
pub struct Stack {
    pub api: SocketAddr,
    pub redis: String,
    pub prefix: String,
    pub http: reqwest::Client,
    _api: herald_api::testing::RunningApi,
}

pub async fn stack() -> Stack {
    stack_on(&redis_url()).await
}

/// The api on a given Redis (e.g. a [`PrivateRedis`]).
pub async fn stack_on(redis: &str) -> Stack {
    let db = herald_api::testing::fresh_database().await;
    let api = herald_api::testing::spawn_api(herald_api::testing::config(&db, redis, SECRET)).await;
    Stack {
        api: api.addr,
        redis: redis.to_owned(),
        prefix: api.prefix.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap(),
        _api: api,
    }
}

impl Stack {
    pub fn gateway_config(&self) -> GatewayConfig {
        let mut c = GatewayConfig::new(&self.redis, &format!("http://{}", self.api), SECRET);
        c.redis_prefix = self.prefix.clone();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.cors.allowed_origins = vec!["http://app.example".into()];
        c
    }

    /// A gateway in this process.
    pub async fn gateway(&self, tweak: impl FnOnce(&mut GatewayConfig)) -> InProcess {
        let mut config = self.gateway_config();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let gw = Gateway::build(config, listener).await.unwrap();
        let addr = gw.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(gw.run_until_stopped(async {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            stop: Some(stop),
            done,
        }
    }

    /// A gateway as a child process (so a test can SIGKILL it), logging at debug level to
    /// `log`.
    pub fn gateway_process(&self, port: u16, log: &std::path::Path) -> Child {
        self.gateway_process_with(port, log, &[])
    }

    /// As [`Stack::gateway_process`], with extra environment.
    pub fn gateway_process_with(
        &self,
        port: u16,
        log: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Child {
        let c = self.gateway_config();
        let log = std::fs::File::create(log).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_herald-gateway"))
            .env("HERALD_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", &self.redis)
            .env("REDIS_PREFIX", &c.redis_prefix)
            .env("HERALD_API_URL", &c.api_url)
            .env("HERALD_JWT_SECRET", SECRET)
            .env("CORS_ALLOWED_ORIGINS", "http://app.example")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the gateway binary starts")
    }

    pub async fn publish(&self, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("http://{}/api/notifications", self.api))
            .bearer_auth(token_with("host", &[], Some("publish"), 600))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    pub async fn notify(&self, user: &str, title: &str) -> Value {
        self.publish(
            json!({"recipients": [user], "type": "goal_assigned", "title": title, "message": "m"}),
        )
        .await
    }

    pub async fn event(&self, body: Value) {
        let resp = self
            .http
            .post(format!("http://{}/api/events", self.api))
            .bearer_auth(token_with("host", &[], Some("publish"), 600))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
}

pub struct InProcess {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    /// SIGTERM-like: drain and wait for the gateway to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.done).await;
    }
}

/// A free TCP port on 127.0.0.1 (for processes that must be told their port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never started listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private nginx in front of the api and the given gateways, with the production
/// configuration: `deploy/local.sh nginx-config` renders deploy/nginx/herald.conf.template
/// exactly as the local stack does. Stopped with SIGTERM (the master then stops its workers;
/// SIGKILL would leave them running).
pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Nginx {
    pub async fn start(api: &str, gateways: &[String]) -> Nginx {
        assert_eq!(
            gateways.len(),
            2,
            "the local stack's template has two gateways"
        );
        let dir =
            std::env::temp_dir().join(format!("herald-nginx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local.sh");
        let rendered = Command::new(script)
            .arg("nginx-config")
            .env("HERALD_RUN_DIR", &dir)
            .env("HERALD_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("HERALD_API_ADDR", api)
            .env("HERALD_GATEWAY1_ADDR", &gateways[0])
            .env("HERALD_GATEWAY2_ADDR", &gateways[1])
            .stdout(Stdio::null())
            .output()
            .expect("deploy/local.sh runs");
        assert!(
            rendered.status.success(),
            "nginx-config failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let d = dir.join("nginx");
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists() || *p == "nginx")
            .unwrap();
        let child = Command::new(nginx)
            .args(["-g", "daemon off;", "-c"])
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(format!("{}/", d.display()))
            .arg("-e")
            .arg(d.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (deploy/local.sh installs it)");
        wait_listening(&format!("127.0.0.1:{port}")).await;
        Nginx { port, dir, child }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        let d = self.dir.join("nginx");
        let mut s = std::fs::read_to_string(d.join("access.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(d.join("error.log")).unwrap_or_default());
        s
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client as a browser tab would be.
pub struct Tab {
    pub ws: Ws,
}

/// Connects and waits for `connection_established`.
pub async fn open(addr: &str, token: &str, since: Option<&str>) -> Tab {
    let mut tab = try_open(addr, token, since, Some("http://app.example"))
        .await
        .expect("handshake accepted");
    let hello = tab.next().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    tab
}

/// The handshake's HTTP status when refused.
pub async fn try_open(
    addr: &str,
    token: &str,
    since: Option<&str>,
    origin: Option<&str>,
) -> Result<Tab, u16> {
    let mut url = format!("ws://{addr}/api/notifications/ws?token={token}");
    if let Some(s) = since {
        url.push_str(&format!("&since={s}"));
    }
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Tab { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

impl Tab {
    /// The next JSON text frame (pings skipped), failing after 10 s.
    pub async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("connection open")
                .expect("a valid frame");
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(&t).unwrap_or(Value::String(t.to_string()));
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Reads until the server closes; returns its close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(15), self.ws.next())
                .await
                .expect("closed within 15 s");
            match msg {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// A Redis server of this test's own, so the test may kill its clients or restart it without
/// disturbing the others.
pub struct PrivateRedis {
    pub port: u16,
    child: Child,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        wait_listening(&format!("127.0.0.1:{port}")).await;
        PrivateRedis { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a redis-cli command against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the server and starts a fresh one on the same port.
    pub async fn restart(mut self) -> PrivateRedis {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Self::start_on(self.port).await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real, unmodified `socket.io-client` (Node, gateway/tests/socketio), one line of JSON per
/// thing that happens to it.
pub struct SioClient {
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    child: tokio::process::Child,
}

impl SioClient {
    /// `token_in`: "auth" (handshake auth, what 4.x clients send) or "query" (old clients).
    pub fn start(
        url: &str,
        namespace: &str,
        token: &str,
        transports: Option<&[&str]>,
        token_in: &str,
    ) -> SioClient {
        let mut opts =
            json!({"url": url, "namespace": namespace, "token": token, "tokenIn": token_in});
        if let Some(t) = transports {
            opts["transports"] = json!(t);
        }
        let mut child = tokio::process::Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/socketio/client.mjs"))
            .arg(opts.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed and `npm ci` ran in gateway/tests/socketio (deploy/local.sh test does both)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        SioClient { lines, child }
    }

    /// The next line of the given kind (others are skipped), failing after 15 s.
    pub async fn next(&mut self, kind: &str) -> Value {
        loop {
            let v = tokio::time::timeout(Duration::from_secs(15), self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no '{kind}' within 15 s"))
                .expect("the client is running");
            if v["kind"] == kind {
                return v;
            }
        }
    }

    /// The next line, whatever its kind.
    pub async fn next_any(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(15), self.lines.recv())
            .await
            .expect("a line within 15 s")
            .expect("the client is running")
    }

    /// The next event (name and payload), skipping transport notices.
    pub async fn event(&mut self) -> (String, Value) {
        let v = self.next("event").await;
        (v["event"].as_str().unwrap().to_owned(), v["data"].clone())
    }

    /// Emits `event` with `data` from the client, asking for an acknowledgement (it arrives as
    /// a line of kind `ack`).
    pub async fn emit(&mut self, event: &str, data: Value) {
        let line = format!("{}\n", json!({"emit": event, "data": data}));
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait().await;
    }
}

/// Opens a raw socket and completes the handshake by hand, to send frames no client library
/// would.
pub async fn raw(addr: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/notifications/ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

pub fn frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let m = if masked { 0x80 } else { 0 };
    let mut v = vec![b0];
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n <= 0xFFFF => {
            v.push(m | 126);
            v.extend((n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend((n as u64).to_be_bytes());
        }
    }
    if masked {
        let k = [0x12, 0x34, 0x56, 0x78];
        v.extend(k);
        v.extend(payload.iter().enumerate().map(|(i, x)| x ^ k[i % 4]));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// Reads frames until a close; its code (None if the socket just ended, as a browser sees
/// 1006).
pub async fn close_code<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> Option<u16> {
    let read = async {
        loop {
            let mut h = [0u8; 2];
            s.read_exact(&mut h).await.ok()?;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0; 2];
                    s.read_exact(&mut b).await.ok()?;
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0; 8];
                    s.read_exact(&mut b).await.ok()?;
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut p = vec![0; len];
            s.read_exact(&mut p).await.ok()?;
            if h[0] & 0x0f == 0x8 {
                return Some(if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                });
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("closed within 10 s")
}

/// One sample of a gateway's /metrics (a metric without labels), 0 when absent.
pub async fn gateway_metric(addr: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
