//! The persona library: the shipped personas embedded in the binary, the first-start
//! seeding of `<personas_dir>`, and the read-only, validated library served from it.
//!
//! The library is loaded into memory at start-up; a file that is not a valid persona is
//! skipped and reported, never served and never rewritten.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::model::{Persona, PersonaKey};
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
}

impl Personas {
    /// Seeds `dir` with the shipped library when it is missing or holds no persona
    /// file (never overwriting a file), then loads it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        seed(dir)?;
        let personas = Self {
            dir: dir.to_path_buf(),
            library: RwLock::default(),
        };
        personas.reload()?;
        Ok(personas)
    }

    /// Reads the library from disk again and swaps it in whole.
    pub fn reload(&self) -> io::Result<()> {
        let library = Arc::new(load(&self.dir)?);
        *self.library.write().unwrap_or_else(|e| e.into_inner()) = library;
        Ok(())
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

fn is_persona_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "json")
}

fn seed(dir: &Path) -> io::Result<()> {
    fsio::ensure_dir(dir)?;
    let has_persona = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .any(|entry| is_persona_file(&entry.path()));
    if has_persona {
        return Ok(());
    }
    for (key, text) in SHIPPED {
        let file_name = format!("{key}.json");
        if fsio::create_file(dir, &file_name, text.as_bytes())? {
            tracing::info!(persona = key, dir = %dir.display(), "seeded the persona library");
        }
    }
    Ok(())
}

fn load(dir: &Path) -> io::Result<Library> {
    let mut library = Library::default();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name.starts_with(fsio::TEMP_PREFIX) {
            continue;
        }
        match read_persona(&path) {
            Ok((key, value)) => {
                library.personas.insert(key, value);
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping an entry of the persona library");
                library.skipped.push(Skipped { path, reason });
            }
        }
    }
    library.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(library)
}

fn read_persona(path: &Path) -> Result<(PersonaKey, Value), String> {
    if !is_persona_file(path) || !path.is_file() {
        return Err("not a persona: expected a <key>.json file".into());
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = PersonaKey::parse(&stem).map_err(|e| format!("not a persona: {e}"))?;
    let bytes = fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("does not parse: {e}"))?;
    Persona::from_value(value.clone()).map_err(|e| format!("not a valid persona: {e}"))?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "not a valid persona: missing field `name`",
                "not a persona: expected a <key>.json file"
            ]
        );
    }
}
