//! Broker state tests.
