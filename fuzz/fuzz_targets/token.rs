#![no_main]
//! Fuzzes join and invite token parsing.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = text.parse::<scatter_net::Token>() {
            assert_eq!(t.to_string().parse::<scatter_net::Token>().ok(), Some(t));
        }
    }
});
