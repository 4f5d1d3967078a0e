//! The store's invariants seen from outside: `check_store` looks at a running instance
//! through its API and at its directory, and says what it saw and what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::app::check_persona;
use super::binary::BinaryServer;
use super::fixtures::{dir_names, read_json, without_live_fields};

/// Every entry under `dir` (recursively, `.archive` excepted) whose name starts with
/// the store's temp prefix.
pub fn temp_entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            found.push(entry.path());
        } else if name != ".archive" && entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(temp_entries(&entry.path()));
        }
    }
    found
}

/// A session as the service serves it and as it is on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSeen {
    /// `metadata.json`, as served without `dir` (checked equal to the file).
    pub metadata: Value,
    /// `persona.json`, as served (checked equal to the file).
    pub persona: Value,
}

/// What `check_store` saw.
#[derive(Debug, Clone, Default)]
pub struct StoreSeen {
    pub sessions: BTreeMap<String, SessionSeen>,
    pub current: Option<String>,
    pub health: Value,
}

/// The persona library on disk, by key.
pub fn library_on_disk(personas: &Path) -> BTreeMap<String, Value> {
    let mut library = BTreeMap::new();
    for entry in std::fs::read_dir(personas).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let key = path.file_stem().unwrap().to_string_lossy().into_owned();
            library.insert(key, read_json(&path));
        }
    }
    library
}

/// Checks a running instance against SPEC §1, §3 and §6 from outside, through its API
/// and its directory; returns what it saw and every violation, described.
///
/// - `/healthz` answers 200 and skips nothing;
/// - the sessions served are exactly the session directories on disk, each with a
///   `metadata.json` that parses, names its own directory and equals what is served,
///   and a valid `persona.json` that agrees with `metadata.persona` (a library key's
///   persona, or the default one for null);
/// - no temporary entry, and nothing but `.claude` beside the two files;
/// - at most one session `active`, and it is the current one; the current one is
///   listed and not `suspended`; `.current.json` names what is served as current.
pub async fn check_store(
    server: &BinaryServer,
    sessions_dir: &Path,
    personas_dir: &Path,
) -> (StoreSeen, Vec<String>) {
    let mut seen = StoreSeen::default();
    let mut violations = Vec::new();
    let mut fail = |v: String| violations.push(v);
    let get = |path: String| async move {
        server
            .call(Method::GET, &path, None)
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    };

    match get("/healthz".into()).await {
        Ok((StatusCode::OK, health)) => {
            if health["skipped"].as_array().is_none_or(|s| !s.is_empty()) {
                fail(format!("/healthz skips entries: {}", health["skipped"]));
            }
            seen.health = health;
        }
        Ok((status, body)) => fail(format!("/healthz answered {status}: {body}")),
        Err(e) => fail(e),
    }
    let listed = match get("/sessions".into()).await {
        Ok((StatusCode::OK, Value::Array(list))) => list,
        other => {
            fail(format!("GET /sessions: {other:?}"));
            Vec::new()
        }
    };
    let current = match get("/sessions/active".into()).await {
        Ok((StatusCode::OK, body)) => body["active"].as_str().map(str::to_owned),
        other => {
            fail(format!("GET /sessions/active: {other:?}"));
            None
        }
    };
    seen.current = current.clone();

    // Temp files inside session directories are removed by a sweep after start-up.
    super::fixtures::eventually(|| temp_entries(sessions_dir).is_empty()).await;
    for temp in temp_entries(sessions_dir) {
        fail(format!("a temporary entry is left: {}", temp.display()));
    }
    let library = library_on_disk(personas_dir);
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(sessions_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            on_disk.push(name);
        }
    }
    on_disk.sort();
    let mut served: Vec<String> = listed
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    served.sort();
    if served != on_disk {
        fail(format!(
            "served sessions {served:?} are not the session directories on disk {on_disk:?}"
        ));
    }

    let mut active = Vec::new();
    for listed in &listed {
        let Some(name) = listed["name"].as_str() else {
            fail(format!("a listed session has no name: {listed}"));
            continue;
        };
        let dir = sessions_dir.join(name);
        let metadata: Value = match std::fs::read(dir.join("metadata.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                fail(format!("{name}/metadata.json does not parse: {e}"));
                continue;
            }
        };
        if metadata["name"] != name {
            fail(format!("{name}/metadata.json names {}", metadata["name"]));
        }
        let mut served_metadata = without_live_fields(listed.clone());
        served_metadata.as_object_mut().unwrap().remove("dir");
        if served_metadata != metadata {
            fail(format!(
                "{name}: served {served_metadata} but metadata.json holds {metadata}"
            ));
        }
        for extra in dir_names(&dir) {
            if extra.starts_with('.') && extra != ".claude" {
                fail(format!("{name}/{extra} is left beside the session's files"));
            }
        }
        let persona = match std::fs::read(dir.join("persona.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                fail(format!("{name}/persona.json does not parse: {e}"));
                continue;
            }
        };
        if let Err(e) = check_persona(persona.clone()) {
            fail(format!("{name}/persona.json is not a valid persona: {e}"));
        }
        match get(format!("/sessions/{name}/persona")).await {
            Ok((StatusCode::OK, p)) if p == persona => {}
            other => fail(format!(
                "{name}: persona served {other:?}, on disk {persona}"
            )),
        }
        let expected = match &metadata["persona"] {
            Value::Null => library.get("default"),
            Value::String(key) if key == "custom" => None,
            Value::String(key) => match library.get(key) {
                Some(p) => Some(p),
                None => {
                    fail(format!(
                        "{name}: metadata names persona {key:?}, not in the library"
                    ));
                    None
                }
            },
            other => {
                fail(format!("{name}: metadata persona is {other}"));
                None
            }
        };
        if expected.is_some_and(|p| *p != persona) {
            fail(format!(
                "{name}: metadata says persona {} but persona.json is {:?} (half a replacement?)",
                metadata["persona"], persona["description"]
            ));
        }
        let status = metadata["status"].as_str().unwrap_or_default().to_owned();
        if !["idle", "active", "suspended"].contains(&status.as_str()) {
            fail(format!("{name}: status {status:?}"));
        }
        if status == "active" {
            active.push(name.to_owned());
        }
        if current.as_deref() == Some(name) && status == "suspended" {
            fail(format!("{name} is current but suspended"));
        }
        seen.sessions
            .insert(name.to_owned(), SessionSeen { metadata, persona });
    }
    if active.len() > 1 {
        fail(format!("more than one session is active: {active:?}"));
    }
    if let Some(name) = active
        .first()
        .filter(|a| current.as_deref() != Some(a.as_str()))
    {
        fail(format!(
            "{name} is active but the current session is {current:?}"
        ));
    }
    if let Some(current) = current.as_ref().filter(|c| !seen.sessions.contains_key(*c)) {
        fail(format!("the current session {current} is not listed"));
    }
    let pointer = std::fs::read(sessions_dir.join(".current.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match pointer {
        Some(p) if p["name"].as_str() == current.as_deref() => {}
        other => fail(format!(
            ".current.json is {other:?} but the current session served is {current:?}"
        )),
    }
    (seen, violations)
}
