//! The reconnect delay: a capped exponential backoff with jitter, drawn
//! from randomness the caller supplies.

use crate::time::Duration;

/// Capped exponential backoff with jitter for reconnecting.
///
/// The n-th delay is drawn uniformly from `[c / 2, c)` with
/// `c = min(max, initial · 2ⁿ)`, using randomness the caller supplies (the
/// core has no RNG). [`reset`](Self::reset) after a successful welcome.
///
/// ```
/// use flagpost_core::listener::Backoff;
/// use flagpost_core::time::Duration;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// let d1 = b.next_delay(0);
/// assert_eq!(d1, Duration::from_millis(50));
/// for _ in 0..20 { b.next_delay(u32::MAX); }
/// assert!(b.next_delay(u32::MAX) <= Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// How many delays were handed out since the last reset.
    pub const fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next delay; `random` is any uniformly random `u32`.
    pub fn next_delay(&mut self, random: u32) -> Duration {
        // initial · 2ⁿ (n ≤ 32), saturating, by doubling: a u64 multiply
        // with an overflow check is long code on a Cortex-M0+
        let mut ceiling = self.initial.as_micros();
        for _ in 0..self.attempt.min(32) {
            ceiling = ceiling.saturating_add(ceiling);
        }
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = ceiling.min(self.max.as_micros());
        let half = ceiling / 2;
        // span · random / 2³², without a u128 division (a kilobyte of
        // library code on Cortex-M0); spans past 2³² µs (71 min) scale
        // coarsely first.
        let span = ceiling - half;
        let jitter = match u32::try_from(span) {
            Ok(span) => (u64::from(span) * u64::from(random)) >> 32,
            Err(_) => (span >> 32).saturating_mul(u64::from(random)),
        };
        Duration::from_micros(half.saturating_add(jitter))
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
