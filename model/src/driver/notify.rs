//! Notifications through the driver: datagrams (structured, corrupted or
//! raw) with their verdicts and acks, in-process notifications, kernel
//! drops, and the routing they cause in the listener table.

use flagpost_core::notify::Notification;
use flagpost_core::wire::{AckRepr, NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN, TAG_LEN};

use super::Harness;
use crate::input::{notification, NotifySpec, SENDER_IDS};
use crate::loss::{ack_result, delivers, possible_loss};
use crate::routing::{kind_flags, LOSS_FLAGS};

impl Harness {
    /// The bytes of the datagram `spec` stands for; the sender's last
    /// number moves as `spec.seq` says.
    pub(super) fn emit_notify(&mut self, spec: &NotifySpec) -> Vec<u8> {
        let i = usize::from(spec.sender) % SENDER_IDS.len();
        let (seq, next_last) = spec.seq.apply(self.seqs[i]);
        self.seqs[i] = next_last;
        let repr = NotifyRepr {
            notification: notification(spec.kind, spec.channel),
            sender: SenderId(SENDER_IDS[i]),
            seq: Seq(seq),
            batch: u32::from(spec.batch).max(1),
            ack_requested: spec.ack,
            probe: false,
            tag: spec.tagged.then_some([0xa5; TAG_LEN]),
        };
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let n = repr.emit(&mut buf).expect("fits MAX_DATAGRAM_LEN");
        buf[..n].to_vec()
    }

    /// One datagram: rejected and counted if it does not parse; otherwise
    /// its verdict, the possible-loss raise, its delivery and its ack must
    /// be the models'.
    pub(super) fn datagram(&mut self, bytes: &[u8]) {
        let parsed = NotifyRepr::parse_bytes(bytes);
        let result = self.broker.handle_datagram(self.now, bytes);
        let notify = match parsed {
            Ok(notify) => notify,
            Err(e) => {
                assert_eq!(
                    result,
                    Err(e.into()),
                    "handle_datagram of an invalid datagram"
                );
                self.expect.datagram_rejected(e);
                return;
            }
        };
        let received =
            result.unwrap_or_else(|e| panic!("valid datagram {notify:?} rejected: {e:?}"));
        assert_eq!(received.notify, notify);
        let verdict = received.verdict;
        assert_eq!(
            verdict,
            self.gap.observe(notify.sender, notify.seq),
            "verdict on {} {:?}",
            notify.sender,
            notify.seq
        );
        assert_eq!(
            verdict.deliver(),
            delivers(verdict),
            "{verdict:?}.deliver()"
        );
        assert_eq!(
            verdict.possible_loss(),
            possible_loss(verdict),
            "{verdict:?}.possible_loss()"
        );
        if let flagpost_core::loss::Verdict::Gap { missing } = verdict {
            assert!(missing >= 1, "a gap of nothing");
        }

        self.expect.datagram(notify.notification.kind());
        self.expect.verdict(verdict, notify.probe);
        if possible_loss(verdict) {
            self.possible_loss();
        }
        let reached = if delivers(verdict) {
            self.deliver(&notify.notification, notify.batch)
        } else {
            0
        };
        assert_eq!(received.reached, reached, "listeners reached by {notify:?}");

        match (notify.ack_requested, received.ack) {
            (false, None) => {}
            (true, Some(ack)) => {
                self.expect.ack();
                assert_eq!(ack, AckRepr::answering(&notify, ack_result(verdict)));
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                let n = ack.emit(&mut buf).expect("an ack fits MAX_DATAGRAM_LEN");
                assert!(n <= bytes.len(), "ack longer than its notification");
                assert_eq!(AckRepr::parse_bytes(&buf[..n]), Ok(ack));
            }
            (asked, ack) => panic!("ack requested: {asked}, ack: {ack:?}"),
        }
    }

    /// One in-process notification ([`BrokerState::notify`]).
    ///
    /// [`BrokerState::notify`]: flagpost_core::broker::BrokerState::notify
    pub(super) fn in_process(&mut self, n: &Notification, batch: u32) {
        let reached = self.broker.notify(self.now, n, batch);
        assert_eq!(reached, self.deliver(n, batch), "notify({n:?}) reached");
    }

    /// The kernel reports `count` dropped datagrams.
    pub(super) fn lost(&mut self, count: u64) {
        self.broker.handle_lost(self.now, count);
        if count > 0 {
            self.expect.kernel_drops(count);
            self.possible_loss();
        }
    }

    /// A possible loss raises [`LOSS_FLAGS`] for every listener.
    fn possible_loss(&mut self) {
        self.expect.possible_loss();
        let outcome = self.table.route(self.now, LOSS_FLAGS, None);
        self.expect.routed(outcome);
    }

    /// A delivered notification raises its kind's flags where it reaches;
    /// returns how many listeners had flags raised.
    fn deliver(&mut self, n: &Notification, batch: u32) -> u32 {
        self.expect.delivered(batch);
        let outcome = self
            .table
            .route(self.now, kind_flags(n.kind()), n.channel());
        self.expect.routed(outcome);
        outcome.reached
    }
}
