#![no_main]
//! Fuzzes key file decoding.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scatter_core::keys::UserKeys::from_key_file(data, "passphrase");
});
