//! Devices and recovery codes.
//!
//! A user (an account: owner, admin or delegate) has any number of devices, each an Ed25519
//! key that signs its requests; a revoked device is kept (its id is never reused) and refused.
//! A device registered before users could have several has its user's id.
//!
//! An owner may also have one recovery code, of which the catalog keeps only what checks it
//! and the key file sealed to it (see [`scatter_core::recovery`]): the verifier, the
//! recipient with its binding, and the escrow. Using the code removes it: a code works once.
//! Only the holder of the user's keys changes the code or the escrow: every change is signed
//! with the owner key, whose public half the account keeps from its first code on
//! ([`check_owner`]); the caller checks the signature, the store that the key is the account's.

use scatter_core::{DeviceId, UserId};
use scatter_proto::api::DeviceEntry;

use super::sql::{Sql, SqlError};
use super::{Store, StoreError, UserRow};

/// id, role, disabled, quota, owner of an account.
type UserColumns = (i64, String, bool, Option<i64>, Option<i64>);

/// What the catalog keeps of a user's recovery code for its devices: the verifier, the
/// recipient key files are sealed to, and the binding that lets a device check both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryBinding {
    /// The code's verifier (an Ed25519 public key).
    pub verifier: [u8; 32],
    /// The age recipient the key file is sealed to.
    pub recipient: String,
    /// The MAC binding both to the user's keys.
    pub binding: Vec<u8>,
}

/// Registers a device for `user`; the caller's transaction makes it atomic with what
/// justified it (a token, a recovery code).
pub(super) fn add_device(
    tx: &Sql<'_>,
    user: UserId,
    key: &[u8; 32],
    name: &str,
    now: u64,
) -> Result<DeviceId, StoreError> {
    if tx.exists("SELECT 1 FROM devices WHERE device_key = ?1", params![&key[..]])? {
        return Err(StoreError::DeviceTaken);
    }
    let id: i64 = tx.query_row(
        "INSERT INTO devices (user, device_key, name, created) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        params![user.0 as i64, &key[..], name, now as i64],
        |r| r.get(0),
    )?;
    Ok(DeviceId(id as u64))
}

/// Whether `owner` is `user`'s owner key: the one the account keeps, or, for an account that
/// has none yet (its first code), the one it keeps from now on. A change signed with it shows
/// that `device`, which sent it, holds the account's keys: it is proven from then on.
fn check_owner(tx: &Sql<'_>, user: UserId, device: DeviceId, owner: &[u8; 32]) -> Result<(), StoreError> {
    let kept: Option<Option<Vec<u8>>> =
        tx.query_opt("SELECT owner_key FROM users WHERE id = ?1", params![user.0 as i64], |r| r.get(0))?;
    match kept {
        Some(Some(key)) if key.as_slice() == owner => {}
        Some(None) => {
            tx.execute("UPDATE users SET owner_key = ?2 WHERE id = ?1", params![user.0 as i64, &owner[..]])?;
        }
        _ => return Err(StoreError::NotOwner),
    }
    tx.execute("UPDATE devices SET unproven = 0 WHERE id = ?1 AND user = ?2", params![device.0 as i64, user.0 as i64])?;
    Ok(())
}

/// See [`Store::device_login`].
pub(super) fn login(conn: &Sql<'_>, device: DeviceId) -> Result<Option<(UserRow, Vec<u8>, bool)>, StoreError> {
    let row: Option<(UserColumns, Vec<u8>, bool, bool)> = conn.query_opt(
        "SELECT u.id, u.role, u.disabled, u.quota, u.owner, d.device_key, d.revoked IS NOT NULL, d.unproven <> 0
         FROM devices d JOIN users u ON u.id = d.user WHERE d.id = ?1",
        params![device.0 as i64],
        |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?), r.get(5)?, r.get(6)?, r.get(7)?)),
    )?;
    let Some(((me, role, mut disabled, mut quota, owner), key, revoked, unproven)) = row else { return Ok(None) };
    if let Some(o) = owner {
        // The owner's state governs its data: a disabled owner disables its delegates.
        let (owner_disabled, owner_quota): (bool, Option<i64>) =
            conn.query_row("SELECT disabled, quota FROM users WHERE id = ?1", params![o], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        disabled |= owner_disabled;
        quota = owner_quota;
    }
    let user = UserRow {
        id: UserId(owner.unwrap_or(me) as u64),
        me: UserId(me as u64),
        device,
        role: super::users::role(role)?,
        disabled,
        quota: quota.map(|q| q as u64),
        unproven,
    };
    Ok(Some((user, key, revoked)))
}

impl Store {
    /// Records a one-time invite (by its hash) that adds a device to `user`, which must bring
    /// that user's keys.
    pub fn add_device_token(&self, hash: &[u8; 32], user: UserId) -> Result<bool, StoreError> {
        self.write(|c| {
            let Some((role, name)) = c.query_opt(
                "SELECT role, name FROM users WHERE id = ?1 AND disabled = 0",
                params![user.0 as i64],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
            )?
            else {
                return Ok(false);
            };
            c.execute(
                "INSERT INTO tokens (hash, role, name, device_of) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![&hash[..], role, name, user.0 as i64],
            )?;
            Ok(true)
        })
    }

    /// `user`'s devices, oldest first.
    pub fn devices(&self, user: UserId) -> Result<Vec<DeviceEntry>, StoreError> {
        self.read(|c| {
            Ok(c.query_map(
                "SELECT id, name, created, revoked, unproven <> 0 FROM devices WHERE user = ?1 ORDER BY id",
                params![user.0 as i64],
                |r| {
                    Ok(DeviceEntry {
                        id: DeviceId(r.get::<i64>(0)? as u64),
                        name: r.get(1)?,
                        created: r.get::<i64>(2)? as u64,
                        revoked: r.get::<Option<i64>>(3)?.map(|t| t as u64),
                        unproven: r.get(4)?,
                    })
                },
            )?)
        })
    }

    /// Revokes one of `user`'s devices at `now`, for a revocation signed with `owner` (checked
    /// by the caller), which must be the account's owner key once it has one
    /// ([`StoreError::NotOwner`]); false if `user` has no such device, or it was revoked
    /// already.
    pub fn revoke_device(
        &self,
        user: UserId,
        device: DeviceId,
        owner: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.write(|c| {
            let kept: Option<Option<Vec<u8>>> =
                c.query_opt("SELECT owner_key FROM users WHERE id = ?1", params![user.0 as i64], |r| r.get(0))?;
            if let Some(Some(key)) = kept {
                if owner.is_none_or(|o| key.as_slice() != o) {
                    return Err(StoreError::NotOwner);
                }
            }
            let n = c.execute(
                "UPDATE devices SET revoked = ?3 WHERE id = ?1 AND user = ?2 AND revoked IS NULL",
                params![device.0 as i64, user.0 as i64, now as i64],
            )?;
            // Its dashboard sessions and unused login links end with it.
            if n == 1 {
                c.execute("DELETE FROM dashboard_links WHERE device = ?1", params![device.0 as i64])?;
                c.execute("DELETE FROM dashboard_sessions WHERE device = ?1", params![device.0 as i64])?;
            }
            Ok(n)
        })? == 1)
    }

    /// Sets `user`'s recovery code (voiding the one it had) and the key file sealed to it, for
    /// a change signed with `owner` (checked by the caller) and sent by `device`;
    /// [`StoreError::NotOwner`] if that is not the account's owner key.
    pub fn set_recovery(
        &self,
        user: UserId,
        device: DeviceId,
        owner: &[u8; 32],
        code: &RecoveryBinding,
        escrow: &[u8],
        now: u64,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            check_owner(c, user, device, owner)?;
            c.execute("DELETE FROM recovery WHERE user = ?1", params![user.0 as i64])?;
            c.execute(
                "INSERT INTO recovery (user, verifier, recipient, binding, escrow, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user.0 as i64, &code.verifier[..], code.recipient, code.binding, escrow, now as i64],
            )?;
            Ok(())
        })
    }

    /// `user`'s recovery code as its devices check it, if it has one.
    pub fn recovery(&self, user: UserId) -> Result<Option<RecoveryBinding>, StoreError> {
        self.read(|c| {
            let row: Option<(Vec<u8>, String, Vec<u8>)> = c.query_opt(
                "SELECT verifier, recipient, binding FROM recovery WHERE user = ?1",
                params![user.0 as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            row.map(|(verifier, recipient, binding)| {
                let verifier = <[u8; 32]>::try_from(verifier.as_slice())
                    .map_err(|_| SqlError::Type(0, "a recovery verifier of 32 bytes".into()))?;
                Ok(RecoveryBinding { verifier, recipient, binding })
            })
            .transpose()
        })
    }

    /// Replaces the key file kept for `user`'s recovery code if that code is still `verifier`
    /// (a device re-seals it after a passphrase change), for a change signed with `owner` (see
    /// [`Store::set_recovery`]); false if the code changed since.
    pub fn set_escrow(
        &self,
        user: UserId,
        device: DeviceId,
        owner: &[u8; 32],
        verifier: &[u8; 32],
        escrow: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self.write(|c| {
            check_owner(c, user, device, owner)?;
            Ok(c.execute(
                "UPDATE recovery SET escrow = ?3 WHERE user = ?1 AND verifier = ?2",
                params![user.0 as i64, &verifier[..], escrow],
            )?)
        })? == 1)
    }

    /// Uses the recovery code with `verifier` (whose claim the caller checked): removes it and
    /// registers the device, atomically, as unproven: whoever has the code without the
    /// passphrase gets a device that can only prove it holds the keys (see
    /// [`UserRow::unproven`]). Returns the account and the kept key file; `None`
    /// when no code has this verifier (unknown, used or voided).
    pub fn use_recovery(
        &self,
        verifier: &[u8; 32],
        device_key: &[u8; 32],
        device_name: &str,
        now: u64,
    ) -> Result<Option<(UserRow, Vec<u8>)>, StoreError> {
        self.write(|tx| {
            let found: Option<(i64, Vec<u8>)> =
                tx.query_opt("SELECT user, escrow FROM recovery WHERE verifier = ?1", params![&verifier[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let Some((user, escrow)) = found else { return Ok(None) };
            tx.execute("DELETE FROM recovery WHERE user = ?1", params![user])?;
            let device = add_device(tx, UserId(user as u64), device_key, device_name, now)?;
            tx.execute("UPDATE devices SET unproven = 1 WHERE id = ?1", params![device.0 as i64])?;
            match login(tx, device)? {
                // Refused before the code is spent.
                Some((row, _, _)) if row.disabled => Err(StoreError::AccountDisabled),
                found => Ok(found.map(|(row, _, _)| (row, escrow))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{catalog, conformance};
    use super::*;
    use scatter_proto::api::Role;

    fn user(store: &Store, n: u8, role: Role, owner: Option<UserId>) -> UserRow {
        store.add_token(&[n; 32], "u", role, None, owner).expect("token");
        store.redeem_token(&[n; 32], "age1pk", &[n; 32], "first", 5).expect("redeem").expect("unused")
    }

    conformance! {
        fn devices_are_added_listed_and_revoked_per_user() {
            let (_guard, store) = catalog();
            let ann = user(&store, 1, Role::User, None);
            let bob = user(&store, 2, Role::User, None);
            assert_ne!(ann.device, bob.device);

            // A device invite adds a device to ann, with ann's keys only.
            store.add_device_token(&[10; 32], ann.me).expect("device token");
            assert!(matches!(store.redeem_token(&[10; 32], "age1other", &[10; 32], "x", 6), Err(StoreError::OtherKeys)));
            store.add_device_token(&[11; 32], ann.me).expect("device token");
            let second = store.redeem_token(&[11; 32], "age1pk", &[11; 32], "desk «ü»", 6).expect("redeem").expect("unused");
            assert_eq!((second.me, second.id), (ann.me, ann.id));
            assert!(store.redeem_token(&[11; 32], "age1pk", &[12; 32], "again", 6).expect("redeem").is_none(), "used");
            // A device key is one device's.
            store.add_device_token(&[13; 32], ann.me).expect("device token");
            assert!(matches!(store.redeem_token(&[13; 32], "age1pk", &[2; 32], "x", 6), Err(StoreError::DeviceTaken)));

            let listed = store.devices(ann.me).expect("devices");
            assert_eq!(listed.iter().map(|d| (d.id, d.name.as_str(), d.revoked)).collect::<Vec<_>>(),
                       vec![(ann.device, "first", None), (second.device, "desk «ü»", None)]);

            // Bob cannot revoke ann's device; ann can, once.
            assert!(!store.revoke_device(bob.me, second.device, None, 7).expect("revoke"));
            assert!(store.revoke_device(ann.me, second.device, None, 7).expect("revoke"));
            assert!(!store.revoke_device(ann.me, second.device, None, 8).expect("revoke"));
            let (row, key, revoked) = store.device_login(second.device).expect("sql").expect("device");
            assert!(revoked && row.me == ann.me && key == vec![11; 32]);
            assert!(!store.device_login(ann.device).expect("sql").expect("device").2);
            assert!(store.device_login(DeviceId(999)).expect("sql").is_none());
            assert_eq!(store.devices(ann.me).expect("devices")[1].revoked, Some(7));
            assert!(!store.add_device_token(&[14; 32], UserId(999)).expect("token"), "no such user");
            // A device invite handed out before its user is disabled adds nothing, and one
            // handed out before its user is removed is gone.
            store.add_device_token(&[15; 32], bob.me).expect("device token");
            store.add_device_token(&[16; 32], bob.me).expect("device token");
            store.set_disabled(bob.me, true).expect("disable");
            assert!(matches!(store.redeem_token(&[15; 32], "age1pk", &[15; 32], "x", 9), Err(StoreError::AccountDisabled)));
            store.remove_user(bob.me, 9).expect("remove");
            assert!(store.redeem_token(&[16; 32], "age1pk", &[16; 32], "x", 9).expect("redeem").is_none());
        }
    }

    conformance! {
        fn a_recovery_code_is_replaced_resealed_and_used_once() {
            let (_guard, store) = catalog();
            let ann = user(&store, 1, Role::User, None);
            assert!(store.recovery(ann.me).expect("recovery").is_none());
            let code = |n: u8| RecoveryBinding { verifier: [n; 32], recipient: format!("age1r{n}"), binding: vec![n, 0, 0xff] };
            store.set_recovery(ann.me, ann.device, &[9; 32], &code(1), b"escrow 1", 5).expect("set");
            assert_eq!(store.recovery(ann.me).expect("recovery"), Some(code(1)));
            // The first code's owner key is the account's: changes signed with another are refused.
            assert!(matches!(store.set_recovery(ann.me, ann.device, &[8; 32], &code(3), b"x", 6), Err(StoreError::NotOwner)));
            assert!(matches!(store.set_escrow(ann.me, ann.device, &[8; 32], &[1; 32], b"x"), Err(StoreError::NotOwner)));
            assert_eq!(store.recovery(ann.me).expect("recovery"), Some(code(1)));
            // A new code voids the old one.
            store.set_recovery(ann.me, ann.device, &[9; 32], &code(2), b"escrow 2", 6).expect("set");
            assert_eq!(store.recovery(ann.me).expect("recovery"), Some(code(2)));
            assert!(store.use_recovery(&[1; 32], &[40; 32], "x", 7).expect("use").is_none(), "voided");
            // Re-sealing applies only to the current code.
            assert!(!store.set_escrow(ann.me, ann.device, &[9; 32], &[1; 32], b"stale").expect("escrow"));
            assert!(store.set_escrow(ann.me, ann.device, &[9; 32], &[2; 32], b"escrow 2b").expect("escrow"));

            let (row, escrow) = store.use_recovery(&[2; 32], &[41; 32], "new laptop", 8).expect("use").expect("code");
            assert_eq!((row.me, escrow.as_slice()), (ann.me, &b"escrow 2b"[..]));
            // The device the code registered may only prove it holds the keys, until it does.
            assert!(row.unproven && !ann.unproven);
            assert!(store.device_login(row.device).expect("sql").expect("device").0.unproven);
            assert!(store.devices(ann.me).expect("devices")[1].unproven);
            assert!(store.recovery(ann.me).expect("recovery").is_none(), "a code works once");
            assert!(store.use_recovery(&[2; 32], &[42; 32], "x", 9).expect("use").is_none());
            assert_eq!(store.devices(ann.me).expect("devices").len(), 2);
            // Once the account has an owner key, revoking a device needs it.
            let third = store.devices(ann.me).expect("devices")[1].id;
            assert!(matches!(store.revoke_device(ann.me, third, None, 9), Err(StoreError::NotOwner)));
            assert!(matches!(store.revoke_device(ann.me, third, Some(&[8; 32]), 9), Err(StoreError::NotOwner)));
            assert!(store.revoke_device(ann.me, third, Some(&[9; 32]), 9).expect("revoke"));
            // The owner key outlives the spent code: the next one needs it too.
            assert!(matches!(store.set_recovery(ann.me, ann.device, &[8; 32], &code(4), b"x", 9), Err(StoreError::NotOwner)));
            store.set_recovery(ann.me, ann.device, &[9; 32], &code(4), b"escrow 4", 9).expect("set");
            // A change signed with it proves the device that sends it; one signed otherwise does not.
            let (fourth, _) = store.use_recovery(&[4; 32], &[43; 32], "x", 10).expect("use").expect("code");
            assert!(matches!(store.set_recovery(ann.me, fourth.device, &[8; 32], &code(5), b"x", 10), Err(StoreError::NotOwner)));
            assert!(store.device_login(fourth.device).expect("sql").expect("device").0.unproven);
            store.set_recovery(ann.me, fourth.device, &[9; 32], &code(5), b"escrow 5", 10).expect("set");
            assert!(!store.device_login(fourth.device).expect("sql").expect("device").0.unproven);
        }
    }
}
