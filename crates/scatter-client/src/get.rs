//! The get pipeline: manifest → chunk locations → byte ranges of data shards → decrypt →
//! verify → write in order (see [`crate::fetch`]). The output appears under its name only
//! once complete and verified.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use scatter_core::keys::UserKeys;
use scatter_core::manifest::Manifest;
use scatter_proto::api::{ErrorCode, ObjectResponse};

use crate::coordinator::Coordinator;
use crate::fetch::{FetchReport, Fetcher};
use crate::partial::PartialFile;
use crate::put::MANIFEST_CONTEXT;
use crate::{ClientError, Progress};

/// What a get did.
#[derive(Debug, Clone, Default)]
pub struct GetReport {
    /// Version read.
    pub version: u64,
    /// Bytes written.
    pub size: u64,
    /// What was worked around.
    pub fetch: FetchReport,
    /// Wall time.
    pub elapsed: Duration,
}

/// The object `name` (its latest version, or `version`) and its manifest, opened with `keys`
/// (which must hold the private key) and authenticated.
pub async fn open_manifest(
    coord: &Coordinator,
    keys: &UserKeys,
    name: &str,
    version: Option<u64>,
) -> Result<(ObjectResponse, Manifest), ClientError> {
    let encrypted = keys.write_keys().name_key().encrypt(name);
    open_object(coord, keys, &encrypted, name, version).await.map_err(|e| match (e, version) {
        (ClientError::Api { code: ErrorCode::NotFound, .. }, None) => {
            ClientError::Invalid(format!("no object named `{name}` is stored; `scatter ls` lists what is"))
        }
        (ClientError::Api { code: ErrorCode::NotFound, .. }, Some(v)) => ClientError::Invalid(format!(
            "no version {v} of an object named `{name}` is stored; `scatter versions {name}` lists them"
        )),
        (e, _) => e,
    })
}

/// [`open_manifest`] by encrypted name; `name` (plaintext) is for messages. An absent object
/// is the coordinator's `NotFound`.
pub async fn open_object(
    coord: &Coordinator,
    keys: &UserKeys,
    encrypted: &str,
    name: &str,
    version: Option<u64>,
) -> Result<(ObjectResponse, Manifest), ClientError> {
    let object = coord.object(encrypted, version).await?;
    let bad = |what: &str| ClientError::Unrecoverable(format!("the manifest of `{name}` {what}"));
    let wrapped = B64.decode(&object.wrapped_key).map_err(|_| bad("has an unreadable key"))?;
    let manifest_key = keys.unwrap(&wrapped)?;
    let sealed = B64.decode(&object.manifest).map_err(|_| bad("is not base64"))?;
    let manifest =
        Manifest::decode(&manifest_key.open(MANIFEST_CONTEXT, &sealed).map_err(|_| bad("fails authentication"))?)
            .map_err(|e| ClientError::Unrecoverable(e.to_string()))?;
    Ok((object, manifest))
}

/// Reads `name` (its latest version, or `version`) and writes it to `output`.
pub async fn get_file(
    coord: &Coordinator,
    keys: &UserKeys,
    (name, version): (&str, Option<u64>),
    output: &Path,
    progress: &dyn Progress,
) -> Result<GetReport, ClientError> {
    let started = Instant::now();
    let (object, manifest) = open_manifest(coord, keys, name, version).await?;
    progress.start(manifest.size);

    // Refused before anything is fetched when it cannot fit: once the disk had filled up, the
    // failed write could only say how little was free then.
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(st) = rustix::fs::statvfs(parent) {
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if manifest.size > free {
            return Err(ClientError::NoRoom {
                path: crate::partial::show(parent),
                needed: scatter_core::ByteSize(manifest.size),
                free: scatter_core::ByteSize(free),
            });
        }
    }
    let fetcher = Fetcher::new(coord, &coord.hosts()?, keys);
    let mut out = PartialFile::create(output)?;
    let mut written = 0u64;
    let mut chunks = fetcher.stream(manifest.chunks.iter().map(|(id, len)| (*id, Some(*len))).collect());
    while let Some(plain) = chunks.next().await {
        for chunk in plain? {
            crate::stats::time(crate::stats::Stage::Write, chunk.len() as u64, || out.write(&chunk))?;
            written += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
    }
    if written != manifest.size {
        return Err(ClientError::Unrecoverable(format!(
            "{written} bytes were recovered but the object has {}",
            manifest.size
        )));
    }
    out.commit()?;
    Ok(GetReport { version: object.info.version, size: written, fetch: fetcher.report(), elapsed: started.elapsed() })
}
