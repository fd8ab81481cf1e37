//! Flagpost's benchmarks and load generators (criterion micro-benchmarks,
//! loopback end-to-end runs, floors and peers). Built by the benchmarks
//! issue; today it re-exports the core.
#![deny(missing_docs)]

pub use flagpost_core as core;
