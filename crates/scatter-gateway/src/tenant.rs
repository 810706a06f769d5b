//! One profile the gateway serves: its coordinator, keys, and the bucket indexes it keeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use scatter_client::batch::SmallPuts;
use scatter_client::coordinator::Coordinator;
use scatter_client::put::PutOptions;
use scatter_client::ClientError;
use scatter_core::keys::UserKeys;
use scatter_core::names::NameKey;
use scatter_proto::api::{attributes_tag, AttributesTag, ErrorCode, ObjectInfo};

use crate::attrs::Attributes;
use crate::listing::{Entry, Index};
use crate::naming::{self, Named};

/// A profile served by the gateway.
pub struct Tenant {
    /// Its coordinator client.
    pub coord: Coordinator,
    /// Its keys (with the private key, to read).
    pub keys: UserKeys,
    /// Its name key, which also seals attributes.
    pub names: NameKey,
    /// How its puts store data.
    pub put: PutOptions,
    /// Its small puts, stored in batches.
    pub small: SmallPuts,
    /// What tells it from the other profiles a gateway serves (its public key): one profile's
    /// keys together get one share of what the gateway holds at once.
    pub id: String,
    buckets: Mutex<HashMap<String, Arc<BucketState>>>,
}

/// A bucket's index, loaded once from the catalog on first use, and the writes under way.
#[derive(Default)]
pub struct BucketState {
    loaded: tokio::sync::OnceCell<()>,
    /// Its keys. A delete holds the write lock from its catalog change to its index update.
    pub index: tokio::sync::RwLock<Index>,
    /// Writes under way, by key.
    writes: Mutex<HashMap<String, Writes>>,
    /// Set once the bucket is deleted: a write that found it before must not commit into it.
    gone: std::sync::atomic::AtomicBool,
}

/// The writes of one key under way.
#[derive(Default)]
struct Writes {
    running: usize,
    /// Deletes of the key since the first of them started.
    deletes: u64,
}

/// A write of one key under way (see [`BucketState::start_write`]); ends when dropped.
pub struct Writing {
    bucket: Arc<BucketState>,
    key: String,
    deletes: u64,
}

impl BucketState {
    /// Registers a write of `key`, from before its commit until its index update; none if
    /// the bucket was deleted since it was found.
    pub async fn start_write(self: &Arc<Self>, key: &str) -> Option<Writing> {
        // Under the index's lock: ordered with a bucket delete's check for writes under way.
        let _index = self.index.read().await;
        if self.gone.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let w = writes.entry(key.to_owned()).or_default();
        w.running += 1;
        Some(Writing { bucket: self.clone(), key: key.to_owned(), deletes: w.deletes })
    }

    /// Whether any write is under way (the caller holds the index's write lock).
    pub fn writing(&self) -> bool {
        !self.writes.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Records that `key` was deleted (the caller holds the index's write lock): a write of it
    /// under way must check the catalog before it records its version.
    pub fn deleted(&self, key: &str) {
        if let Some(w) = self.writes.lock().unwrap_or_else(|p| p.into_inner()).get_mut(key) {
            w.deletes += 1;
        }
    }

    /// Whether the bucket was deleted (the caller holds the index's lock).
    pub fn is_gone(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the bucket deleted, or not (the caller holds the index's write lock).
    pub fn set_gone(&self, gone: bool) {
        self.gone.store(gone, std::sync::atomic::Ordering::Release);
    }
}

impl Writing {
    /// Whether the key was deleted since this write started: the catalog may no longer hold
    /// what it committed.
    pub fn raced(&self) -> bool {
        let writes = self.bucket.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.get(&self.key).is_some_and(|w| w.deletes != self.deletes)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut writes = self.bucket.writes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writes.get_mut(&self.key) {
            w.running -= 1;
            if w.running == 0 {
                writes.remove(&self.key);
            }
        }
    }
}

/// An object name, decrypted, with what the catalog listed for it.
pub struct Listed {
    /// What the name is.
    pub named: Named,
    /// Plaintext bytes.
    pub size: u64,
    /// Unix time of its put.
    pub created: u64,
    /// Its attributes (default if it has none or they do not open).
    pub attrs: Attributes,
    /// The catalog's version number.
    pub version: u64,
    /// The tag of its sealed attributes.
    pub tag: Option<AttributesTag>,
}

impl Tenant {
    /// A tenant for a profile's coordinator client and keys (in a Tokio runtime: its small
    /// puts' batches run there).
    pub fn new(coord: Coordinator, keys: UserKeys, put: PutOptions) -> Self {
        let names = keys.write_keys().name_key();
        let id = keys.write_keys().public_key();
        let small = SmallPuts::start(coord.clone(), keys.write_keys().clone());
        Self { coord, keys, names, put, small, id, buckets: Mutex::default() }
    }

    /// The encrypted form of a gateway name.
    pub fn encrypt(&self, name: &str) -> String {
        self.names.encrypt(name)
    }

    /// Opens the attributes the catalog listed with `info`.
    pub fn attributes(&self, info: &ObjectInfo) -> Attributes {
        open_attributes(&self.names, info)
    }

    /// Everything under the gateway folder `folder` (a name without its trailing `/`),
    /// decrypted; names that are not the gateway's are left out.
    pub async fn list(&self, folder: &str) -> Result<Vec<Listed>, ClientError> {
        let prefix = format!("{}/", self.encrypt(folder));
        let objects = self.coord.list(&prefix).await?.objects;
        let names = self.names.clone();
        // Decrypting 100,000 names and attributes is CPU work: off the async threads.
        tokio::task::spawn_blocking(move || {
            objects
                .into_iter()
                .filter_map(|o| {
                    let named = naming::parse(&names.decrypt(&o.name).ok()?)?;
                    let attrs = open_attributes(&names, &o);
                    let tag = tag_of(&o);
                    Some(Listed { named, size: o.size, created: o.created, attrs, version: o.version, tag })
                })
                .collect()
        })
        .await
        .map_err(|e| ClientError::Invalid(format!("listing failed: {e}")))
    }

    /// Whether the object `name` (plaintext) exists, with its listing fields.
    pub async fn stat(&self, name: &str) -> Result<Option<ObjectInfo>, ClientError> {
        match self.coord.object(&self.encrypt(name), None).await {
            Ok(o) => Ok(Some(o.info)),
            Err(ClientError::Api { code: ErrorCode::NotFound, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bucket `name`, its index loaded; `None` if there is no such bucket.
    pub async fn bucket(&self, name: &str) -> Result<Option<Arc<BucketState>>, ClientError> {
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            buckets.entry(name.to_owned()).or_default().clone()
        };
        if bucket.loaded.initialized() {
            return Ok(Some(bucket));
        }
        if self.stat(&naming::bucket(name)).await?.is_none() {
            self.forget(name);
            return Ok(None);
        }
        bucket
            .loaded
            .get_or_try_init(|| async {
                let mut index = Index::default();
                for l in self.list(&naming::objects_of(name)).await? {
                    if let Named::Object(b, key) = l.named {
                        if b == name {
                            index.insert(
                                &key,
                                Entry {
                                    size: l.size,
                                    modified: l.created,
                                    attrs: l.attrs,
                                    version: l.version,
                                    tag: l.tag,
                                },
                            );
                        }
                    }
                }
                *bucket.index.write().await = index;
                Ok::<(), ClientError>(())
            })
            .await?;
        Ok(Some(bucket))
    }

    /// Drops the bucket's index (it was removed).
    pub fn forget(&self, name: &str) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}

/// The tag of the sealed attributes the catalog listed with `info`.
pub fn tag_of(info: &ObjectInfo) -> Option<AttributesTag> {
    info.meta.as_deref().and_then(|m| B64.decode(m).ok()).map(|sealed| attributes_tag(&sealed))
}

/// The attributes the catalog listed with `info`, opened (default if it has none, or they
/// do not open: written by someone else under a gateway name).
fn open_attributes(names: &NameKey, info: &ObjectInfo) -> Attributes {
    info.meta
        .as_deref()
        .and_then(|m| B64.decode(m).ok())
        .and_then(|sealed| names.open_attributes(&info.name, &sealed).ok())
        .and_then(|plain| Attributes::decode(&plain).ok())
        .unwrap_or_default()
}
