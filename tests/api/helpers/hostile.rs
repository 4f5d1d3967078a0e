//! A hostile tree (SPEC §6, STYLE "A hostile tree"): what a shell in a session directory
//! can plant — a symlink to a directory outside the service's two, a huge sparse file —
//! and that outside directory, compared byte for byte. It holds [`SECRET`], which must
//! never be in an answer (see `probe`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::fixtures::{custom_persona, python_metadata};

/// What the files outside the service's directories hold: no answer may contain it.
pub const SECRET: &str = "OUTSIDE-SECRET-4711";

/// A temp directory apart from both service directories, where planted symlinks point.
pub struct Outside {
    dir: TempDir,
}

/// An entry of a tree, as seen without following symlinks.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
    Other(String),
}

/// Every entry under a root (the root itself as ""), by relative path.
pub type Tree = BTreeMap<PathBuf, Node>;

impl Outside {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` (its parents created) with `bytes`; returns its path.
    pub fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A valid persona whose system prompt holds [`SECRET`].
    pub fn persona(&self, name: &str) -> PathBuf {
        self.file(name, secret_persona().to_string())
    }

    /// A directory `name` that is a valid session called `session` in every respect but
    /// where it is: metadata (with [`SECRET`] in a field of its own) and a persona.
    pub fn session(&self, name: &str, session: &str) -> PathBuf {
        let mut metadata = python_metadata(
            session,
            "2026-01-02T03:04:05.000006+00:00",
            "2026-01-02T03:04:05.000006+00:00",
            "idle",
        );
        metadata["note"] = json!(SECRET);
        self.file(&format!("{name}/metadata.json"), metadata.to_string());
        self.persona(&format!("{name}/persona.json"));
        self.path().join(name)
    }

    /// Everything in it now, byte for byte.
    pub fn snapshot(&self) -> Tree {
        let mut tree = Tree::new();
        walk(self.path(), Path::new(""), &mut tree);
        tree
    }

    /// `Err` naming each entry that differs from `before`.
    pub fn unchanged_since(&self, before: &Tree) -> Result<(), String> {
        let now = self.snapshot();
        let mut paths: Vec<&PathBuf> = before.keys().chain(now.keys()).collect();
        paths.sort();
        paths.dedup();
        let changes: Vec<String> = paths
            .into_iter()
            .filter(|p| before.get(*p) != now.get(*p))
            .map(|p| match (before.get(p), now.get(p)) {
                (None, Some(n)) => format!("{} appeared ({})", p.display(), describe(n)),
                (Some(_), None) => format!("{} disappeared", p.display()),
                (_, n) => format!("{} changed (now {})", p.display(), describe(n.unwrap())),
            })
            .collect();
        if changes.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the directory outside the service's changed: {}",
                changes.join("; ")
            ))
        }
    }
}

fn walk(path: &Path, relative: &Path, tree: &mut Tree) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let kind = meta.file_type();
    let node = if kind.is_symlink() {
        Node::Symlink(std::fs::read_link(path).unwrap())
    } else if kind.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            let name = entry.unwrap().file_name();
            walk(&path.join(&name), &relative.join(&name), tree);
        }
        Node::Dir
    } else if kind.is_file() {
        Node::File(std::fs::read(path).unwrap())
    } else {
        Node::Other(format!("{kind:?}"))
    };
    tree.insert(relative.to_path_buf(), node);
}

fn describe(node: &Node) -> String {
    match node {
        Node::File(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        other => format!("{other:?}"),
    }
}

/// A valid persona whose system prompt holds [`SECRET`].
pub fn secret_persona() -> Value {
    let mut persona = custom_persona();
    persona["system_prompt"] = json!(format!("Tell no one: {SECRET}"));
    persona
}

/// Puts a symlink at `at` pointing to `target`, replacing the file or directory there.
pub fn plant_symlink(at: &Path, target: &Path) {
    remove_entry(at);
    std::os::unix::fs::symlink(target, at)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", at.display()));
}

/// Puts a sparse file of `len` bytes at `at`, replacing the file there.
pub fn plant_sparse_file(at: &Path, len: u64) {
    remove_entry(at);
    std::fs::File::create_new(at)
        .and_then(|file| file.set_len(len))
        .unwrap_or_else(|e| panic!("sparse file {}: {e}", at.display()));
}

fn remove_entry(at: &Path) {
    match std::fs::symlink_metadata(at) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(at).unwrap(),
        Ok(_) => std::fs::remove_file(at).unwrap(),
        Err(_) => {}
    }
}

/// The JSON in `path`, which must be a regular file itself, not a symlink to one.
pub fn regular_json(path: &Path) -> Result<Value, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{} is not a regular file: {:?}",
            path.display(),
            meta.file_type()
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}
