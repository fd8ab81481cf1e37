//! The gateway application logic, board-independent: the modem's serial
//! output parsed into typed lines ([`urc`]), the AT-command driver that
//! initialises the modem, watches it and turns its URCs into events
//! ([`modem`]), and the configuration block kept in flash ([`config`]).
//!
//! Like `flagpost-core` this crate is `no_std`, never allocates, and is
//! sans-IO: the board's tasks own the UART, the flash and the clock, and
//! pass `now` ([`flagpost_core::time::Instant`]) and bytes in; the state
//! machines hand back bytes to write, events, and the next deadline
//! (`poll_timeout`). Nothing here can panic on what the modem sends.
//!
//! | module | owns |
//! |---|---|
//! | [`urc`] | the bounded line buffer, result codes, URCs, information responses |
//! | [`modem`] | the init sequence, the command in flight and its timeout, liveness, re-init backoff, [`modem::ModemEvent`]s |
//! | [`config`] | the flash layout, its CRC, compile-time defaults |
//! | [`app`] | the gateway itself: modem → notifier, listener → hooks, network bring-up (embassy) |
//!
//! ```
//! use flagpost_firmware::modem::{Modem, ModemEvent};
//! use flagpost_core::time::{Duration, Instant};
//!
//! let mut now = Instant::ZERO;
//! let mut modem = Modem::new(now, 0x1234_5678);
//! let answers: [&[u8]; 6] = [
//!     b"\r\nOK\r\n",                          // AT
//!     b"ATE0\r\r\nOK\r\n",                    // ATE0 (still echoed)
//!     b"\r\nOK\r\n",                          // AT+CMGF=1
//!     b"\r\nOK\r\n",                          // AT+CNMI=2,1,0,1,0
//!     b"\r\n+CNMI: 2,1,0,1,0\r\n\r\nOK\r\n",  // AT+CNMI?
//!     b"\r\n+CMGF: 1\r\n\r\nOK\r\n",          // AT+CMGF?
//! ];
//! for answer in answers {
//!     let _command = modem.poll_transmit(now).unwrap(); // write it to the UART
//!     now += Duration::from_millis(20);
//!     modem.handle_rx(now, answer);
//! }
//! assert_eq!(modem.poll_event(), Some(ModemEvent::Ready));
//! modem.handle_rx(now, b"\r\n+CMTI: \"SM\",3\r\n");
//! assert!(matches!(modem.poll_event(), Some(ModemEvent::NewSms { index: 3, .. })));
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]
// The parsers see modem and flash input: no indexing that could panic, no
// unwrap, no silent truncation.
#![cfg_attr(
    not(test),
    warn(
        clippy::indexing_slicing,
        clippy::cast_possible_truncation,
        clippy::unwrap_used,
        clippy::expect_used
    )
)]

pub mod app;
pub mod config;
pub mod modem;
pub mod urc;

pub use flagpost_core as core;
