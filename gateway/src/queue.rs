//! A connection's outbound queue: bounded, never waited on by whoever pushes, and holding no
//! memory while empty.
//!
//! tokio's bounded mpsc allocates its first block of 32 slots when the channel is made: 1.3 KB of
//! every idle connection (heaptrack, 5,000 idle connections). Here the slots are a `VecDeque`
//! allocated on the first push and released when the writer drains it, so an idle connection
//! pays for the queue's bookkeeping only. Producers (the hub's delivery, the connection's reader,
//! its command tasks) only ever `try_push`: a full queue means the client is slow.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The queue; share it as `Arc<Queue<T>>` between its producers and its one consumer.
pub struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    ready: Notify,
    /// Poked when the consumer takes an item (for [`Queue::push`]).
    space: Notify,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            space: Notify::new(),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `item` unless `capacity` items are already waiting.
    pub fn try_push(&self, item: T) -> Result<(), Full> {
        self.offer(item).map_err(|_| Full)
    }

    /// Queues `item`, waiting for room: for the connection's own reader, whose replies must not
    /// be lost to a writer that is merely behind (a client that reads nothing is cut by the
    /// writer, which ends the reader).
    pub async fn push(&self, mut item: T) {
        loop {
            match self.offer(item) {
                Ok(()) => return,
                Err(back) => item = back,
            }
            self.space.notified().await;
        }
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
        drop(items);
        if item.is_some() {
            self.space.notify_one();
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

        q.try_push(5).unwrap();
        q.try_push(6).unwrap();
        let pushing = tokio::spawn({
            let q = q.clone();
            async move { q.push(7).await }
        });
        tokio::task::yield_now().await;
        assert!(!pushing.is_finished(), "a full queue makes push wait");
        assert_eq!(q.pop().await, 5);
        pushing.await.unwrap();
        assert_eq!((q.try_pop(), q.try_pop()), (Some(6), Some(7)));
    }
}
