//! Making room when the listener table is full: a newcomer takes the slot of
//! the oldest connection that is not established (no hello yet) once that
//! one has waited [`Config::evict_after`](super::Config::evict_after), so
//! that connections which stay silent, or trickle a hello byte by byte,
//! cannot keep real listeners out until the hello timeout.
//!
//! Connections are kept in the *waiting list* in the order they opened: an
//! intrusive doubly linked list through the slots (`wait_prev`,
//! `wait_next`), appended to by `open` and left when the slot is freed. A
//! connection that becomes established stays listed until it reaches the
//! head, where the next eviction drops it; so the head, after dropping, is
//! the oldest connection not established, and an open costs amortised O(1)
//! (every listing is dropped once). Whether a state is established is
//! [`State::is_established`] alone, so a handshake state added later is
//! evictable until it completes.
//!
//! The evicted connection's slot goes to the newcomer at once; its close is
//! a *record* on the slot (`evicted`), in the closing list where its event
//! is due, reported by `poll_event` before any event of the new tenant.

use super::slot::{State, NIL};
use super::{bump, BrokerState, Event, ListenerId, Slots};
use crate::loss::SenderSlot;
use crate::time::Instant;
use crate::wire::{CloseReason, VERSION};

impl<L, S> BrokerState<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// Appends `index`, just opened, to the waiting list.
    pub(super) fn push_waiting(&mut self, index: u32) {
        let tail = self.wait_tail;
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            return;
        };
        if slot.waiting {
            return;
        }
        slot.waiting = true;
        slot.wait_prev = tail;
        slot.wait_next = NIL;
        match self.slots.as_mut().get_mut(tail as usize) {
            Some(t) => t.wait_next = index,
            None => self.wait_head = index,
        }
        self.wait_tail = index;
    }

    /// Takes `index` out of the waiting list (no-op if it is not listed).
    pub(super) fn unlist_waiting(&mut self, index: u32) {
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            return;
        };
        if !slot.waiting {
            return;
        }
        let (prev, next) = (slot.wait_prev, slot.wait_next);
        slot.waiting = false;
        slot.wait_prev = NIL;
        slot.wait_next = NIL;
        match self.slots.as_mut().get_mut(prev as usize) {
            Some(p) => p.wait_next = next,
            None => self.wait_head = next,
        }
        match self.slots.as_mut().get_mut(next as usize) {
            Some(n) => n.wait_prev = prev,
            None => self.wait_tail = prev,
        }
    }

    /// The table is full at `now`: closes the oldest connection not
    /// established if it has waited `evict_after` (since it opened, or
    /// since its last frame) and returns its slot, renumbered for a new
    /// tenant; `None` if there is no such connection.
    ///
    /// A slot whose previous tenant's eviction is not reported yet is not
    /// evicted again: a transport drains `poll_event` long before its new
    /// tenant has waited `evict_after`.
    pub(super) fn evict(&mut self, now: Instant) -> Option<u32> {
        let index = loop {
            let head = self.wait_head;
            let slot = self.slots.as_ref().get(head as usize)?;
            if slot.state.is_open() && !slot.state.is_established() {
                if slot.evicted || now < slot.last_rx + self.config.evict_after {
                    return None;
                }
                break head;
            }
            // established or leaving: it cannot be evicted while this tenant lasts
            self.unlist_waiting(head);
        };
        self.unlist_waiting(index);
        let state = self.slots.as_ref().get(index as usize)?.state;
        self.gauge_down(index, state);
        bump(
            &mut self.stats.closes,
            CloseReason::TooManyListeners as usize,
        );
        self.stats.connections_evicted += 1;
        let slot = self.slots.as_mut().get_mut(index as usize)?;
        slot.generation = slot.generation.wrapping_add(1);
        Some(index)
    }

    /// Slot `index`, reopened for the newcomer, carries the close of the
    /// connection evicted from it: it joins the closing list for it.
    pub(super) fn record_eviction(&mut self, index: u32) {
        self.push_close(index);
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            slot.evicted = true;
        }
    }

    /// The event of an eviction recorded on the slot at the head of the
    /// closing list, if there is one. The slot stays at the head when its
    /// new tenant is closing too (its event is next); a tenant that went
    /// away meanwhile is renumbered and its slot freed now.
    pub(super) fn poll_eviction(&mut self) -> Option<Event> {
        let index = self.close_head;
        let free_head = self.free_head;
        let slot = self.slots.as_mut().get_mut(index as usize)?;
        if !slot.evicted {
            return None;
        }
        slot.evicted = false;
        let listener = ListenerId {
            index,
            generation: slot.generation.wrapping_sub(1),
        };
        match slot.state {
            State::Closing { .. } | State::Stats => {}
            state => {
                self.close_head = slot.link;
                if state == State::Free {
                    slot.generation = slot.generation.wrapping_add(1);
                    slot.link = free_head;
                    self.free_head = index;
                } else {
                    slot.link = NIL;
                }
                if self.close_head == NIL {
                    self.close_tail = NIL;
                }
            }
        }
        // The slot belongs to the newcomer now; the evicted connection's
        // close goes out in version 1, which a peer takes in any session
        // (PROTOCOL.md: a close is never unexpected for its version).
        Some(Event::Closed {
            listener,
            reason: CloseReason::TooManyListeners,
            send_close: true,
            version: VERSION,
        })
    }
}
