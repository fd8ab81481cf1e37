//! Shared code of the `flagpost-core` fuzz targets.
//!
//! * [`broker`]: the operation language of the `broker` target, its shadow
//!   model and the driver that checks the real [`Broker`] against it.
//! * [`encode`]: the inverse of the `arbitrary` decoding of [`broker::Input`],
//!   used only to write the seed corpus (`cargo run --example gen_seeds`).
//!
//! [`Broker`]: flagpost_core::broker::Broker

pub mod broker;
pub mod encode;
