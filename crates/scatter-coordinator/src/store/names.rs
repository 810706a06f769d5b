//! Names the grid CA certified, bound to who first had them: an account's S3 gateways, or
//! hosts. Clients of a gateway trust the grid CA, which would sign any name for anyone:
//! without the binding, any account or host operator could have the CA certify another
//! account's gateway name and pose as that gateway to its S3 clients.
//!
//! `gateway_names.account` is the account's id for a gateway's name, and minus the host's id
//! for a host's (several hosts may share a name: one machine, several ports).

use std::collections::{BTreeSet, HashMap};

use scatter_core::{HostId, UserId};

use super::sql::{Sql, SqlError};
use super::{Store, StoreError};

/// The most names an account's gateways (its own and its delegates') may hold at once: a
/// gateway's certificate names at most 8, so two gateways' worth. Without a bound, any
/// account could bind names without end: the catalog would grow, and every name taken is
/// one nobody else may have certified.
pub const GATEWAY_NAMES_PER_ACCOUNT: usize = 16;

/// Who holds a certified name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameHolder {
    /// An account's S3 gateways.
    Gateway(UserId),
    /// An account gave the name up (or was removed), but certificates issued for it are
    /// valid until this time: until then it passes to nobody else.
    Released(UserId, u64),
    /// A host (the first one certified under it).
    Host(HostId),
}

/// Why names were not bound to an account's gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRefusal {
    /// Another holds this name.
    Held(String, NameHolder),
    /// The account's gateways would hold more than [`GATEWAY_NAMES_PER_ACCOUNT`] names.
    TooMany,
}

/// A name bound to an account's gateways, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayName {
    /// The name.
    pub name: String,
    /// The account (or delegate) that had it certified.
    pub account: UserId,
    /// When it was bound.
    pub since: u64,
    /// Until when certificates issued for it are valid.
    pub certified_until: u64,
    /// Whether it was given up: it passes to others at `certified_until`.
    pub released: bool,
}

fn holder_of(conn: &Sql<'_>, name: &str, now: u64) -> Result<Option<NameHolder>, SqlError> {
    let row: Option<(i64, i64, i64)> = conn.query_opt(
        "SELECT account, released, certified_until FROM gateway_names WHERE name = ?1",
        params![name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(row.and_then(|(holder, released, until)| match (holder < 0, released != 0) {
        (true, _) => Some(NameHolder::Host(HostId(holder.unsigned_abs()))),
        (false, false) => Some(NameHolder::Gateway(UserId(holder as u64))),
        (false, true) if until.max(0) as u64 > now => Some(NameHolder::Released(UserId(holder as u64), until as u64)),
        (false, true) => None,
    }))
}

/// Binds `name` to `holder` (an account's id, or minus a host's) from `now`, certified until
/// `until`: a name that was free (or given up, its certificates expired) starts anew, and one
/// the holder had keeps its `since`.
fn bind(conn: &Sql<'_>, name: &str, holder: i64, now: u64, until: u64) -> Result<(), SqlError> {
    conn.execute(
        "INSERT INTO gateway_names (name, account, since, certified_until, released) VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT (name) DO UPDATE SET
             since = CASE WHEN gateway_names.account = excluded.account THEN gateway_names.since ELSE excluded.since END,
             certified_until = CASE WHEN gateway_names.account = excluded.account
                 AND gateway_names.certified_until > excluded.certified_until
                 THEN gateway_names.certified_until ELSE excluded.certified_until END,
             account = excluded.account,
             released = 0",
        params![name, holder, now as i64, until as i64],
    )?;
    Ok(())
}

/// The names held (not given up) by `owner`'s gateways and its delegates'.
fn held_by(conn: &Sql<'_>, owner: UserId) -> Result<BTreeSet<String>, SqlError> {
    let held: Vec<String> = conn.query_map(
        "SELECT name FROM gateway_names WHERE released = 0
           AND (account = ?1 OR account IN (SELECT id FROM users WHERE owner = ?1))",
        params![owner.0 as i64],
        |r| r.get(0),
    )?;
    Ok(held.into_iter().collect())
}

impl Store {
    /// Binds `names` to `account`'s gateways (`account` works on `owner`'s data: itself, or
    /// the account a delegate was invited for), certified until `until`, in one transaction:
    /// when another account's gateways or a host hold one of them, or a name not bound yet
    /// is the address of a host in `addressed`, or the names would take `owner` and its
    /// delegates past [`GATEWAY_NAMES_PER_ACCOUNT`], binds none and says why; otherwise binds
    /// them and returns whether any was new. A name the account holds stays its own whatever
    /// address a host declares later (a heartbeat can name any address); one it gave up is
    /// its own again.
    pub fn bind_gateway_names(
        &self,
        account: UserId,
        owner: UserId,
        names: &[String],
        addressed: &HashMap<String, HostId>,
        now: u64,
        until: u64,
    ) -> Result<Result<bool, NameRefusal>, StoreError> {
        self.write(|tx| {
            let mut new = false;
            for name in names {
                match (holder_of(tx, name, now)?, addressed.get(name)) {
                    (Some(NameHolder::Gateway(a)), _) if a == account => {}
                    (Some(NameHolder::Released(a, _)), _) if a == account => new = true,
                    (Some(other), _) => return Ok(Err(NameRefusal::Held(name.clone(), other))),
                    (None, Some(host)) => return Ok(Err(NameRefusal::Held(name.clone(), NameHolder::Host(*host)))),
                    (None, None) => new = true,
                }
            }
            let mut held = held_by(tx, owner)?;
            let before = held.len();
            held.extend(names.iter().cloned());
            // An account holding more from before the bound keeps renewing what it holds.
            if held.len() > before && held.len() > GATEWAY_NAMES_PER_ACCOUNT {
                return Ok(Err(NameRefusal::TooMany));
            }
            for name in names {
                bind(tx, name, account.0 as i64, now, until)?;
            }
            Ok(Ok(new))
        })
    }

    /// The account whose gateways hold `name`, if any (also while it passes on after being
    /// given up; a host's or a free name: `None`).
    pub fn gateway_name_holder(&self, name: &str, now: u64) -> Result<Option<UserId>, StoreError> {
        self.read(|conn| match holder_of(conn, name, now)? {
            Some(NameHolder::Gateway(account) | NameHolder::Released(account, _)) => Ok(Some(account)),
            _ => Ok(None),
        })
    }

    /// The names bound to gateways, by name: those of `owner` and its delegates, or every
    /// account's (`None`, for admins). Names given up whose certificates expired are free and
    /// not listed.
    pub fn gateway_names(&self, owner: Option<UserId>, now: u64) -> Result<Vec<GatewayName>, StoreError> {
        let (filter, owner) = match owner {
            Some(o) => ("(account = ?1 OR account IN (SELECT id FROM users WHERE owner = ?1))", o.0 as i64),
            None => ("account >= ?1", 0),
        };
        self.read(|conn| {
            let rows: Vec<(String, i64, i64, i64, i64)> = conn.query_map(
                &format!(
                    "SELECT name, account, since, certified_until, released FROM gateway_names
                     WHERE {filter} AND (released = 0 OR certified_until > ?2) ORDER BY name"
                ),
                params![owner, now as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            Ok(rows
                .into_iter()
                .map(|(name, account, since, until, released)| GatewayName {
                    name,
                    account: UserId(account as u64),
                    since: since.max(0) as u64,
                    certified_until: until.max(0) as u64,
                    released: released != 0,
                })
                .collect())
        })
    }

    /// Gives up `name` for the gateways of `owner` and its delegates (any account's, for
    /// `None`: an admin): it no longer counts against their bound, and passes to whoever asks
    /// for it once the certificates issued for it have expired. Returns the name as it is
    /// now and whether this gave it up (it may have been given up before), or `None` when
    /// those gateways hold no such name (a host's name is never theirs).
    pub fn release_gateway_name(
        &self,
        name: &str,
        owner: Option<UserId>,
    ) -> Result<Option<(GatewayName, bool)>, StoreError> {
        self.write(|tx| {
            let held: Option<(i64, i64, i64, i64)> = tx.query_opt(
                "SELECT account, since, certified_until, released FROM gateway_names WHERE name = ?1 AND account >= 0",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let Some((account, since, until, released)) = held else { return Ok(None) };
            if let Some(owner) = owner {
                let delegate: Option<i64> = tx.query_opt(
                    "SELECT id FROM users WHERE id = ?1 AND owner = ?2",
                    params![account, owner.0 as i64],
                    |r| r.get(0),
                )?;
                if account != owner.0 as i64 && delegate.is_none() {
                    return Ok(None);
                }
            }
            tx.execute("UPDATE gateway_names SET released = 1 WHERE name = ?1", params![name])?;
            let entry = GatewayName {
                name: name.to_owned(),
                account: UserId(account as u64),
                since: since.max(0) as u64,
                certified_until: until.max(0) as u64,
                released: true,
            };
            Ok(Some((entry, released == 0)))
        })
    }

    /// Binds `name` to `host`, unless another holds it: an account's gateways (also while the
    /// name passes on after they gave it up), or a host of another party (operator, or the
    /// grid's own hosts) that is still in the grid; then returns that holder. Hosts of one
    /// party share names (one machine, several ports); a name whose host left the grid
    /// (retired, disqualified, disabled, removed) passes to `host`. Without this, any
    /// operator could have the CA certify its host for another operator's host's name, and
    /// pose as it wherever it could steer that name's traffic.
    pub fn bind_host_name(&self, host: HostId, name: &str, now: u64) -> Result<Option<NameHolder>, StoreError> {
        self.write(|tx| match holder_of(tx, name, now)? {
            Some(gateway @ (NameHolder::Gateway(_) | NameHolder::Released(..))) => Ok(Some(gateway)),
            Some(NameHolder::Host(other)) if other == host => Ok(None),
            Some(NameHolder::Host(other)) => {
                let (theirs, mine) = (party(tx, other)?, party(tx, host)?);
                if theirs == mine {
                    return Ok(None);
                }
                if theirs.is_some_and(|(_, state)| matches!(state.as_str(), "active" | "draining")) {
                    return Ok(Some(NameHolder::Host(other)));
                }
                tx.execute(
                    "UPDATE gateway_names SET account = ?2, since = ?3 WHERE name = ?1",
                    params![name, -(host.0 as i64), now as i64],
                )?;
                Ok(None)
            }
            None => {
                bind(tx, name, -(host.0 as i64), now, 0)?;
                Ok(None)
            }
        })
    }
}

/// A registered host's party (its operator, none for the grid's own hosts) and standing.
fn party(conn: &Sql<'_>, host: HostId) -> Result<Option<(Option<i64>, String)>, SqlError> {
    conn.query_opt("SELECT operator, state FROM hosts WHERE id = ?1", params![host.0 as i64], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_certified_before_binding_go_to_their_first_account_at_upgrade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        {
            let store = Store::open(&path).expect("open");
            store
                .record_event(1, crate::store::Party::Account, "u7", "gateway.certified", "GW.Alice.example, 127.0.0.1")
                .expect("event");
            store
                .record_event(
                    2,
                    crate::store::Party::Account,
                    "u8",
                    "gateway.certified",
                    "gw.alice.example, bob.example",
                )
                .expect("event");
            // As a catalog of schema 17 reads: nothing bound yet.
            store.conn().execute("DELETE FROM gateway_names", params![]).expect("sql");
            store.conn().execute("UPDATE meta SET value = '17' WHERE key = 'schema'", params![]).expect("sql");
        }
        let store = Store::open(&path).expect("upgrade");
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let taken = store
            .bind_gateway_names(UserId(8), UserId(8), &names(&["gw.alice.example"]), &HashMap::new(), 3, 1000)
            .expect("bind");
        assert_eq!(
            taken,
            Err(NameRefusal::Held("gw.alice.example".into(), NameHolder::Gateway(UserId(7)))),
            "the first account's"
        );
        assert_eq!(
            store
                .bind_gateway_names(UserId(8), UserId(8), &names(&["bob.example"]), &HashMap::new(), 3, 1000)
                .expect("bind"),
            Ok(false)
        );
        assert_eq!(
            store
                .bind_gateway_names(UserId(9), UserId(9), &names(&["127.0.0.1"]), &HashMap::new(), 3, 1000)
                .expect("bind"),
            Ok(true),
            "loopback names were not bound at upgrade"
        );
        // A host certified first holds its name against gateways, and a gateway's against hosts.
        assert_eq!(store.bind_host_name(HostId(3), "h3.example", 4).expect("bind"), None);
        let taken = store
            .bind_gateway_names(UserId(9), UserId(9), &names(&["x.example", "h3.example"]), &HashMap::new(), 5, 1000)
            .expect("bind");
        assert_eq!(taken, Err(NameRefusal::Held("h3.example".into(), NameHolder::Host(HostId(3)))));
        assert_eq!(
            store.bind_host_name(HostId(4), "gw.alice.example", 6).expect("bind"),
            Some(NameHolder::Gateway(UserId(7)))
        );
        assert_eq!(store.bind_host_name(HostId(4), "h3.example", 6).expect("bind"), None, "hosts share names");
        let free = store
            .bind_gateway_names(UserId(9), UserId(9), &names(&["x.example"]), &HashMap::new(), 7, 1000)
            .expect("bind");
        assert_eq!(free, Ok(true), "a refused binding bound nothing, so x.example was free");
        // A host's address is refused as a new gateway name, but a name bound already stays
        // its account's whatever address a host declares later.
        let addressed = HashMap::from([("y.example".to_owned(), HostId(5)), ("x.example".to_owned(), HostId(5))]);
        let taken =
            store.bind_gateway_names(UserId(9), UserId(9), &names(&["y.example"]), &addressed, 8, 1000).expect("bind");
        assert_eq!(taken, Err(NameRefusal::Held("y.example".into(), NameHolder::Host(HostId(5)))));
        assert_eq!(
            store.bind_gateway_names(UserId(9), UserId(9), &names(&["x.example"]), &addressed, 8, 1000).expect("bind"),
            Ok(false)
        );
    }

    crate::store::testing::conformance! {
        fn a_host_name_is_not_certified_for_another_partys_host_while_its_host_is_in_the_grid() {
            let (_dir, store) = crate::store::testing::catalog();
            let acme = store.add_operator("acme", &[7; 32], false, 1).expect("add").expect("new");
            let evil = store.add_operator("evil", &[8; 32], false, 1).expect("add").expect("new");
            let terms = crate::store::Terms::default();
            let join = |secret: u8, operator| {
                let h = crate::store::NewHost {
                    secret_hash: &[secret; 32],
                    address: "https://10.0.0.1:7001",
                    zone: "z",
                    capacity: 1 << 30,
                    receipt_key: None,
                    operator,
                    terms: &terms,
                };
                store.join_host(&h, 2).expect("join")
            };
            let (victim, sibling, attacker, own) = (join(1, Some(acme)), join(2, Some(acme)), join(3, Some(evil)), join(4, None));
            assert_eq!(store.bind_host_name(victim, "victim.example", 3).expect("bind"), None);
            // Another operator's host, and the grid's own, are refused the name; the same
            // operator's host (one machine, two ports) shares it.
            assert_eq!(store.bind_host_name(attacker, "victim.example", 4).expect("bind"), Some(NameHolder::Host(victim)));
            assert_eq!(store.bind_host_name(own, "victim.example", 4).expect("bind"), Some(NameHolder::Host(victim)));
            assert_eq!(store.bind_host_name(sibling, "victim.example", 4).expect("bind"), None);
            assert_eq!(store.bind_host_name(victim, "victim.example", 5).expect("bind"), None, "its own name");
            // Once its host is out of the grid, the name passes to whoever asks next.
            store.set_host_state(victim, crate::store::Standing::Disabled).expect("disable");
            assert_eq!(store.bind_host_name(attacker, "victim.example", 6).expect("bind"), None);
            assert_eq!(store.bind_host_name(victim, "victim.example", 7).expect("bind"), Some(NameHolder::Host(attacker)));
        }
    }
}
