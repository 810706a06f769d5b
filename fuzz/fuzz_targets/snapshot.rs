#![no_main]
//! Fuzzes snapshot record decoding.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scatter_core::snapshot::Snapshot::decode(data);
});
