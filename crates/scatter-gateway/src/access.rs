//! Who may sign requests to the gateway, and for which profile: the access keys of every
//! served profile, kept current with their key stores while the gateway runs.
//!
//! `scatter gateway key rm` must revoke a key at once (a leaked key is why one removes it),
//! and a key added must work without a restart that would drop every transfer under way.
//! The gateway checks each store's file every second and reads the keys again when it
//! changed (the store is replaced by a rename on every write, so a read never sees half of
//! one). A store that no longer opens, or a key found in two profiles, serves no key
//! rather than a stale one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::keystore::{self, KeyStore};
use crate::tenant::Tenant;
use crate::GatewayError;

/// What an access key may do, and whose data.
#[derive(Clone)]
pub struct Access {
    /// The profile.
    pub tenant: Arc<Tenant>,
    /// An appender's rights: put and multipart uploads only.
    pub write_only: bool,
}

/// A profile to serve: its pipeline and the folder whose key store says who reaches it.
pub struct Served {
    /// The profile.
    pub tenant: Arc<Tenant>,
    /// The profile folder, holding its gateway key store.
    pub dir: PathBuf,
}

/// The keys in force at one moment.
/// The keys in force at one moment: what each may do, and its secret.
type Table = HashMap<String, (Access, Zeroizing<String>)>;

/// The keys in force, shared by the request handlers and the watcher that renews them.
#[derive(Clone, Default)]
pub struct Keys(Arc<RwLock<Arc<Table>>>);

impl Keys {
    /// What `access_key` may do, if it is in force.
    pub fn access(&self, access_key: &str) -> Option<Access> {
        self.current().get(access_key).map(|(access, _)| access.clone())
    }

    /// The secret SigV4 checks a request signed with `access_key` against.
    pub fn secret(&self, access_key: &str) -> Option<Zeroizing<String>> {
        self.current().get(access_key).map(|(_, secret)| secret.clone())
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether no key is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self) -> Arc<Table> {
        // A poisoned lock only means a writer panicked between two whole tables.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, table: Table) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

/// Reads every served profile's key store: the table and what kept keys out of it.
fn load(served: &[Served]) -> (Table, Vec<GatewayError>) {
    let mut problems = Vec::new();
    let mut stores = Vec::new();
    for s in served {
        match KeyStore::open(&s.dir, &s.tenant.keys) {
            Ok(store) => stores.push((s, store)),
            Err(e) => problems.push(GatewayError::KeyStore(e)),
        }
    }
    let mut holders: HashMap<&str, Vec<&str>> = HashMap::new();
    for (s, store) in &stores {
        for k in store.keys() {
            holders.entry(k.access_key.as_str()).or_default().push(s.tenant.id.as_str());
        }
    }
    let mut table = Table::default();
    for (s, store) in &stores {
        for k in store.keys() {
            let claimants = &holders[k.access_key.as_str()];
            match holder(&k.access_key, claimants) {
                Some(owner) if owner == s.tenant.id => {}
                Some(_) => {
                    problems.push(GatewayError::NotItsKey(k.access_key.clone(), s.dir.clone()));
                    continue;
                }
                None => {
                    if !problems.iter().any(|p| matches!(p, GatewayError::SharedKey(a) if *a == k.access_key)) {
                        problems.push(GatewayError::SharedKey(k.access_key.clone()));
                    }
                    continue;
                }
            }
            let access = Access { tenant: s.tenant.clone(), write_only: k.write_only };
            table.insert(k.access_key.clone(), (access, Zeroizing::new(k.secret_key.clone())));
        }
    }
    (table, problems)
}

/// Which of `claimants` (the public keys of the profiles whose stores name `access_key`)
/// it is served for: the only one, or the only one it is bound to; none when that is not
/// clear (a key made before keys were bound, named in two stores).
fn holder<'a>(access_key: &str, claimants: &[&'a str]) -> Option<&'a str> {
    match claimants {
        [only] => Some(*only),
        _ => {
            let mut bound = claimants.iter().filter(|owner| keystore::bound_to(access_key, owner));
            match (bound.next(), bound.next()) {
                (Some(one), None) => Some(*one),
                _ => None,
            }
        }
    }
}

/// The keys of `served` as they are now, for a gateway about to start: refused when no key
/// can be served (saying why). A store that does not open, or a key in two profiles, keeps
/// only those keys out, with a warning, as a change while the gateway runs does: one profile's
/// store (which its owner may write as it likes) must not stop the gateway for the others.
pub fn keys(served: &[Served]) -> Result<Keys, GatewayError> {
    let (table, problems) = load(served);
    if table.is_empty() {
        return Err(problems.into_iter().next().unwrap_or(GatewayError::NoKeys));
    }
    for p in &problems {
        tracing::warn!("part of the gateway's keys is not served: {p}");
    }
    let keys = Keys::default();
    keys.replace(table);
    Ok(keys)
}

/// What tells that a key store's file changed: it is replaced whole on every write.
type Stamp = Option<(u64, SystemTime, u64)>;

fn stamp(served: &Served) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(served.dir.join(keystore::FILE)).ok()?;
    Some((meta.ino(), meta.modified().ok()?, meta.len()))
}

/// Reads the key stores of `served` again into `keys` whenever one of them changes, checking
/// every `every`, until dropped.
pub async fn watch(served: Vec<Served>, keys: Keys, every: Duration) {
    let mut seen: Vec<Stamp> = served.iter().map(stamp).collect();
    loop {
        tokio::time::sleep(every).await;
        let now: Vec<Stamp> = served.iter().map(stamp).collect();
        if now == seen {
            continue;
        }
        seen = now;
        let (table, problems) = load(&served);
        for p in &problems {
            tracing::warn!("a gateway key store changed and part of it is not served: {p}");
        }
        tracing::info!(keys = table.len(), "gateway keys read again after a change");
        keys.replace(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_named_by_two_profiles_is_served_only_for_the_one_it_was_made_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (alice, bob) = (scatter_core::keys::UserKeys::generate(), scatter_core::keys::UserKeys::generate());
        let key = KeyStore::open(dir.path(), &alice).expect("open").add(false, 1).expect("add").access_key;
        let (a, b) = (alice.write_keys().public_key(), bob.write_keys().public_key());
        assert_eq!(holder(&key, &[&a]), Some(a.as_str()));
        // Bob names Alice's key in his own store (an access key is no secret).
        assert_eq!(holder(&key, &[&b, &a]), Some(a.as_str()));
        assert_eq!(holder(&key, &[&a, &b]), Some(a.as_str()));
        // One a profile holds alone is served for it, bound or not (older keys).
        assert_eq!(holder("SCOLDKEY000000000000", &[&b]), Some(b.as_str()));
        // Older keys named twice, and a key bound to neither claimant: served for nobody.
        assert_eq!(holder("SCOLDKEY000000000000", &[&a, &b]), None);
        let carols =
            KeyStore::open(tempfile::tempdir().expect("tempdir").path(), &scatter_core::keys::UserKeys::generate())
                .expect("open")
                .add(false, 1)
                .expect("add")
                .access_key;
        assert_eq!(holder(&carols, &[&a, &b]), None);
    }
}
