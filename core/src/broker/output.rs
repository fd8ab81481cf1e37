//! The broker's outputs and deadlines: the queue of listeners with frames to
//! write, the frames themselves (coalesced from each outbox, with the
//! handshake's ahead of them), the events that end connections, and the
//! timers: housekeeping (hello, keep-alive and stuck deadlines) and the
//! deferred possible-loss raise.

use super::slot::{State, NIL};
use super::{BrokerState, Event, ListenerId, Slots};
use crate::flags::FlagSet;
use crate::loss::SenderSlot;
use crate::time::{Duration, Instant};
use crate::wire::{CloseReason, FlagsRepr, FrameRepr, Framed, WelcomeRepr, AUTH_VERSION};

impl<L, S> BrokerState<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// The outbox of `index` has something: start its stuck clock and queue
    /// it for the transport, once.
    pub(super) fn mark_ready(&mut self, now: Instant, index: u32) {
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            return;
        };
        let first = slot.pending_since.is_none();
        let queued = slot.in_ready;
        if first {
            slot.pending_since = Some(now);
        }
        // The stuck clock starts whenever the outbox goes from empty to
        // pending, even if the slot is still queued from an earlier turn (a
        // reused slot, or one drained before poll_ready reached it).
        if first && !self.config.stuck_timeout.is_zero() {
            self.arm(now + self.config.stuck_timeout);
        }
        // Edge-triggered: queue only when the outbox goes from empty to
        // pending. A listener yielded but not yet drained (its socket was
        // not writable) is the transport's to retry when it becomes
        // writable; more raises only coalesce.
        if queued || !first {
            return;
        }
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            return;
        };
        slot.in_ready = true;
        slot.ready_next = NIL;
        if self.ready_tail == NIL {
            self.ready_head = index;
        } else if let Some(tail) = self.slots.as_mut().get_mut(self.ready_tail as usize) {
            tail.ready_next = index;
        }
        self.ready_tail = index;
    }

    /// The next listener that has frames to write, each at most once until
    /// its outbox has been drained by [`poll_frame`](Self::poll_frame).
    #[must_use]
    pub fn poll_ready(&mut self) -> Option<ListenerId> {
        while self.ready_head != NIL {
            let index = self.ready_head;
            let slot = self.slots.as_mut().get_mut(index as usize)?;
            self.ready_head = slot.ready_next;
            if self.ready_head == NIL {
                self.ready_tail = NIL;
            }
            slot.in_ready = false;
            slot.ready_next = NIL;
            if slot.has_output() {
                return Some(ListenerId {
                    index,
                    generation: slot.generation,
                });
            }
        }
        None
    }

    /// The next frame to write to listener `id` — the handshake's challenge
    /// or accept, the welcome, then the coalesced flags, then a pong — or
    /// `None` when its outbox is empty. Call it only when the connection can
    /// take the frame: whatever stays in the outbox keeps coalescing. A
    /// transport that writes bytes takes [`poll_framed`](Self::poll_framed)
    /// instead, which says the version to write them in.
    #[must_use]
    pub fn poll_frame(&mut self, id: ListenerId) -> Option<FrameRepr> {
        let broker_id = self.config.broker_id;
        let flags_due = self
            .slot(id)
            .filter(|s| s.state == State::Listening)
            .is_some_and(|s| !s.outbox.welcome && !s.outbox.accept && !s.outbox.flags.is_empty());
        let raises = if flags_due {
            self.drain_raises(id.index)
        } else {
            0
        };
        let slot = self
            .slot_mut(id)
            .filter(|s| matches!(s.state, State::Listening | State::AwaitingProof { .. }))?;
        let out = &mut slot.outbox;
        let frame = if out.challenge {
            out.challenge = false;
            FrameRepr::Challenge(slot.auth)
        } else if out.accept {
            out.accept = false;
            FrameRepr::Accept(slot.auth)
        } else if slot.state != State::Listening {
            slot.pending_since = None;
            return None;
        } else if out.welcome {
            out.welcome = false;
            FrameRepr::Welcome(WelcomeRepr {
                interest: slot.interest,
                keepalive_secs: u16::try_from(slot.keepalive.as_secs()).unwrap_or(u16::MAX),
                broker_id,
            })
        } else if !out.flags.is_empty() {
            let frame = FrameRepr::Flags(FlagsRepr {
                flags: out.flags,
                raises,
            });
            out.flags = FlagSet::EMPTY;
            frame
        } else if let Some(nonce) = out.pong.take() {
            FrameRepr::Pong(nonce)
        } else {
            slot.pending_since = None;
            return None;
        };
        if slot.outbox.is_empty() {
            slot.pending_since = None;
        }
        self.stats.frames_written += 1;
        if matches!(frame, FrameRepr::Flags(_)) {
            self.stats.flags_frames += 1;
        }
        Some(frame)
    }

    /// [`poll_frame`](Self::poll_frame) with the version the frame must be
    /// written in: the session's (2 for a session with a key).
    #[must_use]
    pub fn poll_framed(&mut self, id: ListenerId) -> Option<Framed> {
        let version = self.slot(id)?.version;
        self.poll_frame(id).map(|frame| Framed::new(version, frame))
    }

    /// The next connection that must end. The slot is freed as it is
    /// returned (unless the connection was evicted: its slot has a new
    /// tenant already).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        while self.close_head != NIL {
            if let Some(event) = self.poll_eviction() {
                return Some(event);
            }
            let index = self.close_head;
            let slot = self.slots.as_ref().get(index as usize)?;
            self.close_head = slot.link;
            if self.close_head == NIL {
                self.close_tail = NIL;
            }
            let listener = ListenerId {
                index,
                generation: slot.generation,
            };
            let version = slot.version;
            let event = match slot.state {
                State::Closing { reason, send } => Event::Closed {
                    listener,
                    reason,
                    send_close: send,
                    version,
                },
                State::Stats => Event::StatsRequested {
                    listener,
                    version,
                    accept: (version == AUTH_VERSION).then_some(slot.auth),
                },
                State::Free
                | State::AwaitingHello
                | State::AwaitingProof { .. }
                | State::Listening => continue,
            };
            self.free(index);
            return Some(event);
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to
    /// do: a connection's deadline to check (never sooner than
    /// [`Config::housekeeping`](super::Config::housekeeping) after the
    /// previous check; none while no connection is open), or the raise of
    /// possible losses folded within
    /// [`Config::loss_interval`](super::Config::loss_interval), whichever
    /// is first. `None`: nothing is due, ever, until the next input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let housekeeping = if self.connections() == 0 {
            None
        } else {
            self.next_housekeeping
        };
        match (housekeeping, self.loss_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Raises the possible losses folded within
    /// [`Config::loss_interval`](super::Config::loss_interval) once it has
    /// ended, and closes connections whose hello (handshake included),
    /// keep-alive or stuck deadline passed by `now`. Cheap when nothing is
    /// due; a full scan at most once per
    /// [`Config::housekeeping`](super::Config::housekeeping).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.raise_deferred_loss(now);
        if self.next_housekeeping.is_none_or(|at| now < at) {
            return;
        }
        self.last_housekeeping = now;
        self.next_housekeeping = None;
        let hello = self.config.hello_timeout;
        let stuck = self.config.stuck_timeout;
        let mut next: Option<Instant> = None;
        for index in 0..self.high_water {
            let Some(slot) = self.slots.as_ref().get(index as usize) else {
                break;
            };
            let (expiry, reason) = match slot.state {
                // awaiting the proof, `last_rx` is still the opening
                State::AwaitingHello | State::AwaitingProof { .. } => {
                    (slot.last_rx + hello, CloseReason::HelloTimeout)
                }
                State::Listening => {
                    // keep-alive zero marks an in-process listener: it can
                    // neither go silent nor stop reading
                    let local = slot.keepalive.is_zero();
                    let dead = match slot.keepalive {
                        Duration::ZERO => Instant::MAX,
                        keepalive => slot.last_rx + keepalive,
                    };
                    match slot.pending_since {
                        Some(since) if !local && !stuck.is_zero() && since + stuck < dead => {
                            (since + stuck, CloseReason::Stuck)
                        }
                        _ => (dead, CloseReason::KeepaliveTimeout),
                    }
                }
                State::Free | State::Closing { .. } | State::Stats => continue,
            };
            if expiry == Instant::MAX {
                continue;
            }
            if expiry <= now {
                self.close_slot(index, reason, true);
            } else {
                next = Some(next.map_or(expiry, |n| n.min(expiry)));
            }
        }
        if let Some(at) = next {
            self.arm(at);
        }
    }
}
