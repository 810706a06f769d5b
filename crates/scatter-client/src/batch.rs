//! Small objects stored together: puts that arrive while others are being stored share one
//! write session, one dedup lookup, one pack and one set of shard uploads, and are then
//! committed in one request, each on its own terms.
//!
//! Stored one by one, a 4 KiB object costs as much as a pack: a session opened and closed, a
//! placement, k+m shard uploads each written and synced by its host, and a pack commit. That
//! bounded a gateway to about 160 small objects per second on the development machine, with
//! the hosts' and coordinator's work per object, not the bytes, taking the CPU.
//!
//! This is group commit, not a delay: a put that arrives when no batch is being stored is
//! stored at once, alone if nothing else is waiting; the puts that arrive while a batch is
//! being stored wait in line and go together in the next one. Every put is
//! answered only once its own commit is done: nothing is acknowledged before its pack is
//! durable on its hosts and committed. A batch whose pack cannot be stored (hosts down, the
//! account's quota) fails every put in it, as a put alone would have failed; a commit
//! refused (a name taken for a put that may not replace, an ETag no longer matched) fails
//! only its own put, and its chunks, stored but referenced by nothing, go with the next
//! prune like those of any put that failed at its commit.

use scatter_core::chunker::chunks_sized;
use scatter_core::keys::WriteKeys;
use scatter_core::manifest::Manifest;
use scatter_core::pack::PACK_TARGET;
use scatter_core::ChunkId;
use tokio::sync::{mpsc, oneshot};

use crate::coordinator::Coordinator;
use crate::put::{commit_request, open_upload, Committed, PutOptions};
use crate::ClientError;

/// The largest object stored through a batch; bigger ones have packs of their own anyway.
pub const SMALL_OBJECT: u64 = 1024 * 1024;
/// Plaintext bytes of one batch at most: one pack.
const BATCH_BYTES: u64 = PACK_TARGET as u64;
/// Objects in one batch at most: one request commits them all.
const BATCH_OBJECTS: usize = scatter_proto::api::MAX_BATCH_COMMITS;
/// Batches being stored at once, the second only when a full batch waits (see [`run`]).
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Puts waiting for a batch at most; the caller's own limits (the gateway's budgets) bound
/// them well below this.
const WAITING: usize = 4096;

/// One put waiting for its batch.
struct Job {
    name: String,
    manifest: Manifest,
    chunks: Vec<(ChunkId, Vec<u8>)>,
    opts: PutOptions,
    attributes: Option<Vec<u8>>,
    done: oneshot::Sender<Result<Committed, ClientError>>,
}

impl Job {
    /// Whether `other` may share this job's packs: the same redundancy and placement policy.
    fn stores_like(&self, other: &Job) -> bool {
        self.opts.redundancy == other.opts.redundancy && self.opts.policy == other.opts.policy
    }
}

/// Stores small objects of one user in batches (see the module's documentation). Cheap to
/// clone; the batches run on a task of their own, which ends when the last clone is dropped
/// and the batches under way are done.
#[derive(Clone)]
pub struct SmallPuts {
    tx: mpsc::Sender<Job>,
    keys: WriteKeys,
}

impl SmallPuts {
    /// Starts the batching task (in the current Tokio runtime) for the user of `coord` and
    /// `keys`.
    pub fn start(coord: Coordinator, keys: WriteKeys) -> Self {
        let (tx, rx) = mpsc::channel(WAITING);
        tokio::spawn(run(coord, keys.clone(), rx));
        Self { tx, keys }
    }

    /// Stores `data` (at most [`SMALL_OBJECT`] bytes) as the next version of `name`, with
    /// `attributes` sealed beside it, in a batch with the puts waiting beside it. Returns the
    /// version created. `opts` are those of [`crate::put::put_stream`]; only puts with the same
    /// redundancy and policy share packs.
    pub async fn put(
        &self,
        name: &str,
        data: Vec<u8>,
        opts: &PutOptions,
        attributes: Option<Vec<u8>>,
    ) -> Result<Committed, ClientError> {
        if data.len() as u64 > SMALL_OBJECT {
            return Err(ClientError::Invalid(format!(
                "{} bytes is too big to be stored in a batch (at most {SMALL_OBJECT})",
                data.len()
            )));
        }
        scatter_core::erasure::check_redundancy(opts.redundancy.k, opts.redundancy.m)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        // Chunked and hashed here, on the caller's turn, so the batches only store.
        let dedup = self.keys.dedup_key();
        let (manifest, chunks) = tokio::task::spawn_blocking(move || {
            let expected = Some(data.len() as u64);
            let mut manifest = Manifest::default();
            let mut chunks = Vec::new();
            for chunk in chunks_sized(std::io::Cursor::new(data), expected) {
                // Reading from memory cannot fail.
                let data = chunk.map_err(|e| ClientError::Invalid(format!("chunking failed: {}", e.0)))?.data;
                let id = dedup.chunk_id(&data);
                manifest.chunks.push((id, data.len() as u32));
                manifest.size += data.len() as u64;
                chunks.push((id, data));
            }
            Ok::<_, ClientError>((manifest, chunks))
        })
        .await
        .map_err(|e| ClientError::Invalid(format!("chunking failed: {e}")))??;
        let (done, answer) = oneshot::channel();
        let job = Job { name: name.to_owned(), manifest, chunks, opts: opts.clone(), attributes, done };
        if self.tx.send(job).await.is_err() {
            return Err(ClientError::Invalid("small objects are no longer being stored (shutting down); retry".into()));
        }
        answer.await.map_err(|_| ClientError::Invalid("the batch storing this object stopped; retry".into()))?
    }
}

/// The puts waiting for the next batch.
#[derive(Default)]
struct Line {
    jobs: Vec<Job>,
    bytes: u64,
    /// A put that fits no more in this batch (too big, or stored differently): the first
    /// of the one after.
    next: Option<Job>,
}

impl Line {
    fn full(&self) -> bool {
        self.next.is_some() || self.jobs.len() >= BATCH_OBJECTS
    }

    fn push(&mut self, job: Job) {
        let fits = self
            .jobs
            .first()
            .is_none_or(|first| first.stores_like(&job) && self.bytes + job.manifest.size <= BATCH_BYTES);
        if fits {
            self.bytes += job.manifest.size;
            self.jobs.push(job);
        } else {
            self.next = Some(job);
        }
    }

    fn take(&mut self) -> Vec<Job> {
        let jobs = std::mem::take(&mut self.jobs);
        self.bytes = 0;
        if let Some(next) = self.next.take() {
            self.push(next);
        }
        jobs
    }
}

/// Stores the line's puts in batches: the waiting ones at once when no batch is being
/// stored; a second batch beside it only once a full one waits. Fewer, bigger batches cost
/// less: with 16 clients putting 4 KiB objects, one batch at a time stored 460–500 objects/s
/// and two at a time 400, four 310, with the grid's CPU per object rising with each.
async fn run(coord: Coordinator, keys: WriteKeys, mut rx: mpsc::Receiver<Job>) {
    let mut line = Line::default();
    let mut storing = tokio::task::JoinSet::new();
    let mut open = true;
    loop {
        if !line.jobs.is_empty() && (storing.is_empty() || (line.full() && storing.len() < BATCHES_IN_FLIGHT)) {
            let batch = line.take();
            let (coord, keys) = (coord.clone(), keys.clone());
            storing.spawn(async move { store(&coord, &keys, batch).await });
            continue;
        }
        if !open && line.jobs.is_empty() && storing.is_empty() {
            return;
        }
        tokio::select! {
            job = rx.recv(), if open && !line.full() => match job {
                Some(job) => {
                    line.push(job);
                    while !line.full() {
                        let Ok(job) = rx.try_recv() else { break };
                        line.push(job);
                    }
                }
                None => open = false,
            },
            Some(_) = storing.join_next(), if !storing.is_empty() => {}
        }
    }
}

/// Stores one batch: its chunks in one session's packs, then each object's commit; every
/// job is answered.
async fn store(coord: &Coordinator, keys: &WriteKeys, mut jobs: Vec<Job>) {
    let stored = async {
        let (session, mut uploader) = open_upload(coord, keys, &jobs[0].opts).await?;
        let chunks: Vec<(ChunkId, Vec<u8>)> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.chunks)).collect();
        uploader.add(chunks).await?;
        uploader.finish().await?;
        Ok::<_, ClientError>(session)
    }
    .await;
    let session = match stored {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, objects = jobs.len(), "a batch of small objects could not be stored");
            for job in jobs {
                let _ = job.done.send(Err(e.duplicate()));
            }
            return;
        }
    };
    // A put whose caller is gone is not committed, as it would not have been alone: the
    // caller no longer tracks it (a gateway's bucket delete waits for the writes it knows of).
    let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.done.is_closed()).collect();
    if !jobs.is_empty() {
        let (requests, tags): (Vec<_>, Vec<_>) = jobs
            .iter()
            .map(|j| commit_request(keys, &session, &j.name, &j.manifest, j.attributes.as_deref(), &j.opts))
            .unzip();
        // All in one transaction at the coordinator: one flush for the batch, not one per object.
        match coord.commit_objects(requests).await {
            Ok(outcomes) => {
                for ((job, outcome), tag) in jobs.into_iter().zip(outcomes).zip(tags) {
                    let _ = job.done.send(outcome.map(|version| Committed { version, tag }));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.done.send(Err(e.duplicate()));
                }
            }
        }
    }
    // Every put is committed (or refused) already.
    session.close_committed().await;
}
