//! Cross-crate test support: a simulated-clock harness that drives the
//! broker state and several protocol-level listeners with no sockets and no
//! sleeps (see [`sim`]), and real `flagpost` processes for the fault tests
//! (see [`process`]).
#![deny(missing_docs)]

pub mod process;
pub mod sim;
