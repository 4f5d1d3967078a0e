//! The sweep after start-up: removes the temp files an interrupted write left inside
//! session directories, which the start-up scan does not list (`recover::Pass::Start`).
//! They are only garbage, so they need not hold up the start: one pass over the
//! sessions, on a thread of its own, once the store is open.
//!
//! A write creates its temp files inside a session directory under the writer lock, so
//! the sweep lists and unlinks under it too, a chunk of directories at a time, letting
//! writes in between. It holds the store weakly: when the last handle is dropped it
//! stops, and it stops for good once the sessions directory is found replaced.

use std::os::fd::AsFd;
use std::sync::{Arc, Weak};

use super::fsio::{self, Refusal};
use super::recover::{LISTING_BUFFER, Leftovers, remove_temps};
use super::tx::Shared;
use crate::model::SessionName;

/// Session directories swept per hold of the writer lock.
const CHUNK: usize = 64;

/// Starts the sweep of `shared`'s session directories on a thread of its own.
pub(super) fn start(shared: &Arc<Shared>) {
    let names: Vec<SessionName> = shared.index().sessions.keys().cloned().collect();
    if names.is_empty() {
        return;
    }
    let shared = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("temp-sweep".into())
        .spawn(move || sweep(&shared, &names));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the sweep of temporary files; they stay until the next start");
    }
}

/// Sweeps the directories of `names`, the sessions served at start.
fn sweep(shared: &Weak<Shared>, names: &[SessionName]) {
    let mut buf = vec![std::mem::MaybeUninit::uninit(); LISTING_BUFFER];
    for chunk in names.chunks(CHUNK) {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let _writer = shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        // As before a write: never into a directory another instance may own now.
        if shared.root.check().is_err() {
            return;
        }
        for name in chunk {
            // Deleted or renamed since the start: no longer a session of this name.
            if !shared.index().sessions.contains_key(name) {
                continue;
            }
            let dir = match fsio::open_dir_at(shared.root.fd(), name.as_str()) {
                Ok(dir) => dir,
                Err(Refusal::Missing) => continue,
                Err(e) => {
                    tracing::warn!(session = %name, error = %e, "cannot sweep the session directory");
                    continue;
                }
            };
            match Leftovers::listed(dir.as_fd(), &mut buf) {
                Ok(left) => remove_temps(dir.as_fd(), name.as_str(), &left.temps),
                Err(reason) => {
                    tracing::warn!(session = %name, %reason, "cannot sweep the session directory")
                }
            }
        }
    }
}
