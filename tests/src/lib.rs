//! Cross-crate test support: a simulated-clock harness that drives the
//! broker state and several protocol-level listeners with no sockets and no
//! sleeps (see [`sim`]), and real `flagpost` processes for the fault tests
//! (see [`process`]), a throwaway PostgreSQL cluster (see [`postgres`]) and a throwaway NATS
//! server (see [`nats`]).
#![deny(missing_docs)]

pub mod nats;
pub mod postgres;
pub mod process;
pub mod sim;
