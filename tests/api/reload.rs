//! `POST /personas/reload` (a file that broke keeps its previous version and is listed,
//! in the answer and in `/healthz`; an added file is served) and `GET
//! /schemas/persona.json` (published with its media type, and in agreement with the
//! service's own persona rules on a table of valid and invalid personas).

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::*;

async fn reload(app: &TestApp) -> Value {
    let response = app
        .request(Method::POST, "/personas/reload")
        .send()
        .await
        .unwrap();
    assert_json(response, StatusCode::OK).await
}

#[tokio::test]
async fn a_broken_file_keeps_its_previous_version_and_is_listed() {
    let app = TestApp::fresh().await;
    let before = app.get_ok("/personas/planner").await;
    let file = app.personas_dir.join("planner.json");
    std::fs::write(&file, "{\"name\": ").unwrap();

    let reason = "not a valid persona: not JSON at line 1 column 9; the previous version is \
                  still served";
    let skipped = json!([{ "path": file, "reason": reason }]);
    assert_eq!(
        reload(&app).await,
        json!({
            "personas": ["brainstorm", "default", "planner", "research"],
            "skipped": skipped,
        })
    );
    assert_eq!(app.get_ok("/personas/planner").await, before);
    let health = app.health().await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["skipped"], skipped);
    assert_eq!(health["personas"], 4);

    // Mended, it is served as it is now and no longer listed.
    let mut mended = before.clone();
    mended["description"] = json!("Plans in fewer steps");
    std::fs::write(&file, mended.to_string()).unwrap();
    assert_eq!(reload(&app).await["skipped"], json!([]));
    assert_eq!(app.get_ok("/personas/planner").await, mended);
    assert_eq!(app.health().await["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn an_added_file_is_served_and_a_removed_one_is_not() {
    let app = TestApp::fresh().await;
    std::fs::write(
        app.personas_dir.join("reviewer.json"),
        custom_persona().to_string(),
    )
    .unwrap();
    std::fs::remove_file(app.personas_dir.join("research.json")).unwrap();
    // A file that never loaded has no previous version: it is only listed.
    std::fs::write(app.personas_dir.join("fresh.json"), "[]").unwrap();
    let answer = reload(&app).await;
    assert_eq!(
        answer["personas"],
        json!(["brainstorm", "default", "planner", "reviewer"])
    );
    assert_eq!(
        answer["skipped"],
        json!([{
            "path": app.personas_dir.join("fresh.json"),
            "reason": "not a valid persona: not a JSON object",
        }])
    );
    assert_eq!(app.get_ok("/personas/reviewer").await, custom_persona());
    let gone = app.get("/personas/research").await;
    assert_problem(gone, StatusCode::NOT_FOUND, "not-found").await;
    // A session made from the new persona gets it.
    let response = app.create_session("review", Some(json!("reviewer"))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        app.get_ok("/sessions/review/persona").await,
        custom_persona()
    );
    app.stop().await;
}

#[tokio::test]
async fn the_path_of_the_reload_does_not_hide_a_persona_named_reload() {
    let app = TestApp::fresh().await;
    let none = app.get("/personas/reload").await;
    assert_problem(none, StatusCode::NOT_FOUND, "not-found").await;
    std::fs::write(
        app.personas_dir.join("reload.json"),
        custom_persona().to_string(),
    )
    .unwrap();
    assert!(
        reload(&app).await["personas"]
            .as_array()
            .unwrap()
            .contains(&json!("reload"))
    );
    assert_eq!(app.get_ok("/personas/reload").await, custom_persona());
    let put = app
        .request(Method::PUT, "/personas/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(put.headers()[header::ALLOW], "GET,HEAD,POST");
    assert_problem(put, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    app.stop().await;
}

#[tokio::test]
async fn a_reload_needs_the_token_and_keeps_the_library_when_the_directory_is_gone() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(
        &dirs,
        Options {
            token: Some("reload-token".to_owned()),
            ..Options::default()
        },
    )
    .await;
    for path in ["/personas/reload", "/schemas/persona.json"] {
        let method = if path.ends_with("reload") {
            Method::POST
        } else {
            Method::GET
        };
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    std::fs::rename(dirs.personas(), dirs.root.path().join("elsewhere")).unwrap();
    let response = app
        .request(Method::POST, "/personas/reload")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .ends_with("the library loaded before is still served"),
        "{problem}"
    );
    let list = app.get_ok("/personas").await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    app.stop().await;
}

async fn schema(app: &TestApp) -> Value {
    let response = app.get("/schemas/persona.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/schema+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_schema_is_published_with_the_rules_lists() {
    let app = TestApp::fresh().await;
    let schema = schema(&app).await;
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let settings = &schema["properties"]["settings"]["properties"];
    assert_eq!(settings["permission_mode"]["enum"], json!(PERMISSION_MODES));
    assert_eq!(
        settings["system_prompt_mode"]["enum"],
        json!(["append", "replace"])
    );
    assert_eq!(
        schema["$defs"]["visible_text"]["pattern"],
        visible_text_pattern()
    );
    assert_eq!(schema["additionalProperties"], true);
    let head = app.head("/schemas/persona.json").await;
    assert_eq!(head.status(), StatusCode::OK);
    app.stop().await;
}

/// The schema, compiled by an independent validator.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: Value) -> Self {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler
            .add_resource("persona.json", schema)
            .expect("the schema is a resource");
        let index = compiler
            .compile("persona.json", &mut schemas)
            .unwrap_or_else(|e| panic!("the schema compiles: {e}"));
        Self { schemas, index }
    }

    fn accepts(&self, value: &Value) -> bool {
        self.schemas.validate(value, self.index).is_ok()
    }
}

/// A valid persona with `settings` (or, for a key without a dot, the persona's own
/// field) `key` set to `value`; `null` removes it.
fn with(key: &str, value: Value) -> Value {
    let mut persona = json!({
        "name": "Reviewer",
        "description": "Reviews diffs",
        "system_prompt": "Review the operator's changes.",
        "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 5 },
    });
    let (target, field) = match key.strip_prefix("settings.") {
        Some(field) => (&mut persona["settings"], field),
        None => (&mut persona, key),
    };
    let map = target.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(field);
    } else {
        map.insert(field.to_owned(), value);
    }
    persona
}

/// Valid and invalid personas, each a change to a valid one.
fn cases() -> Vec<Value> {
    let mut cases = vec![
        with("color", json!("blue")),
        with("settings.effort", json!({"any": ["thing"]})),
        json!([]),
        json!("a persona"),
        with("settings", json!([])),
        with("settings", json!(null)),
    ];
    for field in ["name", "description", "system_prompt", "settings.model"] {
        for value in [
            json!(null),
            json!(""),
            json!(" \t\n"),
            json!("\u{200b}\u{feff}"),
            json!("\u{0}"),
            json!(" x "),
            json!("日本"),
            json!("\u{200b}a"),
            json!(7),
            json!(["x"]),
        ] {
            cases.push(with(field, value));
        }
    }
    for value in [
        json!(null),
        json!(0),
        json!(-1),
        json!(1),
        json!(25.0),
        json!(1.5),
        json!("25"),
        json!(u64::MAX),
        json!(true),
    ] {
        cases.push(with("settings.max_turns", value));
    }
    for value in ["append", "replace", "prepend", "Append", ""] {
        cases.push(with("settings.system_prompt_mode", json!(value)));
    }
    cases.push(with("settings.system_prompt_mode", json!(1)));
    for mode in PERMISSION_MODES.iter().chain(&["yolo", "Plan", ""]) {
        cases.push(with("settings.permission_mode", json!(mode)));
    }
    for field in [
        "allowed_tools",
        "disallowed_tools",
        "add_dirs",
        "extra_args",
    ] {
        for value in [
            json!([]),
            json!(["Read", "Bash(git log:*)"]),
            json!(["/srv/shared dir"]),
            json!("Read"),
            json!([""]),
            json!([" \t"]),
            json!(["\u{3000}"]),
            json!(["\u{200b}"]),
            json!(["a\u{0}b"]),
            json!([1]),
            json!(null),
        ] {
            cases.push(with(&format!("settings.{field}"), value));
        }
    }
    for flag in RESERVED_FLAGS {
        for arg in [
            flag.to_owned(),
            format!("{flag}=x"),
            format!("{flag}-later"),
        ] {
            cases.push(with("settings.extra_args", json!(["--debug", arg])));
        }
    }
    for field in ["max_budget_usd", "budget_usd"] {
        for value in [
            json!(0),
            json!(-1),
            json!(0.01),
            json!(20),
            json!("10"),
            json!(1e-300),
        ] {
            cases.push(with(&format!("settings.{field}"), value));
        }
    }
    cases
}

#[tokio::test]
async fn the_schema_agrees_with_the_services_rules() {
    let app = TestApp::fresh().await;
    let validator = Validator::new(schema(&app).await);
    let mut disagreements = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for case in cases() {
        let service = check_persona(case.clone());
        let schema = validator.accepts(&case);
        if schema != service.is_ok() {
            disagreements.push(format!("{case}: schema {schema}, service {service:?}"));
        }
        if schema { valid += 1 } else { invalid += 1 }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(
        valid > 40 && invalid > 80,
        "{valid} valid, {invalid} invalid"
    );
    // The shipped library, as served.
    for persona in app.get_ok("/personas").await.as_array().unwrap() {
        assert!(validator.accepts(persona), "{persona}");
    }
    app.stop().await;
}
