//! A timer table: a fixed array of optional deadlines, the next deadline
//! being their minimum (the shape of quinn-proto's `TimerTable`).
//!
//! State machines in this crate keep one slot per thing that can expire and
//! report [`TimerTable::next`] from their `poll_timeout`.

use crate::time::Instant;

/// `N` optional deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimerTable<const N: usize> {
    deadlines: [Option<Instant>; N],
}

impl<const N: usize> Default for TimerTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TimerTable<N> {
    /// All slots disarmed.
    pub const fn new() -> Self {
        TimerTable {
            deadlines: [None; N],
        }
    }

    /// Arms `slot` to expire at `at` (a slot index past `N` is ignored).
    pub fn set(&mut self, slot: usize, at: Instant) {
        if let Some(d) = self.deadlines.get_mut(slot) {
            *d = Some(at);
        }
    }

    /// Disarms `slot`.
    pub fn stop(&mut self, slot: usize) {
        if let Some(d) = self.deadlines.get_mut(slot) {
            *d = None;
        }
    }

    /// The deadline of `slot`, if armed.
    pub fn get(&self, slot: usize) -> Option<Instant> {
        self.deadlines.get(slot).copied().flatten()
    }

    /// Whether `slot` is armed and due at `now`.
    pub fn is_expired(&self, slot: usize, now: Instant) -> bool {
        self.get(slot).is_some_and(|at| at <= now)
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_minimum_of_armed_slots() {
        let mut t = TimerTable::<3>::new();
        assert_eq!(t.next(), None);
        t.set(0, Instant::from_secs(5));
        t.set(2, Instant::from_secs(3));
        t.set(7, Instant::from_secs(1)); // out of range: ignored
        assert_eq!(t.next(), Some(Instant::from_secs(3)));
        assert!(t.is_expired(2, Instant::from_secs(3)));
        assert!(!t.is_expired(0, Instant::from_secs(3)));
        t.stop(2);
        assert_eq!(t.next(), Some(Instant::from_secs(5)));
    }
}
