//! The on-disk compatibility contract: a sessions directory written by the original
//! Python `SessionManager` (fixtures written by hand exactly as it writes them) is served
//! as it is, what the service writes stays readable by Python, and entries that are
//! corrupt or left by an interrupted write are handled at start-up.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// `metadata` with `fields` added after the original module's six.
fn with_fields(metadata: Value, fields: &Value) -> Value {
    let mut metadata = metadata;
    let object = metadata.as_object_mut().unwrap();
    for (key, value) in fields.as_object().unwrap() {
        object.insert(key.clone(), value.clone());
    }
    metadata
}

fn set(metadata: Value, field: &str, value: Value) -> Value {
    let mut metadata = metadata;
    metadata[field] = value;
    metadata
}

fn keys(value: &Value) -> Vec<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// The four sessions of a Python-written directory: aware timestamps with and without
/// microseconds, a non-UTC offset, naive timestamps (UTC), and unknown fields.
fn write_python_fixtures(sessions: &Path) {
    write_python_session(
        sessions,
        "alpha",
        &python_metadata(
            "alpha",
            "2025-03-01T08:00:00.123456+00:00",
            "2025-03-01T09:00:00+00:00",
            "idle",
        ),
    );
    write_python_session(
        sessions,
        "beta",
        &set(
            python_metadata(
                "beta",
                "2025-03-01T08:30:00.500000",
                "2025-03-01T09:30:00.250000",
                "idle",
            ),
            "persona",
            json!("planner"),
        ),
    );
    std::fs::write(
        sessions.join("beta").join("persona.json"),
        shipped_persona_text("planner"),
    )
    .unwrap();
    write_python_session(
        sessions,
        "gamma",
        &set(
            python_metadata(
                "gamma",
                "2025-03-01T07:00:00+00:00",
                "2025-03-01T10:00:00.000001+01:00",
                "suspended",
            ),
            "pid",
            json!(NO_SUCH_PID),
        ),
    );
    write_python_session(
        sessions,
        "delta",
        &with_fields(
            python_metadata(
                "delta",
                "2025-03-01T06:00:00.000042",
                "2025-03-01T09:00:00",
                "idle",
            ),
            &delta_extras(),
        ),
    );
}

fn delta_extras() -> Value {
    json!({
        "telegram_chat_id": 123456789,
        "tags": ["homelab", { "pinned": null }],
        "note": "kept by another tool"
    })
}

/// The fixtures as the service answers them: timestamps as instants in UTC.
fn expected_fixtures(app: &TestApp) -> Value {
    let alpha = python_metadata(
        "alpha",
        "2025-03-01T08:00:00.123456+00:00",
        "2025-03-01T09:00:00.000000+00:00",
        "idle",
    );
    let beta = set(
        python_metadata(
            "beta",
            "2025-03-01T08:30:00.500000+00:00",
            "2025-03-01T09:30:00.250000+00:00",
            "idle",
        ),
        "persona",
        json!("planner"),
    );
    let gamma = set(
        python_metadata(
            "gamma",
            "2025-03-01T07:00:00.000000+00:00",
            "2025-03-01T09:00:00.000001+00:00",
            "suspended",
        ),
        "pid",
        json!(NO_SUCH_PID),
    );
    let delta = with_fields(
        python_metadata(
            "delta",
            "2025-03-01T06:00:00.000042+00:00",
            "2025-03-01T09:00:00.000000+00:00",
            "idle",
        ),
        &delta_extras(),
    );
    // Most recent first; alpha and delta are the same instant, so by name.
    json!([
        with_dir(&beta, &app.session_dir("beta")),
        with_dir(&gamma, &app.session_dir("gamma")),
        with_dir(&alpha, &app.session_dir("alpha")),
        with_dir(&delta, &app.session_dir("delta")),
    ])
}

#[tokio::test]
async fn python_written_sessions_are_served_as_they_are() {
    let dirs = Dirs::new();
    write_python_fixtures(&dirs.sessions());
    let before = snapshot(&dirs.sessions());

    let app = TestApp::spawn(&dirs).await;

    let expected = expected_fixtures(&app);
    assert_eq!(app.list_sessions("").await, expected);
    for session in expected.as_array().unwrap() {
        let name = session["name"].as_str().unwrap();
        let got = app.session(name).await;
        assert_eq!(&got, session);
    }
    assert_eq!(
        app.list_sessions("?status=suspended").await,
        json!([expected[1]])
    );
    let persona = app.get_ok("/sessions/beta/persona").await;
    assert_eq!(persona, read_json(&dirs.personas().join("planner.json")));
    let health = app.health().await;
    // gamma is suspended, but its process is gone.
    assert_eq!(health["status"], "degraded");
    assert_eq!(
        health["problems"],
        json!(["1 session(s) are active or suspended but their process is gone: gamma"])
    );
    assert_eq!(health["skipped"], json!([]));
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    // Reading rewrote nothing.
    let after: Vec<_> = snapshot(&dirs.sessions())
        .into_iter()
        .filter(|(path, _)| {
            let name = path.file_name().unwrap().to_string_lossy();
            name != ".lock" && name != ".current.json"
        })
        .collect();
    assert_eq!(after, before);
    app.stop().await;
}

#[tokio::test]
async fn a_patch_keeps_unknown_fields_and_rewrites_timestamps_in_rfc3339() {
    let dirs = Dirs::new();
    write_python_fixtures(&dirs.sessions());
    let app = TestApp::spawn(&dirs).await;

    let patched = assert_json(
        app.patch("delta", &json!({ "pid": 77 })).await,
        StatusCode::OK,
    )
    .await;

    let expected = with_fields(
        json!({
            "name": "delta",
            "created": "2025-03-01T06:00:00.000042+00:00",
            "last_active": "2025-03-01T09:00:00.000000+00:00",
            "persona": null,
            "pid": 77,
            "status": "idle",
        }),
        &delta_extras(),
    );
    let mut on_disk = app.metadata_on_disk("delta");
    let recorded = on_disk
        .as_object_mut()
        .unwrap()
        .shift_remove("pid_recorded");
    assert!(
        recorded.as_ref().is_some_and(Value::is_string),
        "a recorded pid notes when"
    );
    assert_eq!(on_disk, expected);
    assert_eq!(
        keys(&on_disk),
        [
            "name",
            "created",
            "last_active",
            "persona",
            "pid",
            "status",
            "telegram_chat_id",
            "tags",
            "note"
        ]
    );
    let mut answered = with_dir(&expected, &app.session_dir("delta"));
    answered["pid_recorded"] = recorded.unwrap();
    assert_eq!(without_live_fields(patched), answered);
    assert_timestamp(&on_disk["created"]);
    assert_timestamp(&on_disk["last_active"]);
    app.stop().await;
}

#[tokio::test]
async fn a_switch_keeps_unknown_fields_of_both_sessions() {
    let dirs = Dirs::new();
    let sessions = dirs.sessions();
    write_python_session(
        &sessions,
        "one",
        &with_fields(
            python_metadata("one", "2025-03-01T08:00:00", "2025-03-01T08:00:00", "idle"),
            &json!({ "owner": "one" }),
        ),
    );
    write_python_session(
        &sessions,
        "two",
        &with_fields(
            python_metadata("two", "2025-03-01T08:00:00", "2025-03-01T08:00:00", "idle"),
            &json!({ "owner": "two", "history": [1, 2, 3] }),
        ),
    );
    let app = TestApp::spawn(&dirs).await;

    app.switched("one").await;
    app.switched("two").await;

    let one = app.metadata_on_disk("one");
    assert_eq!(one["status"], "suspended");
    assert_eq!(one["owner"], "one");
    let two = app.metadata_on_disk("two");
    assert_eq!(two["status"], "active");
    assert_eq!(two["owner"], "two");
    assert_eq!(two["history"], json!([1, 2, 3]));
    assert_eq!(two["created"], "2025-03-01T08:00:00.000000+00:00");
    assert!(
        assert_timestamp(&two["last_active"])
            > assert_timestamp(&json!("2025-03-01T08:00:00.000000+00:00"))
    );
    app.stop().await;
}

/// Runs `script` with `python3 -c`, or answers `None` when there is no python3.
fn python3(script: &str, args: &[&Path]) -> Option<String> {
    let output = match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            println!("skipped: python3 cannot be run ({e})");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

/// Reads sessions the way the original module does: `json.loads` of each file, and its
/// `list_sessions` order (the `last_active` strings, descending).
const PYTHON_READER: &str = r#"
import json, sys
from datetime import datetime
names = []
for d in sys.argv[1:]:
    with open(d + "/metadata.json") as f:
        m = json.load(f)
    assert list(m)[:6] == ["name", "created", "last_active", "persona", "pid", "status"], list(m)
    assert m["status"] in ("idle", "active", "suspended"), m
    assert m["pid"] is None or type(m["pid"]) is int, m
    assert m["persona"] is None or isinstance(m["persona"], str), m
    for key in ("created", "last_active"):
        t = datetime.fromisoformat(m[key])
        assert t.utcoffset().total_seconds() == 0, m
    with open(d + "/persona.json") as f:
        p = json.load(f)
    assert isinstance(p["settings"]["max_turns"], int), p
    names.append(m)
names.sort(key=lambda m: m.get("last_active") or "", reverse=True)
print(json.dumps([m["name"] for m in names]))
"#;

#[tokio::test]
async fn what_the_service_writes_is_readable_by_python() {
    // Kept by the test: python reads the session directories after the app stopped.
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("plain").await;
    app.create_session("planned", Some(json!("planner"))).await;
    app.create_session("custom", Some(custom_persona())).await;
    assert_json(
        app.patch("plain", &json!({ "pid": 4321, "status": "suspended" }))
            .await,
        StatusCode::OK,
    )
    .await;
    app.switched("planned").await;
    let order = json!(names(&app.list_sessions("").await));
    let session_dirs: Vec<PathBuf> = ["plain", "planned", "custom"]
        .iter()
        .map(|n| app.session_dir(n))
        .collect();
    app.stop().await;

    let args: Vec<&Path> = session_dirs.iter().map(PathBuf::as_path).collect();
    let Some(stdout) = python3(PYTHON_READER, &args) else {
        return;
    };

    let python_order: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(python_order, order);
}

#[tokio::test]
async fn of_two_active_sessions_without_a_record_the_most_recent_is_current() {
    let dirs = Dirs::new();
    let sessions = dirs.sessions();
    let older = set(
        python_metadata(
            "older",
            "2025-03-01T08:00:00+00:00",
            "2025-03-01T09:00:00.000000+00:00",
            "active",
        ),
        "pid",
        json!(11),
    );
    write_python_session(&sessions, "older", &older);
    let newer = set(
        python_metadata(
            "newer",
            "2025-03-01T08:00:00",
            "2025-03-01T09:30:00",
            "active",
        ),
        "pid",
        json!(22),
    );
    write_python_session(&sessions, "newer", &newer);
    write_python_session(
        &sessions,
        "quiet",
        &python_metadata(
            "quiet",
            "2025-03-01T10:00:00+00:00",
            "2025-03-01T10:00:00+00:00",
            "idle",
        ),
    );
    assert!(!sessions.join(".current.json").exists());

    let app = TestApp::spawn(&dirs).await;

    let current = app.current().await;
    assert_eq!(current["active"], "newer");
    let newer_now = json!({
        "name": "newer",
        "created": "2025-03-01T08:00:00.000000+00:00",
        "last_active": "2025-03-01T09:30:00.000000+00:00",
        "persona": null,
        "pid": 22,
        "status": "active",
    });
    assert_eq!(
        current["session"],
        with_dir(&newer_now, &app.session_dir("newer"))
    );
    // Rewritten: suspended, and its timestamps in the service's format.
    let older_now = set(
        set(older, "status", json!("suspended")),
        "created",
        json!("2025-03-01T08:00:00.000000+00:00"),
    );
    assert_eq!(app.metadata_on_disk("older"), older_now);
    assert_eq!(
        app.list_sessions("?status=active").await,
        json!([with_dir(&newer_now, &app.session_dir("newer"))])
    );
    assert_eq!(
        app.list_sessions("?status=suspended").await,
        json!([with_dir(&older_now, &app.session_dir("older"))])
    );
    assert_eq!(app.metadata_on_disk("quiet")["status"], "idle");
    assert_eq!(
        read_json(&app.sessions_dir.join(".current.json"))["name"],
        "newer"
    );
    assert_eq!(
        app.switched("quiet").await,
        json!({ "previous": "newer", "active": "quiet", "changed": true })
    );
    assert_eq!(app.metadata_on_disk("newer")["status"], "suspended");
    app.stop().await;
}

/// Corrupt entries next to one good session; returns their names.
fn write_corrupt_fixtures(sessions: &Path) -> Vec<&'static str> {
    write_python_session(
        sessions,
        "good",
        &python_metadata(
            "good",
            "2025-03-01T08:00:00+00:00",
            "2025-03-01T08:00:00+00:00",
            "idle",
        ),
    );
    std::fs::create_dir_all(sessions.join("broken")).unwrap();
    std::fs::write(
        sessions.join("broken/metadata.json"),
        "{\n  \"name\": \"broken\",\n  \"created\": \"2025-",
    )
    .unwrap();
    std::fs::write(sessions.join("broken/persona.json"), "{}").unwrap();
    std::fs::create_dir_all(sessions.join("empty/.claude")).unwrap();
    std::fs::write(sessions.join("empty/persona.json"), "{}").unwrap();
    std::fs::write(sessions.join("plainfile"), "not a session\n").unwrap();
    write_python_session(
        sessions,
        "mismatch",
        &python_metadata(
            "other",
            "2025-03-01T08:00:00+00:00",
            "2025-03-01T08:00:00+00:00",
            "idle",
        ),
    );
    write_python_session(
        sessions,
        "badstamp",
        &python_metadata("badstamp", "yesterday", "today", "idle"),
    );
    write_python_session(
        sessions,
        "badstatus",
        &python_metadata(
            "badstatus",
            "2025-03-01T08:00:00+00:00",
            "2025-03-01T08:00:00+00:00",
            "running",
        ),
    );
    vec![
        "badstamp",
        "badstatus",
        "broken",
        "empty",
        "mismatch",
        "plainfile",
    ]
}

#[tokio::test]
async fn corrupt_entries_are_not_listed_and_are_reported_by_healthz() {
    let dirs = Dirs::new();
    let corrupt = write_corrupt_fixtures(&dirs.sessions());

    let app = TestApp::spawn(&dirs).await;

    let good = app.list_sessions("").await;
    assert_eq!(good.as_array().unwrap().len(), 1);
    assert_eq!(good[0]["name"], "good");
    let health = app.health().await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["sessions"]["total"], 1);
    let mut reported: Vec<(String, String)> = health["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    reported.sort();
    let paths: Vec<&str> = reported.iter().map(|(p, _)| p.as_str()).collect();
    let expected: Vec<String> = corrupt
        .iter()
        .map(|n| app.session_dir(n).to_string_lossy().into_owned())
        .collect();
    assert_eq!(paths, expected);
    for (path, reason) in &reported {
        assert!(!reason.is_empty(), "{path}");
        if !path.ends_with("plainfile") {
            assert!(reason.contains("metadata.json"), "{path}: {reason}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn requests_naming_a_corrupt_entry_are_409_and_change_nothing() {
    let dirs = Dirs::new();
    let corrupt = write_corrupt_fixtures(&dirs.sessions());
    let before: Vec<_> = corrupt
        .iter()
        .map(|n| snapshot(&dirs.sessions().join(n)))
        .collect();
    let app = TestApp::spawn(&dirs).await;

    for name in &corrupt {
        let path = format!("/sessions/{name}");
        let persona_path = format!("{path}/persona");
        let answers = [
            ("GET", app.get(&path).await),
            ("PATCH", app.patch(name, &json!({ "pid": 1 })).await),
            (
                "PATCH status",
                app.patch(name, &json!({ "status": "suspended" })).await,
            ),
            ("DELETE", app.delete(&path).await),
            ("POST", app.create_session(name, None).await),
            ("switch", app.switch(name).await),
            ("GET persona", app.get(&persona_path).await),
            (
                "PUT persona",
                app.send_json(Method::PUT, &persona_path, &custom_persona())
                    .await,
            ),
        ];
        for (what, response) in answers {
            let problem = assert_problem(response, StatusCode::CONFLICT, "corrupt-entry").await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains("corrupt"), "{what} {name}: {detail}");
            assert!(detail.contains(name), "{what} {name}: {detail}");
        }
        let head = app.head(&path).await;
        assert_eq!(head.status(), StatusCode::CONFLICT, "HEAD {name}");
    }

    let after: Vec<_> = corrupt
        .iter()
        .map(|n| snapshot(&dirs.sessions().join(n)))
        .collect();
    assert_eq!(after, before);
    assert!(!dirs.sessions().join(".archive").exists());
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    app.stop().await;

    // Still skipped, and still untouched, after a restart.
    let app = TestApp::spawn(&dirs).await;
    assert_eq!(
        app.health().await["skipped"].as_array().unwrap().len(),
        corrupt.len()
    );
    app.stop().await;
    let again: Vec<_> = corrupt
        .iter()
        .map(|n| snapshot(&dirs.sessions().join(n)))
        .collect();
    assert_eq!(again, before);
}

fn good_session(sessions: &Path) -> Value {
    let metadata = python_metadata(
        "good",
        "2025-03-01T08:00:00+00:00",
        "2025-03-01T08:00:00+00:00",
        "idle",
    );
    write_python_session(sessions, "good", &metadata);
    metadata
}

async fn assert_only_good_is_served(app: &TestApp) {
    let served = python_metadata(
        "good",
        "2025-03-01T08:00:00.000000+00:00",
        "2025-03-01T08:00:00.000000+00:00",
        "idle",
    );
    assert_eq!(
        app.list_sessions("").await,
        json!([with_dir(&served, &app.session_dir("good"))])
    );
    let health = app.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["skipped"], json!([]));
}

#[tokio::test]
async fn stray_temporary_entries_at_the_top_level_are_removed_on_start() {
    let dirs = Dirs::new();
    let sessions = dirs.sessions();
    let metadata = good_session(&sessions);
    std::fs::write(sessions.join(".tmp-a1b2c3"), "{\"name\": \"half").unwrap();
    write_python_json(&sessions.join(".tmp-staged/metadata.json"), &metadata);
    std::fs::write(sessions.join(".tmp-staged/persona.json"), "{}").unwrap();

    let app = TestApp::spawn(&dirs).await;

    let temps: Vec<String> = dir_names(&app.sessions_dir)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert_eq!(temps, Vec::<String>::new());
    assert_only_good_is_served(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn stray_temporary_entries_inside_a_session_are_removed_after_start() {
    let dirs = Dirs::new();
    let sessions = dirs.sessions();
    good_session(&sessions);
    let good = sessions.join("good");
    // Left by an interrupted rewrite: the store writes a session's files through
    // temp files named after them (src/store/fsio.rs, `temp_name`).
    std::fs::write(good.join(".tmp-metadata.json"), "{\"name\": \"go").unwrap();
    std::fs::write(good.join(".tmp-metadata.json.0123456789abcdef"), "{\"na").unwrap();
    std::fs::write(good.join(".tmp-persona.json"), "{\"na").unwrap();
    // One that is a symlink is removed itself, never what it points to.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("kept"), "outside").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("kept"),
        good.join(".tmp-persona.json.1"),
    )
    .unwrap();
    // The Claude Code CLI's own files are never touched, whatever their names: one
    // with the same prefix but not named after a file of the store, and one deeper.
    std::fs::write(good.join(".tmp-settings.json.42"), "cli temp").unwrap();
    std::fs::create_dir_all(good.join(".claude")).unwrap();
    std::fs::write(good.join(".claude/.tmp-metadata.json"), "cli state").unwrap();
    let metadata_bytes = std::fs::read(good.join("metadata.json")).unwrap();
    let persona_bytes = std::fs::read(good.join("persona.json")).unwrap();

    let app = TestApp::spawn(&dirs).await;

    // Only garbage: a sweep removes it once the service is up, without holding it.
    let good = app.session_dir("good");
    let expected = [
        ".claude",
        ".tmp-settings.json.42",
        "metadata.json",
        "persona.json",
    ];
    let swept = eventually(|| dir_names(&good) == expected).await;
    assert!(swept, "left after the sweep: {:?}", dir_names(&good));
    assert_eq!(
        std::fs::read_to_string(outside.path().join("kept")).unwrap(),
        "outside"
    );
    assert_eq!(
        std::fs::read_to_string(good.join(".tmp-settings.json.42")).unwrap(),
        "cli temp"
    );
    assert_eq!(
        std::fs::read_to_string(good.join(".claude/.tmp-metadata.json")).unwrap(),
        "cli state"
    );
    assert_eq!(
        std::fs::read(good.join("metadata.json")).unwrap(),
        metadata_bytes
    );
    assert_eq!(
        std::fs::read(good.join("persona.json")).unwrap(),
        persona_bytes
    );
    assert_only_good_is_served(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn an_interrupted_persona_replacement_is_settled_before_the_session_is_served() {
    let dirs = Dirs::new();
    let sessions = dirs.sessions();
    let at = "2025-03-01T08:00:00+00:00";
    let staged: Value = serde_json::from_str(&shipped_persona_text("planner")).unwrap();
    // Committed: the metadata already says "custom"; the staged persona is moved in.
    let mut committed = python_metadata("committed", at, at, "idle");
    committed["persona"] = json!("custom");
    write_python_session(&sessions, "committed", &committed);
    write_python_json(&sessions.join("committed/.pending-persona.json"), &staged);
    // Not committed: the metadata names a persona of the library; the staged one goes.
    let uncommitted = python_metadata("uncommitted", at, at, "idle");
    write_python_session(&sessions, "uncommitted", &uncommitted);
    let before = std::fs::read(sessions.join("uncommitted/persona.json")).unwrap();
    write_python_json(&sessions.join("uncommitted/.pending-persona.json"), &staged);

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(app.get_ok("/sessions/committed/persona").await, staged);
    assert_eq!(
        dir_names(&app.session_dir("committed")),
        ["metadata.json", "persona.json"]
    );
    assert_eq!(
        std::fs::read(app.session_dir("uncommitted").join("persona.json")).unwrap(),
        before
    );
    assert_eq!(
        dir_names(&app.session_dir("uncommitted")),
        ["metadata.json", "persona.json"]
    );
    assert_eq!(app.health().await["skipped"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_stored_dir_field_never_shadows_the_computed_one() {
    let dirs = Dirs::new();
    let mut metadata = good_session(&dirs.sessions());
    metadata["dir"] = json!("/somewhere/else");
    write_python_json(&dirs.sessions().join("good/metadata.json"), &metadata);
    let app = TestApp::spawn(&dirs).await;

    let text = app.get("/sessions/good").await.text().await.unwrap();
    assert_eq!(text.matches("\"dir\"").count(), 1, "{text}");
    let served: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(served["dir"], json!(app.session_dir("good")));
    // Kept on disk as it was: it is someone else's field.
    assert_eq!(app.metadata_on_disk("good")["dir"], "/somewhere/else");
    app.stop().await;
}

#[tokio::test]
async fn a_session_persona_that_is_not_a_valid_persona_is_409_and_kept() {
    let dirs = Dirs::new();
    good_session(&dirs.sessions());
    let persona_path = dirs.sessions().join("good/persona.json");
    for bad in ["{}", "[1, 2]", "{\"name\": \"x\"", ""] {
        std::fs::write(&persona_path, bad).unwrap();
        let app = TestApp::spawn(&dirs).await;
        let problem = assert_problem(
            app.get("/sessions/good/persona").await,
            StatusCode::CONFLICT,
            "corrupt-entry",
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("good/persona.json"), "{detail}");
        assert!(detail.contains("corrupt"), "{detail}");
        assert_eq!(std::fs::read_to_string(&persona_path).unwrap(), bad);
        app.stop().await;
    }
}
