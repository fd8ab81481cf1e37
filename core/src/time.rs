//! Flagpost's own clock-free time types: an [`Instant`] and a [`Duration`],
//! both whole microseconds in a `u64`.
//!
//! Nothing in `flagpost-core` reads a clock. Transports read theirs and pass
//! `now` in; the state machines answer with the next [`Instant`] they need to
//! be called at. Arithmetic saturates instead of overflowing, so no input can
//! make it panic: an `Instant` is a count of microseconds since an epoch the
//! transport chooses (process start, boot), which `u64` outlasts by 584,000
//! years.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in time, in microseconds since an epoch chosen by the transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant { micros: 0 };
    /// The last representable instant; adding to it saturates here.
    pub const MAX: Instant = Instant { micros: u64::MAX };

    /// The earlier of two optional deadlines (`None`: no deadline).
    pub const fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
        match (a, b) {
            (Some(a), Some(b)) if b.micros < a.micros => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }

    /// An instant `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            micros: millis.saturating_mul(1_000),
        }
    }

    /// An instant `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            micros: secs.saturating_mul(1_000_000),
        }
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Milliseconds since the epoch, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration {
            micros: self.micros.saturating_sub(earlier.micros),
        }
    }
}

impl Duration {
    /// No time at all. As a polling interval it means "disabled".
    pub const ZERO: Duration = Duration { micros: 0 };
    /// The longest representable duration.
    pub const MAX: Duration = Duration { micros: u64::MAX };

    /// A duration of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }

    /// A duration of `millis` milliseconds (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Duration {
            micros: millis.saturating_mul(1_000),
        }
    }

    /// A duration of `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            micros: secs.saturating_mul(1_000_000),
        }
    }

    /// Whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Whole milliseconds, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// Whole seconds, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.micros / 1_000_000
    }

    /// `true` for [`Duration::ZERO`].
    pub const fn is_zero(self) -> bool {
        self.micros == 0
    }

    /// `self * factor`, saturating.
    pub const fn saturating_mul(self, factor: u64) -> Duration {
        Duration {
            micros: self.micros.saturating_mul(factor),
        }
    }

    /// The smaller of two durations.
    pub const fn min(self, other: Duration) -> Duration {
        if self.micros <= other.micros {
            self
        } else {
            other
        }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at [`Instant::MAX`].
    fn add(self, rhs: Duration) -> Instant {
        Instant {
            micros: self.micros.saturating_add(rhs.micros),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at [`Duration::ZERO`] when `rhs` is later.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    /// Saturates at [`Duration::MAX`].
    fn add(self, rhs: Duration) -> Duration {
        Duration {
            micros: self.micros.saturating_add(rhs.micros),
        }
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.micros)
    }
}

impl From<core::time::Duration> for Duration {
    /// Truncates to whole microseconds and saturates past `u64::MAX` of them.
    fn from(d: core::time::Duration) -> Self {
        Duration {
            micros: u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(feature = "std")]
impl Instant {
    /// The instant of `at` on a clock whose epoch is `epoch` (saturating at
    /// [`Instant::ZERO`] for times before the epoch).
    pub fn from_std(epoch: std::time::Instant, at: std::time::Instant) -> Instant {
        Instant::ZERO + Duration::from(at.saturating_duration_since(epoch))
    }

    /// The `std` instant of `self` on a clock whose epoch is `epoch`
    /// (saturating at the latest `std` instant representable).
    pub fn to_std(self, epoch: std::time::Instant) -> std::time::Instant {
        let d = core::time::Duration::from_micros(self.micros);
        epoch.checked_add(d).unwrap_or(epoch)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.micros / 1_000_000,
            self.micros % 1_000_000
        )
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros.is_multiple_of(1_000_000) {
            write!(f, "{}s", self.micros / 1_000_000)
        } else if self.micros.is_multiple_of(1_000) {
            write!(f, "{}ms", self.micros / 1_000)
        } else {
            write!(f, "{}us", self.micros)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Instant::from_secs(1), Duration::ZERO);
        assert_eq!(Duration::MAX + Duration::from_micros(1), Duration::MAX);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(
            Instant::from_millis(1500) - Instant::from_secs(1),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn core_duration_round_trip() {
        let d = Duration::from_micros(1_234_567);
        let c: core::time::Duration = d.into();
        assert_eq!(Duration::from(c), d);
        assert_eq!(
            Duration::from(core::time::Duration::from_secs(u64::MAX)),
            Duration::MAX
        );
    }

    #[test]
    fn display() {
        use std::string::ToString;
        assert_eq!(Instant::from_micros(1_000_001).to_string(), "1.000001s");
        assert_eq!(Duration::from_secs(30).to_string(), "30s");
        assert_eq!(Duration::from_millis(5).to_string(), "5ms");
        assert_eq!(Duration::from_micros(7).to_string(), "7us");
    }
}
