//! The in-memory index and the disk agree: after every kind of write, every read route
//! answers exactly what the session directories and `.current.json` hold, and so does
//! a restarted app; and a list answers a write as soon as it is acknowledged.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::Path;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A session as stored: its `metadata.json` and `persona.json`.
struct Stored {
    metadata: Value,
    persona: Value,
}

/// Everything the store holds on disk: the session directories, by name, and the name
/// in `.current.json` (null when the file is missing or names none).
fn read_disk(sessions_dir: &Path) -> (BTreeMap<String, Stored>, Value) {
    let mut sessions = BTreeMap::new();
    for name in dir_names(sessions_dir) {
        if name.starts_with('.') {
            continue;
        }
        let dir = sessions_dir.join(&name);
        let stored = Stored {
            metadata: read_json(&dir.join("metadata.json")),
            persona: read_json(&dir.join("persona.json")),
        };
        assert_eq!(
            stored.metadata["name"],
            name.as_str(),
            "{name}/metadata.json"
        );
        sessions.insert(name, stored);
    }
    let pointer = sessions_dir.join(".current.json");
    let current = if pointer.exists() {
        read_json(&pointer)["name"].clone()
    } else {
        Value::Null
    };
    (sessions, current)
}

/// Reads the store from disk and asserts that `GET /sessions` (whole, and filtered by
/// each status), `GET /sessions/{name}`, `GET /sessions/{name}/persona` and
/// `GET /sessions/active` answer exactly it. `step` names the write just made.
async fn assert_index_matches_disk(app: &TestApp, step: &str) {
    let (sessions, current) = read_disk(&app.sessions_dir);

    // Most recently active first, timestamps compared as instants, ties by name.
    let mut expected: Vec<(&String, &Stored)> = sessions.iter().collect();
    expected.sort_by_key(|(name, stored)| {
        (
            Reverse(assert_timestamp(&stored.metadata["last_active"])),
            *name,
        )
    });
    let expected: Vec<Value> = expected
        .iter()
        .map(|(name, stored)| with_dir(&stored.metadata, &app.session_dir(name)))
        .collect();
    assert_eq!(
        app.list_sessions("").await,
        json!(expected),
        "GET /sessions after {step}"
    );
    for status in ["idle", "active", "suspended"] {
        let filtered: Vec<&Value> = expected.iter().filter(|s| s["status"] == status).collect();
        assert_eq!(
            app.list_sessions(&format!("?status={status}")).await,
            json!(filtered),
            "GET /sessions?status={status} after {step}"
        );
    }

    for (name, stored) in &sessions {
        assert_eq!(
            app.session(name).await,
            with_dir(&stored.metadata, &app.session_dir(name)),
            "GET /sessions/{name} after {step}"
        );
        assert_eq!(
            app.get_ok(&format!("/sessions/{name}/persona")).await,
            stored.persona,
            "GET /sessions/{name}/persona after {step}"
        );
    }

    let session = match current.as_str() {
        Some(name) => {
            let stored = sessions
                .get(name)
                .unwrap_or_else(|| panic!(".current.json names {name}, which is gone ({step})"));
            with_dir(&stored.metadata, &app.session_dir(name))
        }
        None => Value::Null,
    };
    assert_eq!(
        app.current().await,
        json!({ "active": current, "session": session }),
        "GET /sessions/active after {step}"
    );
    let active: Vec<&String> = sessions
        .iter()
        .filter(|(_, s)| s.metadata["status"] == "active")
        .map(|(name, _)| name)
        .collect();
    assert!(
        active.is_empty() || (active.len() == 1 && current == active[0].as_str()),
        "active on disk {active:?}, current {current} after {step}"
    );
}

#[tokio::test]
async fn the_index_and_the_disk_agree_after_every_kind_of_write_and_after_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    assert_index_matches_disk(&app, "start").await;

    let create = |name: &'static str, persona: Option<Value>| {
        let app = &app;
        async move {
            assert_json(app.create_session(name, persona).await, StatusCode::CREATED).await;
            assert_index_matches_disk(app, &format!("create {name}")).await;
        }
    };
    create("plain", None).await;
    create("library", Some(json!("research"))).await;
    create("own", Some(custom_persona())).await;

    let patch = |name: &'static str, body: Value| {
        let app = &app;
        async move {
            assert_json(app.patch(name, &body).await, StatusCode::OK).await;
            assert_index_matches_disk(app, &format!("PATCH {name} {body}")).await;
        }
    };
    patch("plain", json!({ "pid": 4242 })).await;
    patch("library", json!({ "status": "suspended" })).await;
    patch("library", json!({ "pid": 7, "status": "idle" })).await;

    let switch = |name: &'static str, changed: bool| {
        let app = &app;
        async move {
            let answer = app.switched(name).await;
            assert_eq!(answer["changed"], changed, "switch to {name}: {answer}");
            assert_index_matches_disk(app, &format!("switch to {name}")).await;
        }
    };
    switch("plain", true).await;
    switch("plain", false).await;
    patch("plain", json!({ "status": "idle" })).await;
    switch("library", true).await;
    patch("plain", json!({ "pid": null })).await;

    let answer = assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;
    assert_eq!(answer["previous"], "library");
    assert_index_matches_disk(&app, "clear current").await;
    let answer = assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;
    assert_eq!(answer["changed"], false);
    assert_index_matches_disk(&app, "clear with none current").await;

    assert_json(
        app.send_json(Method::PUT, "/sessions/library/persona", &custom_persona())
            .await,
        StatusCode::OK,
    )
    .await;
    assert_index_matches_disk(&app, "persona replace").await;

    switch("own", true).await;
    assert_eq!(
        app.delete("/sessions/plain").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_index_matches_disk(&app, "delete").await;
    assert_eq!(
        app.delete("/sessions/own").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_index_matches_disk(&app, "delete current").await;
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );

    create("later", Some(json!("brainstorm"))).await;
    switch("later", true).await;
    patch("later", json!({ "pid": 99 })).await;
    let list_before = app.get_ok("/sessions").await;
    let active_before = app.get_ok("/sessions/active").await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;
    assert_index_matches_disk(&app, "a restart").await;
    // The same, less the fields that are computed at answer time (idle_seconds moves
    // with the clock).
    let list_after = app.get_ok("/sessions").await;
    assert_eq!(list_after, list_before, "GET /sessions across a restart");
    let active_after = app.get_ok("/sessions/active").await;
    assert_eq!(
        active_after, active_before,
        "GET /sessions/active across a restart"
    );
    app.stop().await;
}

/// The listed entry named `name`, if any.
fn entry<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|s| s["name"] == name)
}

#[tokio::test]
async fn the_list_answers_each_write_as_soon_as_it_is_acknowledged() {
    let app = TestApp::fresh().await;
    app.created("keep").await;
    // Lists come from another client (other connections) than the writes.
    let reader = Client::new();
    let list = || {
        let request = reader.get(app.url("/sessions"));
        async move {
            without_live_fields(assert_json(request.send().await.unwrap(), StatusCode::OK).await)
        }
    };

    for round in 0..20 {
        let name = format!("round-{round:02}");
        let created = without_live_fields(
            assert_json(app.create_session(&name, None).await, StatusCode::CREATED).await,
        );
        let listed = list().await;
        assert_eq!(
            entry(&listed, &name),
            Some(&created),
            "create, round {round}"
        );
        assert_eq!(
            listed.as_array().unwrap().len(),
            2,
            "round {round}: {listed}"
        );

        let pid = NO_SUCH_PID + round;
        let patched = app.patched(&name, &json!({ "pid": pid })).await;
        assert_eq!(patched["pid"], pid);
        assert_eq!(
            entry(&list().await, &name),
            Some(&patched),
            "patch, round {round}"
        );

        app.switched(&name).await;
        let listed = list().await;
        let active = app.current().await;
        assert_eq!(active["active"], name.as_str());
        assert_eq!(
            entry(&listed, &name),
            Some(&active["session"]),
            "switch, round {round}"
        );
        assert_eq!(
            listed[0]["name"],
            name.as_str(),
            "most recently active first"
        );

        assert_eq!(
            app.delete(&format!("/sessions/{name}")).await.status(),
            StatusCode::NO_CONTENT
        );
        let listed = list().await;
        assert_eq!(
            entry(&listed, &name),
            None,
            "delete, round {round}: {listed}"
        );
        assert!(entry(&listed, "keep").is_some(), "round {round}: {listed}");
        assert_eq!(
            app.current().await,
            json!({ "active": null, "session": null }),
            "the deleted session was current, round {round}"
        );
    }
    println!("list after writes: 20 rounds, 80 writes, each listed at once");
    app.stop().await;
}

/// Lists asked for at once get the same answer, whole and with its length, however many
/// pieces the service builds and sends a large list in; and a write between two lists
/// shows in the second.
#[tokio::test]
async fn concurrent_whole_lists_agree_and_a_write_shows_in_the_next() {
    let dirs = Dirs::new();
    // Enough sessions that the list is several hundred KiB, sent in many pieces.
    let title = "t".repeat(200);
    for i in 0..1500 {
        let name = format!("s{i:04}");
        let mut metadata = python_metadata(
            &name,
            "2026-01-01T00:00:00.000000+00:00",
            &format!("2026-01-02T00:00:00.{i:06}+00:00"),
            "idle",
        );
        metadata["title"] = json!(title);
        write_python_session(&dirs.sessions(), &name, &metadata);
    }
    let app = TestApp::spawn(&dirs).await;
    let mut lists = tokio::task::JoinSet::new();
    for _ in 0..16 {
        lists.spawn(whole_list(app.url("/sessions")));
    }
    let bodies = lists.join_all().await;
    let first: Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert!(bodies[0].len() > 300 * 1024, "{} bytes", bodies[0].len());
    assert_eq!(first.as_array().unwrap().len(), 1500);
    assert_eq!(first[0]["name"], "s1499", "most recently active first");
    for body in &bodies[1..] {
        let list: Value = serde_json::from_slice(body).unwrap();
        // `idle_seconds` may differ between lists built in different seconds.
        assert_eq!(
            without_live_fields(list),
            without_live_fields(first.clone())
        );
    }

    let patched = app.patched("s0000", &json!({ "title": "renamed" })).await;
    let after: Value = serde_json::from_slice(&whole_list(app.url("/sessions")).await).unwrap();
    assert_eq!(
        without_live_fields(entry(&after, "s0000").unwrap().clone()),
        without_live_fields(patched)
    );
    app.stop().await;
}

/// `GET url`'s body, checked to be a 200 whose `Content-Length` is the body's length.
async fn whole_list(url: String) -> bytes::Bytes {
    let response = Client::new().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let length = response.content_length();
    let body = response.bytes().await.unwrap();
    assert_eq!(length, Some(body.len() as u64), "Content-Length");
    body
}
