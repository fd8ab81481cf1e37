//! The broker's clock: `std::time::Instant` mapped onto the core's
//! microsecond [`flagpost_core::Instant`], from an epoch fixed at start.

use flagpost_core::{Duration, Instant};

/// A monotonic clock with its own epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
    /// Unit tests: the time is this counter (µs), moved by the test.
    #[cfg(test)]
    manual: Option<&'static std::sync::atomic::AtomicU64>,
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
            #[cfg(test)]
            manual: None,
        }
    }

    /// A simulated clock reading `micros`, which the test moves.
    #[cfg(test)]
    pub(crate) fn manual(micros: &'static std::sync::atomic::AtomicU64) -> Self {
        Clock {
            manual: Some(micros),
            ..Self::new()
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        #[cfg(test)]
        if let Some(m) = self.manual {
            return Instant::from_micros(m.load(std::sync::atomic::Ordering::SeqCst));
        }
        Instant::from_std(self.epoch, std::time::Instant::now())
    }

    /// How long from now until `at` (zero if past).
    pub fn until(&self, at: Instant) -> std::time::Duration {
        let d: Duration = at - self.now();
        d.into()
    }
}
