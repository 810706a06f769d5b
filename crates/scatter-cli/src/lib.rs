//! Support for the `scatter` binary that tests share: a launcher for local grids of real
//! `scatter` processes ([`grid`]) and human durations ([`duration`]).

pub mod duration;
pub mod grid;
