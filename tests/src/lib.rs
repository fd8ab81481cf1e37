//! Cross-crate test support: a simulated-clock harness that drives the
//! broker state and several protocol-level listeners with no sockets and no
//! sleeps (see [`sim`]).
#![deny(missing_docs)]

pub mod sim;
