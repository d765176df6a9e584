//! Socket.IO (Engine.IO v4 / Socket.IO v5, WebSocket and long-polling) on the gateway's own
//! listener, for the support-desk seed's unmodified `socket.io-client` dashboards.
//!
//! Namespaces: `/user` carries the connected user's own notifications and events (room
//! `user:<id>`); `/<role>` (e.g. `/admin`) carries that role's, and is refused to tokens without
//! the role. Broadcasts reach every namespace. Events arrive under their own name (`new_ticket`),
//! notifications as `new_notification`, changes as `marked_read`, `marked_all_read`,
//! `notification_deleted`, `refetch`.
//!
//! Socket.IO sockets share the hub with raw WebSocket connections: for every Redis channel that
//! has Socket.IO sockets on this node there is ONE bridge member, which turns each frame into one
//! Socket.IO broadcast to the matching room or namespace (socketioxide encodes it once for all
//! its sockets). So there is one Redis subscription per channel per node, whichever protocol the
//! clients use.

use crate::connection::{ConnShared, Delivery, Outbox, Queue};
use crate::hub::{Admission, ConnId, Hub, Refusal};
use crate::metrics::Metrics;
use herald_core::auth::{
    AuthError, Claims, RefreshError, Verifier, bearer_token, until_exp, valid_role,
};
use herald_core::keys::Keys;
use serde::Deserialize;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::time::{DelayQueue, delay_queue};

/// Frames waiting in one channel's bridge; a full bridge drops (and counts) frames.
const BRIDGE_QUEUE: usize = 4_096;
/// How long a connecting socket waits for its channels' Redis subscriptions.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a namespace connection was refused; the client gets `connect_error` with this message.
#[derive(Debug)]
pub struct Reject(String);

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
struct AuthPayload {
    token: Option<String>,
}

/// Where a channel's frames go.
enum Target {
    /// Namespace `/user`, room `user:<id>`.
    UserRoom(String),
    /// Every socket of namespace `/<role>`.
    Namespace(String),
    /// Every namespace.
    Everyone,
}

struct Bridge {
    id: ConnId,
    sockets: usize,
    task: JoinHandle<()>,
    /// Becomes true once the channel's Redis subscription is active.
    ready: watch::Receiver<bool>,
}

struct Joined {
    _admission: Admission,
    channels: Vec<String>,
    /// The token's user, and the role the namespace needs (`None` on `/user`).
    sub: String,
    role: Option<String>,
}

/// What a client sees when its token expires: this event, then the disconnect.
pub const EXPIRED_EVENT: &str = "token_expired";
/// What a client sends to refresh its token: `socket.emit("auth", {token}, ack)`.
pub const REFRESH_EVENT: &str = "auth";

/// What the expiry task is told.
enum Expiry {
    /// (Re)arm the socket's end at its token's `exp` (unix seconds).
    At(SocketRef, u64),
    /// The socket left: forget it.
    Cancel(Sid),
}

/// Ends each socket when its token expires, after telling it why: one task and one timer queue
/// for every Socket.IO socket on the node (a sleeping task per socket cost 256 B of each).
fn spawn_expiries() -> mpsc::UnboundedSender<Expiry> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut queue: DelayQueue<Sid> = DelayQueue::new();
        let mut armed: HashMap<Sid, (delay_queue::Key, SocketRef)> = HashMap::new();
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    None => return,
                    Some(Expiry::At(s, exp)) => match armed.get(&s.id) {
                        Some((key, _)) => queue.reset(key, until_exp(exp)),
                        None => {
                            let key = queue.insert(s.id, until_exp(exp));
                            armed.insert(s.id, (key, s));
                        }
                    },
                    Some(Expiry::Cancel(sid)) => {
                        if let Some((key, _)) = armed.remove(&sid) {
                            queue.remove(&key);
                        }
                    }
                },
                Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                    if let Some((_, s)) = armed.remove(expired.get_ref()) {
                        let _ = s.emit(
                            EXPIRED_EVENT,
                            &serde_json::json!({"message": "token expired: reconnect with a fresh token"}),
                        );
                        let _ = s.disconnect();
                    }
                }
            }
        }
    });
    tx
}

pub struct SocketIoState {
    pub io: SocketIo,
    hub: Arc<Hub>,
    keys: Keys,
    verifier: Verifier,
    metrics: Metrics,
    draining: Arc<AtomicBool>,
    sockets: Mutex<HashMap<Sid, Joined>>,
    bridges: Mutex<HashMap<String, Bridge>>,
    expiries: mpsc::UnboundedSender<Expiry>,
}

impl SocketIoState {
    /// Registers the namespaces on `io`.
    pub fn install(
        io: SocketIo,
        hub: Arc<Hub>,
        keys: Keys,
        verifier: Verifier,
        metrics: Metrics,
        draining: Arc<AtomicBool>,
    ) -> anyhow::Result<Arc<Self>> {
        let state = Arc::new(Self {
            io: io.clone(),
            hub,
            keys,
            verifier,
            metrics,
            draining,
            sockets: Mutex::default(),
            bridges: Mutex::default(),
            expiries: spawn_expiries(),
        });
        let st = state.clone();
        let check = move |s: SocketRef, TryData(auth): TryData<AuthPayload>| {
            let st = st.clone();
            async move { st.admit(&s, auth.ok().and_then(|a| a.token)).await }
        };
        let st = state.clone();
        let connected = move |s: SocketRef| {
            let st = st.clone();
            async move {
                let refresh = st.clone();
                s.on(
                    REFRESH_EVENT,
                    move |s: SocketRef, TryData(auth): TryData<AuthPayload>, ack: AckSender| {
                        let st = refresh.clone();
                        async move {
                            let answer = st.refresh(&s, auth.ok().and_then(|a| a.token));
                            let _ = ack.send(&answer);
                        }
                    },
                );
                s.on_disconnect(move |s: SocketRef| {
                    let st = st.clone();
                    async move { st.leave(&s) }
                });
            }
        };
        io.ns("/user", connected.clone().with(check.clone()));
        io.dyn_ns("/{role}", connected.with(check))?;
        Ok(state)
    }

    /// Checks a namespace connection and joins its channels; the client's `connect` comes only
    /// once those channels are subscribed, so anything published after it arrives.
    async fn admit(&self, s: &SocketRef, auth_token: Option<String>) -> Result<(), Reject> {
        let refuse = |msg: &str| {
            // A refused dynamic namespace would otherwise stay registered for good.
            let ns = s.ns().to_owned();
            if ns != "/user" && self.io.of(&ns).is_some_and(|o| o.sockets().is_empty()) {
                self.io.delete_ns(&ns);
            }
            Err(Reject(msg.to_owned()))
        };
        if self.draining.load(Ordering::SeqCst) {
            return refuse("this gateway is restarting: reconnect");
        }
        let parts = s.req_parts();
        let token = auth_token
            .or_else(|| {
                let q = parts.uri.query()?;
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
            })
            .or_else(|| {
                let header = parts.headers.get(hyper::header::AUTHORIZATION)?;
                bearer_token(header.to_str().ok()?).ok().map(str::to_owned)
            });
        let claims = match self.verify(token.as_deref()) {
            Ok(c) => c,
            Err(e) => return refuse(&e.to_string()),
        };
        let ns = s.ns().to_owned();
        let role = (ns != "/user").then(|| ns.trim_start_matches('/').to_owned());
        let channels = if ns == "/user" {
            s.join(format!("user:{}", claims.sub));
            vec![
                self.keys.user_channel(&claims.sub),
                self.keys.broadcast_channel(),
            ]
        } else {
            let role = ns.trim_start_matches('/');
            if !valid_role(role) || !claims.has_role(role) {
                self.metrics
                    .handshake_refusals
                    .with_label_values(&["role"])
                    .inc();
                return refuse(&format!("namespace {ns} needs the role '{role}'"));
            }
            vec![self.keys.role_channel(role), self.keys.broadcast_channel()]
        };
        let admission = match self.hub.admit(&claims.sub) {
            Ok(a) => a,
            Err(Refusal::NodeFull) => return refuse("this gateway is full: try again"),
            Err(Refusal::UserFull) => return refuse("too many connections for this user"),
        };
        let ready: Vec<watch::Receiver<bool>> =
            channels.iter().map(|c| self.bridge_join(c)).collect();
        let joined = Joined {
            _admission: admission,
            channels,
            sub: claims.sub.clone(),
            role,
        };
        self.sockets
            .lock()
            .expect("sockets lock")
            .insert(s.id, joined);
        let _ = self.expiries.send(Expiry::At(s.clone(), claims.exp));
        self.metrics.connections.inc();
        let _ = tokio::time::timeout(SUBSCRIBE_WAIT, async {
            for mut r in ready {
                let _ = r.wait_for(|subscribed| *subscribed).await;
            }
        })
        .await;
        Ok(())
    }

    /// A fresh token for an open socket: the same user, and (on `/<role>`) still the role. It
    /// then replaces the expiry; a token that no longer carries the namespace's role ends the
    /// socket. The answer goes back in the client's acknowledgement.
    fn refresh(&self, s: &SocketRef, token: Option<String>) -> serde_json::Value {
        let claims = match self.verify(token.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                return serde_json::json!({"ok": false, "error": format!("token refused: {e}")});
            }
        };
        let mut sockets = self.sockets.lock().expect("sockets lock");
        let Some(joined) = sockets.get_mut(&s.id) else {
            return serde_json::json!({"ok": false, "error": "not connected"});
        };
        if claims.sub != joined.sub {
            return serde_json::json!({"ok": false, "error": RefreshError::OtherUser.to_string()});
        }
        if let Some(role) = joined.role.clone()
            && !claims.has_role(&role)
        {
            drop(sockets);
            let _ = s.emit(
                "role_revoked",
                &serde_json::json!({"message": format!("the new token does not carry the role '{role}'")}),
            );
            let _ = s.clone().disconnect();
            return serde_json::json!({"ok": false, "error": "role revoked"});
        }
        let _ = self.expiries.send(Expiry::At(s.clone(), claims.exp));
        serde_json::json!({"ok": true, "exp": claims.exp})
    }

    /// Verifies a token, counting a refusal by its reason.
    fn verify(&self, token: Option<&str>) -> Result<Claims, AuthError> {
        self.verifier
            .verify(token.unwrap_or(""))
            .inspect_err(|e| self.metrics.auth_failure(e.reason()))
    }

    fn leave(&self, s: &SocketRef) {
        let Some(joined) = self.sockets.lock().expect("sockets lock").remove(&s.id) else {
            return;
        };
        let _ = self.expiries.send(Expiry::Cancel(s.id));
        for channel in &joined.channels {
            self.bridge_leave(channel);
        }
        self.metrics.connections.dec();
    }

    fn target(&self, channel: &str) -> Target {
        let prefix = self.keys.prefix();
        let rest = channel
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or(channel);
        if let Some(user) = rest.strip_prefix("user:") {
            Target::UserRoom(format!("user:{user}"))
        } else if let Some(role) = rest.strip_prefix("role:") {
            Target::Namespace(format!("/{role}"))
        } else {
            Target::Everyone
        }
    }

    fn bridge_join(&self, channel: &str) -> watch::Receiver<bool> {
        let mut bridges = self.bridges.lock().expect("bridges lock");
        if let Some(b) = bridges.get_mut(channel) {
            b.sockets += 1;
            return b.ready.clone();
        }
        let tx = Queue::new(BRIDGE_QUEUE);
        let rx = tx.clone();
        let member = Arc::new(ConnShared::default());
        let (id, subscribed) = self.hub.join(&[channel.to_owned()], tx, member.clone());
        let (ready_tx, ready) = watch::channel(false);
        tokio::spawn(async move {
            for r in subscribed {
                let _ = r.await;
            }
            let _ = ready_tx.send(true);
        });
        let target = self.target(channel);
        let task = tokio::spawn(bridge(
            self.io.clone(),
            target,
            rx,
            member,
            self.metrics.clone(),
        ));
        let entry = Bridge {
            id,
            sockets: 1,
            task,
            ready: ready.clone(),
        };
        bridges.insert(channel.to_owned(), entry);
        ready
    }

    fn bridge_leave(&self, channel: &str) {
        let mut bridges = self.bridges.lock().expect("bridges lock");
        let Some(b) = bridges.get_mut(channel) else {
            return;
        };
        b.sockets -= 1;
        if b.sockets == 0 {
            let b = bridges.remove(channel).expect("present");
            self.hub.leave(b.id, &[channel.to_owned()]);
            b.task.abort();
        }
    }

    /// Socket.IO sockets on this node.
    pub fn sockets(&self) -> usize {
        self.sockets.lock().expect("sockets lock").len()
    }
}

/// The Socket.IO event for a frame: `event` frames under their own name with their data,
/// `new_notification` with the notification, other frames under their type with the rest.
fn translate(frame: serde_json::Value) -> Option<(String, serde_json::Value)> {
    let serde_json::Value::Object(mut map) = frame else {
        return None;
    };
    let kind = map.remove("type")?.as_str()?.to_owned();
    match kind.as_str() {
        "event" => {
            let name = map.remove("event")?.as_str()?.to_owned();
            Some((name, map.remove("data").unwrap_or(serde_json::Value::Null)))
        }
        "new_notification" => Some((kind, map.remove("notification")?)),
        _ => Some((kind, serde_json::Value::Object(map))),
    }
}

async fn bridge(
    io: SocketIo,
    target: Target,
    rx: Outbox,
    member: Arc<ConnShared>,
    metrics: Metrics,
) {
    // The emits are boxed while they run: a bridge waits far more than it emits, and the
    // socketioxide broadcast future would otherwise size every bridge's task (a bridge per user
    // with a Socket.IO socket: 1.4 KB each, heaptrack).
    loop {
        let out = rx.pop().await;
        Box::pin(async {
            for d in out.deliveries() {
                emit(&io, &target, d, &metrics).await;
            }
        })
        .await;
        member.written(out.counted());
    }
}

/// Emits one frame to the Socket.IO sockets `target` names.
async fn emit(io: &SocketIo, target: &Target, d: &Delivery, metrics: &Metrics) {
    let Some((event, payload)) = serde_json::from_slice(&d.bytes).ok().and_then(translate) else {
        return;
    };
    let operators = match target {
        Target::UserRoom(room) => io
            .of("/user")
            .map(|o| o.to(room.clone()))
            .into_iter()
            .collect(),
        Target::Namespace(ns) => io.of(ns).into_iter().collect(),
        Target::Everyone => io.nsps(),
    };
    for op in operators {
        match op.emit(&event, &payload).await {
            Ok(()) => metrics.delivered.inc(),
            Err(e) => {
                metrics
                    .dropped
                    .with_label_values(&["socketio_queue_full"])
                    .inc();
                tracing::debug!(cause = %e, "a Socket.IO broadcast did not reach every socket");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::translate;
    use serde_json::json;

    #[test]
    fn frames_become_socketio_events() {
        assert_eq!(
            translate(json!({"type": "event", "event": "new_ticket", "data": {"id": 1}})),
            Some(("new_ticket".into(), json!({"id": 1})))
        );
        assert_eq!(
            translate(json!({"type": "new_notification", "notification": {"title": "t"}})),
            Some(("new_notification".into(), json!({"title": "t"})))
        );
        assert_eq!(
            translate(json!({"type": "marked_read", "notification_id": "x"})),
            Some(("marked_read".into(), json!({"notification_id": "x"})))
        );
        assert_eq!(translate(json!([1])), None);
    }
}
