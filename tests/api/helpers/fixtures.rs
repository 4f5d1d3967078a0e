//! Files and bodies to start from or compare with: JSON on disk, a valid custom persona,
//! sessions written as the original Python module writes them, the shipped library.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A persona object that passes validation.
pub fn custom_persona() -> Value {
    json!({
        "name": "Reviewer",
        "description": "Reviews diffs",
        "system_prompt": "Review the operator's changes.",
        "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 5, "effort": "high" },
        "color": "blue"
    })
}

/// Waits until `done` holds, checking every few milliseconds, for at most 10 seconds;
/// says whether it came to hold. For what the service does in the background.
pub async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    true
}

/// The names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The session directories in a sessions directory (the entries not starting with
/// '.', which are the store's own), sorted.
pub fn session_dirs(sessions_dir: &Path) -> Vec<String> {
    dir_names(sessions_dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Every file and directory under `root` (and `root` itself) with the bytes of each
/// file, in a fixed order: to show that nothing in it changed.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    if root.is_dir() {
        out.push((root.to_path_buf(), None));
        for name in dir_names(root) {
            out.extend(snapshot(&root.join(name)));
        }
    } else {
        out.push((root.to_path_buf(), Some(std::fs::read(root).unwrap())));
    }
    out
}

/// The `name` of each item of a list answer, in order.
pub fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| {
            item["name"]
                .as_str()
                .unwrap_or_else(|| panic!("no name: {item}"))
        })
        .collect()
}

/// Writes `value` as the original Python module does: `json.dumps(value, indent=2)`,
/// keys in the given order, no trailing newline.
pub fn write_python_json(path: &Path, value: &Value) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes a session directory as the original Python module leaves it: `metadata.json`
/// (as given) and `persona.json` (a byte copy of the shipped `default.json`).
pub fn write_python_session(sessions_dir: &Path, name: &str, metadata: &Value) {
    let dir = sessions_dir.join(name);
    write_python_json(&dir.join("metadata.json"), metadata);
    std::fs::write(dir.join("persona.json"), shipped_persona_text("default")).unwrap();
}

/// Metadata in the original module's field order.
pub fn python_metadata(name: &str, created: &str, last_active: &str, status: &str) -> Value {
    json!({
        "name": name,
        "created": created,
        "last_active": last_active,
        "persona": null,
        "pid": null,
        "status": status,
    })
}

/// The text of a persona of the repository's shipped library (`personas/<key>.json`).
pub fn shipped_persona_text(key: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("personas")
        .join(format!("{key}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A pid no process can have: Linux never hands out pids above 2^22
/// (`PID_MAX_LIMIT`), so a session recording it has a process that is `gone`.
pub const NO_SUCH_PID: i64 = (1 << 22) + 1;

/// The fields of a session answer computed at answer time from the machine and the
/// clock (`process`, `idle_seconds`), which generic comparisons with the stored metadata
/// leave out; the tests of those fields read them from a raw answer.
pub const LIVE_FIELDS: [&str; 2] = ["process", "idle_seconds"];

/// `value` with [`LIVE_FIELDS`] removed from every session in it (an object with a
/// `name` and a `status`), at any depth.
pub fn without_live_fields(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("name") && map.contains_key("status") {
                    for field in LIVE_FIELDS {
                        map.remove(field);
                    }
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// `metadata` as the API answers it: plus `dir` (less [`LIVE_FIELDS`]).
pub fn with_dir(metadata: &Value, dir: &Path) -> Value {
    let mut answer = metadata.clone();
    answer["dir"] = json!(dir.to_str().unwrap());
    answer
}

/// Copies a directory tree (files and directories only), as a template for a test.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The `pid_recorded` of `answer`, asserted to be a timestamp of the last minute.
pub fn recorded_now(answer: &Value) -> Value {
    let recorded = &answer["pid_recorded"];
    let at = recorded
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("pid_recorded is not a timestamp: {answer}"));
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(
        age.num_seconds() < 60 && age.num_seconds() > -1,
        "pid_recorded is not now: {answer}"
    );
    recorded.clone()
}
