//! Test support: every catalog test runs on both back ends.
//!
//! [`conformance!`] turns each test into two, `sqlite` and `postgres`; inside, [`catalog`]
//! opens a fresh catalog on the back end of the one running: a SQLite file in a temp dir,
//! or a new database on this test process's own PostgreSQL server (started on first use,
//! see `scatter-pgtest`).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::sql::Param;
use super::{Store, StoreError};

thread_local! {
    static POSTGRES: Cell<bool> = const { Cell::new(false) };
}

/// Keeps what a test's catalog lives in until the test ends.
pub enum Guard {
    /// The SQLite file's folder.
    Dir(#[allow(dead_code)] tempfile::TempDir),
    /// A database on the shared server (dropped with the server).
    Database,
}

fn server() -> &'static scatter_pgtest::TestPg {
    static SERVER: OnceLock<scatter_pgtest::TestPg> = OnceLock::new();
    SERVER.get_or_init(scatter_pgtest::TestPg::start)
}

/// A fresh, empty catalog on the back end of the running test.
pub fn catalog() -> (Guard, Store) {
    let (guard, location) = location();
    let store = Store::connect(&location).expect("open the catalog");
    (guard, store)
}

/// Where a fresh catalog on the running test's back end would be: a SQLite path or a
/// PostgreSQL URL, not opened yet.
pub fn location() -> (Guard, String) {
    if POSTGRES.with(Cell::get) {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        (Guard::Database, server().create_database(&name))
    } else {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db").to_string_lossy().into_owned();
        (Guard::Dir(dir), path)
    }
}

/// Runs `test` with [`catalog`] opening PostgreSQL catalogs (else SQLite).
pub fn with_backend(postgres: bool, test: impl FnOnce()) {
    POSTGRES.with(|p| p.set(postgres));
    test();
}

/// Defines each test twice, as `NAME::sqlite` and `NAME::postgres`.
macro_rules! conformance {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run() $body

            #[test]
            fn sqlite() {
                $crate::store::testing::with_backend(false, run);
            }

            #[test]
            fn postgres() {
                $crate::store::testing::with_backend(true, run);
            }
        }
    )*};
}
pub(crate) use conformance;

/// A catalog's raw statements, each its own transaction.
pub struct Raw<'a>(pub &'a Store);

impl Raw<'_> {
    /// Runs one statement.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError> {
        self.0.write(|c| Ok(c.execute(sql, params)?))
    }

    /// The one integer a query answers.
    pub fn query_i64(&self, sql: &str, params: &[&dyn Param]) -> Result<i64, StoreError> {
        self.0.read(|c| Ok(c.query_row(sql, params, |r| r.get(0))?))
    }

    /// Releases a live pack for deletion as the store does, at time `now`; returns how many
    /// were.
    pub fn release(&self, pack: &scatter_core::PackId, now: u64) -> Result<u64, StoreError> {
        self.0.write(|c| Ok(super::release_packs(c, "id = ?1", params![pack.as_bytes()], now)?))
    }

    /// What the user's live packs take on hosts, summed from them: what the usage counters
    /// must always add up to (see `stored`).
    pub fn usage_summed(&self, user: scatter_core::UserId) -> Result<u64, StoreError> {
        let sum: i64 = self.0.read(|c| {
            Ok(c.query_row(
                "SELECT CAST(COALESCE(SUM(shard_size * (k + m)), 0) AS BIGINT) FROM packs WHERE user = ?1 AND state = 'live'",
                params![user.0 as i64],
                |r| r.get(0),
            )?)
        })?;
        Ok(sum as u64)
    }
}
