//! The broker's outputs, drained as a transport drains them: `poll_event`
//! (closes and stats requests), `poll_ready` (who has frames), `poll_frame`
//! (the frames), each compared with the listener table's model; and the
//! wire-level checks on what a transport would then write.

use flagpost_core::broker::{Event, ListenerId, Stats};
use flagpost_core::wire::{CloseReason, CloseRepr, FrameRepr, StatRepr, MAX_FRAME_LEN};

use super::Harness;
use crate::table::St;

impl Harness {
    /// Checks a frame `poll_frame` gave `id` (and counts it): it emits, and
    /// a flags frame is non-empty, within the listener's interest and
    /// stands for at least one raise.
    fn written(&mut self, id: ListenerId, frame: &FrameRepr) {
        check_emit(frame);
        self.expect.written(frame);
        if let FrameRepr::Flags(flags) = frame {
            let interest = match self.table.get(id).map(|c| c.st) {
                Some(St::Listening { interest, .. }) => interest,
                other => panic!("flags frame from {id} in {other:?}"),
            };
            assert!(
                !flags.flags.is_empty() && interest.contains(flags.flags),
                "{flags:?} to {id}, outside its interest {interest:?}"
            );
            assert!(flags.raises >= 1, "{flags:?} to {id} stands for no raise");
            if flags.raises > 1 {
                self.report.coalesced_frames += 1;
            }
        }
    }

    /// One `poll_frame` on `id`, whatever its state.
    pub(super) fn poll_frame_once(&mut self, id: ListenerId) {
        let got = self.broker.poll_frame(id);
        let broker_id = self.config.broker_id;
        let expected = self.table.get_mut(id).and_then(|c| c.pop_frame(broker_id));
        assert_eq!(got, expected, "poll_frame({id})");
        if let Some(frame) = got {
            self.written(id, &frame);
        }
        if let Some(conn) = self.table.get_mut(id) {
            if !conn.has_output() {
                conn.yielded = false;
            }
        }
    }

    /// `poll_frame` until `None`, as a transport does for a writable
    /// listener: exactly the predicted frames, at most three (welcome, one
    /// coalesced flags frame however many raises, pong).
    fn drain_listener(&mut self, id: ListenerId) {
        let broker_id = self.config.broker_id;
        let conn = self.table.get_mut(id).expect("draining a live listener");
        let expected: Vec<FrameRepr> = std::iter::from_fn(|| conn.pop_frame(broker_id)).collect();
        conn.yielded = false;
        let mut got = Vec::new();
        while let Some(frame) = self.broker.poll_frame(id) {
            got.push(frame);
            assert!(got.len() <= 3, "poll_frame({id}) does not run dry: {got:?}");
        }
        // The model's frames are popped already: check against the state
        // the frames were written in (the interest does not change).
        for frame in &got {
            self.written(id, frame);
        }
        assert_eq!(got, expected, "frames drained from {id}");
        let flags_frames = got
            .iter()
            .filter(|f| matches!(f, FrameRepr::Flags(_)))
            .count();
        assert!(
            flags_frames <= 1,
            "{flags_frames} flags frames in one drain"
        );
    }

    /// `poll_ready` until `None`: it yields only listening listeners with
    /// output, each at most once until its outbox is drained, and every
    /// listener with output has been yielded (no lost wake-up).
    pub(super) fn sweep_ready(&mut self) {
        let mut yields = 0;
        while let Some(id) = self.broker.poll_ready() {
            yields += 1;
            assert!(yields <= self.capacity, "poll_ready does not run dry");
            let conn = self
                .table
                .get_mut(id)
                .unwrap_or_else(|| panic!("poll_ready yielded {id}, which is not open"));
            assert!(
                matches!(conn.st, St::Listening { .. }),
                "poll_ready yielded {id} in {:?}",
                conn.st
            );
            assert!(
                conn.has_output(),
                "poll_ready yielded {id} with nothing to write"
            );
            assert!(
                !conn.yielded,
                "poll_ready yielded {id} again before its outbox was drained"
            );
            conn.yielded = true;
        }
        for (id, conn) in self.table.iter() {
            if conn.has_output() {
                assert!(
                    conn.yielded,
                    "{id} has output but poll_ready never yielded it"
                );
            }
        }
    }

    /// Drains the listeners `poll_ready` yielded whose socket is writable
    /// (a transport writes to a ready listener when it can).
    pub(super) fn write_ready(&mut self) {
        let writable: Vec<ListenerId> = self
            .table
            .iter()
            .filter(|(_, c)| c.yielded && c.writable)
            .map(|(id, _)| id)
            .collect();
        for id in writable {
            self.drain_listener(id);
        }
    }

    /// `poll_event` until `None`: exactly the connections the model is
    /// closing, in the order they started closing, each with its reason and
    /// `send_close`, or its stats request; each slot is free afterwards.
    pub(super) fn drain_events(&mut self) {
        let mut events = 0;
        while let Some(event) = self.broker.poll_event() {
            events += 1;
            // a slot may have an evicted connection's event and its own
            assert!(events <= 2 * self.capacity, "poll_event does not run dry");
            let (listener, st, version) = match event {
                Event::Closed {
                    listener,
                    reason,
                    send_close,
                    version,
                } => {
                    if send_close {
                        check_emit(&FrameRepr::Close(CloseRepr::new(reason)));
                    }
                    let st = St::Closing {
                        reason,
                        send: send_close,
                    };
                    (listener, st, version)
                }
                Event::StatsRequested {
                    listener,
                    version,
                    accept,
                } => {
                    assert_eq!(accept, None, "a keyless broker has nothing to accept");
                    check_stats_exchange(&self.broker.stats());
                    (listener, St::Stats, version)
                }
                other => panic!("unknown event {other:?}"),
            };
            let (due, conn) = self
                .table
                .pop_event()
                .unwrap_or_else(|| panic!("poll_event ended {listener}, which is not closing"));
            assert_eq!(listener, due, "poll_event out of order");
            assert_eq!(conn.st, st, "event of {listener}");
            assert_eq!(conn.version, version, "the version of {listener}'s session");
            assert_eq!(
                self.broker.state(listener),
                None,
                "{listener} after its event"
            );
        }
        for (id, conn) in self.table.iter() {
            assert!(
                !conn.is_closing(),
                "{id} is closing but poll_event never said"
            );
        }
    }
}

/// Emits `frame` into a `MAX_FRAME_LEN` buffer and parses it back.
fn check_emit(frame: &FrameRepr) {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = frame
        .emit(&mut buf)
        .unwrap_or_else(|e| panic!("{frame:?} does not emit into MAX_FRAME_LEN: {e:?}"));
    assert_eq!(n, frame.buffer_len());
    assert_eq!(
        FrameRepr::parse_bytes(&buf[..n]),
        Ok(*frame),
        "{frame:?} does not parse back"
    );
}

/// What a transport writes for a stats request (every stat, then a close),
/// and what the asking client rebuilds from it: the same [`Stats`].
fn check_stats_exchange(stats: &Stats) {
    let mut rebuilt = Stats::default();
    let mut entries = 0usize;
    stats.visit(|index, metric, value| {
        assert_eq!(usize::from(index), entries, "stats table indexes are dense");
        entries += 1;
        assert_eq!(Stats::metric(index), Some(metric));
        assert!(metric.name.starts_with("flagpost_"), "{metric:?}");
        assert_eq!(metric.name.ends_with("_total"), !metric.gauge, "{metric:?}");
        let frame = FrameRepr::Stat(StatRepr { index, value });
        check_emit(&frame);
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = frame.emit(&mut buf).expect("fits");
        match FrameRepr::parse_bytes(&buf[..n]) {
            Ok(FrameRepr::Stat(stat)) => assert!(rebuilt.set(stat.index, stat.value)),
            other => panic!("stat frame parsed as {other:?}"),
        }
    });
    assert_eq!(entries, Stats::len());
    assert!(!rebuilt.set(u16::try_from(entries).unwrap_or(u16::MAX), 1));
    assert_eq!(&rebuilt, stats, "stats rebuilt from stat frames");
    check_emit(&FrameRepr::Close(CloseRepr::new(CloseReason::Normal)));
}
