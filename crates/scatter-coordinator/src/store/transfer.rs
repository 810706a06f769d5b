//! Export and import of a whole catalog, in one format for both back ends: how a grid moves
//! from SQLite to PostgreSQL (or back), and a logical backup of either.
//!
//! The format is JSON Lines: a header naming the format and the schema version, then for
//! each table a line with its name and columns followed by one line per row (an array of
//! values: integers and text as JSON numbers and strings, bytes as `{"x": hex}`, NULL as
//! null). Columns travel by name, so a SQLite catalog whose columns were added by upgrades
//! (in another order) imports into a fresh PostgreSQL one. An export is one read
//! transaction: a consistent snapshot, taken while coordinators run.

use std::io::{BufRead, Write};

use super::sql::{Row, Sql, SqlError, Value};
use super::{Store, StoreError, SCHEMA_VERSION};

/// The header's format name.
const FORMAT: &str = "scatter-catalog";

/// Every table, parents before children. Leases, the credentials seen (`replays`) and the
/// chunks prunes assigned for repacking (`relocations`, an hour's worth) are left out: they
/// belong to the coordinators and clients running on the source. So are the dashboard's
/// login links and sessions (people sign in again) and its chart samples (history of the
/// source grid's figures, which start again).
const TABLES: &[&str] = &[
    "meta",
    "operators",
    "hosts",
    "tokens",
    "users",
    "gateway_names",
    "devices",
    "recovery",
    "policies",
    "sessions",
    "packs",
    "usage_counts",
    "catalog_usage",
    "shards",
    "chunks",
    "objects",
    "object_chunks",
    "snapshots",
    "ref_sets",
    "ref_set_chunks",
    "snapshot_sets",
    "session_refs",
    "orphans",
    "reservations",
    "events",
    "holds",
    "lock_limits",
    "meter_records",
    "meter_current",
    "meter_periods",
    "meter_rates",
    "meter_gaps",
];

/// Tables whose `id` the database assigns: PostgreSQL's counters must pass the imported ids.
const COUNTED: &[&str] = &["operators", "hosts", "users", "devices", "sessions", "objects", "events", "meter_records"];

/// What an export or import moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Rows, per table, in [`TABLES`] order (tables with none left out).
    pub rows: Vec<(String, u64)>,
}

impl Moved {
    /// Rows in all.
    pub fn total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Why an import could not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The catalog failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the export failed.
    #[error("the export file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not an export this build reads.
    #[error("line {line} of the export: {what}")]
    Format {
        /// 1-based line.
        line: u64,
        /// What is wrong.
        what: String,
    },
    /// The target catalog holds a grid already.
    #[error("the target catalog is not empty ({0}); import only into a new catalog")]
    NotEmpty(String),
}

impl From<SqlError> for TransferError {
    fn from(e: SqlError) -> Self {
        TransferError::Store(e.into())
    }
}

impl super::sql::Retry for TransferError {
    fn conflict(&self) -> bool {
        matches!(self, TransferError::Store(e) if super::sql::Retry::conflict(e))
    }
}

fn columns(c: &Sql<'_>, table: &str) -> Result<Vec<String>, SqlError> {
    match c.is_postgres() {
        true => c.query_map(
            "SELECT column_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
            params![table],
            |r| r.get(0),
        ),
        false => c.query_map("SELECT name FROM pragma_table_info(?1) ORDER BY cid", params![table], |r| r.get(0)),
    }
}

/// A column name as SQL: quoted, since one of them (`user`) is reserved in PostgreSQL.
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(n) => (*n).into(),
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) => serde_json::json!({ "x": hex::encode(b) }),
    }
}

fn from_json(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Number(n) => Value::Int(n.as_i64()?),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Object(o) => Value::Blob(hex::decode(o.get("x")?.as_str()?).ok()?),
        _ => return None,
    })
}

impl Store {
    /// Writes the whole catalog to `out`, from one consistent snapshot.
    pub fn export(&self, out: &mut dyn Write) -> Result<Moved, TransferError> {
        self.db.read(|c| {
            let mut moved = Moved::default();
            let header = serde_json::json!({ "format": FORMAT, "schema": SCHEMA_VERSION });
            writeln!(out, "{header}")?;
            for table in TABLES {
                let cols = columns(c, table)?;
                writeln!(out, "{}", serde_json::json!({ "table": table, "columns": cols }))?;
                let list: Vec<String> = cols.iter().map(|c| quoted(c)).collect();
                // `meta` keeps the schema version, which the target sets itself.
                let filter = if *table == "meta" { " WHERE key != 'schema'" } else { "" };
                let mut n = 0;
                let mut failed = None;
                c.each(&format!("SELECT {} FROM {table}{filter}", list.join(", ")), params![], |r: &Row| {
                    let row: Vec<serde_json::Value> = (0..cols.len()).map(|i| to_json(r.value(i))).collect();
                    if let Err(e) = writeln!(out, "{}", serde_json::Value::Array(row)) {
                        failed = Some(e);
                    }
                    n += 1;
                    Ok(())
                })?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                if n > 0 {
                    moved.rows.push((table.to_string(), n));
                }
            }
            out.flush()?;
            Ok(moved)
        })
    }

    /// Loads an export into this catalog, which must hold no grid yet, in one transaction:
    /// all of it or, on any error, none. The export is read as it is loaded, so its size
    /// is not bounded by memory.
    pub fn import(&self, input: &mut dyn BufRead) -> Result<Moved, TransferError> {
        let mut started = false;
        self.db.write(|c| {
            // The input cannot be read twice: an import PostgreSQL asks to run again (another
            // writer on the same new catalog) is an error rather than a partial load.
            if std::mem::replace(&mut started, true) {
                return Err(TransferError::NotEmpty("another writer changed it during the import".into()));
            }
            let mut line_of = {
                let mut buf = String::new();
                move |input: &mut dyn BufRead| -> std::io::Result<Option<String>> {
                    buf.clear();
                    Ok((input.read_line(&mut buf)? > 0).then(|| buf.clone()))
                }
            };
            for table in ["hosts", "users", "packs"] {
                if c.exists(&format!("SELECT 1 FROM {table}"), params![])? {
                    return Err(TransferError::NotEmpty(format!("it has {table}")));
                }
            }
            // A new catalog has only the admin token its coordinator made; the export brings
            // the grid's own.
            c.execute("DELETE FROM tokens", params![])?;
            let mut moved = Moved::default();
            let bad = |line: usize, what: &str| TransferError::Format { line: line as u64 + 1, what: what.to_owned() };
            let first = line_of(&mut *input)?.ok_or_else(|| bad(0, "the file is empty"))?;
            let header: serde_json::Value = serde_json::from_str(&first).map_err(|e| bad(0, &e.to_string()))?;
            if header["format"] != FORMAT {
                return Err(bad(0, "this is not a Scatter catalog export"));
            }
            if header["schema"] != SCHEMA_VERSION {
                return Err(bad(
                    0,
                    &format!(
                        "it has schema version {}, this build {SCHEMA_VERSION}; export and import with the same version",
                        header["schema"]
                    ),
                ));
            }
            let mut insert: Option<(String, String, usize)> = None;
            let mut i = 0;
            while let Some(line) = line_of(&mut *input)? {
                i += 1;
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(i, &e.to_string()))?;
                match v {
                    serde_json::Value::Object(o) => {
                        let table = o.get("table").and_then(|t| t.as_str()).ok_or_else(|| bad(i, "no table name"))?;
                        if !TABLES.contains(&table) {
                            return Err(bad(i, &format!("unknown table `{table}`")));
                        }
                        let cols: Vec<String> = o
                            .get("columns")
                            .and_then(|c| c.as_array())
                            .ok_or_else(|| bad(i, "no columns"))?
                            .iter()
                            .map(|c| {
                                // Written into the statement: a plain name, never SQL of the file's.
                                let plain = |s: &&str| {
                                    s.len() <= 64
                                        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                                };
                                c.as_str()
                                    .filter(plain)
                                    .map(quoted)
                                    .ok_or_else(|| bad(i, "a column name is not a plain lower-case name"))
                            })
                            .collect::<Result<_, _>>()?;
                        let marks: Vec<String> = (1..=cols.len()).map(|n| format!("?{n}")).collect();
                        let conflict =
                            if table == "meta" { " ON CONFLICT (key) DO UPDATE SET value = excluded.value" } else { "" };
                        let sql =
                            format!("INSERT INTO {table} ({}) VALUES ({}){conflict}", cols.join(", "), marks.join(", "));
                        insert = Some((table.to_owned(), sql, cols.len()));
                        moved.rows.push((table.to_owned(), 0));
                    }
                    serde_json::Value::Array(values) => {
                        let (_, sql, n) = insert.as_ref().ok_or_else(|| bad(i, "a row before its table"))?;
                        if values.len() != *n {
                            return Err(bad(i, "a row with another number of values than its table's columns"));
                        }
                        let values: Vec<Value> =
                            values.iter().map(from_json).collect::<Option<_>>().ok_or_else(|| bad(i, "a value of no known kind"))?;
                        let params: Vec<&dyn super::sql::Param> = values.iter().map(|v| v as _).collect();
                        c.execute(sql, &params)?;
                        if let Some(last) = moved.rows.last_mut() {
                            last.1 += 1;
                        }
                    }
                    _ => return Err(bad(i, "neither a table nor a row")),
                }
            }
            if c.is_postgres() {
                for table in COUNTED {
                    c.execute(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
                        ),
                        params![],
                    )?;
                }
            }
            moved.rows.retain(|(_, n)| *n > 0);
            Ok(moved)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use scatter_core::{ChunkId, PackId, ShardId, UserId};
    use scatter_proto::api::{ChunkEntry, Role, StoredShard};

    use super::*;
    use crate::store::testing::{self, Guard};
    use crate::store::NewPack;

    /// An export as tables of rows keyed by column name, in a stable order: two catalogs
    /// holding the same grid compare equal whatever order their columns are in.
    fn normalized(export: &[u8]) -> BTreeMap<String, Vec<BTreeMap<String, serde_json::Value>>> {
        let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
        let mut current: Option<(String, Vec<String>)> = None;
        for line in export.split(|b| *b == b'\n').filter(|l| !l.is_empty()).skip(1) {
            match serde_json::from_slice::<serde_json::Value>(line).expect("json") {
                serde_json::Value::Object(o) => {
                    let cols =
                        o["columns"].as_array().expect("columns").iter().map(|c| c.as_str().expect("name").to_owned());
                    current = Some((o["table"].as_str().expect("table").to_owned(), cols.collect()));
                }
                serde_json::Value::Array(values) => {
                    let (table, cols) = current.as_ref().expect("a table first");
                    out.entry(table.clone()).or_default().push(cols.iter().cloned().zip(values).collect());
                }
                other => panic!("unexpected line {other}"),
            }
        }
        for rows in out.values_mut() {
            rows.sort_by_key(|r| serde_json::to_string(r).expect("json"));
        }
        out
    }

    fn grid(store: &Store) {
        store.add_token(&[1; 32], "ann \"o'neil\" é", Role::User, Some(5 << 40), None).expect("token");
        let user = store.redeem_token(&[1; 32], "age1pk", &[2; 32], "", 10).expect("redeem").expect("user").id;
        let hosts: Vec<_> = (0..3)
            .map(|i| store.add_host(&[i; 32], "https://127.0.0.1:1", "z", 3 << 40, None, 10).expect("host"))
            .collect();
        let session = store.add_session(user, b"wrapped", 10, 1 << 40).expect("session");
        let shards: Vec<StoredShard> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| StoredShard {
                index: i as u8,
                shard: ShardId::from_bytes([10 + i as u8; 32]),
                host: *h,
                receipt: scatter_proto::SignedReceipt(format!("r{i}")),
            })
            .collect();
        let chunks = [ChunkEntry { id: ChunkId::from_bytes([7; 32]), offset: 0, len: 100 }];
        let pack = NewPack {
            id: PackId::from_bytes([9; 32]),
            user,
            session,
            size: 5 << 32,
            k: 2,
            m: 1,
            shard_size: 5 << 31,
            shards: &shards,
            chunks: &chunks,
            relocate: false,
        };
        store.commit_pack(&pack, 11).expect("pack");
        store
            .commit_object(user, "name/é", session, b"\0manifest", 100, &[ChunkId::from_bytes([7; 32])], false, 12)
            .expect("object");
        store.commit_snapshot(user, user, session, "snap1", b"record", 13).expect("snapshot");
        store.record_event(14, crate::store::Party::Grid, "admin", "test", "a 'quoted' \"detail\"").expect("event");
    }

    fn open(postgres: bool) -> (Guard, String) {
        let mut out = None;
        testing::with_backend(postgres, || out = Some(testing::location()));
        out.expect("set")
    }

    #[test]
    fn a_grid_moves_from_sqlite_to_postgresql_and_back_unchanged() {
        let (_a, lite) = open(false);
        let source = Store::connect(&lite).expect("sqlite");
        grid(&source);
        let mut first = Vec::new();
        let moved = source.export(&mut first).expect("export");
        assert!(moved.total() >= 12, "{moved:?}");

        let (_b, pg) = open(true);
        let target = Store::connect(&pg).expect("postgres");
        assert_eq!(target.import(&mut &first[..]).expect("import").total(), moved.total());
        let mut second = Vec::new();
        target.export(&mut second).expect("export again");
        assert_eq!(normalized(&first), normalized(&second));
        // Ids the database assigns go on after the imported ones.
        let host = target.add_host(&[8; 32], "https://127.0.0.1:2", "z", 1, None, 20).expect("a new host");
        assert_eq!(host.0, 4);
        // So do devices: a new machine registers after the import.
        target.add_device_token(&[20; 32], UserId(1)).expect("device invite");
        let device = target.redeem_token(&[20; 32], "age1pk", &[21; 32], "new", 20).expect("a new device");
        assert!(device.expect("unused").device.0 > 1);

        let (_c, back) = open(false);
        let again = Store::connect(&back).expect("sqlite again");
        again.import(&mut &second[..]).expect("import back");
        let mut third = Vec::new();
        again.export(&mut third).expect("export a third time");
        assert_eq!(normalized(&first), normalized(&third));
    }

    #[test]
    fn an_import_goes_only_into_an_empty_catalog_and_all_or_nothing() {
        let (_a, lite) = open(false);
        let source = Store::connect(&lite).expect("sqlite");
        grid(&source);
        let mut export = Vec::new();
        source.export(&mut export).expect("export");
        let refused = source.import(&mut &export[..]);
        assert!(matches!(refused, Err(TransferError::NotEmpty(_))), "{refused:?}");

        for postgres in [false, true] {
            let (_b, location) = open(postgres);
            let target = Store::connect(&location).expect("open");
            // Cut in the middle of the rows: nothing of it stays.
            let cut = &export[..export.len() * 2 / 3];
            let cut = &cut[..cut.iter().rposition(|b| *b == b'\n').expect("lines")];
            let mut broken = cut.to_vec();
            broken.extend_from_slice(b"\n[1, 2\n");
            let failed = target.import(&mut &broken[..]);
            assert!(matches!(failed, Err(TransferError::Format { .. })), "{failed:?}");
            assert!(target.users().expect("users").is_empty(), "a failed import leaves nothing");
            let wrong = target.import(&mut &b"{\"format\":\"other\"}\n"[..]);
            assert!(matches!(wrong, Err(TransferError::Format { line: 1, .. })), "{wrong:?}");
            // A column name is written into the statement: only a plain name passes.
            let text = String::from_utf8(export.clone()).expect("utf-8");
            let crafted = text.replacen("\"receipt\"", "\"receipt\\\") VALUES (1); DROP TABLE users; --\"", 1);
            assert_ne!(crafted, text, "the export names the column");
            let failed = target.import(&mut crafted.as_bytes());
            let said = format!("{failed:?}");
            assert!(matches!(failed, Err(TransferError::Format { .. })) && said.contains("plain"), "{said}");
            assert!(target.users().expect("users").is_empty(), "a failed import leaves nothing");
        }
    }
}
