//! Support for the `scatter` binary that tests share: a launcher for local grids of real
//! `scatter` processes ([`grid`]), the services' config files ([`config`]), human durations
//! ([`duration`]) and sizes ([`size`]), logging flags ([`logging`]), and prices, dates and placement policies on
//! the command line ([`terms`]).

pub mod config;
pub mod devices;
pub mod duration;
pub mod grid;
pub mod logging;
pub mod passphrase;
pub mod size;
pub mod terms;
