//! Drives `flagpost_core::broker::BrokerState` with an arbitrary sequence of
//! operations and checks it against the shared reference model after each
//! one: see the `flagpost-model` crate (`../model`) for the operations and
//! the invariants.
#![no_main]

use flagpost_model::{run, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Input| {
    run(&input);
});
