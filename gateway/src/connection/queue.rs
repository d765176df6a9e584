//! What a connection is sent, and the queue it waits in: bounded, never waited on by whoever
//! delivers, and holding no memory while empty; plus the little state the hub shares with the
//! connection (how far behind it is, and whether it was asked to close).
//!
//! tokio's bounded mpsc allocates its first block of 32 slots when the channel is made: 1.3 KB of
//! every idle connection (heaptrack, 5,000 idle connections). Here the slots are a `VecDeque`
//! allocated on the first push and released when the connection drains it, so an idle connection
//! pays for the queue's bookkeeping only. Producers (the hub's delivery, the connection's command
//! tasks) only ever `try_push`: a full queue means the client is slow.

use super::CloseCode;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A frame ready to write: the same bytes go to every connection that gets it. `seq` is the
/// notification's position for `new_notification` frames, used to drop duplicates.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub bytes: Bytes,
    pub seq: Option<i64>,
}

/// What a connection is asked to send.
#[derive(Debug)]
pub enum Outbound {
    /// A notice for this connection alone.
    Frame(Box<Delivery>),
    /// Frames of one channel that arrived together: one allocation shared by every member, one
    /// queue slot and one wake-up per member, however many frames.
    Run(Arc<[Delivery]>),
}

impl Outbound {
    pub fn frame(d: Delivery) -> Self {
        Outbound::Frame(Box::new(d))
    }

    /// The frames to send, in order.
    pub fn deliveries(&self) -> &[Delivery] {
        match self {
            Outbound::Frame(d) => std::slice::from_ref(&**d),
            Outbound::Run(run) => run,
        }
    }

    /// Frames that count against the hub's measure of how far behind a member is (runs only).
    pub fn counted(&self) -> usize {
        match self {
            Outbound::Frame(_) => 0,
            Outbound::Run(run) => run.len(),
        }
    }
}

/// A connection's outbound queue, as the hub and the connection's command tasks hold it.
pub type Outbox = Arc<Queue<Outbound>>;

/// State shared between a connection and the hub.
#[derive(Default)]
pub struct ConnShared {
    kick_code: AtomicU16,
    pub kicked: Notify,
    /// Frames of queued runs not yet written (the hub's measure of how far behind it is).
    queued: AtomicUsize,
}

impl ConnShared {
    /// The connection wrote (or dropped) `n` frames of a run.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Counts `n` more frames queued; returns how many were queued before.
    pub fn queue(&self, n: usize) -> usize {
        self.queued.fetch_add(n, Ordering::Relaxed)
    }

    /// Asks the connection to close with `code`; the first request wins.
    pub fn kick(&self, code: CloseCode) {
        if self
            .kick_code
            .compare_exchange(0, code.code(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.kicked.notify_one();
        }
    }

    /// The close code asked for, if any.
    pub fn kick_code(&self) -> Option<CloseCode> {
        match self.kick_code.load(Ordering::SeqCst) {
            0 => None,
            c => Some(CloseCode::from_code(c)),
        }
    }
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The queue; share it as `Arc<Queue<T>>` between its producers and its one consumer.
pub struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    ready: Notify,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `item` unless `capacity` items are already waiting.
    pub fn try_push(&self, item: T) -> Result<(), Full> {
        self.offer(item).map_err(|_| Full)
    }

    fn offer(&self, item: T) -> Result<(), T> {
        {
            let mut items = self.items.lock().expect("queue lock");
            if items.len() >= self.capacity {
                return Err(item);
            }
            items.push_back(item);
        }
        // A permit is kept when the consumer is not waiting yet, so no wake-up is lost.
        self.ready.notify_one();
        Ok(())
    }

    /// The next item, if one is waiting; an emptied queue gives its memory back.
    pub fn try_pop(&self) -> Option<T> {
        let mut items = self.items.lock().expect("queue lock");
        let item = items.pop_front();
        if items.is_empty() && items.capacity() > 0 {
            *items = VecDeque::new();
        }
        item
    }

    /// Waits for the next item (one consumer only).
    pub async fn pop(&self) -> T {
        loop {
            if let Some(item) = self.try_pop() {
                return item;
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_slot_stays_small() {
        // Every byte of a slot is paid per queued item, and the queue is per connection.
        assert!(std::mem::size_of::<Outbound>() <= 24);
    }

    #[tokio::test]
    async fn bounded_in_order_and_empty_when_drained() {
        let q = Queue::new(2);
        assert_eq!(q.try_push(1), Ok(()));
        assert_eq!(q.try_push(2), Ok(()));
        assert_eq!(q.try_push(3), Err(Full));
        assert_eq!(q.pop().await, 1);
        assert_eq!(q.try_pop(), Some(2));
        assert_eq!(q.try_pop(), None);
        assert_eq!(
            q.items.lock().unwrap().capacity(),
            0,
            "no memory held while empty"
        );
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.try_push(4).unwrap();
        assert_eq!(
            waiting.await.unwrap(),
            4,
            "a push wakes the waiting consumer"
        );
    }
}
