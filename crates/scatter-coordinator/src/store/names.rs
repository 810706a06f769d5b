//! Names the grid CA certified, bound to who first had them: an account's S3 gateways, or
//! hosts. Clients of a gateway trust the grid CA, which would sign any name for anyone:
//! without the binding, any account or host operator could have the CA certify another
//! account's gateway name and pose as that gateway to its S3 clients.
//!
//! `gateway_names.account` is the account's id for a gateway's name, and minus the host's id
//! for a host's (several hosts may share a name: one machine, several ports).

use std::collections::HashMap;

use scatter_core::{HostId, UserId};

use super::sql::{Sql, SqlError};
use super::{Store, StoreError};

/// Who holds a certified name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameHolder {
    /// An account's S3 gateways.
    Gateway(UserId),
    /// A host (the first one certified under it).
    Host(HostId),
}

fn holder_of(conn: &Sql<'_>, name: &str) -> Result<Option<NameHolder>, SqlError> {
    let holder: Option<i64> =
        conn.query_opt("SELECT account FROM gateway_names WHERE name = ?1", params![name], |r| r.get(0))?;
    Ok(holder.map(|h| match h < 0 {
        true => NameHolder::Host(HostId(h.unsigned_abs())),
        false => NameHolder::Gateway(UserId(h as u64)),
    }))
}

fn bind(conn: &Sql<'_>, name: &str, holder: i64, now: u64) -> Result<(), SqlError> {
    conn.execute(
        "INSERT INTO gateway_names (name, account, since) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![name, holder, now as i64],
    )?;
    Ok(())
}

impl Store {
    /// Binds `names` to `account`'s gateways, in one transaction: when another account's
    /// gateways or a host hold one of them, or a name not bound yet is the address of a host
    /// in `addressed`, binds none and returns it with its holder; otherwise binds those not
    /// bound yet and returns whether there were any. A name the account holds stays its own
    /// whatever address a host declares later (a heartbeat can name any address).
    pub fn bind_gateway_names(
        &self,
        account: UserId,
        names: &[String],
        addressed: &HashMap<String, HostId>,
        now: u64,
    ) -> Result<Result<bool, (String, NameHolder)>, StoreError> {
        self.write(|tx| {
            let mut new = false;
            for name in names {
                match (holder_of(tx, name)?, addressed.get(name)) {
                    (Some(NameHolder::Gateway(a)), _) if a == account => {}
                    (Some(other), _) => return Ok(Err((name.clone(), other))),
                    (None, Some(host)) => return Ok(Err((name.clone(), NameHolder::Host(*host)))),
                    (None, None) => new = true,
                }
            }
            for name in names {
                bind(tx, name, account.0 as i64, now)?;
            }
            Ok(Ok(new))
        })
    }

    /// The account whose gateways hold `name`, if any (a host's or a free name: `None`).
    pub fn gateway_name_holder(&self, name: &str) -> Result<Option<UserId>, StoreError> {
        self.read(|conn| match holder_of(conn, name)? {
            Some(NameHolder::Gateway(account)) => Ok(Some(account)),
            _ => Ok(None),
        })
    }

    /// Binds `name` to `host`, unless another holds it: an account's gateways, or a host of
    /// another party (operator, or the grid's own hosts) that is still in the grid; then
    /// returns that holder. Hosts of one party share names (one machine, several ports); a
    /// name whose host left the grid (retired, disqualified, disabled, removed) passes to
    /// `host`. Without this, any operator could have the CA certify its host for another
    /// operator's host's name, and pose as it wherever it could steer that name's traffic.
    pub fn bind_host_name(&self, host: HostId, name: &str, now: u64) -> Result<Option<NameHolder>, StoreError> {
        self.write(|tx| match holder_of(tx, name)? {
            Some(NameHolder::Gateway(account)) => Ok(Some(NameHolder::Gateway(account))),
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
                bind(tx, name, -(host.0 as i64), now)?;
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
        let taken =
            store.bind_gateway_names(UserId(8), &names(&["gw.alice.example"]), &HashMap::new(), 3).expect("bind");
        assert_eq!(taken, Err(("gw.alice.example".into(), NameHolder::Gateway(UserId(7)))), "the first account's");
        assert_eq!(
            store.bind_gateway_names(UserId(8), &names(&["bob.example"]), &HashMap::new(), 3).expect("bind"),
            Ok(false)
        );
        assert_eq!(
            store.bind_gateway_names(UserId(9), &names(&["127.0.0.1"]), &HashMap::new(), 3).expect("bind"),
            Ok(true),
            "loopback names were not bound at upgrade"
        );
        // A host certified first holds its name against gateways, and a gateway's against hosts.
        assert_eq!(store.bind_host_name(HostId(3), "h3.example", 4).expect("bind"), None);
        let taken = store
            .bind_gateway_names(UserId(9), &names(&["x.example", "h3.example"]), &HashMap::new(), 5)
            .expect("bind");
        assert_eq!(taken, Err(("h3.example".into(), NameHolder::Host(HostId(3)))));
        assert_eq!(
            store.bind_host_name(HostId(4), "gw.alice.example", 6).expect("bind"),
            Some(NameHolder::Gateway(UserId(7)))
        );
        assert_eq!(store.bind_host_name(HostId(4), "h3.example", 6).expect("bind"), None, "hosts share names");
        let free = store.bind_gateway_names(UserId(9), &names(&["x.example"]), &HashMap::new(), 7).expect("bind");
        assert_eq!(free, Ok(true), "a refused binding bound nothing, so x.example was free");
        // A host's address is refused as a new gateway name, but a name bound already stays
        // its account's whatever address a host declares later.
        let addressed = HashMap::from([("y.example".to_owned(), HostId(5)), ("x.example".to_owned(), HostId(5))]);
        let taken = store.bind_gateway_names(UserId(9), &names(&["y.example"]), &addressed, 8).expect("bind");
        assert_eq!(taken, Err(("y.example".into(), NameHolder::Host(HostId(5)))));
        assert_eq!(
            store.bind_gateway_names(UserId(9), &names(&["x.example"]), &addressed, 8).expect("bind"),
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
