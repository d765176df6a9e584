//! When the Redis subscription was last heard from (a probe came back), on tokio's clock (so
//! paused-time tests see what the code sees), cheap to update from any task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The last time something was heard, cheap to update from any task.
pub struct LastHeard {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    at_ms: AtomicU64,
}

impl Default for LastHeard {
    /// Heard now.
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }
}

impl LastHeard {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Heard now.
    pub fn touch(&self) {
        self.at_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.at_ms.load(Ordering::Relaxed)),
        )
    }
}
