//! Conversions between embassy-time's clock and the core's microsecond
//! `Instant`.

use flagpost_core::Instant;

/// The core instant of embassy-time's `now`.
pub(crate) fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// The embassy-time instant of a core deadline.
pub(crate) fn to_embassy(at: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.as_micros())
}
