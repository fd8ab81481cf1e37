//! # flagpost-embedded
//!
//! Flagpost for gateway boards (`no_std`, no `alloc`): a microcontroller
//! with a cellular modem and Ethernet notifies notifications the moment an
//! SMS or a delivery report arrives, and listens for the notifications meant
//! for its channel.
//!
//! | feature | what you get |
//! |---|---|
//! | `embassy` (default) | [`notifier`] and [`listener`]: a cheap `Copy` handle for application tasks and a runner task (`run() -> !`) that owns the embassy-net socket, as embassy-net does it |
//! | `smoltcp` | `smoltcp_notifier`: a poll-driven notifier over a bare `smoltcp` UDP socket (time passed in, next poll time returned) |
//! | `defmt` | `defmt::Format` on public types |
//!
//! All protocol logic is `flagpost-core`'s: the notifier wraps
//! [`flagpost_core::notifier::NotifierSession`] (burst coalescing within a hold-off,
//! sequence numbers, tail-loss probe, confirmed sends, the tag hook) and the
//! listener wraps [`flagpost_core::listener::ListenerSession`] (hello, with a
//! key the handshake of listener authentication, keep-alive, reconnect with
//! backoff, the reconnect raise on every welcome).
//!
//! ## Buffers (supplied by the caller)
//!
//! | socket | buffer | bytes | why |
//! |---|---|---|---|
//! | notifier UDP | rx payload | ≥ 72 | acks are ≤ 36 bytes; 72 holds any datagram |
//! | notifier UDP | tx payload | ≥ 72 × *N* | one datagram per pending notification kind/channel |
//! | notifier UDP | metadata | 2 rx, *N* tx | |
//! | listener TCP | rx | ≥ 70 (256 recommended) | one frame is ≤ 70 bytes |
//! | listener TCP | tx | ≥ 70 (128 recommended) | hello ≤ 42, proof 38, ping 10, close 10 |
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "embassy")]
pub mod listener;
#[cfg(feature = "embassy")]
pub mod notifier;
#[cfg(feature = "smoltcp")]
pub mod smoltcp_notifier;
#[cfg(feature = "embassy")]
mod time;

pub use flagpost_core as core;
