//! The persona library: the shipped personas embedded in the binary, the first-start
//! seeding of `<personas_dir>`, and the read-only, validated library served from it.
//!
//! The library is loaded into memory at start-up; a file that is not a valid persona is
//! skipped and reported, never served and never rewritten.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::limits::BODY_LIMIT;
use crate::model::PersonaKey;
use crate::store::{Skipped, fsio};

/// The library shipped with the service (`personas/` at the repository's top level).
pub const SHIPPED: [(&str, &str); 4] = [
    ("default", include_str!("../personas/default.json")),
    ("brainstorm", include_str!("../personas/brainstorm.json")),
    ("planner", include_str!("../personas/planner.json")),
    ("research", include_str!("../personas/research.json")),
];

#[derive(Debug, Default)]
pub struct Library {
    pub personas: BTreeMap<PersonaKey, Value>,
    pub skipped: Vec<Skipped>,
}

/// The persona library, as loaded from `<personas_dir>`.
#[derive(Debug)]
pub struct Personas {
    dir: PathBuf,
    library: RwLock<Arc<Library>>,
    /// Held through a whole reload (SIGHUP and `POST /personas/reload` may come at
    /// once), so each reload starts from the library the one before it made: the
    /// previous version it keeps of a broken file is the latest good one.
    reloading: Mutex<()>,
}

impl Personas {
    /// Seeds `dir` with the shipped library when it is missing or holds no persona
    /// file (never overwriting a file), then loads it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        seed(dir)?;
        let personas = Self {
            dir: dir.to_path_buf(),
            library: RwLock::default(),
            reloading: Mutex::default(),
        };
        personas.reload()?;
        Ok(personas)
    }

    /// Reads the library from disk again and swaps it in whole. A persona whose file
    /// fails now but loaded before keeps its previous version (and the failure is
    /// reported), so a typo in an edited file never takes a persona away. Returns the
    /// library now served; on `Err`, the one served before stays.
    pub fn reload(&self) -> io::Result<Arc<Library>> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.library();
        let library = Arc::new(load(&self.dir, &previous)?);
        *self.library.write().unwrap_or_else(|e| e.into_inner()) = library.clone();
        Ok(library)
    }

    pub fn library(&self) -> Arc<Library> {
        self.library
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn get(&self, key: &PersonaKey) -> Option<Value> {
        self.library().personas.get(key).cloned()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn persona_key(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(".json")
}

fn seed(dir: &Path) -> io::Result<()> {
    fsio::ensure_dir(dir)?;
    let fd = fsio::open_dir(dir)?;
    let has_persona = fsio::entries(fd.as_fd())?
        .iter()
        .any(|name| persona_key(name).is_some());
    if has_persona {
        return Ok(());
    }
    for (key, text) in SHIPPED {
        let file_name = format!("{key}.json");
        if fsio::create_at(fd.as_fd(), &file_name, text.as_bytes())? {
            tracing::info!(persona = key, dir = %dir.display(), "seeded the persona library");
        }
    }
    Ok(())
}

fn load(dir: &Path, previous: &Library) -> io::Result<Library> {
    let fd = fsio::open_dir(dir)?;
    let mut library = Library::default();
    let mut names = fsio::entries(fd.as_fd())?;
    names.sort();
    for file_name in names {
        if file_name.starts_with(fsio::TEMP_PREFIX) {
            continue;
        }
        let path = dir.join(&file_name);
        match read_persona(fd.as_fd(), &file_name) {
            Ok((key, value)) => {
                library.personas.insert(key, value);
            }
            Err((key, mut reason)) => {
                if let Some((key, value)) = key.and_then(|k| previous.personas.get_key_value(&k)) {
                    reason.push_str("; the previous version is still served");
                    library.personas.insert(key.clone(), value.clone());
                }
                tracing::warn!(path = %path.display(), %reason, "skipping an entry of the persona library");
                library.skipped.push(Skipped { path, reason });
            }
        }
    }
    Ok(library)
}

/// Reads one entry of the library, or says why it is not a persona (with its key, when
/// the name is one). The reason names the kind of problem, never the content.
fn read_persona(
    dir: BorrowedFd<'_>,
    file_name: &str,
) -> Result<(PersonaKey, Value), (Option<PersonaKey>, String)> {
    let not_a_persona = || (None, "not a persona: expected a <key>.json file".to_owned());
    let stem = persona_key(file_name).ok_or_else(not_a_persona)?;
    let key = PersonaKey::parse(stem).map_err(|e| (None, format!("not a persona: {e}")))?;
    let bytes = fsio::read_capped_at(dir, file_name, BODY_LIMIT)
        .map_err(|e| (Some(key.clone()), format!("the file {e}")))?;
    let value = crate::model::persona_from_disk(&bytes)
        .map_err(|e| (Some(key.clone()), format!("not a valid persona: {e}")))?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Persona;
    use std::fs;

    #[test]
    fn shipped_personas_are_valid_and_distinct() {
        let mut prompts = Vec::new();
        for (key, text) in SHIPPED {
            let value: Value = serde_json::from_str(text).unwrap();
            let persona = Persona::from_value(value).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(persona.settings.model, "claude-sonnet-4-20250514");
            assert!(persona.system_prompt.contains("the operator"), "{key}");
            prompts.push(persona.system_prompt);
        }
        prompts.dedup();
        assert_eq!(prompts.len(), SHIPPED.len());
    }

    #[test]
    fn seeding_never_overwrites_and_load_skips_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("personas");
        let personas = Personas::open(&lib).unwrap();
        assert_eq!(personas.library().personas.len(), 4);

        fs::write(lib.join("default.json"), "{\"edited\": true}").unwrap();
        fs::write(lib.join("notes.txt"), "hello").unwrap();
        let personas = Personas::open(&lib).unwrap();
        let library = personas.library();
        assert_eq!(
            fs::read_to_string(lib.join("default.json")).unwrap(),
            "{\"edited\": true}"
        );
        let keys: Vec<_> = library.personas.keys().map(PersonaKey::as_str).collect();
        assert_eq!(keys, ["brainstorm", "planner", "research"]);
        let reasons: Vec<_> = library.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "not a valid persona: missing field `name` at line 1 column 16",
                "not a persona: expected a <key>.json file"
            ]
        );
    }

    #[test]
    fn a_reload_keeps_the_previous_version_of_a_persona_whose_file_broke() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("personas");
        let personas = Personas::open(&lib).unwrap();
        let before = personas.get(&"planner".parse().unwrap()).unwrap();
        fs::write(lib.join("planner.json"), "{\"name\": ").unwrap();
        personas.reload().unwrap();
        let library = personas.library();
        assert_eq!(library.personas.len(), 4);
        assert_eq!(personas.get(&"planner".parse().unwrap()).unwrap(), before);
        assert_eq!(library.skipped.len(), 1);
        assert!(
            library.skipped[0]
                .reason
                .ends_with("; the previous version is still served"),
            "{:?}",
            library.skipped[0]
        );
        // A file that never loaded has no previous version to keep.
        fs::write(lib.join("fresh.json"), "[]").unwrap();
        personas.reload().unwrap();
        assert!(personas.get(&"fresh".parse().unwrap()).is_none());
    }
}
