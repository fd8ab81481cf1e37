//! The broker's clock: `std::time::Instant` mapped onto the core's
//! microsecond [`flagpost_core::Instant`], from an epoch fixed at start.

use flagpost_core::{Duration, Instant};

/// A monotonic clock with its own epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        Instant::from_std(self.epoch, std::time::Instant::now())
    }

    /// How long from now until `at` (zero if past).
    pub fn until(&self, at: Instant) -> std::time::Duration {
        let d: Duration = at - self.now();
        d.into()
    }
}
