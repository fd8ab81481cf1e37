//! Shared code of the `flagpost-core` fuzz targets.
//!
//! The `broker` target's operation language, shadow model and driver live
//! in the `flagpost-model` crate (`../model`), shared with its proptests.
//!
//! * [`encode`]: the inverse of the `arbitrary` decoding of
//!   [`flagpost_model::Input`], used only to write the seed corpus
//!   (`cargo run --example gen_seeds`).

pub mod encode;
