//! Recovery: scan the sessions directory, repair what a crash or an older writer can
//! leave behind (at start-up), and resync the index with the disk after a failed write.
//! Every repair is logged at `warn`; nothing that does not parse is ever rewritten or
//! removed, only skipped and reported.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::StoreError;
use super::events::ChangeKind;
use super::fsio;
use super::index::{Entry, Skipped, most_recent_first};
use super::layout::{
    CURRENT_FILE, METADATA_FILE, OWN_ENTRIES, PENDING_PERSONA_FILE, PERSONA_FILE, Pointer,
};
use super::tx::Tx;
use crate::model::{CUSTOM_PERSONA, Metadata, SessionName, Status};

pub(super) struct Scan {
    pub sessions: HashMap<SessionName, Metadata>,
    pub skipped: BTreeMap<String, Skipped>,
    /// `None` when `.current.json` is missing or unreadable.
    pub pointer: Option<Pointer>,
}

/// Reads the sessions directory. `sweep` removes top-level temp entries too, which only
/// start-up may do: while serving, a create builds its directory there outside the
/// writer lock, and a health probe writes its file there.
pub(super) fn scan(dir: &Path, sweep: bool) -> Result<Scan, StoreError> {
    let mut candidates = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(fsio::TEMP_PREFIX) {
            if sweep {
                remove_temp(&path);
            }
        } else if !OWN_ENTRIES.contains(&file_name.as_str()) {
            candidates.push((path, file_name));
        }
    }
    // Every lookup below is relative to this descriptor: walking one or two path
    // components instead of the whole absolute path is most of a scan's kernel time.
    let root = fs::File::open(dir)?;
    let root = &root;
    // Reading thousands of small files is latency-bound: spread it over the cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = candidates.len().div_ceil(threads).max(256);
    let results: Vec<(PathBuf, String, Result<Metadata, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = candidates
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(path, name)| {
                            (path.clone(), name.clone(), read_session(root, path, name))
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
    for (path, file_name, result) in results {
        match result {
            Ok(metadata) => {
                sessions.insert(metadata.name.clone(), metadata);
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping an entry of the sessions directory");
                skipped.insert(file_name, Skipped { path, reason });
            }
        }
    }
    let pointer = read_pointer(dir);
    Ok(Scan {
        sessions,
        skipped,
        pointer,
    })
}

/// Reads one session directory, or says why it is not one.
fn read_session(root: &fs::File, path: &Path, file_name: &str) -> Result<Metadata, String> {
    let name = SessionName::parse(file_name).map_err(|e| format!("not a session: {e}"))?;
    let relative = |file: &str| format!("{file_name}/{file}");
    // One open tells a directory without metadata from a plain file: no extra stat.
    let bytes = read_at(root, &relative(METADATA_FILE)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{METADATA_FILE} is missing"),
        std::io::ErrorKind::NotADirectory => "not a session: not a directory".to_owned(),
        _ => format!("{METADATA_FILE} cannot be read: {e}"),
    })?;
    let metadata: Metadata = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{METADATA_FILE} does not parse: {e}"))?;
    if metadata.name != name {
        return Err(format!(
            "{METADATA_FILE} names '{}', not its directory '{name}'",
            metadata.name
        ));
    }
    // A rewrite interrupted inside the session leaves its temp file, under a fixed name.
    for file in [METADATA_FILE, PERSONA_FILE, PENDING_PERSONA_FILE] {
        let temp = relative(&fsio::temp_name(file));
        if rustix::fs::unlinkat(root, &temp, rustix::fs::AtFlags::empty()).is_ok() {
            tracing::warn!(path = %path.join(fsio::temp_name(file)).display(), "removed a temporary file left by an interrupted write");
        }
    }
    let pending = relative(PENDING_PERSONA_FILE);
    if rustix::fs::statat(root, &pending, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_err() {
        return Ok(metadata);
    }
    settle_pending_persona(path, &metadata)
        .map_err(|e| format!("an interrupted persona replacement cannot be settled: {e}"))?;
    Ok(metadata)
}

/// Reads a small file at `relative` under `root`, without the size probe `fs::read` makes.
fn read_at(root: &fs::File, relative: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        root,
        relative,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut bytes = Vec::with_capacity(1024);
    fs::File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A persona replacement stages the new persona and commits by writing metadata that
/// says "custom" (`Tx::replace_persona`): finish one that was committed, drop one that
/// was not. Called when `dir` holds a pending persona.
fn settle_pending_persona(dir: &Path, metadata: &Metadata) -> std::io::Result<()> {
    let pending = dir.join(PENDING_PERSONA_FILE);
    if metadata.persona.as_deref() == Some(CUSTOM_PERSONA) {
        tracing::warn!(path = %pending.display(), "finishing an interrupted persona replacement");
        fsio::move_file(dir, PENDING_PERSONA_FILE, PERSONA_FILE)
    } else {
        tracing::warn!(path = %pending.display(), "dropping a persona replacement that was not committed");
        fs::remove_file(&pending)
    }
}

fn remove_temp(path: &Path) {
    match fsio::remove_temp(path) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "removed a temporary entry left by an interrupted write")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a temporary entry")
        }
    }
}

fn read_pointer(dir: &Path) -> Option<Pointer> {
    let bytes = match fs::read(dir.join(CURRENT_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read {CURRENT_FILE}; rebuilding it from the sessions");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(pointer) => Some(pointer),
        Err(e) => {
            tracing::warn!(error = %e, "{CURRENT_FILE} does not parse; rebuilding it from the sessions");
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
    let scan = match scan(tx.root(), false) {
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
        tx.stage_removal(&name);
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
