//! `/sessions` and `/sessions/{name}`: create, list, inspect, update, delete, and the
//! session's own persona, asserted on the answers and on the files on disk.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// The metadata a freshly created session has, with the timestamps of `answer`.
fn fresh_metadata(answer: &Value, name: &str, persona: Value) -> Value {
    json!({
        "name": name,
        "created": answer["created"],
        "last_active": answer["last_active"],
        "persona": persona,
        "pid": null,
        "status": "idle",
    })
}

fn without_dir(answer: &Value) -> Value {
    let mut metadata = answer.clone();
    metadata.as_object_mut().unwrap().remove("dir");
    metadata
}

/// `custom_persona()` without the member `field` of the object at `parent` (a JSON pointer).
fn without(parent: &str, field: &str) -> Value {
    let mut persona = custom_persona();
    let object = persona
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap();
    object.remove(field).unwrap();
    persona
}

/// `custom_persona()` with the value at `pointer` replaced.
fn replaced(pointer: &str, value: Value) -> Value {
    let mut persona = custom_persona();
    *persona.pointer_mut(pointer).unwrap() = value;
    persona
}

/// Asserts that `body`, the answer to creating `name`, is a fresh session recording
/// `persona`, that its `metadata.json` says the same, and that its `persona.json` is
/// `persona_file`.
fn assert_fresh_session(
    app: &TestApp,
    body: &Value,
    name: &str,
    persona: Value,
    persona_file: &Value,
) {
    let metadata = fresh_metadata(body, name, persona);
    assert_eq!(body["process"], "none");
    assert_eq!(body["idle_seconds"], 0);
    assert_eq!(
        without_live_fields(body.clone()),
        with_dir(&metadata, &app.session_dir(name))
    );
    assert_eq!(app.metadata_on_disk(name), metadata);
    assert_eq!(
        read_json(&app.session_dir(name).join("persona.json")),
        *persona_file
    );
}

#[tokio::test]
async fn create_without_persona_copies_the_default_persona() {
    let app = TestApp::fresh().await;

    let response = app.create_session("work", None).await;
    assert_eq!(response.headers()["location"], "/sessions/work");
    let body = assert_json(response, StatusCode::CREATED).await;

    let created = assert_timestamp(&body["created"]);
    assert_eq!(body["last_active"], body["created"]);
    assert!((chrono::Utc::now() - created).num_seconds().abs() < 60);
    let default = read_json(&app.personas_dir.join("default.json"));
    assert_fresh_session(&app, &body, "work", Value::Null, &default);
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_library_key_records_it_and_copies_that_persona() {
    let app = TestApp::fresh().await;

    let body = assert_json(
        app.create_session("plan", Some(json!("planner"))).await,
        StatusCode::CREATED,
    )
    .await;

    let planner = read_json(&app.personas_dir.join("planner.json"));
    assert_fresh_session(&app, &body, "plan", json!("planner"), &planner);
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_null_persona_is_the_same_as_without() {
    let app = TestApp::fresh().await;

    let body = assert_json(
        app.create_session("work", Some(Value::Null)).await,
        StatusCode::CREATED,
    )
    .await;

    assert_eq!(body["persona"], Value::Null);
    assert_eq!(app.metadata_on_disk("work")["persona"], Value::Null);
    assert_eq!(
        read_json(&app.session_dir("work").join("persona.json")),
        read_json(&app.personas_dir.join("default.json"))
    );
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_custom_persona_records_custom_and_keeps_its_extra_fields() {
    let app = TestApp::fresh().await;

    let body = assert_json(
        app.create_session("review", Some(custom_persona())).await,
        StatusCode::CREATED,
    )
    .await;

    assert_fresh_session(&app, &body, "review", json!("custom"), &custom_persona());
    app.stop().await;
}

#[tokio::test]
async fn create_an_existing_session_is_409_and_changes_nothing() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let before = std::fs::read(app.session_dir("work").join("metadata.json")).unwrap();

    assert_problem_mentioning(
        app.create_session("work", Some(json!("planner"))).await,
        StatusCode::CONFLICT,
        "exists",
        "'work'",
        "a second create of work",
    )
    .await;

    assert_eq!(
        std::fs::read(app.session_dir("work").join("metadata.json")).unwrap(),
        before
    );
    assert_eq!(
        read_json(&app.session_dir("work").join("persona.json")),
        read_json(&app.personas_dir.join("default.json"))
    );
    app.stop().await;
}

#[tokio::test]
async fn create_with_an_invalid_name_is_422_naming_the_rule() {
    let app = TestApp::fresh().await;
    let too_long = "a".repeat(51);
    let cases = [
        ("", "must not be empty"),
        (too_long.as_str(), "at most 50 characters"),
        ("a/b", "may only contain letters, digits, '-' and '_'"),
        ("..", "may only contain letters, digits, '-' and '_'"),
        ("../escape", "may only contain letters, digits, '-' and '_'"),
        ("a b", "may only contain letters, digits, '-' and '_'"),
        ("café", "may only contain letters, digits, '-' and '_'"),
        ("active", "reserved"),
    ];

    for (name, rule) in cases {
        assert_problem_mentioning(
            app.create_session(name, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            rule,
            format!("{name:?}"),
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    assert!(!app.sessions_dir.parent().unwrap().join("escape").exists());
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_name_of_fifty_characters_is_accepted() {
    let app = TestApp::fresh().await;
    let name = "a".repeat(50);

    let body = assert_json(app.create_session(&name, None).await, StatusCode::CREATED).await;

    assert_eq!(body["name"], json!(name));
    assert_eq!(app.sessions_on_disk(), vec![name]);
    app.stop().await;
}

#[tokio::test]
async fn create_with_an_unknown_persona_key_is_422() {
    let app = TestApp::fresh().await;

    for key in ["nope", "../default", "default.json", ""] {
        assert_problem_mentioning(
            app.create_session("work", Some(json!(key))).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "persona",
            format!("{key:?}"),
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

/// Custom personas that each break one rule, with the field the rule is about.
fn broken_personas() -> Vec<(&'static str, Value)> {
    vec![
        ("name", without("", "name")),
        ("name", replaced("/name", json!(""))),
        ("description", without("", "description")),
        ("description", replaced("/description", json!(""))),
        ("system_prompt", without("", "system_prompt")),
        ("system_prompt", replaced("/system_prompt", json!(""))),
        ("settings", without("", "settings")),
        ("model", without("/settings", "model")),
        ("model", replaced("/settings/model", json!(""))),
        ("max_turns", without("/settings", "max_turns")),
        ("max_turns", replaced("/settings/max_turns", json!(0))),
    ]
}

/// Custom personas with a field of the wrong type, with that field.
fn mistyped_personas() -> Vec<(&'static str, Value)> {
    vec![
        ("name", replaced("/name", json!(7))),
        ("description", replaced("/description", json!(null))),
        ("system_prompt", replaced("/system_prompt", json!(["p"]))),
        ("settings", replaced("/settings", json!("fast"))),
        ("model", replaced("/settings/model", json!(5))),
        ("max_turns", replaced("/settings/max_turns", json!(-3))),
        ("max_turns", replaced("/settings/max_turns", json!(2.5))),
        ("max_turns", replaced("/settings/max_turns", json!("5"))),
    ]
}

#[tokio::test]
async fn create_with_an_invalid_custom_persona_is_422_naming_the_field() {
    let app = TestApp::fresh().await;

    for (field, persona) in broken_personas() {
        assert_problem_mentioning(
            app.create_session("work", Some(persona.clone())).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            field,
            &persona,
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_mistyped_custom_persona_field_is_422() {
    let app = TestApp::fresh().await;

    for (_, persona) in mistyped_personas() {
        assert_problem(
            app.create_session("work", Some(persona)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn a_mistyped_custom_persona_field_is_named_in_the_detail() {
    let app = TestApp::fresh().await;

    let mut unnamed = Vec::new();
    for (field, persona) in mistyped_personas() {
        let created = app.create_session("work", Some(persona)).await;
        let problem =
            assert_problem(created, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
        let detail = problem["detail"].as_str().unwrap().to_owned();
        if !detail.contains(field) {
            unnamed.push(format!("{field}: {detail}"));
        }
    }
    assert_eq!(
        unnamed,
        Vec::<String>::new(),
        "details that do not name the field"
    );
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_persona_of_the_wrong_type_is_422() {
    let app = TestApp::fresh().await;

    for persona in [json!(5), json!(true), json!(["default"])] {
        assert_problem_mentioning(
            app.create_session("work", Some(persona.clone())).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "persona",
            &persona,
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn create_with_an_unknown_or_missing_field_is_422() {
    let app = TestApp::fresh().await;

    for (body, mentions) in [
        (json!({ "name": "work", "colour": "red" }), "colour"),
        (json!({ "name": "work", "pid": 12 }), "pid"),
        (json!({ "persona": "default" }), "name"),
        (json!({ "name": 5 }), "name"),
        (
            json!({ "name": "work", "persona": null, "extra": 1 }),
            "extra",
        ),
    ] {
        assert_problem_mentioning(
            app.send_json(Method::POST, "/sessions", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            mentions,
            &body,
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn create_with_a_body_that_is_not_an_object_is_422() {
    let app = TestApp::fresh().await;

    let bodies = [
        json!(["work"]),
        json!(["work", "planner"]),
        json!("work"),
        json!(null),
    ];
    let wrong = not_refused_with_422(&app, Method::POST, "/sessions", bodies).await;
    assert_eq!(wrong, Vec::<String>::new(), "bodies not refused with 422");
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn create_with_malformed_json_is_400() {
    let app = TestApp::fresh().await;

    let response = app
        .request(Method::POST, "/sessions")
        .header("content-type", "application/json")
        .body(r#"{"name": "work""#)
        .send()
        .await
        .unwrap();

    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-json").await;
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn create_without_a_json_content_type_is_415() {
    let app = TestApp::fresh().await;

    for content_type in [None, Some("text/plain")] {
        let mut request = app.request(Method::POST, "/sessions");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.body(r#"{"name": "work"}"#).send().await.unwrap();
        assert_problem(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        )
        .await;
    }

    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn dir_is_the_absolute_session_directory_and_never_stored() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;
    app.switched("work").await;
    assert_json(
        app.patch("work", &json!({ "pid": 7 })).await,
        StatusCode::OK,
    )
    .await;

    let expected = app.session_dir("work");
    assert!(expected.is_absolute());
    assert_eq!(created["dir"], json!(expected.to_str().unwrap()));
    let got = app.session("work").await;
    assert_eq!(got["dir"], json!(expected.to_str().unwrap()));
    assert_eq!(app.list_sessions("").await[0]["dir"], got["dir"]);
    assert!(
        std::path::Path::new(got["dir"].as_str().unwrap())
            .join("metadata.json")
            .is_file()
    );
    assert_eq!(app.metadata_on_disk("work").get("dir"), None);
    app.stop().await;
}

#[tokio::test]
async fn list_is_most_recently_active_first() {
    let app = TestApp::fresh().await;
    assert_eq!(app.list_sessions("").await, json!([]));
    let a = app.created("a").await;
    let b = app.created("b").await;
    let c = app.created("c").await;

    assert_eq!(app.list_sessions("").await, json!([c, b, a]));

    app.switched("a").await;
    assert_eq!(names(&app.list_sessions("").await), ["a", "c", "b"]);
    app.stop().await;
}

#[tokio::test]
async fn list_breaks_ties_by_name() {
    let dirs = Dirs::new();
    let at = "2026-01-02T03:04:05.000006+00:00";
    let later = "2026-01-02T03:04:05.000007+00:00";
    for name in ["zeta", "alpha", "mid"] {
        write_python_session(
            &dirs.sessions(),
            name,
            &python_metadata(name, at, at, "idle"),
        );
    }
    write_python_session(
        &dirs.sessions(),
        "omega",
        &python_metadata("omega", at, later, "idle"),
    );
    let app = TestApp::spawn(&dirs).await;

    let listed = app.list_sessions("").await;

    let expected: Vec<Value> = ["omega", "alpha", "mid", "zeta"]
        .iter()
        .map(|name| {
            let last = if *name == "omega" { later } else { at };
            with_dir(
                &python_metadata(name, at, last, "idle"),
                &app.session_dir(name),
            )
        })
        .collect();
    assert_eq!(listed, Value::Array(expected));
    app.stop().await;
}

#[tokio::test]
async fn list_filters_by_status() {
    let app = TestApp::fresh().await;
    app.created("idle1").await;
    app.created("busy").await;
    app.created("idle2").await;
    app.created("current").await;
    assert_json(
        app.patch("busy", &json!({ "pid": 100, "status": "suspended" }))
            .await,
        StatusCode::OK,
    )
    .await;
    app.switched("current").await;

    assert_eq!(
        names(&app.list_sessions("?status=active").await),
        ["current"]
    );
    assert_eq!(
        names(&app.list_sessions("?status=suspended").await),
        ["busy"]
    );
    assert_eq!(
        names(&app.list_sessions("?status=idle").await),
        ["idle2", "idle1"]
    );
    assert_eq!(
        names(&app.list_sessions("").await),
        ["current", "idle2", "busy", "idle1"]
    );
    let busy = app.session("busy").await;
    assert_eq!(app.list_sessions("?status=suspended").await, json!([busy]));
    app.stop().await;
}

#[tokio::test]
async fn list_with_a_bad_status_filter_is_422() {
    let app = TestApp::fresh().await;
    app.created("work").await;

    for query in [
        "?status=busy",
        "?status=",
        "?status=ACTIVE",
        "?status=idle,active",
    ] {
        assert_problem_mentioning(
            app.get(&format!("/sessions{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-filter",
            "idle",
            query,
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn get_a_session_answers_its_metadata_and_dir() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let got = app.session("work").await;

    assert_eq!(got, created);
    assert_eq!(
        got,
        with_dir(&app.metadata_on_disk("work"), &app.session_dir("work"))
    );
    app.stop().await;
}

#[tokio::test]
async fn get_an_unknown_session_is_404() {
    let app = TestApp::fresh().await;

    assert_problem_mentioning(
        app.get("/sessions/nope").await,
        StatusCode::NOT_FOUND,
        "not-found",
        "'nope'",
        "GET /sessions/nope",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn get_with_a_bad_name_is_400() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let too_long = format!("/sessions/{}", "a".repeat(51));

    for path in [
        "/sessions/..%2Fwork",
        "/sessions/..%2F..%2Fetc",
        "/sessions/a%20b",
        "/sessions/a.b",
        "/sessions/caf%C3%A9",
        "/sessions/a%00b",
        "/sessions/%FF",
        too_long.as_str(),
    ] {
        assert_problem(app.get(path).await, StatusCode::BAD_REQUEST, "invalid-name").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn head_answers_whether_a_session_exists_without_a_body() {
    let app = TestApp::fresh().await;
    app.created("work").await;

    let found = app.head("/sessions/work").await;
    assert_eq!(found.status(), StatusCode::OK);
    assert_eq!(found.headers()["content-type"], "application/json");
    assert_eq!(
        app.head("/sessions/nope").await.status(),
        StatusCode::NOT_FOUND
    );

    // reqwest reads no body of an answer to HEAD, whatever is sent: the raw bytes show
    // that none is.
    let host = app.addr.to_string();
    for (path, status) in [("/sessions/work", 200), ("/sessions/nope", 404)] {
        let raw = raw_request(app.addr, &raw_http("HEAD", path, &host, None)).await;
        assert_eq!(raw.status, status, "HEAD {path}");
        assert_eq!(String::from_utf8_lossy(&raw.body), "", "HEAD {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn patch_sets_and_clears_the_pid() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let set = app.patched("work", &json!({ "pid": NO_SUCH_PID })).await;
    let mut expected = created.clone();
    expected["pid"] = json!(NO_SUCH_PID);
    expected["pid_recorded"] = recorded_now(&set);
    assert_eq!(set, expected);
    assert_eq!(app.metadata_on_disk("work"), without_dir(&expected));

    let cleared = app.patched("work", &json!({ "pid": null })).await;
    assert_eq!(cleared, created);
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_status_of_a_session_that_is_not_current() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let suspended = app
        .patched(
            "work",
            &json!({ "pid": NO_SUCH_PID, "status": "suspended" }),
        )
        .await;
    let mut expected = created.clone();
    expected["pid"] = json!(NO_SUCH_PID);
    expected["status"] = json!("suspended");
    expected["pid_recorded"] = recorded_now(&suspended);
    assert_eq!(suspended, expected);

    assert_problem_mentioning(
        app.patch("work", &json!({ "status": "active" })).await,
        StatusCode::CONFLICT,
        "status-conflict",
        "not the current",
        "status active",
    )
    .await;
    assert_eq!(app.metadata_on_disk("work"), without_dir(&expected));

    let idle = app
        .patched("work", &json!({ "pid": null, "status": "idle" }))
        .await;
    assert_eq!(idle, created);
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_status_of_the_current_session() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    app.switched("work").await;
    let current = app.session("work").await;
    assert_eq!(current["status"], "active");

    assert_problem_mentioning(
        app.patch("work", &json!({ "status": "suspended" })).await,
        StatusCode::CONFLICT,
        "status-conflict",
        "is the current",
        "status suspended",
    )
    .await;
    assert_eq!(app.metadata_on_disk("work"), without_dir(&current));

    // The process ended: the current session may be idle, and active again.
    let idle = assert_json(
        app.patch("work", &json!({ "status": "idle" })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(idle["status"], "idle");
    assert_eq!(idle["last_active"], current["last_active"]);
    let active = app
        .patched("work", &json!({ "status": "active", "pid": NO_SUCH_PID }))
        .await;
    let mut expected = current.clone();
    expected["pid"] = json!(NO_SUCH_PID);
    expected["pid_recorded"] = recorded_now(&active);
    assert_eq!(active, expected);
    assert_eq!(app.metadata_on_disk("work"), without_dir(&expected));
    let now = app.current().await;
    assert_eq!(now, json!({ "active": "work", "session": expected }));
    app.stop().await;
}

#[tokio::test]
async fn patch_refuses_other_fields() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    for (body, field) in [
        (json!({ "name": "other" }), "name"),
        (json!({ "created": "2020-01-01T00:00:00+00:00" }), "created"),
        (
            json!({ "last_active": "2020-01-01T00:00:00+00:00" }),
            "last_active",
        ),
        (json!({ "persona": "planner" }), "persona"),
        (json!({ "dir": "/tmp" }), "dir"),
        (json!({ "pid": 5, "name": "other" }), "name"),
        (json!({ "status": "idle", "colour": "red" }), "colour"),
    ] {
        assert_problem_mentioning(
            app.patch("work", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            field,
            &body,
        )
        .await;
    }
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    assert_eq!(app.sessions_on_disk(), ["work"]);
    app.stop().await;
}

#[tokio::test]
async fn patch_with_an_empty_body_is_422() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let problem = assert_problem(
        app.patch("work", &json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-body",
    )
    .await;

    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("pid") && detail.contains("status"),
        "{detail}"
    );
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_with_a_pid_that_is_not_a_positive_integer_is_422() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    for pid in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("123"),
        json!(true),
        json!([1]),
    ] {
        assert_problem_mentioning(
            app.patch("work", &json!({ "pid": pid })).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "pid",
            &pid,
        )
        .await;
    }
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_with_a_null_or_unknown_status_is_422() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    for status in [json!(null), json!("running"), json!("ACTIVE"), json!("")] {
        assert_problem_mentioning(
            app.patch("work", &json!({ "status": status })).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "status",
            &status,
        )
        .await;
    }
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_with_a_status_that_is_not_a_string_is_422_not_400() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    // Well-formed JSON of the wrong type is an invalid body (422), not malformed JSON.
    let bodies = [json!(1), json!(true), json!(["idle"]), json!({})]
        .map(|status| json!({ "status": status }));
    let wrong = not_refused_with_422(&app, Method::PATCH, "/sessions/work", bodies).await;
    assert_eq!(wrong, Vec::<String>::new(), "bodies not refused with 422");
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_with_a_body_that_is_not_an_object_is_422() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let bodies = [
        json!([4242]),
        json!([null, "suspended"]),
        json!(4242),
        json!(null),
    ];
    let wrong = not_refused_with_422(&app, Method::PATCH, "/sessions/work", bodies).await;
    assert_eq!(wrong, Vec::<String>::new(), "bodies not refused with 422");
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn patch_an_unknown_session_is_404() {
    let app = TestApp::fresh().await;

    assert_problem(
        app.patch("nope", &json!({ "pid": 1 })).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;

    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn delete_moves_the_whole_directory_under_the_archive() {
    let app = TestApp::fresh().await;
    app.created("keep").await;
    let created = app.created("work").await;
    let claude = app.session_dir("work").join(".claude").join("projects");
    std::fs::create_dir_all(&claude).unwrap();
    std::fs::write(claude.join("history.jsonl"), "{\"turn\": 1}\n").unwrap();
    let persona_before = std::fs::read(app.session_dir("work").join("persona.json")).unwrap();

    let response = app.delete("/sessions/work").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert!(!app.session_dir("work").exists());
    let archive = app.sessions_dir.join(".archive");
    let archived = dir_names(&archive);
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(archived[0].starts_with("work"), "{archived:?}");
    let moved = archive.join(&archived[0]);
    assert_eq!(
        dir_names(&moved),
        [".claude", "metadata.json", "persona.json"]
    );
    assert_eq!(
        std::fs::read_to_string(moved.join(".claude/projects/history.jsonl")).unwrap(),
        "{\"turn\": 1}\n"
    );
    assert_eq!(
        read_json(&moved.join("metadata.json")),
        without_dir(&created)
    );
    assert_eq!(
        std::fs::read(moved.join("persona.json")).unwrap(),
        persona_before
    );

    let keep = app.session("keep").await;
    assert_eq!(app.list_sessions("").await, json!([keep]));
    assert_problem(
        app.get("/sessions/work").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        app.delete("/sessions/work").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn delete_then_create_the_same_name_again() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    assert_eq!(
        app.delete("/sessions/work").await.status(),
        StatusCode::NO_CONTENT
    );

    let again = assert_json(
        app.create_session("work", Some(json!("research"))).await,
        StatusCode::CREATED,
    )
    .await;

    assert_eq!(again["persona"], "research");
    assert_eq!(dir_names(&app.sessions_dir.join(".archive")).len(), 1);
    assert_eq!(
        app.delete("/sessions/work").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(dir_names(&app.sessions_dir.join(".archive")).len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn delete_the_current_session_leaves_none_current() {
    let app = TestApp::fresh().await;
    app.created("other").await;
    app.created("work").await;
    app.switched("work").await;

    assert_eq!(
        app.delete("/sessions/work").await.status(),
        StatusCode::NO_CONTENT
    );

    let current = app.current().await;
    assert_eq!(current, json!({ "active": null, "session": null }));
    assert_eq!(
        read_json(&app.sessions_dir.join(".current.json"))["name"],
        Value::Null
    );
    let cleared = assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;
    assert_eq!(
        cleared,
        json!({ "previous": null, "active": null, "changed": false })
    );
    assert_eq!(
        app.switched("other").await,
        json!({ "previous": null, "active": "other", "changed": true })
    );
    app.stop().await;
}

#[tokio::test]
async fn delete_an_unknown_session_is_404() {
    let app = TestApp::fresh().await;

    assert_problem(
        app.delete("/sessions/nope").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;

    assert!(!app.sessions_dir.join(".archive").join("nope").exists());
    app.stop().await;
}

#[tokio::test]
async fn get_the_session_persona() {
    let app = TestApp::fresh().await;
    app.create_session("brain", Some(json!("brainstorm"))).await;

    let persona = app.get_ok("/sessions/brain/persona").await;

    assert_eq!(
        persona,
        read_json(&app.personas_dir.join("brainstorm.json"))
    );
    assert_eq!(
        persona,
        read_json(&app.session_dir("brain").join("persona.json"))
    );
    assert_problem(
        app.get("/sessions/nope/persona").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        app.get("/sessions/..%2Fx/persona").await,
        StatusCode::BAD_REQUEST,
        "invalid-name",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn put_the_session_persona_replaces_it_and_records_custom() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let stored = assert_json(
        app.send_json(Method::PUT, "/sessions/work/persona", &custom_persona())
            .await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(stored, custom_persona());
    assert_eq!(
        read_json(&app.session_dir("work").join("persona.json")),
        custom_persona()
    );
    let got = app.get_ok("/sessions/work/persona").await;
    assert_eq!(got, custom_persona());
    let mut expected = created.clone();
    expected["persona"] = json!("custom");
    assert_eq!(app.session("work").await, expected);
    assert_eq!(app.metadata_on_disk("work"), without_dir(&expected));
    app.stop().await;
}

#[tokio::test]
async fn put_an_invalid_session_persona_is_422_and_changes_nothing() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;
    let before = std::fs::read(app.session_dir("work").join("persona.json")).unwrap();
    let mut no_name = custom_persona();
    no_name.as_object_mut().unwrap().remove("name");
    let mut empty_model = custom_persona();
    empty_model["settings"]["model"] = json!("");
    let mut zero_turns = custom_persona();
    zero_turns["settings"]["max_turns"] = json!(0);

    for body in [
        no_name,
        empty_model,
        zero_turns,
        json!("default"),
        json!(["x"]),
        json!(null),
    ] {
        assert_problem(
            app.send_json(Method::PUT, "/sessions/work/persona", &body)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        )
        .await;
    }

    assert_eq!(
        std::fs::read(app.session_dir("work").join("persona.json")).unwrap(),
        before
    );
    assert_eq!(app.metadata_on_disk("work"), without_dir(&created));
    app.stop().await;
}

#[tokio::test]
async fn put_the_persona_of_an_unknown_session_is_404() {
    let app = TestApp::fresh().await;

    assert_problem(
        app.send_json(Method::PUT, "/sessions/nope/persona", &custom_persona())
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;

    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

/// The contract's `maximum` for `max_turns` is `u64::MAX`: every integer up to it is
/// accepted (found by schemathesis, which sent one above `i64::MAX`), and one past it is
/// 422.
#[tokio::test]
async fn max_turns_takes_the_whole_u64_range() {
    let app = TestApp::fresh().await;
    let mut persona = custom_persona();
    persona["settings"]["max_turns"] = json!(u64::MAX);
    assert_eq!(
        app.create_session("work", Some(persona.clone()))
            .await
            .status(),
        StatusCode::CREATED
    );
    let stored = read_json(&app.session_dir("work").join("persona.json"));
    assert_eq!(stored["settings"]["max_turns"], json!(u64::MAX));

    persona["settings"]["max_turns"] = json!(u64::MAX - 1);
    let answer = assert_json(
        app.send_json(Method::PUT, "/sessions/work/persona", &persona)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["settings"]["max_turns"], json!(u64::MAX - 1));

    // 2^64, one past u64::MAX (written as a float: serde_json has no larger integer).
    persona["settings"]["max_turns"] = json!(18_446_744_073_709_551_616.0_f64);
    assert_problem_mentioning(
        app.send_json(Method::PUT, "/sessions/work/persona", &persona)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-body",
        "settings.max_turns: must be a positive integer",
        &persona,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let app = TestApp::fresh().await;
    let mut persona = custom_persona();
    persona["settings"]["max_turns"] = json!(25.0);
    assert_eq!(
        app.create_session("work", Some(persona)).await.status(),
        StatusCode::CREATED
    );
    let stored = read_json(&app.session_dir("work").join("persona.json"));
    assert_eq!(stored["settings"]["max_turns"], json!(25));

    let response = app.patch("work", &json!({ "pid": 4242.0 })).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.metadata_on_disk("work")["pid"], json!(4242));

    let problem = assert_problem(
        app.patch("work", &json!({ "pid": 42.5 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-body",
    )
    .await;
    assert_eq!(
        problem["detail"],
        "pid: must be a positive integer or null (got 42.5)"
    );
    app.stop().await;
}

/// Reading a session's persona while the session is deleted: the answer is the persona
/// or 404, never 409 `corrupt-entry` for a session that is simply gone (the directory
/// leaves the tree before the index forgets the session).
#[tokio::test]
async fn a_persona_read_racing_a_delete_is_200_or_404_never_corrupt() {
    let app = TestApp::fresh().await;
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..40 {
        let name = format!("doomed-{round}");
        app.created(&name).await;
        let path = format!("/sessions/{name}/persona");
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let request = app.request(Method::GET, &path);
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    loop {
                        let response = request.try_clone().unwrap().send().await.unwrap();
                        let status = response.status();
                        let body = response.text().await.unwrap();
                        statuses.push((status.as_u16(), body));
                        if status != StatusCode::OK {
                            return statuses;
                        }
                    }
                })
            })
            .collect();
        let deleted = app.delete(&format!("/sessions/{name}")).await;
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        for reader in readers {
            for (status, body) in reader.await.unwrap() {
                assert!(
                    status == 200 || status == 404,
                    "GET {path} during its delete answered {status}: {body}"
                );
                *seen.entry(status).or_default() += 1;
            }
        }
    }
    println!("persona reads during deletes, by status: {seen:?}");
    app.stop().await;
}
