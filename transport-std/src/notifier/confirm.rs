//! The confirmed send in flight, as the calling thread drives it: the
//! core's (re)transmissions on the confirm socket, and the acks read from
//! it, until the core reports the outcome.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flagpost_core::notifier::NotifierEvent;
use flagpost_core::wire::{AckResult, MAX_DATAGRAM_LEN};

use super::refused::is_refused;
use super::{Front, NotifyError, Out};

impl Front {
    /// The confirmed send in flight: its (re)transmissions on `socket`, and
    /// the acks read from it, until the core reports the outcome.
    pub(super) fn confirm_on(
        &self,
        socket: &UdpSocket,
        timeout: Duration,
    ) -> Result<AckResult, NotifyError> {
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        loop {
            let now = self.clock.now();
            let mut out: Out = Vec::new();
            let (event, next) = {
                let mut state = self.lock();
                while let Some(n) = state.poll_confirm_signed(now, &mut buf, self.signer()) {
                    out.push((buf, n));
                }
                (state.poll_event(), state.poll_timeout_confirm())
            };
            for (b, len) in &out {
                match socket.send(&b[..*len]) {
                    Ok(_) => {}
                    Err(e) if is_refused(&e) => {
                        self.send_errors.fetch_add(1, Ordering::Relaxed);
                        return Err(NotifyError::Unreachable {
                            broker: self.broker,
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match event {
                Some(NotifierEvent::Confirmed { result, .. }) => return Ok(result),
                Some(NotifierEvent::TimedOut { attempts, .. }) => {
                    return Err(NotifyError::Timeout {
                        broker: self.broker,
                        timeout,
                        attempts,
                    })
                }
                None => {}
            }
            let wait = next.map_or(Duration::from_millis(10), |at| self.clock.until(at));
            socket.set_read_timeout(Some(wait.max(Duration::from_micros(100))))?;
            match socket.recv(&mut buf) {
                Ok(n) => {
                    self.lock()
                        .handle_datagram_signed(self.clock.now(), &buf[..n], self.signer())
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if is_refused(&e) => {
                    return Err(NotifyError::Unreachable {
                        broker: self.broker,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
