//! The acceptance tests: real `scatter` processes (coordinator, hosts, clients, gateway) on
//! 127.0.0.1, one module per area. One test binary rather than one per file: the files
//! share their helpers (`common`), the binary is linked once instead of thirty times, and
//! the test harness runs tests of every area side by side (most of a test's time is spent
//! waiting for processes), which a binary per file could not.

mod common;

mod admin;
mod backup;
mod catalog;
mod chaos;
mod cleanup;
mod config;
mod coordinators;
mod dashboard;
mod devices;
mod durability;
mod edges;
mod gateway;
mod grid;
mod habits;
mod hostile_abandon;
mod hostile_devices;
mod hostile_placement;
mod hostile_restore;
mod hostile_sessions;
mod hostile_snapshots;
mod hostile_storage;
mod hostile_today;
mod hostile_trail;
mod hostile_transport;
mod locks;
mod metering;
mod mount;
mod placement;
mod recovery;
mod security;
mod terms;
mod users;
