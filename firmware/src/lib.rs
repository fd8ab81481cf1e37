//! The gateway application: modem unsolicited result codes in, channel
//! notifications out. Built by the gateway-boards issue; today it
//! re-exports the core.
#![no_std]
#![deny(missing_docs)]

pub use flagpost_core as core;
