//! Recovery: scan the sessions directory, repair what a crash or an older writer can
//! leave behind (at start-up), and resync the index with the disk after a failed write.
//! Every repair is logged at `warn`; nothing that does not parse is ever rewritten or
//! removed, only skipped and reported.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use super::error::StoreError;
use super::events::ChangeKind;
use super::fsio::{self, Refusal};
use super::index::{Entry, Skipped, most_recent_first};
use super::layout::{
    CURRENT_FILE, METADATA_FILE, OWN_ENTRIES, PENDING_PERSONA_FILE, PERSONA_FILE, Pointer,
    RESTORE_FILE,
};
use super::lock::Root;
use super::tx::Tx;
use crate::limits::BODY_LIMIT;
use crate::model::{CUSTOM_PERSONA, Metadata, SessionName, Status};

pub(super) struct Scan {
    pub sessions: HashMap<SessionName, Metadata>,
    pub skipped: BTreeMap<String, Skipped>,
    /// `None` when `.current.json` is missing or unreadable.
    pub pointer: Option<Pointer>,
}

/// When a scan runs, which decides what it may repair.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// Before serving, alone in the directory: top-level temp entries are removed too.
    /// Session directories are not listed: the temp files inside them are left to
    /// [`super::sweep`], which runs once the service is up.
    Start,
    /// While serving, under the writer lock: top-level temp entries stay (a create
    /// builds its directory there outside the writer lock, and a health probe writes
    /// its file there); each session directory is listed and its temp files removed.
    Resync,
}

/// Reads the sessions directory, repairing what `pass` may.
pub(super) fn scan(root: &Root, pass: Pass) -> Result<Scan, StoreError> {
    let mut candidates = Vec::new();
    for name in fsio::entries(root.fd())? {
        if name.starts_with(fsio::TEMP_PREFIX) {
            if pass == Pass::Start {
                remove_temp(root, &name);
            }
        } else if !OWN_ENTRIES.contains(&name.as_str()) {
            candidates.push(name);
        }
    }
    let fd = root.fd();
    // Reading thousands of small files is latency-bound: spread it over the cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = candidates.len().div_ceil(threads).max(256);
    let results: Vec<(String, Result<Metadata, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = candidates
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    // One listing buffer per thread, reused for every session it lists.
                    let mut buf = match pass {
                        Pass::Start => Vec::new(),
                        Pass::Resync => vec![std::mem::MaybeUninit::uninit(); LISTING_BUFFER],
                    };
                    part.iter()
                        .map(|name| {
                            let buf = (pass == Pass::Resync).then_some(buf.as_mut_slice());
                            (name.clone(), read_session(fd, name, buf))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a scan thread panicked"))
            .collect()
    });
    let mut sessions = HashMap::with_capacity(results.len());
    let mut skipped = BTreeMap::new();
    for (file_name, result) in results {
        match result {
            Ok(metadata) => {
                sessions.insert(metadata.name.clone(), metadata);
            }
            Err(reason) => {
                let path = root.path().join(&file_name);
                tracing::warn!(path = %path.display(), %reason, "skipping an entry of the sessions directory");
                skipped.insert(file_name, Skipped { path, reason });
            }
        }
    }
    let pointer = read_pointer(root);
    Ok(Scan {
        sessions,
        skipped,
        pointer,
    })
}

/// The buffer a scan thread lists session directories with: a few entries fit many
/// times over, and a directory with more takes more than one `getdents`.
pub(super) const LISTING_BUFFER: usize = 8 * 1024;

/// What a session directory holds besides its files: what an interrupted write left.
#[derive(Default)]
pub(super) struct Leftovers {
    /// This service's temp files (a rewrite interrupted inside the session).
    pub temps: Vec<String>,
    /// A persona replacement that did not finish (`Tx::replace_persona`).
    pending_persona: bool,
    /// A restore that did not finish (`archive::finish_restore`).
    restore: bool,
}

impl Leftovers {
    /// At start-up: only the two names that change what is served, each looked up
    /// (absent, the normal case, is a negative lookup the kernel caches). Listing the
    /// directory costs more than both on ext4, and the temp files it would find are
    /// only garbage: [`super::sweep`] removes them once the service is up.
    fn looked_up(dir: BorrowedFd<'_>) -> Result<Self, String> {
        let present =
            |name: &str| match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            {
                Ok(_) => Ok(true),
                Err(rustix::io::Errno::NOENT) => Ok(false),
                Err(e) => Err(format!("the session directory cannot be read ({e})")),
            };
        Ok(Self {
            temps: Vec::new(),
            restore: present(RESTORE_FILE)?,
            pending_persona: present(PENDING_PERSONA_FILE)?,
        })
    }

    /// While serving, under the writer lock: everything, temp files included, from one
    /// listing (also the sweep's, [`super::sweep`]).
    pub(super) fn listed(
        dir: BorrowedFd<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Result<Self, String> {
        let mut left = Self::default();
        fsio::each_entry(dir, buf, |entry| {
            let Ok(entry) = std::str::from_utf8(entry) else {
                return;
            };
            if is_own_temp(entry) {
                left.temps.push(entry.to_owned());
            } else if entry == PENDING_PERSONA_FILE {
                left.pending_persona = true;
            } else if entry == RESTORE_FILE {
                left.restore = true;
            }
        })
        .map_err(|e| format!("the session directory cannot be listed ({e})"))?;
        Ok(left)
    }
}

/// Reads one session directory, or says why it is not one. The reason names the kind of
/// what is wrong, never the content of a file. What an interrupted write left that
/// changes what is served is settled first; `buf` is `None` at start-up (see
/// [`Leftovers::looked_up`]), and otherwise the buffer the directory is listed with.
fn read_session(
    root: BorrowedFd<'_>,
    file_name: &str,
    buf: Option<&mut [std::mem::MaybeUninit<u8>]>,
) -> Result<Metadata, String> {
    let name = SessionName::parse(file_name).map_err(|e| format!("not a session: {e}"))?;
    let dir = fsio::open_dir_at(root, file_name).map_err(|e| match e {
        Refusal::WrongKind { is, .. } => format!("not a session: {is}, not a directory"),
        other => format!("the session directory {other}"),
    })?;
    let left = match buf {
        None => Leftovers::looked_up(dir.as_fd())?,
        Some(buf) => Leftovers::listed(dir.as_fd(), buf)?,
    };
    if left.restore {
        super::archive::finish_restore(dir.as_fd(), file_name);
    }
    let bytes = fsio::read_capped_at(&dir, METADATA_FILE, BODY_LIMIT)
        .map_err(|e| format!("{METADATA_FILE} {e}"))?;
    let metadata = crate::model::metadata_from_disk(&bytes)
        .map_err(|e| format!("{METADATA_FILE} does not parse: {e}"))?;
    if metadata.name != name {
        return Err(format!(
            "{METADATA_FILE} names another session than its directory '{name}'"
        ));
    }
    remove_temps(dir.as_fd(), file_name, &left.temps);
    if left.pending_persona {
        settle_pending_persona(dir.as_fd(), file_name, &metadata)
            .map_err(|e| format!("an interrupted persona replacement cannot be settled ({e})"))?;
    }
    Ok(metadata)
}

/// Removes `temps`, this service's temp files in the session directory `dir`: a rewrite
/// interrupted inside the session leaves one. The caller holds the writer lock, since a
/// write creates them there.
pub(super) fn remove_temps(dir: BorrowedFd<'_>, file_name: &str, temps: &[String]) {
    for entry in temps {
        if rustix::fs::unlinkat(dir, entry.as_str(), rustix::fs::AtFlags::empty()).is_ok() {
            tracing::warn!(path = %format!("{file_name}/{entry}"), "removed a temporary file left by an interrupted write");
        }
    }
}

/// Whether `entry`, in a session directory, is a temp file this service writes there
/// (the session directory is shared with the CLI, whose entries are never touched).
fn is_own_temp(entry: &str) -> bool {
    entry.strip_prefix(fsio::TEMP_PREFIX).is_some_and(|rest| {
        [METADATA_FILE, PERSONA_FILE, PENDING_PERSONA_FILE]
            .iter()
            .any(|file| rest.starts_with(file))
    })
}

/// A persona replacement stages the new persona and commits by writing metadata that
/// says "custom" (`Tx::replace_persona`): finish one that was committed, drop one that
/// was not. A pending persona that is not a regular file was never written by the
/// service: it is removed, not moved into place.
fn settle_pending_persona(
    dir: BorrowedFd<'_>,
    file_name: &str,
    metadata: &Metadata,
) -> std::io::Result<()> {
    let path = format!("{file_name}/{PENDING_PERSONA_FILE}");
    let regular = rustix::fs::statat(
        dir,
        PENDING_PERSONA_FILE,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file());
    if regular && metadata.persona.as_deref() == Some(CUSTOM_PERSONA) {
        tracing::warn!(%path, "finishing an interrupted persona replacement");
        fsio::move_at(dir, PENDING_PERSONA_FILE, PERSONA_FILE)
    } else {
        tracing::warn!(%path, "dropping a persona replacement that was not committed");
        fsio::remove_tree_at(dir, PENDING_PERSONA_FILE, 0)
    }
}

fn remove_temp(root: &Root, name: &str) {
    let path = root.path().join(name);
    // The service's own temp entries are files, or session directories one level deep.
    match fsio::remove_tree_at(root.fd(), name, 1) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "removed a temporary entry left by an interrupted write")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary entry")
        }
    }
}

fn read_pointer(root: &Root) -> Option<Pointer> {
    let bytes = match fsio::read_capped_at(root.fd(), CURRENT_FILE, BODY_LIMIT) {
        Ok(bytes) => bytes,
        Err(Refusal::Missing) => return None,
        Err(e) => {
            tracing::warn!("{CURRENT_FILE} {e}; rebuilding it from the sessions");
            return None;
        }
    };
    match crate::model::from_disk(&bytes) {
        Ok(pointer) => Some(pointer),
        Err(e) => {
            tracing::warn!("{CURRENT_FILE} does not parse ({e}); rebuilding it from the sessions");
            None
        }
    }
}

/// Brings the store back to the rules of SPEC §3 after a crash or an older writer:
/// finishes an interrupted switch, forgets a current session that is gone, and leaves
/// at most one session `active`, the current one.
pub(super) fn repair(tx: &mut Tx<'_>, had_pointer: bool) -> Result<(), StoreError> {
    let mut active: Vec<Arc<Entry>> = tx
        .index()
        .sessions
        .values()
        .filter(|e| e.metadata.status == Status::Active)
        .cloned()
        .collect();
    active.sort_by(|a, b| most_recent_first(a, b));
    if !had_pointer {
        // The original module kept the current session in memory only: the most
        // recently activated `active` session is the best record of it.
        let adopted = active.first().map(|e| e.metadata.name.clone());
        if let Some(name) = &adopted {
            tracing::warn!(session = %name, "no record of the current session; adopting the active one");
        }
        tx.write_pointer(Pointer {
            name: adopted,
            ..Pointer::default()
        })?;
    }
    tx.settle()?;
    let current = tx.pointer().name;
    for entry in active {
        let name = &entry.metadata.name;
        if Some(name) != current.as_ref() && tx.get(name)?.metadata.status == Status::Active {
            tracing::warn!(session = %name, "an active session that is not current; marking it suspended");
            tx.set_status(name, Status::Suspended, None)?;
        }
    }
    Ok(())
}

/// After a storage failure the disk can hold more than the transaction published:
/// a step that fails after its rename (the fsync of the directory, or the next file
/// of a switch) leaves the renamed file in place. Reads must still say what is on
/// disk, and a switch committed there must not stay half done, so read the
/// directory again and settle it, both at best: the storage is failing.
pub(super) fn resync(tx: &mut Tx<'_>) {
    let scan = match scan(tx.root(), Pass::Resync) {
        Ok(scan) => scan,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the sessions directory again after a failed write");
            return;
        }
    };
    let index = tx.index();
    let gone: Vec<SessionName> = index
        .sessions
        .keys()
        .filter(|n| !scan.sessions.contains_key(*n) && !scan.skipped.contains_key(n.as_str()))
        .cloned()
        .collect();
    let changed: Vec<(ChangeKind, Metadata)> = scan
        .sessions
        .into_values()
        .filter_map(|metadata| match index.sessions.get(&metadata.name) {
            None => Some((ChangeKind::Created, metadata)),
            Some(old) if old.metadata != metadata => Some((ChangeKind::Updated, metadata)),
            Some(_) => None,
        })
        .collect();
    let pointer = scan.pointer.filter(|p| *p != index.pointer);
    drop(index);
    for name in gone {
        tx.stage_removal(ChangeKind::Dropped, &name);
    }
    for (kind, metadata) in changed {
        tx.stage(kind, metadata);
    }
    if let Some(pointer) = pointer {
        tx.stage_pointer(pointer);
    }
    if let Err(e) = tx.settle() {
        tracing::warn!(error = %e, "cannot settle the store after a failed write");
    }
    tx.publish();
}
