//! The Claude Code CLI's transcripts of a session's conversations, read only: where the
//! CLI keeps one, and the last user and assistant messages of it. Never written, never
//! moved. No HTTP here.
//!
//! The CLI appends a conversation's transcript, one JSON object a line, to
//! `<config dir>/projects/<slug>/<conversation id>.jsonl`, where the slug is the
//! absolute path of the directory it ran in with every character but an ASCII letter or
//! digit replaced by `-` ([`project_slug`]). The config dir is the operator's choice and
//! trusted (symlinks in its own path included); everything below it is written by the
//! CLI, whose shell runs in every session, so it is looked up relative to the config
//! dir's descriptor through `fsio`: no symlink followed, no FIFO blocking a read, only a
//! regular file read, and only its last [`WINDOW_BYTES`], of which at most [`MAX_LINES`]
//! lines are looked at. The slug and the file name are built from a canonical session
//! directory and a [`ConversationId`] (a UUID), so neither holds a `/` or is `..`.

mod lines;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::model::ConversationId;
use crate::store::fsio::{self, Refusal};

pub use lines::{MAX_LINES, Message, Role, Tail};

/// How many messages a tail has when none is asked for, and the most it may have.
pub const DEFAULT_TAIL: usize = 20;
pub const MAX_TAIL: usize = 200;
/// The most of a transcript's end that is read: a long conversation's file grows to
/// tens of MiB (tool results are kept whole), and a planted one may be any size.
pub const WINDOW_BYTES: u64 = 8 * 1024 * 1024;
/// The longest slug the CLI uses as it is; a longer one is cut and given a hash suffix.
const MAX_SLUG_LEN: usize = 200;
/// The CLI's directory of transcripts, in its config dir.
const PROJECTS_DIR: &str = "projects";

/// Why a transcript cannot be read. Reasons name the kind of entry, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error(
        "the Claude Code config directory is not known (HOME is not set); start the service \
         with --claude-config-dir"
    )]
    NoConfigDir,
    #[error(
        "{} does not exist: the transcript was never written, was deleted by the Claude Code \
         CLI (it deletes transcripts older than its cleanupPeriodDays setting, 30 days by \
         default), or is in another Claude config directory (--claude-config-dir)",
        .0.display()
    )]
    Missing(PathBuf),
    #[error("the transcript is not read: {} {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    #[error("{} cannot be read: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Where the CLI keeps transcripts: `<config dir>/projects`.
#[derive(Debug, Clone)]
pub struct Transcripts {
    config_dir: Option<PathBuf>,
}

impl Transcripts {
    /// `None` when no config dir is known: every read is then [`TranscriptError::NoConfigDir`].
    pub fn new(config_dir: Option<PathBuf>) -> Self {
        Self { config_dir }
    }

    pub fn config_dir(&self) -> Option<&Path> {
        self.config_dir.as_deref()
    }

    /// The last `count` user and assistant messages of `conversation`'s transcript.
    /// Blocking: call it off the async runtime.
    pub fn tail(
        &self,
        session_dir: &Path,
        conversation: ConversationId,
        count: usize,
    ) -> Result<Tail, TranscriptError> {
        let config_dir = self
            .config_dir
            .as_deref()
            .ok_or(TranscriptError::NoConfigDir)?;
        let projects_path = config_dir.join(PROJECTS_DIR);
        let root = fsio::open_dir(config_dir).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => TranscriptError::Missing(config_dir.to_path_buf()),
            _ => TranscriptError::Io {
                path: config_dir.to_path_buf(),
                source,
            },
        })?;
        let projects = fsio::open_dir_at(&root, PROJECTS_DIR)
            .map_err(|refusal| refused(&projects_path, refusal))?;
        let name = file_name(conversation);
        let (dir, mut file, size) =
            open_transcript(&projects, &project_slug(session_dir), &name)
                .map_err(|(dir, refusal)| refused(&projects_path.join(dir).join(&name), refusal))?;
        let (window, whole) =
            read_window(&mut file, size).map_err(|source| TranscriptError::Io {
                path: projects_path.join(dir).join(&name),
                source,
            })?;
        Ok(lines::tail(&window, whole, count))
    }
}

fn refused(path: &Path, refusal: Refusal) -> TranscriptError {
    match refusal {
        Refusal::Missing => TranscriptError::Missing(path.to_path_buf()),
        other => TranscriptError::Refused {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// `<conversation id>.jsonl`: a UUID's hex digits and hyphens, so never a path of more
/// than one component, nor `.` or `..`.
fn file_name(conversation: ConversationId) -> String {
    let name = format!("{conversation}.jsonl");
    assert!(is_plain_name(&name), "a conversation id is a UUID");
    name
}

/// Whether `name` is one path component that names an entry of its directory.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The directory name the CLI files the transcripts of a directory under: its path
/// with every character but an ASCII letter or digit replaced by `-` (nothing squeezed:
/// `/home/a_b/.x` is `-home-a-b--x`). The CLI works in UTF-16 code units, so a
/// character outside the Basic Multilingual Plane becomes two. The result is made of
/// letters, digits and `-` only.
pub fn project_slug(dir: &Path) -> String {
    let mut slug = String::new();
    for c in dir.to_string_lossy().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else {
            slug.extend(std::iter::repeat_n('-', c.len_utf16()));
        }
    }
    slug
}

/// Opens `<slug>/<name>` in `projects`. A slug longer than the CLI keeps is cut by it
/// and given a hash suffix that depends on the JavaScript runtime it ran on, so such a
/// directory is found by its cut prefix, as the CLI's own tools find it: the first
/// such directory that holds the file. Gives the directory it was found in, or the one
/// it was looked for in.
fn open_transcript(
    projects: &OwnedFd,
    slug: &str,
    name: &str,
) -> Result<(String, File, u64), (String, Refusal)> {
    let open = |dir_name: &str| {
        assert!(is_plain_name(dir_name), "a slug is letters, digits and '-'");
        let dir = fsio::open_dir_at(projects, dir_name)?;
        let (file, size) = fsio::open_regular_at(dir.as_fd(), name)?;
        Ok((dir_name.to_owned(), file, size))
    };
    if slug.len() <= MAX_SLUG_LEN {
        return open(slug).map_err(|refusal| (slug.to_owned(), refusal));
    }
    let prefix = format!("{}-", &slug[..MAX_SLUG_LEN]);
    let mut candidates: Vec<String> = fsio::entries(projects.as_fd())
        .map_err(|e| (slug.to_owned(), Refusal::Io(e)))?
        .into_iter()
        .filter(|entry| entry.starts_with(&prefix))
        .collect();
    candidates.sort();
    let mut first_refusal = None;
    for candidate in candidates {
        match open(&candidate) {
            Ok(found) => return Ok(found),
            Err(Refusal::Missing) => {}
            Err(refusal) => {
                first_refusal.get_or_insert((candidate, refusal));
            }
        }
    }
    Err(first_refusal.unwrap_or_else(|| (format!("{prefix}*"), Refusal::Missing)))
}

/// The last [`WINDOW_BYTES`] of the file, from the start of its first whole line, and
/// whether that is the whole file.
fn read_window(file: &mut File, size: u64) -> io::Result<(Vec<u8>, bool)> {
    let start = size.saturating_sub(WINDOW_BYTES);
    // The byte before the window says whether the window starts a line.
    let from = start.saturating_sub(1);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(usize::try_from(size - from).unwrap_or(0));
    // The file may have grown since fstat: what came after is left for the next read.
    file.take(size - from).read_to_end(&mut bytes)?;
    if start == 0 {
        return Ok((bytes, true));
    }
    match bytes.iter().position(|b| *b == b'\n') {
        Some(newline) => drop(bytes.drain(..=newline)),
        // One line longer than the window: nothing whole is in it.
        None => bytes.clear(),
    }
    Ok((bytes, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slug_replaces_every_other_character_without_squeezing() {
        assert_eq!(project_slug(Path::new("/home/a_b/.x")), "-home-a-b--x");
        assert_eq!(
            project_slug(Path::new("/srv/sessions/work-1")),
            "-srv-sessions-work-1"
        );
        // `/`, `é`, `/`, and the two UTF-16 units of the emoji.
        assert_eq!(project_slug(Path::new("/tmp/é/🙂")), "-tmp-----");
    }

    #[test]
    fn names_from_ids_are_single_components() {
        let id = ConversationId::parse("0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20").unwrap();
        assert_eq!(file_name(id), "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20.jsonl");
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(is_plain_name(&project_slug(Path::new("/../x/.."))));
    }

    #[test]
    fn a_slug_the_cli_cut_is_found_by_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let long = Path::new("/srv").join("s".repeat(250));
        let slug = project_slug(&long);
        let name = "c.jsonl";
        let projects = fsio::open_dir(dir.path()).unwrap();
        let missing = open_transcript(&projects, &slug, name).unwrap_err();
        assert_eq!(missing.0, format!("{}-*", &slug[..MAX_SLUG_LEN]));
        // Another directory with the same prefix, without the file, is passed over.
        for suffix in ["-0other", "-1hash"] {
            std::fs::create_dir(
                dir.path()
                    .join(format!("{}{suffix}", &slug[..MAX_SLUG_LEN])),
            )
            .unwrap();
        }
        let found = dir.path().join(format!("{}-1hash", &slug[..MAX_SLUG_LEN]));
        std::fs::write(found.join(name), "{}\n").unwrap();
        let (at, _, size) = open_transcript(&projects, &slug, name).unwrap();
        assert_eq!(
            (at.as_str(), size),
            (found.file_name().unwrap().to_str().unwrap(), 3)
        );
    }

    #[test]
    fn a_window_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let line = format!("{}\n", "x".repeat(1023));
        let lines = usize::try_from(WINDOW_BYTES / 1024).unwrap() + 3;
        std::fs::write(&path, line.repeat(lines)).unwrap();
        let mut file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let (window, whole) = read_window(&mut file, size).unwrap();
        assert!(!whole);
        assert_eq!(window.len(), usize::try_from(WINDOW_BYTES).unwrap());
        assert!(window.starts_with(b"xxx") && window.ends_with(b"x\n"));

        std::fs::write(&path, "{}\n{}\n").unwrap();
        let (window, whole) = read_window(&mut File::open(&path).unwrap(), 6).unwrap();
        assert_eq!((window.as_slice(), whole), (&b"{}\n{}\n"[..], true));
    }
}
