//! A user's devices and recovery code: listing and revoking devices, registering a new one
//! with the recovery code, making a new code and re-sealing the key file kept for it.
//!
//! The coordinator checks a code by a signature it cannot make ([`recovery::verify`]) and
//! keeps the key file sealed to the code: it never holds what opens it.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use scatter_core::recovery;
use scatter_proto::api::*;
use scatter_proto::auth::AuthError;

use std::sync::Arc;

use super::{db, decode_b64, device_holder, event, user, ApiResult, Body, S};
use crate::error::ApiError;
use crate::store::{RecoveryBinding, UserRow};
use crate::{now, Shared};

/// How far a recovery claim's time may be from the coordinator's clock.
const CLAIM_SKEW: u64 = 300;

fn hex32(field: &str, text: &str) -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| ApiError::BadRequest(format!("`{field}` is not 32 bytes in hex")))?;
    Ok(out)
}

/// A device key and name from a registration: an Ed25519 public key, a name of at most 64
/// characters.
pub(super) fn device(key: &str, name: &str) -> Result<[u8; 32], ApiError> {
    let key = hex32("device_key", key)?;
    if ed25519_dalek::VerifyingKey::from_bytes(&key).is_err() {
        return Err(ApiError::BadRequest("the device key is not an Ed25519 public key in hex".into()));
    }
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("a device name is at most 64 printable characters".into()));
    }
    Ok(key)
}

/// `POST /v1/users/recover` (no credential: the claim signed with the code is the proof).
pub(super) async fn recover(State(sh): S, Body(req): Body<RecoverRequest>) -> ApiResult<RecoverResponse> {
    let device_key = device(&req.device_key, &req.device_name)?;
    let verifier = hex32("verifier", &req.verifier)?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&req.signature, &mut signature)
        .map_err(|_| ApiError::BadRequest("`signature` is not 64 bytes in hex".into()))?;
    if req.time.abs_diff(now()) > CLAIM_SKEW {
        return Err(ApiError::Unauthorized(
            "the recovery claim's time is more than 5 minutes from the coordinator's clock; check this machine's clock"
                .into(),
        ));
    }
    let claim = recovery::claim(&sh.grid_id(), &device_key, req.time);
    let refused = |why: &str| {
        ApiError::Unauthorized(format!("{why}; use the newest recovery code printed for this account (each works once), or ask the grid's admin for a device invite"))
    };
    if !recovery::verify(&verifier, &claim, &signature) {
        event(&sh, crate::api::Who::unknown(), "recovery.refused", "a claim that does not verify".into()).await;
        return Err(refused("this recovery code is not valid for this grid"));
    }
    let name = req.device_name.clone();
    let Some((user, escrow)) = db(&sh, move |s| s.use_recovery(&verifier, &device_key, &name, now())).await? else {
        event(&sh, crate::api::Who::unknown(), "recovery.refused", "an unknown, used or voided code".into()).await;
        return Err(refused("this recovery code is unknown, used or voided"));
    };
    event(&sh, &user, "recovery.used", format!("device {} ({:.64})", user.device, req.device_name)).await;
    // A restored catalog must not make the spent code work again.
    sh.backup_soon();
    Ok(Json(RecoverResponse { user_id: user.me, device_id: user.device, role: user.role, escrow: B64.encode(escrow) }))
}

/// `GET /v1/devices`: the caller's devices.
pub(super) async fn list(State(sh): S, headers: HeaderMap) -> ApiResult<DevicesResponse> {
    let u = user(&sh, &headers).await?;
    let me = u.me;
    Ok(Json(DevicesResponse { devices: db(&sh, move |s| s.devices(me)).await?, current: u.device }))
}

/// `POST /v1/devices/revoke`: one of the caller's other devices is refused from now on. Once
/// the account has an owner key (see [`recovery`]), the revocation must be signed with it, so
/// that a taken device cannot lock its user out.
pub(super) async fn revoke(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<RevokeDeviceRequest>,
) -> ApiResult<serde_json::Value> {
    let u = user(&sh, &headers).await?;
    if req.device == u.device {
        return Err(ApiError::BadRequest(
            "this is the device making the request; revoke it from another device of yours".into(),
        ));
    }
    let owner = match (&req.owner, &req.proof) {
        (Some(owner), Some(proof)) => {
            let owner = hex32("owner", owner)?;
            let mut signature = [0u8; 64];
            hex::decode_to_slice(proof, &mut signature)
                .map_err(|_| ApiError::BadRequest("`proof` is not 64 bytes in hex".into()))?;
            let revocation = recovery::revocation(&sh.grid_id(), u.me.0, req.device.0);
            if !recovery::verify(&owner, &revocation, &signature) {
                return Err(ApiError::Forbidden(
                    "this revocation is not signed with the owner key it names; run it with scatter's own client"
                        .into(),
                ));
            }
            Some(owner)
        }
        (None, None) => None,
        _ => return Err(ApiError::BadRequest("a revocation's `owner` and `proof` go together".into())),
    };
    let (me, device) = (u.me, req.device);
    let revoked = db(&sh, move |s| s.revoke_device(me, device, owner.as_ref(), now())).await;
    if !refused_unless_owner(&sh, &u, revoked).await? {
        return Err(ApiError::NotFound(format!(
            "you have no device {device} that is not revoked yet; `scatter key devices` lists them"
        )));
    }
    event(&sh, &u, "device.revoked", device.to_string()).await;
    // A restored catalog must not bring the device back.
    sh.backup_soon();
    Ok(Json(serde_json::json!({})))
}

/// The caller, if its account has a recovery code (owners of data, not delegates); its
/// device may be one registered with the code that has not shown the keys yet (changing the
/// code is how it shows them).
async fn owner(sh: &Arc<Shared>, headers: &HeaderMap) -> Result<UserRow, ApiError> {
    let u = device_holder(sh, headers).await?;
    if !u.role.has_recovery_code() {
        return Err(ApiError::Forbidden(format!(
            "this account ({}) has no recovery code: if this machine is lost, the grid's admin invites it again",
            u.role
        )));
    }
    Ok(u)
}

fn binding(info: &RecoveryCodeInfo) -> Result<RecoveryBinding, ApiError> {
    if !info.recipient.starts_with("age1") || info.recipient.len() > 128 {
        return Err(ApiError::BadRequest("the recovery recipient is not an age X25519 recipient (age1…)".into()));
    }
    Ok(RecoveryBinding {
        verifier: hex32("verifier", &info.verifier)?,
        recipient: info.recipient.clone(),
        binding: hex32("binding", &info.binding)?.to_vec(),
    })
}

/// The owner key a change of `user`'s recovery code is signed with, once its signature over
/// the change is checked (whether it is the account's is the store's to say).
fn signed_by(
    sh: &Shared,
    user: &UserRow,
    req: &RecoveryCodeRequest,
    code: &RecoveryBinding,
    escrow: &[u8],
) -> Result<[u8; 32], ApiError> {
    let owner = hex32("owner", &req.owner)?;
    let mut proof = [0u8; 64];
    hex::decode_to_slice(&req.proof, &mut proof)
        .map_err(|_| ApiError::BadRequest("`proof` is not 64 bytes in hex".into()))?;
    let change = recovery::change(&sh.grid_id(), user.me.0, &code.verifier, &code.recipient, escrow);
    if !recovery::verify(&owner, &change, &proof) {
        return Err(ApiError::Forbidden(
            "this change of the recovery code is not signed with the owner key it names; run it with scatter's own client"
                .into(),
        ));
    }
    Ok(owner)
}

fn escrow(text: &str) -> Result<Vec<u8>, ApiError> {
    let escrow = decode_b64("escrow", text)?;
    if escrow.is_empty() || escrow.len() > recovery::MAX_ESCROW {
        return Err(ApiError::BadRequest(format!("the kept key file must be 1 to {} bytes", recovery::MAX_ESCROW)));
    }
    Ok(escrow)
}

/// `GET /v1/recovery`: the caller's recovery code, for its devices to check and seal to.
pub(super) async fn get_code(State(sh): S, headers: HeaderMap) -> ApiResult<RecoveryCodeResponse> {
    let u = owner(&sh, &headers).await?;
    let me = u.me;
    let code = db(&sh, move |s| s.recovery(me)).await?.map(|c| RecoveryCodeInfo {
        verifier: hex::encode(c.verifier),
        recipient: c.recipient,
        binding: hex::encode(c.binding),
    });
    Ok(Json(RecoveryCodeResponse { code }))
}

/// A change of the caller's recovery code, checked: the caller owns data, the code and the
/// sealed key file are well formed, and the change is signed with the owner key it names.
struct Change {
    u: UserRow,
    code: RecoveryBinding,
    escrow: Vec<u8>,
    key: [u8; 32],
}

async fn change(sh: &Arc<Shared>, headers: &HeaderMap, req: &RecoveryCodeRequest) -> Result<Change, ApiError> {
    let u = owner(sh, headers).await?;
    let (code, escrow) = (binding(&req.info)?, escrow(&req.escrow)?);
    let key = signed_by(sh, &u, req, &code, &escrow)?;
    Ok(Change { u, code, escrow, key })
}

/// `PUT /v1/recovery`: a new recovery code, voiding the one before.
pub(super) async fn set_code(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<RecoveryCodeRequest>,
) -> ApiResult<serde_json::Value> {
    let Change { u, code, escrow, key } = change(&sh, &headers, &req).await?;
    let (me, device) = (u.me, u.device);
    refused_unless_owner(&sh, &u, db(&sh, move |s| s.set_recovery(me, device, &key, &code, &escrow, now())).await)
        .await?;
    event(&sh, &u, "recovery.replaced", format!("by device {}", u.device)).await;
    // A restored catalog must not bring the voided code back.
    sh.backup_soon();
    Ok(Json(serde_json::json!({})))
}

/// `POST /v1/recovery/escrow`: the key file re-sealed for the same code (after a passphrase
/// change).
pub(super) async fn set_escrow(
    State(sh): S,
    headers: HeaderMap,
    Body(req): Body<RecoveryCodeRequest>,
) -> ApiResult<serde_json::Value> {
    let Change { u, code, escrow, key } = change(&sh, &headers, &req).await?;
    let (me, device) = (u.me, u.device);
    let set = db(&sh, move |s| s.set_escrow(me, device, &key, &code.verifier, &escrow)).await;
    if !refused_unless_owner(&sh, &u, set).await? {
        return Err(ApiError::Conflict(
            "the recovery code changed meanwhile; run `scatter key recovery-code` to make a new one".into(),
        ));
    }
    event(&sh, &u, "recovery.resealed", format!("by device {}", u.device)).await;
    Ok(Json(serde_json::json!({})))
}

/// `result`, with a refusal for keys other than the account's recorded as a security event.
async fn refused_unless_owner<T>(sh: &Arc<Shared>, u: &UserRow, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(ApiError::Forbidden(_)) = &result {
        event(
            sh,
            u,
            "recovery.refused",
            format!("a change or revocation not signed with the account's keys, by device {}", u.device),
        )
        .await;
    }
    result
}

/// Why a revoked device's request is refused, in the API's words.
pub(super) fn revoked() -> ApiError {
    ApiError::Unauthorized(AuthError::Revoked.to_string())
}
