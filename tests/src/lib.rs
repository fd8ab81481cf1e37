//! Cross-crate test support: a simulated-clock harness that drives the
//! broker state and several protocol-level listeners with no sockets and no
//! sleeps (see [`sim`]), and real `flagpost` processes for the fault tests
//! (see [`process`]), a throwaway PostgreSQL cluster (see [`postgres`]), a
//! throwaway NATS server (see [`nats`]) and a throwaway certificate
//! authority (see [`tls`]).
#![deny(missing_docs)]

pub mod nats;
pub mod postgres;
pub mod process;
pub mod sim;
pub mod tls;
