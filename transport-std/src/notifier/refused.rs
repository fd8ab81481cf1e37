//! Telling a refused port from an unanswered one without an ack: the
//! ICMP port unreachable that a connected UDP socket reports as
//! `ECONNREFUSED`.

use std::io;
use std::time::Duration;

use flagpost_core::wire::MAX_DATAGRAM_LEN;

use super::{Notifier, NotifyError};

/// Whether a connected UDP socket's error is the ICMP port unreachable of
/// the broker's host (Windows reports it as a reset, WSAECONNRESET).
pub(super) fn is_refused(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

impl Notifier {
    /// Waits up to `within` for the broker's host to answer a datagram sent
    /// so far with ICMP port unreachable, which a connected socket reports
    /// as `ECONNREFUSED`: then [`NotifyError::Unreachable`], at once. `Ok`
    /// proves nothing (a datagram may be lost, a host may stay silent):
    /// only [`notify_confirmed`](Self::notify_confirmed) knows delivery.
    pub fn check_refused(&self, within: Duration) -> Result<(), NotifyError> {
        let core = &self.handle.core;
        let deadline = std::time::Instant::now() + within;
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        // The sender thread only sends on this socket: reading it is ours.
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            core.socket
                .set_read_timeout(Some(left.max(Duration::from_micros(100))))?;
            match core.socket.recv(&mut buf) {
                Ok(_) => {} // nothing is sent to this socket; ignore strays
                Err(e) if is_refused(&e) => {
                    return Err(NotifyError::Unreachable {
                        broker: core.broker,
                    })
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
