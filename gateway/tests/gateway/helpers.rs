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
        c.allowed_origins = vec!["http://app.example".into()];
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

/// A private nginx in front of the given gateways, configured like the local stack's.
pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Nginx {
    pub async fn start(gateways: &[String]) -> Nginx {
        let dir =
            std::env::temp_dir().join(format!("herald-nginx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let port = free_port();
        let servers: String = gateways
            .iter()
            .map(|g| format!("server {g} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  log_format herald '$remote_addr "$request_method $uri" $status';
  access_log {d}/logs/access.log herald;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream gateways {{ {servers} }}
  # Long-polling requests of one Socket.IO session must reach the same gateway.
  upstream gateways_sticky {{ hash $remote_addr consistent; {servers} }}
  server {{
    listen 127.0.0.1:{port};
    location /api/notifications/ws {{
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 75s;
      proxy_next_upstream error timeout;
      # Error lines quote the request line, token included (as in deploy/nginx).
      error_log {d}/logs/error.log crit;
    }}
    location /socket.io/ {{
      proxy_pass http://gateways_sticky;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 75s;
      error_log {d}/logs/error.log crit;
    }}
  }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists() || *p == "nginx")
            .unwrap();
        let child = Command::new(nginx)
            .args([
                "-c",
                &format!("{d}/nginx.conf"),
                "-p",
                &format!("{d}/"),
                "-e",
                &format!("{d}/logs/error.log"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (deploy/local.sh installs it)");
        wait_listening(&format!("127.0.0.1:{port}")).await;
        Nginx { port, dir, child }
    }

    pub fn logs(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default());
        s
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait().await;
    }
}
