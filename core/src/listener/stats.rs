//! The client of a stats request as a sans-IO state machine: the request
//! (in version 2 with a key, through the handshake), then one stat per
//! entry of the broker's table, then the broker's close.
//!
//! ```
//! use flagpost_core::broker::{BrokerState, Config, Event, ListenerSlot, Stats};
//! use flagpost_core::listener::StatsClient;
//! use flagpost_core::loss::SenderSlot;
//! use flagpost_core::time::Instant;
//! use flagpost_core::wire::{CloseReason, CloseRepr, FrameRepr, Framed, StatRepr, MAX_FRAME_LEN};
//!
//! let mut broker = BrokerState::new(Config::default(), [ListenerSlot::EMPTY; 2], [SenderSlot::EMPTY; 2]);
//! let id = broker.open(Instant::ZERO).unwrap();
//! let mut client = StatsClient::new();
//! let mut buf = [0u8; MAX_FRAME_LEN];
//! let n = client.poll_transmit(&mut buf).unwrap();
//! broker.handle_frame(Instant::ZERO, id, &buf[..n]).unwrap();
//!
//! // the broker's transport writes the table, then a close
//! let Some(Event::StatsRequested { version, .. }) = broker.poll_event() else { panic!() };
//! let mut stats = Stats::default();
//! let mut reply = Vec::new();
//! broker.stats().visit(|index, _, value| reply.push(FrameRepr::Stat(StatRepr { index, value })));
//! reply.push(FrameRepr::Close(CloseRepr::new(CloseReason::Normal)));
//! for frame in reply {
//!     let n = Framed::new(version, frame).emit(&mut buf).unwrap();
//!     if let Some(stat) = client.handle_frame(&buf[..n]).unwrap() {
//!         stats.set(stat.index, stat.value);
//!     }
//! }
//! assert!(client.is_done());
//! assert_eq!(stats.stats_requests, 1);
//! ```

use super::auth::{Handshake, Step};
use super::SessionError;
use crate::auth::Key;
use crate::wire::{CloseReason, FrameRepr, Framed, ProofRepr, StatRepr};

/// One stats request's client side.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StatsClient {
    handshake: Handshake,
    send_request: bool,
    send_proof: Option<ProofRepr>,
    done: bool,
}

impl Default for StatsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsClient {
    /// A client without a key (version 1).
    pub fn new() -> Self {
        StatsClient {
            handshake: Handshake::KEYLESS,
            send_request: true,
            send_proof: None,
            done: false,
        }
    }

    /// The same client authenticating with `key` (version 2), its nonces
    /// seeded with `seed`: 16 random bytes, fresh for every run.
    pub fn with_key(mut self, key: Key, seed: [u8; 16]) -> Self {
        self.handshake = Handshake::keyed(key, seed);
        self
    }

    /// Writes the next frame to send (the request, then the proof) into
    /// `buf`; returns its length. Call until `None`, after each frame
    /// received too.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        let version = self.handshake.version();
        if self.send_request {
            let n = Framed::new(version, FrameRepr::StatsRequest)
                .emit(buf)
                .ok()?;
            self.send_request = false;
            self.handshake.start();
            return Some(n);
        }
        let proof = self.send_proof?;
        let n = Framed::new(version, FrameRepr::Proof(proof))
            .emit(buf)
            .ok()?;
        self.send_proof = None;
        Some(n)
    }

    /// Feeds one frame from the broker: `Some` stat to record, `None` for
    /// a frame of the handshake or the final close (then
    /// [`is_done`](Self::is_done)). An error ends the request.
    pub fn handle_frame(&mut self, bytes: &[u8]) -> Result<Option<StatRepr>, SessionError> {
        let frame = Framed::parse(bytes).map_err(SessionError::Malformed)?;
        if self.done {
            return Err(SessionError::Unexpected(frame.frame.frame_type()));
        }
        let served = self.handshake.may_serve();
        let step = match self.handshake.handle(&FrameRepr::StatsRequest, frame) {
            // a close with reason normal ends the table
            Err(SessionError::Closed(CloseReason::Normal)) if served => {
                self.done = true;
                return Ok(None);
            }
            other => other?,
        };
        match step {
            Step::Proof(proof) => {
                self.send_proof = Some(proof);
                Ok(None)
            }
            Step::Accepted => Ok(None),
            Step::Pass(FrameRepr::Stat(stat)) => {
                self.handshake.established();
                Ok(Some(stat))
            }
            Step::Pass(other) => Err(SessionError::Unexpected(other.frame_type())),
        }
    }

    /// Whether the broker's close ended the table.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
