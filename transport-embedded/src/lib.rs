//! Flagpost on gateway boards: a publisher and a listener over embassy-net
//! (and a poll-driven publisher over smoltcp). Built by the gateway-boards
//! issue; today it re-exports the core.
#![no_std]
#![deny(missing_docs)]

pub use flagpost_core as core;
