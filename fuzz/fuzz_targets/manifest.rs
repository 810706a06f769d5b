#![no_main]
//! Fuzzes manifest decoding (manifests come back from the coordinator).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scatter_core::manifest::Manifest::decode(data);
});
