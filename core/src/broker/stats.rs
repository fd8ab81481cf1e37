//! The broker's counters and gauges, and the stable table that names them
//! for Prometheus and for the wire's `stat` frames.

use crate::notify::Kind;
use crate::wire::{CloseReason, Error as WireError};

/// Counters and gauges. Counters only grow (wrapping after 2^64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Valid notification datagrams received.
    pub datagrams: u64,
    /// Valid datagrams by kind (index: wire code − 1).
    pub datagrams_by_kind: [u64; 4],
    /// Rejected datagrams by reason (index: [`WireError::index`]).
    pub datagram_rejects: [u64; WireError::COUNT],
    /// Notifications delivered (datagrams and in-process).
    pub delivered: u64,
    /// Sum of the batch counts of delivered notifications.
    pub changes: u64,
    /// Duplicate datagrams ignored, tail-loss probes aside (`probes`).
    pub duplicates: u64,
    /// Stale datagrams ignored.
    pub stale: u64,
    /// Late datagrams delivered out of order.
    pub reordered: u64,
    /// Sequence gaps detected.
    pub gaps: u64,
    /// Datagrams known missing from those gaps.
    pub missing: u64,
    /// Senders seen restarting.
    pub restarts: u64,
    /// Unknown senders first seen after their first datagram.
    pub first_seen_late: u64,
    /// Datagrams the kernel reported dropping.
    pub kernel_drops: u64,
    /// Raises of status, non-status and channel update for every listener
    /// for a possible loss, actually made: a possible loss detected at
    /// once, or the one raise at the end of a
    /// [`Config::loss_interval`](super::Config::loss_interval) for those
    /// folded during it (see `possible_losses_coalesced`).
    pub possible_losses: u64,
    /// Acks produced.
    pub acks: u64,
    /// Valid frames received.
    pub frames: u64,
    /// Rejected frames by reason (index: [`WireError::index`]).
    pub frame_rejects: [u64; WireError::COUNT],
    /// Well-formed frames that were invalid in their state.
    pub frames_unexpected: u64,
    /// Frames handed to the transport to write.
    pub frames_written: u64,
    /// Of those, flags frames.
    pub flags_frames: u64,
    /// Flag raises on listeners (one per listener reached per notification).
    pub raises: u64,
    /// Raises that found all their flags already pending (coalesced).
    pub raises_coalesced: u64,
    /// Connections opened.
    pub opened: u64,
    /// Connections refused because the table was full (and none could be
    /// evicted to make room).
    pub refused_full: u64,
    /// Connections closed, by reason (index: close reason code).
    pub closes: [u64; CloseReason::COUNT],
    /// Connections that went away without a close (transport disconnect).
    pub disconnects: u64,
    /// Gauge: connections awaiting hello, or (with a key) their proof.
    pub awaiting_hello: u64,
    /// Gauge: listening connections.
    pub listening: u64,
    /// Gauge: senders in the loss-detection table.
    pub senders: u64,
    /// Senders evicted from that table.
    pub senders_evicted: u64,
    /// Connections that asked for these counters.
    pub stats_requests: u64,
    /// Listener slots routing visited to raise flags. A raise whose flags
    /// every reached listener already has pending visits none, so this
    /// grows with the listeners whose outbox changed, not with raises.
    pub route_visits: u64,
    /// Datagrams dropped because a key is set and their tag is missing or
    /// made with no key the broker accepts.
    pub datagrams_unauthorized: u64,
    /// Listener and stats connections whose proof of the key failed (or that
    /// could not give one: a version-1 hello or stats request to a broker
    /// with a key, a version-2 one to a broker without), each closed with
    /// reason *unauthorized*.
    pub listeners_unauthorized: u64,
    /// Connections that had not completed their hello (or its proof), closed
    /// to make room for a new one when the table was full.
    pub connections_evicted: u64,
    /// Possible losses detected (a gap, a sender first seen late, a restart,
    /// a rewind, kernel drops) within
    /// [`Config::loss_interval`](super::Config::loss_interval) after a raise
    /// for one, folded into the single raise at the end of that interval
    /// instead of raising everyone at once. Each detection counts once:
    /// here, or in `possible_losses` when it raised at once; the folded ones
    /// of an interval then add one raise to `possible_losses`.
    pub possible_losses_coalesced: u64,
    /// Datagrams that moved their sender's window back to the track it had
    /// before a far jump (`loss::Verdict::Rewound`: a forged far-ahead
    /// number, or a real loss of that many in a row); each is delivered and
    /// is a possible loss.
    pub senders_rewound: u64,
    /// Tail-loss probes received (datagrams marked *probe*: a sender's last
    /// datagram sent once more). A probe whose original arrived is counted
    /// here and not in `duplicates`.
    pub probes: u64,
    /// Of those, probes whose original had not arrived: each delivered a
    /// notification that was otherwise lost.
    pub probes_delivered: u64,
    /// Federation messages accepted from other brokers (notifications,
    /// whatever their sequence verdict, and re-check requests).
    pub federated: u64,
    /// Federation messages dropped, by reason (index:
    /// [`FederationError::index`](super::FederationError::index)).
    pub federated_rejects: [u64; super::FederationError::COUNT],
    /// Re-checks the federation asked for (its link back after an outage,
    /// a queue overflow, another broker's request), each a possible loss.
    pub federation_rechecks: u64,
    /// Counters only the transport can see.
    pub transport: TransportStats,
}

/// Counters a transport maintains through [`BrokerState::transport_stats`](super::BrokerState::transport_stats), so
/// that every figure is reported in one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TransportStats {
    /// Bytes received (datagrams and streams).
    pub bytes_in: u64,
    /// Bytes sent (acks and frames).
    pub bytes_out: u64,
    /// Receive calls on the datagram socket that returned data.
    pub udp_reads: u64,
    /// Acks that could not be sent (socket full or error).
    pub acks_unsent: u64,
    /// Connections refused by the per-address limit.
    pub refused_per_address: u64,
    /// Connections dropped after a socket error.
    pub io_errors: u64,
    /// Connections refused because the process had no file descriptor left
    /// to accept them with (`EMFILE`/`ENFILE`).
    pub accept_no_fds: u64,
    /// Other failed accepts.
    pub accept_errors: u64,
    /// Datagrams dropped because their source is not in the senders'
    /// allow-list.
    pub datagrams_denied: u64,
    /// Connections refused because their source is not in the listeners'
    /// allow-list.
    pub connections_denied: u64,
    /// Federation messages handed to the federation's link.
    pub federation_published: u64,
    /// Federation messages not published: the hand-off queue was full or
    /// the link refused them.
    pub federation_send_drops: u64,
    /// Federation messages received but dropped: the queue to the broker's
    /// loop was full.
    pub federation_receive_drops: u64,
    /// Times the federation's link was lost.
    pub federation_link_losses: u64,
    /// Gauge: 1 while the federation's link is up, else 0.
    pub federation_connected: u64,
}

/// What a stats entry is: name, help, type and at most one label, in the
/// Prometheus sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Metric {
    /// Metric name (`flagpost_…`; counters end in `_total`).
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// A gauge (can go down) rather than a counter.
    pub gauge: bool,
    /// A label `(key, value)`, when the metric is split by one.
    pub label: Option<(&'static str, &'static str)>,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        gauge: false,
        label: None,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        gauge: true,
        label: None,
    }
}

const fn labelled(m: Metric, key: &'static str, value: &'static str) -> Metric {
    Metric {
        label: Some((key, value)),
        ..m
    }
}

impl Stats {
    /// Calls `f(index, metric, value)` for every entry of the stats table, in
    /// a stable order: entries are only ever appended, so an index names the
    /// same metric across versions (the wire's `stat` frames carry it).
    pub fn visit(&self, mut f: impl FnMut(u16, Metric, u64)) {
        let mut copy = *self;
        copy.visit_mut(|i, m, v| f(i, m, *v));
    }

    /// Like [`visit`](Self::visit), with each value mutable: the one place
    /// that lists the table.
    pub fn visit_mut(&mut self, mut f: impl FnMut(u16, Metric, &mut u64)) {
        let mut index = 0u16;
        let mut emit = |m: Metric, v: &mut u64| {
            f(index, m, v);
            index = index.wrapping_add(1);
        };

        // connections refused, by reason (table full, per-address limit, no
        // file descriptor, allow-list), entries appended as they came
        let refused = counter(
            "flagpost_connections_refused_total",
            "Connections refused, by reason",
        );
        emit(
            counter(
                "flagpost_datagrams_total",
                "Valid notification datagrams received",
            ),
            &mut self.datagrams,
        );
        // the entries above, by kind: one family with the total (which
        // the Prometheus page leaves out as their sum)
        let by_kind = counter(
            "flagpost_datagrams_total",
            "Valid notification datagrams received, by kind",
        );
        for (kind, v) in Kind::ALL.iter().zip(self.datagrams_by_kind.iter_mut()) {
            emit(labelled(by_kind, "kind", kind.name()), v);
        }
        let rejects = counter(
            "flagpost_datagram_rejects_total",
            "Datagrams dropped as malformed, by reason",
        );
        for (label, v) in WireError::LABELS
            .iter()
            .zip(self.datagram_rejects.iter_mut())
        {
            emit(labelled(rejects, "reason", label), v);
        }
        emit(
            counter(
                "flagpost_delivered_total",
                "Notifications delivered to listeners",
            ),
            &mut self.delivered,
        );
        emit(
            counter(
                "flagpost_changes_total",
                "Sum of the batch counts of delivered notifications",
            ),
            &mut self.changes,
        );
        emit(
            counter(
                "flagpost_duplicates_total",
                "Duplicate datagrams ignored (tail-loss probes aside)",
            ),
            &mut self.duplicates,
        );
        emit(
            counter(
                "flagpost_stale_total",
                "Datagrams older than the reorder window, ignored",
            ),
            &mut self.stale,
        );
        emit(
            counter(
                "flagpost_reordered_total",
                "Late datagrams delivered out of order",
            ),
            &mut self.reordered,
        );
        emit(
            counter("flagpost_gaps_total", "Sequence gaps detected"),
            &mut self.gaps,
        );
        emit(
            counter(
                "flagpost_missing_total",
                "Datagrams known missing from sequence gaps",
            ),
            &mut self.missing,
        );
        emit(
            counter("flagpost_restarts_total", "Senders seen restarting"),
            &mut self.restarts,
        );
        emit(
            counter(
                "flagpost_first_seen_late_total",
                "Unknown senders first seen after their first datagram",
            ),
            &mut self.first_seen_late,
        );
        emit(
            counter(
                "flagpost_kernel_drops_total",
                "Datagrams the kernel dropped before the broker read them",
            ),
            &mut self.kernel_drops,
        );
        emit(
            counter(
                "flagpost_possible_losses_total",
                "Times a possible loss raised status, non-status and channel update for every listener",
            ),
            &mut self.possible_losses,
        );
        emit(
            counter("flagpost_acks_total", "Acks produced"),
            &mut self.acks,
        );
        emit(
            counter(
                "flagpost_frames_total",
                "Valid frames received from listeners",
            ),
            &mut self.frames,
        );
        let frame_rejects = counter(
            "flagpost_frame_rejects_total",
            "Frames rejected as malformed, by reason",
        );
        for (label, v) in WireError::LABELS.iter().zip(self.frame_rejects.iter_mut()) {
            emit(labelled(frame_rejects, "reason", label), v);
        }
        emit(
            counter(
                "flagpost_frames_unexpected_total",
                "Well-formed frames invalid in their state",
            ),
            &mut self.frames_unexpected,
        );
        emit(
            counter(
                "flagpost_frames_written_total",
                "Frames written to listeners",
            ),
            &mut self.frames_written,
        );
        emit(
            counter(
                "flagpost_flags_frames_total",
                "Flags frames written to listeners",
            ),
            &mut self.flags_frames,
        );
        emit(
            counter("flagpost_raises_total", "Flag raises on listeners"),
            &mut self.raises,
        );
        emit(
            counter(
                "flagpost_raises_coalesced_total",
                "Raises merged into flags already pending",
            ),
            &mut self.raises_coalesced,
        );
        emit(
            counter(
                "flagpost_connections_opened_total",
                "Listener connections opened",
            ),
            &mut self.opened,
        );
        emit(
            labelled(refused, "reason", "table_full"),
            &mut self.refused_full,
        );
        let closes = counter(
            "flagpost_connections_closed_total",
            "Connections closed, by reason",
        );
        for (reason, v) in CloseReason::ALL.iter().zip(self.closes.iter_mut()) {
            emit(labelled(closes, "reason", reason.label()), v);
        }
        emit(
            counter(
                "flagpost_disconnects_total",
                "Connections that went away without a close",
            ),
            &mut self.disconnects,
        );
        let listeners = gauge("flagpost_listeners", "Listener connections by state");
        emit(
            labelled(listeners, "state", "awaiting_hello"),
            &mut self.awaiting_hello,
        );
        emit(
            labelled(listeners, "state", "listening"),
            &mut self.listening,
        );
        emit(
            gauge("flagpost_senders", "Senders in the loss-detection table"),
            &mut self.senders,
        );
        emit(
            counter(
                "flagpost_senders_evicted_total",
                "Senders evicted from the loss-detection table",
            ),
            &mut self.senders_evicted,
        );
        emit(
            counter("flagpost_stats_requests_total", "Stats requests answered"),
            &mut self.stats_requests,
        );
        emit(
            counter("flagpost_received_bytes_total", "Bytes received"),
            &mut self.transport.bytes_in,
        );
        emit(
            counter("flagpost_sent_bytes_total", "Bytes sent"),
            &mut self.transport.bytes_out,
        );
        emit(
            counter(
                "flagpost_udp_reads_total",
                "Datagram socket reads that returned data",
            ),
            &mut self.transport.udp_reads,
        );
        emit(
            counter("flagpost_acks_unsent_total", "Acks that could not be sent"),
            &mut self.transport.acks_unsent,
        );
        emit(
            labelled(refused, "reason", "per_address"),
            &mut self.transport.refused_per_address,
        );
        emit(
            counter(
                "flagpost_io_errors_total",
                "Connections dropped after a socket error",
            ),
            &mut self.transport.io_errors,
        );
        emit(
            counter(
                "flagpost_route_visits_total",
                "Listener slots visited to raise flags",
            ),
            &mut self.route_visits,
        );
        emit(
            labelled(refused, "reason", "no_fds"),
            &mut self.transport.accept_no_fds,
        );
        emit(
            counter("flagpost_accept_errors_total", "Other failed accepts"),
            &mut self.transport.accept_errors,
        );
        emit(
            counter(
                "flagpost_datagrams_unauthorized_total",
                "Datagrams dropped: tag missing or wrong while a key is set",
            ),
            &mut self.datagrams_unauthorized,
        );
        emit(
            counter(
                "flagpost_listeners_unauthorized_total",
                "Listener and stats connections that failed to prove the key",
            ),
            &mut self.listeners_unauthorized,
        );
        emit(
            counter(
                "flagpost_connections_evicted_total",
                "Connections without a completed hello closed to make room",
            ),
            &mut self.connections_evicted,
        );
        emit(
            counter(
                "flagpost_possible_losses_coalesced_total",
                "Possible losses folded into a recent raise of everyone",
            ),
            &mut self.possible_losses_coalesced,
        );
        emit(
            counter(
                "flagpost_senders_rewound_total",
                "Senders moved back after a sequence jump too far ahead",
            ),
            &mut self.senders_rewound,
        );
        emit(
            counter(
                "flagpost_datagrams_denied_total",
                "Datagrams dropped: source not in the senders' allow-list",
            ),
            &mut self.transport.datagrams_denied,
        );
        emit(
            labelled(refused, "reason", "denied"),
            &mut self.transport.connections_denied,
        );
        emit(
            counter(
                "flagpost_probes_total",
                "Tail-loss probes received (not counted as duplicates)",
            ),
            &mut self.probes,
        );
        emit(
            counter(
                "flagpost_probes_delivered_total",
                "Tail-loss probes that delivered a notification whose datagram was lost",
            ),
            &mut self.probes_delivered,
        );
        emit(
            counter(
                "flagpost_federated_total",
                "Federation messages accepted from other brokers",
            ),
            &mut self.federated,
        );
        let rejects = counter(
            "flagpost_federated_rejects_total",
            "Federation messages dropped, by reason",
        );
        for (label, v) in super::FederationError::LABELS
            .iter()
            .zip(self.federated_rejects.iter_mut())
        {
            emit(labelled(rejects, "reason", label), v);
        }
        emit(
            counter(
                "flagpost_federation_rechecks_total",
                "Re-checks raised for what the federation may have lost",
            ),
            &mut self.federation_rechecks,
        );
        emit(
            counter(
                "flagpost_federation_published_total",
                "Federation messages handed to the federation's link",
            ),
            &mut self.transport.federation_published,
        );
        emit(
            counter(
                "flagpost_federation_send_drops_total",
                "Federation messages not published (queue full or link refused)",
            ),
            &mut self.transport.federation_send_drops,
        );
        emit(
            counter(
                "flagpost_federation_receive_drops_total",
                "Federation messages dropped on the way to the broker's loop",
            ),
            &mut self.transport.federation_receive_drops,
        );
        emit(
            counter(
                "flagpost_federation_link_losses_total",
                "Times the federation's link was lost",
            ),
            &mut self.transport.federation_link_losses,
        );
        emit(
            gauge(
                "flagpost_federation_connected",
                "1 while the federation's link is up",
            ),
            &mut self.transport.federation_connected,
        );
    }

    /// The metric at `index` of the table, if any.
    pub fn metric(index: u16) -> Option<Metric> {
        let mut found = None;
        Stats::default().visit(|i, m, _| {
            if i == index {
                found = Some(m);
            }
        });
        found
    }

    /// Sets the entry at `index` to `value` (the receiving side of the wire's
    /// `stat` frames); returns `false` for an index not in the table.
    pub fn set(&mut self, index: u16, value: u64) -> bool {
        let mut found = false;
        self.visit_mut(|i, _, v| {
            if i == index {
                *v = value;
                found = true;
            }
        });
        found
    }

    /// The number of entries in the table.
    pub fn len() -> usize {
        let mut n = 0;
        Stats::default().visit(|_, _, _| n += 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fits_and_round_trips_through_set() {
        let mut original = Stats::default();
        let mut count = 0;
        // give every entry a distinct value through `set`, then read back
        Stats::default().visit(|i, _, _| {
            assert!(original.set(i, 1000 + u64::from(i)));
            count += 1;
        });
        assert_eq!(count, Stats::len());
        original.visit(|i, _, v| assert_eq!(v, 1000 + u64::from(i)));
        assert!(!original.set(count as u16, 1));
        assert_eq!(
            original.transport.federation_connected,
            1000 + count as u64 - 1
        );
    }

    #[test]
    fn names_are_prometheus_style() {
        Stats::default().visit(|i, m, _| {
            assert!(m.name.starts_with("flagpost_"));
            assert_eq!(m.gauge, !m.name.ends_with("_total"), "{}", m.name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(Stats::metric(i), Some(m));
            // units are suffixes (before `_total`), never folded elsewhere
            let stem = m.name.strip_suffix("_total").unwrap_or(m.name);
            for unit in ["bytes", "seconds"] {
                assert!(!m.name.contains(unit) || stem.ends_with(unit), "{}", m.name);
            }
            assert!(!m.name.contains("_by_"), "{}: a label, not a name", m.name);
        });
    }
}
