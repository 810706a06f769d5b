#![no_main]
//! Fuzzes the decoding of request bodies whose lists are bounded while they are decoded:
//! never a panic, and never a list longer than its bound.
use libfuzzer_sys::fuzz_target;
use scatter_proto::api::*;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<InventoryRequest>(data) {
        assert!(r.shards.len() <= MAX_INVENTORY);
    }
    if let Ok(r) = serde_json::from_slice::<HeartbeatRequest>(data) {
        assert!(r.refusals.len() <= MAX_REFUSALS);
    }
    if let Ok(r) = serde_json::from_slice::<LocateRequest>(data) {
        assert!(r.chunks.len() <= MAX_IDS);
    }
    if let Ok(r) = serde_json::from_slice::<PlaceRequest>(data) {
        assert!(r.shards.len() <= MAX_SHARDS && r.exclude.len() <= MAX_HOSTS);
    }
    if let Ok(r) = serde_json::from_slice::<CommitPackRequest>(data) {
        assert!(r.shards.len() <= MAX_SHARDS && r.chunks.len() <= MAX_LIST);
    }
});
