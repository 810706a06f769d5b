//! Operators: parties that run hosts. An operator's hosts join with its own token, so the
//! coordinator knows who runs them whatever they declare; they count as one failure domain
//! (see [`super::HostRow::domain`]) unless the admin declares them independent. Only the
//! token's hash is stored, as for every other token.

use scatter_proto::api::OperatorEntry;
use subtle::ConstantTimeEq;

use super::{Store, StoreError};

impl Store {
    /// Registers an operator whose hosts join with the token hashed to `token_hash`.
    /// Returns its id, or `None` if the name is taken.
    pub fn add_operator(
        &self,
        name: &str,
        token_hash: &[u8; 32],
        independent: bool,
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.write(|tx| {
            if tx.exists("SELECT 1 FROM operators WHERE name = ?1", params![name])? {
                return Ok(None);
            }
            let id: i64 = tx.query_row(
                "INSERT INTO operators (name, token_hash, independent, created) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                params![name, &token_hash[..], independent, now as i64],
                |r| r.get(0),
            )?;
            let id = id as u64;
            Ok(Some(id))
        })
    }

    /// The operator whose join token hashes to `token_hash`, if any. Every stored hash is
    /// compared, in constant time, so the time taken tells nothing about which came close.
    pub fn operator_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map("SELECT id, token_hash FROM operators", params![], |r| {
                Ok((r.get::<i64>(0)?, r.get::<[u8; 32]>(1)?))
            })?;
            let mut found = None;
            for (id, hash) in rows {
                if bool::from(hash.ct_eq(token_hash)) {
                    found = Some(id as u64);
                }
            }
            Ok(found)
        })
    }

    /// Every operator, with how many hosts joined with its token.
    pub fn operators(&self) -> Result<Vec<OperatorEntry>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT o.id, o.name, o.independent, o.created, (SELECT COUNT(*) FROM hosts h WHERE h.operator = o.id)
                 FROM operators o ORDER BY o.id",
                params![],
                |r| {
                    Ok(OperatorEntry {
                        id: r.get::<i64>(0)? as u64,
                        name: r.get(1)?,
                        independent: r.get(2)?,
                        created: r.get::<i64>(3)? as u64,
                        hosts: r.get::<i64>(4)? as u64,
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// Declares whether the operator named `name`'s hosts fail independently; returns its
    /// id, or `None` if there is no such operator.
    pub fn set_operator_independent(&self, name: &str, independent: bool) -> Result<Option<u64>, StoreError> {
        self.write(|conn| {
            let id: Option<i64> =
                conn.query_opt("SELECT id FROM operators WHERE name = ?1", params![name], |r| r.get(0))?;
            let Some(id) = id else { return Ok(None) };
            conn.execute("UPDATE operators SET independent = ?2 WHERE id = ?1", params![id, independent])?;
            // Its hosts' packs now spread over other domains: measured again (an admin's
            // rare act, as long as the operator's hosts hold shards).
            let packs: Vec<Vec<u8>> = conn.query_map(
                "SELECT DISTINCT s.pack FROM shards s JOIN hosts h ON h.id = s.host WHERE h.operator = ?1",
                params![id],
                |r| r.get(0),
            )?;
            for pack in packs {
                super::measure_spread(conn, &pack)?;
            }
            Ok(Some(id as u64))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Domain, NewHost, Terms};

    crate::store::testing::conformance! {
        fn an_operators_hosts_are_one_domain_until_declared_independent() {
            let (_dir, store) = crate::store::testing::catalog();
            let op = store.add_operator("acme", &[7; 32], false, 10).expect("add").expect("new name");
            assert_eq!(store.add_operator("acme", &[8; 32], false, 11).expect("again"), None, "names are unique");
            assert_eq!(store.operator_by_token(&[7; 32]).expect("lookup"), Some(op));
            assert_eq!(store.operator_by_token(&[9; 32]).expect("lookup"), None);
            let terms = Terms::default();
            let join = |secret: u8, operator| {
                let h = NewHost {
                    secret_hash: &[secret; 32],
                    address: "http://127.0.0.1:1",
                    zone: "z",
                    capacity: 1 << 30,
                    receipt_key: None,
                    operator,
                    terms: &terms,
                };
                store.join_host(&h, 20).expect("join")
            };
            let (a, b, own) = (join(1, Some(op)), join(2, Some(op)), join(3, None));
            let domains = |store: &Store| store.hosts().expect("hosts").iter().map(|h| h.domain()).collect::<Vec<_>>();
            assert_eq!(domains(&store), vec![Domain::Operator(op), Domain::Operator(op), Domain::Host(own)]);
            assert_eq!(store.host_domain(a).expect("domain"), Some(Domain::Operator(op)));
            let listed = store.operators().expect("list");
            assert_eq!((listed.len(), listed[0].hosts, listed[0].independent), (1, 2, false));
            assert_eq!(store.set_operator_independent("acme", true).expect("set"), Some(op));
            assert_eq!(domains(&store), vec![Domain::Host(a), Domain::Host(b), Domain::Host(own)]);
            assert_eq!(store.host_domain(b).expect("domain"), Some(Domain::Host(b)));
            assert_eq!(store.set_operator_independent("nobody", true).expect("set"), None);
        }
    }
}
