//! The api in-process on a fresh database, a private aiosmtpd, and workers pointed at both.

use chrono::{DateTime, Utc};
use herald_worker::config::Config;
use herald_worker::jobs::Outbox;
use herald_worker::startup::Worker;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const SECRET: &str = "worker-test-secret";

pub fn token(sub: &str, scope: Option<&str>) -> String {
    herald_api::testing::token(SECRET, sub, &[], scope, 600)
}

/// A real SMTP server of this test's own.
pub struct Smtp {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Smtp {
    pub fn start(args: &[&str]) -> Smtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("herald-smtp-{}", uuid::Uuid::new_v4().simple()));
        let python =
            std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned());
        let mut child = Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (deploy/local.sh installs python3-aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server started");
        Smtp { port, dir, child }
    }

    /// Every message received so far, oldest first, with quoted-printable soft breaks undone.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| decode_qp(&std::fs::read_to_string(p).unwrap()))
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes (enough to read the parts).
pub fn decode_qp(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Stack {
    pub api: std::net::SocketAddr,
    pub db: String,
    pub http: reqwest::Client,
    pub pool: sqlx::PgPool,
    _api: herald_api::testing::RunningApi,
}

pub async fn stack() -> Stack {
    let db = herald_api::testing::fresh_database().await;
    let redis = herald_api::testing::redis_url();
    let api =
        herald_api::testing::spawn_api(herald_api::testing::config(&db, &redis, SECRET)).await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    Stack {
        api: api.addr,
        db,
        http: reqwest::Client::new(),
        pool,
        _api: api,
    }
}

impl Stack {
    /// A worker sending to `smtp` (or writing .eml files when `None`).
    /// Where worker `id` writes .eml files when it has no SMTP server.
    pub fn mail_dir(&self, id: &str) -> PathBuf {
        let db = self.db.rsplit('/').next().unwrap_or("db");
        std::env::temp_dir().join(format!("herald-mail-{db}-{id}"))
    }

    pub async fn worker(&self, smtp: Option<&Smtp>, id: &str) -> Worker {
        Worker::build(&self.worker_config(smtp, id)).await.unwrap()
    }

    /// The configuration [`Stack::worker`] uses (retry base 60 s, 5 attempts), to adjust.
    pub fn worker_config(&self, smtp: Option<&Smtp>, id: &str) -> Config {
        let mut config = Config::new(&self.db, self.mail_dir(id));
        config.worker_id = Some(id.to_owned());
        config.retry_base_secs = 60;
        config.max_attempts = 5;
        if let Some(s) = smtp {
            config.smtp_host = Some("127.0.0.1".into());
            config.smtp_port = Some(s.port);
        }
        config
    }

    pub async fn publish(&self, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("http://{}/api/notifications", self.api))
            .bearer_auth(token("host", Some("publish")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    /// A notification for `user` (address `<user>@example.com`) by email and in the app.
    pub async fn email(&self, user: &str, title: &str, extra: Value) -> Value {
        let mut body = json!({
            "recipients": [{"id": user, "email": format!("{user}@example.com"), "name": format!("User {user}")}],
            "type": "goal_assigned", "priority": "high", "title": title, "message": format!("About {title}"),
            "action_url": "/goals/42/respond", "triggered_by_name": "John Doe", "channels": ["in_app", "email"],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.publish(body).await
    }

    pub async fn put(&self, user: &str, path: &str, body: Option<Value>) -> u16 {
        let mut req = self
            .http
            .put(format!("http://{}{path}", self.api))
            .bearer_auth(token(user, None));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// (status, attempts, last_error) of every email job, oldest first.
    pub async fn jobs(&self) -> Vec<(String, i32, Option<String>)> {
        sqlx::query_as("SELECT status, attempts, last_error FROM email_jobs ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

pub fn outbox(w: &Worker) -> &Outbox {
    &w.outbox
}

pub fn at(now: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
    now + chrono::Duration::minutes(minutes)
}
