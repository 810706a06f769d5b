//! Scatter's pure logic: identifiers and sizes, content-defined chunking, encryption and key
//! handling, Reed–Solomon erasure coding, pack layout, the object manifest, snapshot records and trees.
//!
//! Nothing here does I/O or needs an async runtime; everything takes bytes (or a `Read`) and
//! returns values, so it can be tested exhaustively and used from any pipeline.

pub mod audit;
pub mod chunker;
pub mod crypto;
pub mod erasure;
pub mod ids;
pub mod keys;
pub mod manifest;
pub mod names;
pub mod pack;
pub mod pieces;
pub mod recovery;
pub mod retention;
pub mod size;
pub mod snapshot;
pub mod tree;

pub use ids::{ChunkId, DeviceId, HostId, PackId, ShardId, UserId};
pub use size::ByteSize;
