//! # flagpost-core
//!
//! The sans-IO heart of Flagpost, a wake-up broker for message-processing
//! systems: senders fire tiny notifications over UDP to port 16725, listeners
//! connected over TCP to port 16725 get flags raised, and a processing
//! service combines those wake-ups with polling intervals so it never waits
//! and never hammers its database.
//!
//! This crate is `#![no_std]` and never allocates, reads a clock, or touches
//! a socket. Time comes in as an argument ([`time::Instant`]); whatever waits
//! returns its next deadline (`poll_timeout`). Storage is fixed: arrays or
//! caller-supplied slices. Transports (`flagpost-std` on mio,
//! `flagpost-embedded` on embassy-net/smoltcp) are thin shells around it.
//!
//! | layer | module | owns |
//! |---|---|---|
//! | values | [`time`], [`channel`], [`notify`], [`payload`] | instants, channel ids, the four notification kinds, their text form |
//! | wire | [`wire`] | datagram and frame layouts (versions 1 and 2), checked parse/emit |
//! | auth | [`auth`] | HMAC-SHA-256 tags, the current and previous key, the listener handshake's tags and nonces |
//! | flags | [`flags`] | test-and-clear flags, single-owner and atomic |
//! | cycle | [`schedule`], [`timer`] | the service's polling scheduler |
//! | source | [`source`], [`changes`] | a database source's connect, retry, keep-alive and re-check decisions; committed row changes (`pgoutput`) into notifications |
//! | broker | [`loss`], [`broker`] | loss detection, routing, coalescing outboxes |
//! | listener | [`listener`] | the listener's session (hello, the handshake with a key, keep-alive, reconnect backoff), the stats client |
//! | sender | [`notifier`] | coalescing, sequence numbers, tail-loss probe, confirmed sends |
//!
//! ## Flags: many raises, one check
//!
//! ```
//! use flagpost_core::flags::{FlagSet, Flags};
//! use flagpost_core::notify::Kind;
//!
//! let mut flags = Flags::new();
//! flags.raise(Kind::Status.flags()); // a status update also raises non-status
//! flags.raise(Kind::Status.flags());
//! assert!(flags.check_status());
//! assert!(!flags.check_status());
//! assert!(flags.check_non_status());
//! ```
//!
//! ## The service cycle
//!
//! ```
//! use flagpost_core::notify::Kind;
//! use flagpost_core::schedule::{Reason, Scheduler, Task};
//! use flagpost_core::time::{Duration, Instant};
//!
//! let mut now = Instant::ZERO;
//! // poll triggers every 60 s, never poll outgoing: rely on the broker
//! let mut cycle = Scheduler::new(now, Duration::from_secs(60), Duration::ZERO);
//! while cycle.poll(now).is_some() {} // start-up work
//! now += Duration::from_secs(1);
//! cycle.handle_notification(now, Kind::Status);
//! let work = cycle.poll(now).unwrap();
//! assert_eq!((work.task, work.reason), (Task::CheckTriggers, Reason::Notification));
//! ```
//!
//! ## The broker: a datagram in, a frame out
//!
//! ```
//! use flagpost_core::broker::{BrokerState, Config, ListenerSlot};
//! use flagpost_core::channel::ChannelId;
//! use flagpost_core::flags::FlagSet;
//! use flagpost_core::loss::SenderSlot;
//! use flagpost_core::notify::Notification;
//! use flagpost_core::time::Instant;
//! use flagpost_core::wire::*;
//!
//! let mut broker = BrokerState::new(Config::default(), [ListenerSlot::EMPTY; 4], [SenderSlot::EMPTY; 4]);
//! let now = Instant::ZERO;
//! let gsm1 = ChannelId::new("gsm1").unwrap();
//!
//! // a listener for channel gsm1 connects and says hello
//! let listener = broker.open(now).unwrap();
//! let mut frame = [0u8; MAX_FRAME_LEN];
//! let hello = FrameRepr::Hello(HelloRepr { interest: FlagSet::ALL, channel: Some(gsm1), keepalive_secs: 0 });
//! let n = hello.emit(&mut frame).unwrap();
//! broker.handle_frame(now, listener, &frame[..n]).unwrap();
//!
//! // a sender notifies a status update for gsm1, asking for an ack
//! let notify = NotifyRepr {
//!     notification: Notification::status(Some(gsm1)),
//!     sender: SenderId(0x5eed),
//!     seq: Seq::FIRST,
//!     batch: 20,
//!     ack_requested: true,
//!     probe: false,
//!     tag: None,
//! };
//! let mut datagram = [0u8; MAX_DATAGRAM_LEN];
//! let n = notify.emit(&mut datagram).unwrap();
//! let received = broker.handle_datagram(now, &datagram[..n]).unwrap();
//! assert_eq!(received.reached, 1);
//! assert_eq!(received.ack.unwrap().result, AckResult::Delivered);
//!
//! // the transport writes what the listener's outbox holds
//! let ready = broker.poll_ready().unwrap();
//! assert!(matches!(broker.poll_frame(ready), Some(FrameRepr::Welcome(_))));
//! match broker.poll_frame(ready) {
//!     Some(FrameRepr::Flags(f)) => assert_eq!(f.flags, FlagSet::STATUS | FlagSet::NON_STATUS),
//!     other => panic!("{other:?}"),
//! }
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
// Decoders see peer input: no indexing that could panic, no silent truncation.
#![cfg_attr(
    not(test),
    warn(clippy::indexing_slicing, clippy::cast_possible_truncation)
)]

pub mod auth;
pub mod broker;
pub mod changes;
pub mod channel;
pub mod flags;
pub mod listener;
pub mod loss;
pub mod notifier;
pub mod notify;
pub mod payload;
pub mod schedule;
pub mod source;
pub mod time;
pub mod timer;
pub mod wire;

pub use channel::ChannelId;
pub use flags::{FlagSet, Flags};
pub use notify::{Kind, Notification};
pub use time::{Duration, Instant};
