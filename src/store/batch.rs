//! Group commit: writes that only replace `metadata.json` files and the pointer (a
//! switch, clearing the current session, a patch, a report) wait in a queue, and one of
//! them at a time leads: it takes the writer lock and commits every write queued by
//! then in one transaction, [`Store::write_batched`]. The others wait for their answer
//! (not for the writer lock, which the next batch's leader may already hold), and when
//! a batch ends, one still queued leads the next.
//!
//! The batch's members run one after the other, in memory, each seeing the state the
//! ones before it left (so a reply, and an If-Match, are what they would be one by one),
//! each staging its changes at a version of its own. Their files are written at the
//! end, once each in their final state, in parallel on a few threads the store keeps
//! for it, so that their fsyncs overlap. A batch that leaves the pointer alone writes
//! each `metadata.json` from start to end independently of the others; one that changes
//! it makes every file's new copy durable first, then renames the pointer into place,
//! the commit point of any switch among them, and only then every `metadata.json`.
//! Either way, every file is durable, and its directory too, before the batch is
//! published (its changes announced in order) and any member answered; when a file of
//! the batch cannot be written, no member is acknowledged, nothing of the batch is
//! published, and the index is read again from the disk.
//!
//! The pointer a batch writes names as `previous` the session that was current on
//! disk before it: a crash after the pointer and before the metadata leaves a switch
//! from that session to the batch's last target, which `Tx::settle` finishes; sessions
//! the batch passed through in between keep their old files, as if their switches had
//! not happened (none was acknowledged).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, mpsc};

use super::Store;
use super::bounded::Gate;
use super::error::StoreError;
use super::failpoint::{self, Step};
use super::fsio;
use super::layout::{CURRENT_FILE, METADATA_FILE};
use super::recover;
use super::tx::{Deferred, Tx};
use crate::metrics::metrics;

/// The writes waiting for a batch, and whether one leads a batch now.
#[derive(Default)]
pub(super) struct Batches {
    pending: Mutex<Pending>,
    /// Notified when a batch ends: its members have their answers, and another may lead.
    ended: Condvar,
    /// Notified when a write joins the queue, for a leader that lingers.
    joined: Condvar,
    /// The threads that write a batch's files.
    workers: OnceLock<Workers>,
}

#[derive(Default)]
struct Pending {
    queue: Vec<Queued>,
    leading: bool,
    /// How many writes were under way when the last batch ended: its members (whose
    /// callers may be about to send their next write) and those queued for the next.
    concurrency: usize,
}

/// How long a leader waits for the writes it expects (see [`Pending::concurrency`])
/// before it takes the queue as it is: about a loopback round trip, so that callers
/// answered by the last batch can join this one rather than wait for the next. A lone
/// writer never waits: its batches had no company.
const LINGER: std::time::Duration = std::time::Duration::from_micros(400);

/// A write waiting in the queue.
struct Queued {
    gate: Gate,
    operation: &'static str,
    member: Box<dyn Member>,
}

/// A queued write, whatever its result type.
trait Member: Send {
    /// Runs the write in the batch's transaction; returns its storage failure, if any.
    fn run(&mut self, tx: &mut Tx<'_>) -> Option<String>;
    /// Answers the caller, once the batch's files are durable (`None`) or not.
    fn finish(self: Box<Self>, failed: Option<&StoreError>);
    /// Answers the caller without running: it gave up before the write could start.
    fn refuse(self: Box<Self>, why: StoreError);
}

type Slot<T> = Arc<Mutex<Option<Result<T, StoreError>>>>;

struct Write<T, F> {
    job: Option<F>,
    result: Option<Result<T, StoreError>>,
    slot: Slot<T>,
}

impl<T, F> Member for Write<T, F>
where
    T: Send,
    F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Option<String> {
        let job = self.job.take()?;
        let result = job(tx);
        let problem = match &result {
            Err(e) if e.is_storage_failure() => Some(e.to_string()),
            _ => None,
        };
        self.result = Some(result);
        problem
    }

    fn finish(self: Box<Self>, failed: Option<&StoreError>) {
        let result = match (self.result, failed) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), None) => Ok(value),
            (_, Some(failed)) => Err(again(failed)),
            (None, None) => Err(StoreError::Internal("a queued write did not run".into())),
        };
        *lock(&self.slot) = Some(result);
    }

    fn refuse(self: Box<Self>, why: StoreError) {
        *lock(&self.slot) = Some(Err(why));
    }
}

impl Store {
    /// Runs `f` as a member of the next batch (see the module's documentation). `f` must
    /// write only through `Tx::write_metadata` and `Tx::write_pointer`.
    pub(super) async fn write_batched<T, F>(
        &self,
        operation: &'static str,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let batches = self.batches.clone();
        self.bounded(move |gate| {
            let slot: Slot<T> = Arc::default();
            let member = Write {
                job: Some(f),
                result: None,
                slot: slot.clone(),
            };
            let batches = &*batches;
            let mut pending = lock(&batches.pending);
            pending.queue.push(Queued {
                gate: gate.clone(),
                operation,
                member: Box::new(member),
            });
            batches.joined.notify_one();
            loop {
                if let Some(result) = lock(&slot).take() {
                    return result;
                }
                if pending.leading {
                    pending = batches
                        .ended
                        .wait(pending)
                        .unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                // No batch under way and this write still waits: it leads the next, of
                // every write queued once the writer lock is held.
                pending.leading = true;
                drop(pending);
                {
                    let _turn = Turn(batches);
                    let tx = shared.begin();
                    let queued = batches.gather();
                    let members = queued.len();
                    commit(tx, queued, batches.workers.get_or_init(Workers::start));
                    let mut pending = lock(&batches.pending);
                    pending.concurrency = members + pending.queue.len();
                }
                // It was in that batch, or in one that panicked before answering it.
                return lock(&slot).take().unwrap_or_else(|| {
                    Err(StoreError::Internal("a batched write was lost".into()))
                });
            }
        })
        .await
    }
}

impl Batches {
    /// Takes the queue for a batch, once it holds as many writes as were under way
    /// when the last batch ended, or [`LINGER`] has passed.
    fn gather(&self) -> Vec<Queued> {
        let deadline = std::time::Instant::now() + LINGER;
        let mut pending = lock(&self.pending);
        while pending.queue.len() < pending.concurrency {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            pending = self
                .joined
                .wait_timeout(pending, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::take(&mut pending.queue)
    }
}

/// A batch under way: when it ends, even by a panic, another write may lead.
struct Turn<'a>(&'a Batches);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        lock(&self.0.pending).leading = false;
        self.0.ended.notify_all();
    }
}

/// Commits `queued` in `tx`: every member whose caller still waits runs, the batch's
/// files are written, and each member is answered.
fn commit(mut tx: Tx<'_>, queued: Vec<Queued>, workers: &Workers) {
    let mut members = Vec::with_capacity(queued.len());
    for queued in queued {
        match queued.gate.enter() {
            Ok(()) => members.push(queued),
            // Its caller gave up before the writer lock: it never starts.
            Err(why) => queued.member.refuse(why),
        }
    }
    if members.is_empty() {
        return;
    }
    let start = std::time::Instant::now();
    let ready = tx.root().check().and_then(|()| tx.settle());
    let mut problem = None;
    let failed = match ready {
        Err(e) => Some(e),
        Ok(()) => {
            tx.deferred = Some(Deferred {
                base: tx.pointer().name,
                pointer: false,
                files: HashMap::new(),
            });
            for queued in &mut members {
                tx.next_member();
                problem = queued.member.run(&mut tx).or(problem);
            }
            let flushed = tx.flush(workers);
            if flushed.is_err() {
                // None of it is acknowledged, so none of it is published: the resync
                // below publishes what did reach the disk.
                tx.discard_staged();
            }
            flushed.err()
        }
    };
    tx.publish();
    if failed.as_ref().is_some_and(StoreError::is_storage_failure) || problem.is_some() {
        recover::resync(&mut tx);
    }
    match &failed {
        Some(e) if e.is_storage_failure() => tx.record_problem(Some(e.to_string())),
        Some(_) => {}
        None => tx.record_problem(problem),
    }
    let elapsed = start.elapsed();
    for queued in members {
        metrics().observe_store(queued.operation, elapsed);
        queued.member.finish(failed.as_ref());
    }
    drop(tx);
}

impl Tx<'_> {
    /// Writes what the batch deferred on the batch's workers, so that their fsyncs
    /// overlap. Without a pointer change, each `metadata.json` goes its own way: its temp
    /// copy written and fsynced, renamed into place, its directory fsynced. With one, in
    /// three rounds, each waiting for the one before: every file's temp copy written and
    /// fsynced; then the pointer renamed into place and its directory fsynced (the commit
    /// point of any switch in the batch); then every `metadata.json` renamed into place
    /// and its directory fsynced.
    fn flush(&mut self, workers: &Workers) -> Result<(), StoreError> {
        let Some(deferred) = self.deferred.take() else {
            return Ok(());
        };
        let files: Vec<(Arc<OwnedFd>, Vec<u8>)> = deferred
            .files
            .into_values()
            .map(|(dir, bytes)| (Arc::new(dir), bytes))
            .collect();
        if !deferred.pointer {
            let chains = files
                .into_iter()
                .map(|(dir, bytes)| -> Job<()> {
                    Box::new(move || {
                        let temp = fsio::prepare_replace_at(dir.as_fd(), METADATA_FILE, &bytes)?;
                        fsio::commit_replace_at(dir.as_fd(), &temp, METADATA_FILE)
                    })
                })
                .collect();
            workers
                .run(chains)
                .into_iter()
                .collect::<io::Result<()>>()?;
            return Ok(());
        }
        let pointer = self.pointer();
        let pointer_bytes = fsio::to_json_bytes(&pointer)?;
        let root = Arc::new(self.root().fd().try_clone_to_owned()?);
        let mut files: Vec<(Arc<OwnedFd>, &'static str, Vec<u8>)> = files
            .into_iter()
            .map(|(dir, bytes)| (dir, METADATA_FILE, bytes))
            .collect();
        files.insert(0, (root, CURRENT_FILE, pointer_bytes));
        let prepares = files
            .iter()
            .map(|(dir, name, bytes)| -> Job<String> {
                let (dir, name, bytes) = (dir.clone(), *name, bytes.clone());
                Box::new(move || fsio::prepare_replace_at(dir.as_fd(), name, &bytes))
            })
            .collect();
        let prepared = workers.run(prepares);
        let mut temps = Vec::with_capacity(files.len());
        let mut failed = None;
        for ((dir, name, _), temp) in files.into_iter().zip(prepared) {
            match temp {
                Ok(temp) => temps.push((dir, name, temp)),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        let discard = |temps: &[(Arc<OwnedFd>, &str, String)]| {
            for (dir, _, temp) in temps {
                fsio::discard_at(dir.as_fd(), temp);
            }
        };
        if let Some(e) = failed {
            discard(&temps);
            return Err(e.into());
        }
        let (dir, name, temp) = temps.remove(0);
        if let Err(e) = fsio::commit_replace_at(dir.as_fd(), &temp, name) {
            discard(&temps);
            return Err(e.into());
        }
        if pointer.since.is_some()
            && let Err(e) = failpoint::hit(Step::SwitchHalfway)
        {
            discard(&temps);
            return Err(e.into());
        }
        let commits = temps
            .into_iter()
            .map(|(dir, name, temp)| -> Job<()> {
                Box::new(move || fsio::commit_replace_at(dir.as_fd(), &temp, name))
            })
            .collect();
        workers
            .run(commits)
            .into_iter()
            .collect::<io::Result<()>>()?;
        Ok(())
    }
}

/// A file write for the batch's workers.
type Job<T> = Box<dyn FnOnce() -> io::Result<T> + Send>;

/// A few threads, started once a store first commits a batch, that write a batch's
/// files in parallel, so that their fsyncs overlap. They end with the store.
struct Workers {
    jobs: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

/// How many files of a batch are written at once, besides the one its leader writes.
const WORKERS: usize = 4;

impl Workers {
    fn start() -> Workers {
        let (jobs, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for _ in 0..WORKERS {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name("store-write".into())
                .spawn(move || {
                    loop {
                        let job = lock(&queue).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        // When no thread could be had, the leader writes every file in turn itself.
        Workers {
            jobs: (started > 0).then_some(jobs),
        }
    }

    /// Runs every job, the first on this thread and the others on the workers, and
    /// returns their results in order once all are done. A job that panics fails.
    fn run<T: Send + 'static>(&self, jobs: Vec<Job<T>>) -> Vec<io::Result<T>> {
        let count = jobs.len();
        let (done, results) = mpsc::channel();
        let mut jobs = jobs.into_iter().enumerate();
        let here = jobs.next();
        for (i, job) in jobs {
            let done = done.clone();
            let wrapped: Box<dyn FnOnce() + Send> = Box::new(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .unwrap_or_else(|_| Err(io::Error::other("a store write panicked")));
                let _ = done.send((i, result));
            });
            match &self.jobs {
                Some(jobs) => {
                    if let Err(mpsc::SendError(wrapped)) = jobs.send(wrapped) {
                        wrapped();
                    }
                }
                None => wrapped(),
            }
        }
        let mut out: Vec<Option<io::Result<T>>> = (0..count).map(|_| None).collect();
        if let Some((i, job)) = here {
            out[i] = Some(job());
        }
        drop(done);
        for (i, result) in results.iter() {
            out[i] = Some(result);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("a store write was lost"))))
            .collect()
    }
}

/// The batch's failure, for each of its members.
fn again(e: &StoreError) -> StoreError {
    let copy = |source: &io::Error| match source.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(source.kind(), source.to_string()),
    };
    match e {
        StoreError::NoSpace(source) => StoreError::NoSpace(copy(source)),
        StoreError::Unavailable(source) => StoreError::Unavailable(copy(source)),
        StoreError::Hostile(why) => StoreError::Hostile(why.clone()),
        StoreError::Replaced(why) => StoreError::Replaced(why.clone()),
        StoreError::Stalled { started, bound } => StoreError::Stalled {
            started: *started,
            bound: *bound,
        },
        StoreError::Hung(bound) => StoreError::Hung(*bound),
        other => StoreError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
