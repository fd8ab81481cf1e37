//! The counters the broker must report: one method per thing that happens,
//! each bumping exactly the counters the `Stats` docs tie to it, and
//! [`Expected::stats`] filling in the gauges from the models. The driver
//! compares the whole [`Stats`] after every operation, so a counter the
//! broker starts to update must get its prediction here.

use flagpost_core::broker::Stats;
use flagpost_core::loss::Verdict;
use flagpost_core::notify::Kind;
use flagpost_core::wire::{CloseReason, Error as WireError, FrameRepr};

use crate::loss::GapModel;
use crate::routing::RouteOutcome;
use crate::table::Table;

/// The counters predicted so far (gauges excluded: see [`Expected::stats`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Expected {
    counters: Stats,
}

impl Expected {
    /// The whole `Stats` the broker must report now: the counters, the
    /// listener gauges counted in `table`, the sender gauge and evictions
    /// from `loss`, and the transport's counters as the driver left them
    /// (untouched: zero).
    pub fn stats(&self, table: &Table, gap: &GapModel) -> Stats {
        Stats {
            awaiting_hello: table.awaiting_hello() as u64,
            listening: table.listening() as u64,
            senders: gap.len() as u64,
            senders_evicted: gap.evictions(),
            ..self.counters
        }
    }

    /// A datagram failed to parse.
    pub fn datagram_rejected(&mut self, e: WireError) {
        self.counters.datagram_rejects[e.index()] += 1;
    }

    /// A valid notification datagram of `kind` arrived.
    pub fn datagram(&mut self, kind: Kind) {
        self.counters.datagrams += 1;
        self.counters.datagrams_by_kind[usize::from(kind.code()) - 1] += 1;
    }

    /// The loss detector's verdict on a valid datagram; a tail-loss
    /// `probe` is counted as one (and as delivered when it delivers), never
    /// as a duplicate.
    pub fn verdict(&mut self, verdict: Verdict, probe: bool) {
        let c = &mut self.counters;
        if probe {
            c.probes += 1;
            c.probes_delivered += u64::from(verdict.deliver());
        }
        match verdict {
            Verdict::Duplicate if probe => {}
            Verdict::InOrder => {}
            Verdict::Gap { missing } => {
                c.gaps += 1;
                c.missing += u64::from(missing);
            }
            Verdict::FirstSeenLate => c.first_seen_late += 1,
            Verdict::Restart => c.restarts += 1,
            Verdict::Reordered => c.reordered += 1,
            Verdict::Duplicate => c.duplicates += 1,
            Verdict::Rewound => c.senders_rewound += 1,
            Verdict::Stale => c.stale += 1,
        }
    }

    /// The kernel reported `count` (> 0) dropped datagrams.
    pub fn kernel_drops(&mut self, count: u64) {
        self.counters.kernel_drops += count;
    }

    /// A possible loss raised [`LOSS_FLAGS`](crate::routing::LOSS_FLAGS).
    pub fn possible_loss(&mut self) {
        self.counters.possible_losses += 1;
    }

    /// A notification standing for `batch` changes was delivered (from a
    /// datagram or in-process).
    pub fn delivered(&mut self, batch: u32) {
        self.counters.delivered += 1;
        self.counters.changes += u64::from(batch);
    }

    /// One routing pass (a delivered notification or a possible loss).
    pub fn routed(&mut self, outcome: RouteOutcome) {
        self.counters.raises += u64::from(outcome.reached);
        self.counters.raises_coalesced += u64::from(outcome.coalesced);
        self.counters.route_visits += u64::from(outcome.visits);
    }

    /// An ack was produced.
    pub fn ack(&mut self) {
        self.counters.acks += 1;
    }

    /// A frame failed to parse.
    pub fn frame_rejected(&mut self, e: WireError) {
        self.counters.frame_rejects[e.index()] += 1;
    }

    /// A valid frame arrived (on a connection not closing).
    pub fn frame(&mut self) {
        self.counters.frames += 1;
    }

    /// A valid frame was not valid in its connection's state.
    pub fn frame_unexpected(&mut self) {
        self.counters.frames_unexpected += 1;
    }

    /// A hello or stats request refused for authentication.
    pub fn unauthorized(&mut self) {
        self.counters.listeners_unauthorized += 1;
    }

    /// `poll_frame` handed `frame` to the transport.
    pub fn written(&mut self, frame: &FrameRepr) {
        self.counters.frames_written += 1;
        if matches!(frame, FrameRepr::Flags(_)) {
            self.counters.flags_frames += 1;
        }
    }

    /// A connection was opened (`open` or `open_local`).
    pub fn opened(&mut self) {
        self.counters.opened += 1;
    }

    /// A connection was refused: the table was full.
    pub fn refused_full(&mut self) {
        self.counters.refused_full += 1;
    }

    /// A connection awaiting its hello was evicted to make room (its close
    /// is counted by [`closed`](Self::closed)).
    pub fn evicted(&mut self) {
        self.counters.connections_evicted += 1;
    }

    /// An open connection started closing for `reason`.
    pub fn closed(&mut self, reason: CloseReason) {
        self.counters.closes[reason as usize] += 1;
    }

    /// An open connection went away without a close.
    pub fn disconnected(&mut self) {
        self.counters.disconnects += 1;
    }

    /// A connection asked for the stats instead of a hello.
    pub fn stats_request(&mut self) {
        self.counters.stats_requests += 1;
    }
}
