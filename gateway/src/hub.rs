//! The hub: which connections on this node listen on which Redis channels.
//!
//! A connection joins the channels of its user, its roles and the broadcast channel. The hub
//! counts members per channel; a channel that gains its first member or loses its last one is
//! marked dirty, and the subscription task ([`crate::fanout`]) turns all dirty channels into one
//! SUBSCRIBE and one UNSUBSCRIBE, so a connection storm costs a few Redis commands, not one per
//! connection. A joining connection gets a receiver that fires once its channels are subscribed
//! (subscribe first, then read, then de-duplicate).
//!
//! Delivery ([`Hub::deliver_run`]) never waits: it `try_push`es the shared frames into each
//! member's bounded queue; a member already a queue's worth of frames behind is slow and is
//! closed with [`CloseCode::SlowConsumer`].

use crate::connection::{CloseCode, ConnShared, Delivery, Full, Outbound, Outbox};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, oneshot};

pub type ConnId = u64;

#[derive(Clone)]
struct Member {
    tx: Outbox,
    shared: Arc<ConnShared>,
}

#[derive(Default)]
struct Channel {
    members: HashMap<ConnId, Member>,
    subscribed: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
    conns: HashMap<ConnId, Member>,
    dirty: HashSet<String>,
    next_id: ConnId,
}

impl State {
    /// Adds `member` to `channels`; a receiver for each channel not subscribed yet (it is
    /// marked dirty).
    fn add<'a>(
        &mut self,
        id: ConnId,
        member: &Member,
        channels: impl Iterator<Item = &'a String>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut ready = Vec::new();
        for name in channels {
            let ch = self.channels.entry(name.clone()).or_default();
            ch.members.insert(id, member.clone());
            if !ch.subscribed {
                let (tx, rx) = oneshot::channel();
                ch.waiters.push(tx);
                ready.push(rx);
                self.dirty.insert(name.clone());
            }
        }
        ready
    }

    /// Takes connection `id` out of `channels`; true when one was left empty (marked dirty).
    fn remove<'a>(&mut self, id: ConnId, channels: impl Iterator<Item = &'a String>) -> bool {
        let mut emptied = false;
        for name in channels {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.members.remove(&id);
                if ch.members.is_empty() {
                    self.dirty.insert(name.clone());
                    emptied = true;
                }
            }
        }
        emptied
    }
}

/// Why a handshake is refused before upgrading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NodeFull,
    UserFull,
}

/// Outcome of a delivery to one channel.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub written: usize,
    pub slow: usize,
}

pub struct Hub {
    state: RwLock<State>,
    /// Connections per user (admitted, not yet left), and their total.
    users: Mutex<(HashMap<String, usize>, usize)>,
    max_per_user: usize,
    max_total: usize,
    /// Poked when a channel becomes dirty.
    pub dirty: Notify,
}

/// A place on this node, held from the handshake until the connection ends.
pub struct Admission {
    hub: Arc<Hub>,
    user: String,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut users = self.hub.users.lock().expect("hub lock");
        let (per_user, total) = &mut *users;
        *total -= 1;
        if let Some(n) = per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
    }
}

impl Hub {
    pub fn new(max_per_user: usize, max_total: usize) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::default(),
            users: Mutex::default(),
            max_per_user,
            max_total,
            dirty: Notify::new(),
        })
    }

    /// Reserves a place for one more connection of `user`, or says why not.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<Admission, Refusal> {
        let mut users = self.users.lock().expect("hub lock");
        let (per_user, total) = &mut *users;
        if *total >= self.max_total {
            return Err(Refusal::NodeFull);
        }
        let n = per_user.entry(user.to_owned()).or_default();
        if *n >= self.max_per_user {
            return Err(Refusal::UserFull);
        }
        *n += 1;
        *total += 1;
        Ok(Admission {
            hub: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Admitted connections, and the distinct users they belong to.
    pub fn presence(&self) -> (usize, Vec<String>) {
        let users = self.users.lock().expect("hub lock");
        (users.1, users.0.keys().cloned().collect())
    }

    /// Adds a connection to `channels`. The receivers fire once every channel is subscribed.
    pub fn join(
        &self,
        channels: &[String],
        tx: Outbox,
        shared: Arc<ConnShared>,
    ) -> (ConnId, Vec<oneshot::Receiver<()>>) {
        let member = Member { tx, shared };
        let mut st = self.state.write().expect("hub lock");
        st.next_id += 1;
        let id = st.next_id;
        st.conns.insert(id, member.clone());
        let ready = st.add(id, &member, channels.iter());
        drop(st);
        self.poke(!ready.is_empty());
        (id, ready)
    }

    /// Moves a connection from the channels of its old grant to those of its new one (a token
    /// refresh): it leaves `old` ∖ `new` at once, so nothing more from those reaches it, and joins
    /// `new` ∖ `old`; the receivers fire once the joined channels are subscribed.
    pub fn regrant(
        &self,
        id: ConnId,
        old: &[String],
        new: &[String],
    ) -> Vec<oneshot::Receiver<()>> {
        let mut st = self.state.write().expect("hub lock");
        let Some(member) = st.conns.get(&id).cloned() else {
            return Vec::new();
        };
        let emptied = st.remove(id, old.iter().filter(|c| !new.contains(c)));
        let ready = st.add(id, &member, new.iter().filter(|c| !old.contains(c)));
        drop(st);
        self.poke(emptied || !ready.is_empty());
        ready
    }

    /// Wakes the subscription task when channels became dirty.
    fn poke(&self, dirty: bool) {
        if dirty {
            self.dirty.notify_one();
        }
    }

    /// Removes a connection from its channels.
    pub fn leave(&self, id: ConnId, channels: &[String]) {
        let mut st = self.state.write().expect("hub lock");
        st.conns.remove(&id);
        let emptied = st.remove(id, channels.iter());
        drop(st);
        self.poke(emptied);
    }

    /// Takes the pending subscription changes: channels to SUBSCRIBE (members, not yet
    /// subscribed) and to UNSUBSCRIBE (no members left; forgotten here).
    pub fn take_dirty(&self) -> (Vec<String>, Vec<String>) {
        let mut st = self.state.write().expect("hub lock");
        let dirty: Vec<String> = st.dirty.drain().collect();
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        for name in dirty {
            let Some(ch) = st.channels.get(&name) else {
                continue;
            };
            if ch.members.is_empty() {
                if ch.subscribed {
                    unsubscribe.push(name.clone());
                }
                st.channels.remove(&name);
            } else if !ch.subscribed {
                subscribe.push(name);
            }
        }
        (subscribe, unsubscribe)
    }

    /// Records that `channels` are subscribed and wakes the connections waiting for them.
    pub fn mark_subscribed(&self, channels: &[String]) {
        let mut st = self.state.write().expect("hub lock");
        for name in channels {
            if let Some(ch) = st.channels.get_mut(name) {
                ch.subscribed = true;
                for w in ch.waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    /// Every channel currently subscribed (to restore after a Redis reconnect).
    pub fn subscribed_channels(&self) -> Vec<String> {
        let st = self.state.read().expect("hub lock");
        st.channels
            .iter()
            .filter(|(_, c)| c.subscribed)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Queues a run of frames for one channel as one shared [`Outbound::Run`] per member, so a
    /// member's writer sends it in one write (one write per frame is the cost that
    /// dominates fan-out). A member is slow when frames are already queued for it and this run
    /// would put it more than its queue's capacity behind: it is then asked to close, so a client
    /// is never more than capacity + one run behind.
    pub fn deliver_run(&self, channel: &str, run: Arc<[Delivery]>) -> Delivered {
        let st = self.state.read().expect("hub lock");
        let mut out = Delivered::default();
        let Some(ch) = st.channels.get(channel) else {
            return out;
        };
        if ch.members.is_empty() || run.is_empty() {
            return out;
        }
        let n = run.len();
        for m in ch.members.values() {
            let behind = m.shared.queue(n);
            let result = if behind > 0 && behind + n > m.tx.capacity() {
                Err(Full)
            } else {
                m.tx.try_push(Outbound::Run(run.clone()))
            };
            match result {
                Ok(()) => out.written += n,
                Err(Full) => {
                    m.shared.written(n);
                    if m.shared.kick_code().is_none() {
                        out.slow += 1;
                    }
                    m.shared.kick(CloseCode::SlowConsumer);
                }
            }
        }
        out
    }

    /// Queues the same frame for every connection on this node (e.g. "refetch").
    pub fn deliver_all(&self, delivery: &Delivery) {
        let st = self.state.read().expect("hub lock");
        for m in st.conns.values() {
            if let Err(Full) = m.tx.try_push(Outbound::frame(delivery.clone())) {
                m.shared.kick(CloseCode::SlowConsumer);
            }
        }
    }

    /// A handle to every connection on this node (the drain kicks them a few at a time).
    pub fn connection_handles(&self) -> Vec<Arc<ConnShared>> {
        let st = self.state.read().expect("hub lock");
        st.conns.values().map(|m| m.shared.clone()).collect()
    }

    pub fn connections(&self) -> usize {
        self.state.read().expect("hub lock").conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Queue;
    use bytes::Bytes;

    fn conn(
        hub: &Hub,
        channels: &[&str],
        cap: usize,
    ) -> (ConnId, Outbox, Arc<ConnShared>, Vec<oneshot::Receiver<()>>) {
        let tx = Queue::new(cap);
        let rx = tx.clone();
        let shared = Arc::new(ConnShared::default());
        let names: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        let (id, ready) = hub.join(&names, tx, shared.clone());
        (id, rx, shared, ready)
    }

    /// The texts queued for a connection, runs flattened (and accounted as written).
    fn texts(rx: &mut Outbox, shared: &ConnShared) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(o) = rx.try_pop() {
            shared.written(o.counted());
            out.extend(
                o.deliveries()
                    .iter()
                    .map(|d| String::from_utf8_lossy(&d.bytes).into_owned()),
            );
        }
        out
    }

    fn frame(text: &'static str) -> Delivery {
        Delivery {
            bytes: Bytes::from_static(text.as_bytes()),
            seq: None,
        }
    }

    #[tokio::test]
    async fn subscription_changes_are_batched_and_counted_per_channel() {
        let hub = Hub::new(10, 100);
        let (a, _ra, _, ready_a) = conn(&hub, &["u:1", "b"], 8);
        let (b, _rb, _, ready_b) = conn(&hub, &["u:2", "b"], 8);
        let (mut sub, unsub) = hub.take_dirty();
        sub.sort();
        assert_eq!(sub, ["b", "u:1", "u:2"], "one batch, each channel once");
        assert!(unsub.is_empty());
        hub.mark_subscribed(&sub);
        for r in ready_a.into_iter().chain(ready_b) {
            r.await.expect("woken once subscribed");
        }
        hub.leave(a, &["u:1".into(), "b".into()]);
        assert_eq!(
            hub.take_dirty(),
            (vec![], vec!["u:1".to_owned()]),
            "b still has a member"
        );
        hub.leave(b, &["u:2".into(), "b".into()]);
        let (_, mut unsub) = hub.take_dirty();
        unsub.sort();
        assert_eq!(unsub, ["b", "u:2"]);
        assert!(hub.subscribed_channels().is_empty());
    }

    #[tokio::test]
    async fn delivery_reaches_members_only_and_a_full_queue_kicks_the_slow_one() {
        let hub = Hub::new(10, 100);
        let (_, mut fast, fast_shared, _) = conn(&hub, &["u:1"], 8);
        let (_, _stuck, slow_shared, _) = conn(&hub, &["u:1"], 1);
        let (_, mut other, other_shared, _) = conn(&hub, &["u:2"], 8);
        assert_eq!(
            hub.deliver_run("u:1", [frame("a")].into()),
            Delivered {
                written: 2,
                slow: 0
            }
        );
        assert_eq!(
            hub.deliver_run("u:1", [frame("b")].into()),
            Delivered {
                written: 1,
                slow: 1
            }
        );
        assert_eq!(slow_shared.kick_code(), Some(CloseCode::SlowConsumer));
        assert_eq!(texts(&mut fast, &fast_shared), ["a", "b"]);
        assert!(
            texts(&mut other, &other_shared).is_empty(),
            "u:2 gets nothing of u:1's"
        );
    }

    #[tokio::test]
    async fn a_run_reaches_each_member_whole_and_in_order() {
        let hub = Hub::new(10, 100);
        let (_, mut a, a_shared, _) = conn(&hub, &["r"], 8);
        let (_, mut b, b_shared, _) = conn(&hub, &["r"], 8);
        let run: Arc<[Delivery]> = [frame("1"), frame("2"), frame("3")].into();
        assert_eq!(hub.deliver_run("r", run.clone()).written, 6);
        assert_eq!(texts(&mut a, &a_shared), ["1", "2", "3"]);
        assert_eq!(texts(&mut b, &b_shared), ["1", "2", "3"]);
        assert_eq!(hub.deliver_run("nobody", run), Delivered::default());
    }

    #[tokio::test]
    async fn a_member_is_slow_only_when_already_behind_by_its_capacity() {
        let hub = Hub::new(10, 100);
        let run: Arc<[Delivery]> = [frame("1"), frame("2"), frame("3")].into();
        // Nothing queued: a run longer than the queue is taken whole.
        let (_, mut small, small_shared, _) = conn(&hub, &["s"], 2);
        assert_eq!(hub.deliver_run("s", run.clone()).written, 3);
        assert_eq!(small_shared.kick_code(), None);
        // Written frames no longer count: the next run is taken too.
        assert_eq!(texts(&mut small, &small_shared), ["1", "2", "3"]);
        assert_eq!(hub.deliver_run("s", run[..2].into()).written, 2);
        // Still holding those two, one more would put it past its capacity of 2.
        assert_eq!(
            hub.deliver_run("s", run[..1].into()),
            Delivered {
                written: 0,
                slow: 1
            }
        );
        assert_eq!(small_shared.kick_code(), Some(CloseCode::SlowConsumer));
        assert_eq!(texts(&mut small, &small_shared), ["1", "2"]);
    }

    #[test]
    fn admission_enforces_per_user_and_node_limits_and_gives_back_on_drop() {
        let hub = Hub::new(2, 3);
        let a1 = hub.admit("a").unwrap();
        let _a2 = hub.admit("a").unwrap();
        assert_eq!(hub.admit("a").err(), Some(Refusal::UserFull));
        let _b = hub.admit("b").unwrap();
        assert_eq!(hub.admit("c").err(), Some(Refusal::NodeFull));
        drop(a1);
        assert!(hub.admit("c").is_ok());
        let (n, mut users) = hub.presence();
        users.sort();
        assert_eq!(
            (n, users),
            (2, vec!["a".to_owned(), "b".into()]),
            "a1 and c gave theirs back"
        );
    }
}
