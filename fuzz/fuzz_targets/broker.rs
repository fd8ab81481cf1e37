//! Drives `flagpost_core::broker::Broker` (16 listener slots, 4 sender slots)
//! with an arbitrary sequence of operations and checks it against a shadow
//! model after each one: see `flagpost_fuzz::broker` for the operations and
//! the invariants.
#![no_main]

use flagpost_fuzz::broker::{run, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Input| run(&input));
