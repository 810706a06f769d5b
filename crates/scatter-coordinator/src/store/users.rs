//! Users, invites and rights.
//!
//! An invite is a one-time token (stored only as its hash) carrying a name, a role, an
//! optional quota and, for `reader` and `appender`, the user whose data it grants access to.
//! Redeeming it registers the caller's age public key and the Ed25519 key of its first device
//! (see [`super::devices`]), which signs its requests.

use scatter_core::{DeviceId, UserId};
use scatter_proto::api::{InviteEntry, Role, UserEntry};

use super::sql::Sql;
use super::{Store, StoreError, UserRow};

/// A role as the catalog keeps it (its name); an unknown name is a damaged catalog.
pub(super) fn role(name: String) -> Result<Role, super::sql::SqlError> {
    Role::parse(&name).ok_or_else(|| super::sql::SqlError::Type(0, format!("the role `{name}`")))
}

/// role, name, quota, owner, trusted of an unused invite.
type InviteColumns = (String, String, Option<i64>, Option<i64>, bool);

/// `users.disabled` of a removed user (0 is active, 1 disabled): its data and keys are gone,
/// it is refused like a disabled one and never enabled again. A value, not a new column, so
/// every check of `disabled` (non-zero: refused) holds for removed users unchanged.
const REMOVED: i64 = 2;

/// Hex digits of an invite's id: the start of its token's hash.
const INVITE_ID_LEN: usize = 12;

impl Store {
    /// Records a one-time invite (by its hash).
    pub fn add_token(
        &self,
        hash: &[u8; 32],
        name: &str,
        role: Role,
        quota: Option<u64>,
        owner: Option<UserId>,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            Ok(c.execute(
            "INSERT INTO tokens (hash, role, name, quota, owner) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![&hash[..], role.as_str(), name, quota.map(|q| q as i64), owner.map(|o| o.0 as i64)],
        )?)
        })?;
        Ok(())
    }

    /// Records an invite (by its hash) unless its name is taken, by a user not removed or an
    /// unused invite, checked and recorded at once; false when taken. `trusted` marks an
    /// appender trusted by its owner from the start.
    pub fn add_invite(
        &self,
        hash: &[u8; 32],
        name: &str,
        role: Role,
        quota: Option<u64>,
        owner: Option<UserId>,
        trusted: bool,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            let taken = c.exists(
                "SELECT 1 FROM users WHERE name = ?1 AND disabled != ?2
                 UNION ALL SELECT 1 FROM tokens WHERE name = ?1 AND used = 0 AND device_of IS NULL",
                params![name, REMOVED],
            )?;
            if taken {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO tokens (hash, role, name, quota, owner, trusted) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![&hash[..], role.as_str(), name, quota.map(|q| q as i64), owner.map(|o| o.0 as i64), trusted],
            )?;
            Ok(true)
        })
    }

    /// Unused invites (device invites too), in no particular order.
    pub fn invites(&self) -> Result<Vec<InviteEntry>, StoreError> {
        self.read(|c| {
            Ok(c.query_map(
                "SELECT hash, role, name, quota, owner, device_of FROM tokens WHERE used = 0",
                params![],
                |r| {
                    let hash: Vec<u8> = r.get(0)?;
                    Ok(InviteEntry {
                        id: hex::encode(&hash).chars().take(INVITE_ID_LEN).collect(),
                        role: role(r.get(1)?)?,
                        name: r.get(2)?,
                        quota: r.get::<Option<i64>>(3)?.map(|q| q as u64),
                        owner: r.get::<Option<i64>>(4)?.map(|o| UserId(o as u64)),
                        device_of: r.get::<Option<i64>>(5)?.map(|o| UserId(o as u64)),
                    })
                },
            )?)
        })
    }

    /// Deletes the unused invite whose id starts with `prefix` when exactly one does; returns
    /// the invites it matched (none deleted unless one).
    pub fn remove_invite(&self, prefix: &str) -> Result<Vec<InviteEntry>, StoreError> {
        let prefix = prefix.to_ascii_lowercase();
        self.write(|c| {
            let hashes: Vec<(Vec<u8>, String, String)> =
                c.query_map("SELECT hash, role, name FROM tokens WHERE used = 0", params![], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let mut found = Vec::new();
            for (hash, role_name, name) in hashes.into_iter().filter(|(h, _, _)| hex::encode(h).starts_with(&prefix)) {
                let id = hex::encode(&hash).chars().take(INVITE_ID_LEN).collect();
                found.push((
                    hash,
                    InviteEntry { id, name, role: role(role_name)?, quota: None, owner: None, device_of: None },
                ));
            }
            if let [(hash, _)] = found.as_slice() {
                c.execute("DELETE FROM tokens WHERE hash = ?1 AND used = 0", params![&hash[..]])?;
            }
            Ok(found.into_iter().map(|(_, e)| e).collect())
        })
    }

    /// Sets (or clears) the quota of a user that is not removed; false if there is none.
    pub fn set_quota(&self, id: UserId, quota: Option<u64>) -> Result<bool, StoreError> {
        Ok(self.write(|c| {
            Ok(c.execute(
                "UPDATE users SET quota = ?2 WHERE id = ?1 AND disabled != ?3",
                params![id.0 as i64, quota.map(|q| q as i64), REMOVED],
            )?)
        })? > 0)
    }

    /// Marks an invite's delegate as trusted by its owner from the start (see
    /// [`Store::set_trusted`]).
    pub fn trust_token(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.write(|c| Ok(c.execute("UPDATE tokens SET trusted = 1 WHERE hash = ?1", params![&hash[..]])?))?;
        Ok(())
    }

    /// The role an unused invite is for, and whether it adds a device to an existing user
    /// (`None` for an unknown or used token).
    pub fn invite_role(&self, token_hash: &[u8; 32]) -> Result<Option<(Role, bool)>, StoreError> {
        self.read(|c| {
            let row: Option<(String, Option<i64>)> = c.query_opt(
                "SELECT role, device_of FROM tokens WHERE hash = ?1 AND used = 0",
                params![&token_hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(row.and_then(|(role, device_of)| Some((Role::parse(&role)?, device_of.is_some()))))
        })
    }

    /// Redeems a one-time token, atomically: marks it used and registers the device. An
    /// invite creates the user; a device invite (see [`Store::add_device_token`]) adds the
    /// device to its user, whose public key `public_key` must be. Returns `None` when the
    /// token is unknown or already used.
    pub fn redeem_token(
        &self,
        token_hash: &[u8; 32],
        public_key: &str,
        device_key: &[u8; 32],
        device_name: &str,
        now: u64,
    ) -> Result<Option<UserRow>, StoreError> {
        self.write(|tx| {
            let invite: Option<(InviteColumns, Option<i64>)> = tx.query_opt(
                "SELECT role, name, quota, owner, trusted, device_of FROM tokens WHERE hash = ?1 AND used = 0",
                params![&token_hash[..]],
                |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?), r.get(5)?)),
            )?;
            let Some(((role, name, quota, owner, trusted), device_of)) = invite else { return Ok(None) };
            tx.execute("UPDATE tokens SET used = 1 WHERE hash = ?1", params![&token_hash[..]])?;
            let me = match device_of {
                Some(user) => {
                    let found: Option<(String, bool)> =
                        tx.query_opt("SELECT public_key, disabled FROM users WHERE id = ?1", params![user], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?;
                    match found {
                        // Refused before the invite is spent.
                        Some((_, true)) => return Err(StoreError::AccountDisabled),
                        Some((key, false)) if key == public_key => user,
                        Some(_) => return Err(StoreError::OtherKeys),
                        None => return Ok(None),
                    }
                }
                None => {
                    // A delegate works on its owner's data, with its owner's keys: with keys
                    // of its own, what it writes is sealed to a key its owner cannot open.
                    if let Some(o) = owner {
                        let key: Option<String> =
                            tx.query_opt("SELECT public_key FROM users WHERE id = ?1", params![o], |r| r.get(0))?;
                        if key.is_some_and(|k| k != public_key) {
                            return Err(StoreError::NotOwnersKeys);
                        }
                    }
                    tx.query_row(
                        "INSERT INTO users (role, public_key, device_key, created, name, quota, owner, trusted)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                        params![role, public_key, &device_key[..], now as i64, name, quota, owner, trusted],
                        |r| r.get(0),
                    )?
                }
            };
            let device = super::devices::add_device(tx, UserId(me as u64), device_key, device_name, now)?;
            Ok(super::devices::login(tx, device)?.map(|(user, _, _)| user))
        })
    }

    /// The account a device signs for, the device's public key, and whether it was revoked.
    /// For a reader or appender, the row's `id` is the user whose data it works on, and the
    /// quota is that user's.
    pub fn device_login(&self, device: DeviceId) -> Result<Option<(UserRow, Vec<u8>, bool)>, StoreError> {
        self.read(|conn| super::devices::login(conn, device))
    }

    /// Every user with what counts against its quota (see [`Store::quota_usage`]).
    pub fn users(&self) -> Result<Vec<UserEntry>, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT u.id, u.name, u.role, u.disabled, u.quota, u.owner,
                        CAST(COALESCE((SELECT SUM(c.bytes) FROM usage_counts c WHERE c.user = u.id), 0)
                             + COALESCE((SELECT SUM(k.bytes) FROM catalog_usage k WHERE k.user = u.id), 0) AS BIGINT)
                 FROM users u ORDER BY u.id",
                params![],
                |r| {
                    Ok(UserEntry {
                        id: UserId(r.get::<i64>(0)? as u64),
                        name: r.get(1)?,
                        role: role(r.get(2)?)?,
                        disabled: r.get(3)?,
                        quota: r.get::<Option<i64>>(4)?.map(|q| q as u64),
                        owner: r.get::<Option<i64>>(5)?.map(|o| UserId(o as u64)),
                        used: r.get::<i64>(6)?.max(0) as u64,
                        removed: r.get::<i64>(3)? == REMOVED,
                    })
                },
            )?;
            Ok(rows)
        })
    }

    /// A user's name, if the user exists (one row, for the dashboard's every page).
    pub fn user_name(&self, id: UserId) -> Result<Option<String>, StoreError> {
        self.read(|c| Ok(c.query_opt("SELECT name FROM users WHERE id = ?1", params![id.0 as i64], |r| r.get(0))?))
    }

    /// Whether a user exists.
    pub fn user_exists(&self, id: UserId) -> Result<bool, StoreError> {
        self.read(|c| Ok(c.exists("SELECT 1 FROM users WHERE id = ?1", params![id.0 as i64])?))
    }

    /// Bytes the user's live packs take on hosts (with redundancy): what quotas count.
    pub fn usage(&self, id: UserId) -> Result<u64, StoreError> {
        // Counters kept with every pack that becomes live or is released (see `stored`).
        let used: i64 = self.read(|c| {
            Ok(c.query_row(
                "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM usage_counts WHERE user = ?1",
                params![id.0 as i64],
                |r| r.get(0),
            )?)
        })?;
        Ok(used.max(0) as u64)
    }

    /// What counts against the user's quota: [`Store::usage`], and what the catalog keeps of
    /// its objects (names, manifests, attributes) and references (snapshots', and those its
    /// open sessions recorded).
    pub fn quota_usage(&self, id: UserId) -> Result<u64, StoreError> {
        self.read(|c| Ok(super::quota_used(c, id.0 as i64)?))
    }

    /// Disables (or enables) a user that is not removed; false if there is none.
    /// Disabling ends the dashboard sessions and login links of the user and its delegates
    /// (disabled with it) in the same transaction: enabling it again must not revive them.
    /// It ends the write sessions the user opened too (an owner's: every one on its data),
    /// so what only they kept stored goes at the next prune.
    pub fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        Ok(self.write(|c| disable(c, id, disabled))? > 0)
    }

    /// Disables one of `owner`'s delegates, as the owner may without the admin (a machine
    /// lost, or a writer keeping deleted data stored through its sessions): as
    /// [`Store::set_disabled`] does. Only the admin enables it again. `None` if `delegate`
    /// is no delegate of `owner`, or was removed; else whether it was enabled until now
    /// (disabling it again changes nothing, and is recorded nowhere).
    pub fn disable_delegate(&self, owner: UserId, delegate: UserId) -> Result<Option<bool>, StoreError> {
        self.write(|c| {
            let disabled: Option<i64> = c.query_opt(
                "SELECT disabled FROM users WHERE id = ?2 AND owner = ?1 AND disabled != ?3",
                params![owner.0 as i64, delegate.0 as i64, REMOVED],
                |r| r.get(0),
            )?;
            match disabled {
                None => Ok(None),
                Some(0) => {
                    disable(c, delegate, true)?;
                    Ok(Some(true))
                }
                Some(_) => Ok(Some(false)),
            }
        })
    }

    /// Removes a user's access and data: it is marked removed (with its delegates), its recovery code
    /// and unused invites for its devices and delegates are dropped, its objects and snapshots
    /// are dropped, and (unless one of its writes is still open) its packs are released for
    /// deletion from hosts. Returns false if there is no such user.
    ///
    /// Refused while a lock holds any of its data (until the latest lock ends, or an admin
    /// lifts the governance ones): the error names the lock and its end.
    pub fn remove_user(&self, id: UserId, now: u64) -> Result<bool, StoreError> {
        self.write(|tx| {
            let u = id.0 as i64;
            if let Some(lock) = super::locks::latest_lock(tx, id, now)? {
                return Err(StoreError::Locked {
                    what: format!("user {id}'s data"),
                    refusal: crate::lock::Refusal::Locked(lock),
                });
            }
            tx.execute("DELETE FROM holds WHERE user = ?1", params![u])?;
            if tx.execute("UPDATE users SET disabled = ?2 WHERE id = ?1 OR owner = ?1", params![u, REMOVED])? == 0 {
                return Ok(false);
            }
            // Its dashboard sessions and links (and its delegates') end with it.
            super::dashboard::end_sessions_of(tx, id)?;
            // Nothing is kept of its keys, and no invite adds a device or a delegate to it.
            tx.execute("DELETE FROM recovery WHERE user = ?1", params![u])?;
            // Its gateways' names (and its delegates') pass on once their certificates expire.
            tx.execute(
                "UPDATE gateway_names SET released = 1
                 WHERE account >= 0 AND (account = ?1 OR account IN (SELECT id FROM users WHERE owner = ?1))",
                params![u],
            )?;
            tx.execute(
                "DELETE FROM tokens WHERE used = 0 AND (owner = ?1 OR device_of = ?1 OR device_of IN (SELECT id FROM users WHERE owner = ?1))",
                params![u],
            )?;
            tx.execute("DELETE FROM object_chunks WHERE user = ?1", params![u])?;
            tx.execute("DELETE FROM objects WHERE user = ?1", params![u])?;
            tx.execute("DELETE FROM snapshot_sets WHERE user = ?1", params![u])?;
            tx.execute("DELETE FROM ref_set_chunks WHERE user = ?1", params![u])?;
            tx.execute("DELETE FROM ref_sets WHERE user = ?1", params![u])?;
            tx.execute("DELETE FROM snapshots WHERE user = ?1", params![u])?;
            // Its write sessions (and its delegates' on its data) end now: the sweep then
            // drops what they recorded and the chunks of the packs they committed, where an
            // open one would have kept them after the account was gone.
            tx.execute("UPDATE sessions SET expires = 0 WHERE user = ?1", params![u])?;
            match super::backup::sweep(tx, id, now) {
                Ok(_) | Err(StoreError::Busy) => {}
                Err(e) => return Err(e),
            }
            // After the sweep, which gives back what it drops: nothing of it counts any more.
            tx.execute("DELETE FROM catalog_usage WHERE user = ?1", params![u])?;
            Ok(true)
        })
    }
}

/// Sets the user's `disabled` flag (not a removed user's); disabling ends its dashboard
/// sessions and login links, and the write sessions it opened (an owner's: all on its data),
/// dropping what they recorded. Returns the rows changed.
fn disable(c: &Sql<'_>, id: UserId, disabled: bool) -> Result<usize, StoreError> {
    let n = c.execute(
        "UPDATE users SET disabled = ?2 WHERE id = ?1 AND disabled != ?3",
        params![id.0 as i64, disabled as i64, REMOVED],
    )?;
    if disabled {
        super::dashboard::end_sessions_of(c, id)?;
        let open = "SELECT id FROM sessions WHERE expires > 0 AND (user = ?1 OR opener = ?1)";
        super::backup::drop_session_refs(c, open, params![id.0 as i64])?;
        c.execute(&format!("UPDATE sessions SET expires = 0 WHERE id IN ({open})"), params![id.0 as i64])?;
    }
    Ok(n)
}
