//! Flagpost on `std`: the broker on port 16725 (mio), the client API that
//! applications link (notifier, listener, service cycle) and the `flagpost`
//! command. Built by the transport-std issue; today it re-exports the core
//! so host code has one crate to depend on.
#![deny(missing_docs)]

pub use flagpost_core as core;
