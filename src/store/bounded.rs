//! Writes bounded in time: [`Store::bounded`] runs a job on the blocking pool and gives
//! up waiting for it after `--write-timeout`, and [`Gate`] is where a job commits to
//! running, so that a job whose caller gave up before it started never starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::Store;
use super::error::StoreError;
use super::tx::Shared;

impl Store {
    /// Runs `job` on the blocking pool, answering [`StoreError::Stalled`] when it takes
    /// longer than the write bound. A job that has not passed its [`Gate`] by then never
    /// does; one that has keeps running (a write is never abandoned half done), and
    /// until it ends `/healthz` is unhealthy and every write is refused at once, so that
    /// hung storage neither piles up blocking threads nor hides behind a healthy probe.
    pub(super) async fn bounded<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Gate) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let bound = self.shared.write_timeout;
        let gate = Gate {
            state: Arc::new(AtomicU8::new(Gate::WAITING)),
            shared: self.shared.clone(),
        };
        let job_gate = gate.clone();
        let mut task = tokio::task::spawn_blocking(move || {
            let result = job(&job_gate);
            job_gate.leave();
            result
        });
        if let Ok(joined) = tokio::time::timeout(bound, &mut task).await {
            return joined?;
        }
        match gate.overrun() {
            Some(started) => Err(StoreError::Stalled { started, bound }),
            // It finished just now.
            None => task.await?,
        }
    }
}

/// Where a bounded job commits to running: before it, a job whose caller gave up is
/// dropped; after it, the job runs to its end, and one still running past its bound is
/// counted in `Shared::overdue`.
#[derive(Clone)]
pub(super) struct Gate {
    state: Arc<AtomicU8>,
    shared: Arc<Shared>,
}

impl Gate {
    const WAITING: u8 = 0;
    const RUNNING: u8 = 1;
    const ABANDONED: u8 = 2;
    const OVERDUE: u8 = 3;
    const DONE: u8 = 4;

    fn swap(&self, from: u8, to: u8) -> Result<u8, u8> {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Called by the job: `Err` when its caller already gave up on it.
    pub fn enter(&self) -> Result<(), StoreError> {
        self.swap(Self::WAITING, Self::RUNNING)
            .map(drop)
            .map_err(|_| StoreError::Stalled {
                started: false,
                bound: self.shared.write_timeout,
            })
    }

    /// Called when the job ends, whatever its outcome.
    fn leave(&self) {
        if self.state.swap(Self::DONE, Ordering::AcqRel) == Self::OVERDUE {
            self.shared.overdue.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("a write that overran its bound has finished; taking writes again");
        }
    }

    /// Called by the caller when the bound is over: whether the job had started (and so
    /// may still apply), or `None` when it has just finished.
    fn overrun(&self) -> Option<bool> {
        match self.swap(Self::WAITING, Self::ABANDONED) {
            Ok(_) => Some(false),
            Err(Self::RUNNING) if self.swap(Self::RUNNING, Self::OVERDUE).is_ok() => {
                self.shared.overdue.fetch_add(1, Ordering::AcqRel);
                tracing::error!(
                    bound_s = self.shared.write_timeout.as_secs(),
                    "a write did not finish within its bound; the storage is not responding"
                );
                Some(true)
            }
            Err(_) => None,
        }
    }
}
