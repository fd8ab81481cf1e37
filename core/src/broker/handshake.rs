//! A connection's way from its first frame to listening or to its stats,
//! with listener authentication on the broker's side (`PROTOCOL.md`,
//! *Listener authentication*): which version a hello or stats request is
//! served in, the challenge, the proof's check and the accept.
//!
//! A challenged slot keeps what its first frame said (interest, channel and
//! the keep-alive asked for, or that it asked for the stats) and the nonce;
//! the first frame's bytes, which the tags cover, are emitted again from
//! them when the proof arrives — frames are canonical, so they are the
//! bytes received. The accept's tag then takes the nonce's place until it
//! is written. A slot thus needs 16 bytes for the handshake, whatever the
//! channel.

use super::slot::{Outbox, State};
use super::{BrokerState, FrameError, Slots};
use crate::auth::{KeyUsed, Transcript};
use crate::loss::SenderSlot;
use crate::time::{Duration, Instant};
use crate::wire::{
    CloseReason, FrameRepr, Framed, HelloRepr, ProofRepr, AUTH_VERSION, MAX_FRAME_LEN,
};

impl<L, S> BrokerState<L, S>
where
    L: AsRef<Slots> + AsMut<Slots>,
    S: AsRef<[SenderSlot]> + AsMut<[SenderSlot]>,
{
    /// The first frame of slot `index` (a hello or a stats request, in
    /// `version`, opened at `opened`): served as in version 1, challenged,
    /// or refused, as the table of `PROTOCOL.md` says.
    pub(super) fn handle_first(
        &mut self,
        now: Instant,
        index: u32,
        version: u8,
        first: FrameRepr,
        opened: Instant,
    ) -> Result<(), FrameError> {
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            slot.version = version;
        }
        let keyed = self.keys.is_some();
        match (version == AUTH_VERSION, keyed, first) {
            (false, false, FrameRepr::Hello(hello)) => {
                self.start_listening(now, index, &hello);
                Ok(())
            }
            (false, false, _) => {
                self.answer_stats(index);
                Ok(())
            }
            (true, true, _) => {
                self.challenge(now, index, first, opened);
                Ok(())
            }
            _ => Err(self.refuse(index)),
        }
    }

    /// Challenges slot `index`: a fresh nonce, the first frame's fields
    /// kept, the hello timeout still counted from the opening.
    fn challenge(&mut self, now: Instant, index: u32, first: FrameRepr, opened: Instant) {
        let Some(keys) = &self.keys else { return };
        let nonce = self.nonces.next(keys.key(KeyUsed::Current));
        let Some(slot) = self.slots.as_mut().get_mut(index as usize) else {
            return;
        };
        slot.state = State::AwaitingProof {
            stats: first == FrameRepr::StatsRequest,
        };
        if let FrameRepr::Hello(hello) = first {
            slot.interest = hello.interest;
            slot.channel = hello.channel;
            slot.keepalive = Duration::from_secs(u64::from(hello.keepalive_secs));
        }
        slot.auth = nonce;
        slot.outbox.challenge = true;
        slot.last_rx = opened;
        self.mark_ready(now, index);
    }

    /// The proof of slot `index`, challenged for a stats request when
    /// `stats`: checked against every accepted key; the accept is owed
    /// with the key that made it, then the welcome or the stats.
    pub(super) fn handle_proof(
        &mut self,
        now: Instant,
        index: u32,
        stats: bool,
        proof: &ProofRepr,
    ) -> Result<(), FrameError> {
        let Some(slot) = self.slots.as_ref().get(index as usize) else {
            return Err(FrameError::UnknownListener);
        };
        let hello = HelloRepr {
            interest: slot.interest,
            channel: slot.channel,
            keepalive_secs: u16::try_from(slot.keepalive.as_secs()).unwrap_or(u16::MAX),
        };
        let first = if stats {
            FrameRepr::StatsRequest
        } else {
            FrameRepr::Hello(hello)
        };
        let mut bytes = [0u8; MAX_FRAME_LEN];
        let len = Framed::new(AUTH_VERSION, first)
            .emit(&mut bytes)
            .unwrap_or(0);
        let transcript = Transcript {
            first: bytes.get(..len).unwrap_or(&[]),
            broker_nonce: &slot.auth,
            listener_nonce: &proof.nonce,
        };
        let accept = self.keys.as_ref().and_then(|keys| {
            let used = transcript.verify_proof(keys, &proof.tag)?;
            Some(transcript.accept(keys.key(used)))
        });
        let Some(accept) = accept else {
            return Err(self.refuse(index));
        };
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            // the stats reply takes its accept from the event
            slot.auth = accept;
            slot.outbox.challenge = false;
            slot.outbox.accept = !stats;
        }
        if stats {
            self.answer_stats(index);
        } else {
            self.start_listening(now, index, &hello);
        }
        Ok(())
    }

    /// Slot `index` failed the handshake, or cannot take it: counted, and
    /// closed with reason *unauthorized*.
    fn refuse(&mut self, index: u32) -> FrameError {
        self.stats.listeners_unauthorized += 1;
        self.close_slot(index, CloseReason::Unauthorized, true);
        FrameError::Unauthorized
    }

    /// Slot `index` starts listening for `hello` (its keep-alive clamped),
    /// with a welcome owed, at `now`.
    pub(super) fn start_listening(&mut self, now: Instant, index: u32, hello: &HelloRepr) {
        let keepalive = match hello.keepalive_secs {
            0 => self.config.keepalive,
            s => Duration::from_secs(u64::from(s))
                .max(self.config.min_keepalive)
                .min(self.config.max_keepalive),
        };
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            slot.state = State::Listening;
            slot.channel = hello.channel;
            slot.interest = hello.interest;
            slot.keepalive = keepalive;
            slot.outbox.welcome = true;
        }
        self.stats.awaiting_hello -= 1;
        self.stats.listening += 1;
        if !self.join(index) {
            self.close_slot(index, CloseReason::TooManyListeners, true);
            return;
        }
        self.mark_ready(now, index);
        self.arm(now + keepalive);
    }

    /// Slot `index`, awaiting its hello, asked for the stats: its reply is
    /// due (`accept`: the handshake's tag, owed first).
    pub(super) fn answer_stats(&mut self, index: u32) {
        self.stats.stats_requests += 1;
        self.gauge_down(index, State::AwaitingHello);
        if let Some(slot) = self.slots.as_mut().get_mut(index as usize) {
            slot.state = State::Stats;
            slot.outbox = Outbox::EMPTY;
        }
        self.push_close(index);
    }
}
