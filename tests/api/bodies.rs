//! What a request body may hold beyond its shape: text that shows something, each key
//! once, and numbers stored in the form the original module writes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// The text fields of a persona, by JSON pointer and by the name a detail gives them.
const TEXT_FIELDS: [(&str, &str); 4] = [
    ("/name", "name"),
    ("/description", "description"),
    ("/system_prompt", "system_prompt"),
    ("/settings/model", "settings.model"),
];

fn persona_with(pointer: &str, value: Value) -> Value {
    let mut persona = custom_persona();
    *persona.pointer_mut(pointer).unwrap() = value;
    persona
}

#[tokio::test]
async fn persona_text_of_only_invisible_characters_is_422() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let before = snapshot(&app.sessions_dir);

    for (pointer, field) in TEXT_FIELDS {
        for text in [
            " ",
            "\t\r\n ",
            "\u{0}\u{1b}",
            "\u{a0}\u{3000}",
            "\u{200b}\u{feff}",
        ] {
            let persona = persona_with(pointer, json!(text));
            let rule = format!("{field} must contain visible text");
            assert_problem_mentioning(
                app.create_session("other", Some(persona.clone())).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                &rule,
                &persona,
            )
            .await;
            assert_problem_mentioning(
                app.send_json(Method::PUT, "/sessions/work/persona", &persona)
                    .await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                &rule,
                &persona,
            )
            .await;
        }
    }
    assert_eq!(
        snapshot(&app.sessions_dir),
        before,
        "a refused body changed the store"
    );

    // Visible text with whitespace around it is text.
    let padded = persona_with("/name", json!("  Padded \n"));
    let answer = assert_json(
        app.send_json(Method::PUT, "/sessions/work/persona", &padded)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["name"], json!("  Padded \n"));
    app.stop().await;
}

async fn send_text(app: &TestApp, method: Method, path: &str, body: &str) -> reqwest::Response {
    app.request(method, path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// `custom_persona()` as JSON text, with `members` added at its end.
fn persona_text_with(members: &str) -> String {
    let text = serde_json::to_string(&custom_persona()).unwrap();
    format!("{},{members}}}", text.strip_suffix('}').unwrap())
}

/// serde_json keeps the last of a repeated key, so a body could say two things and be
/// read as one of them. Every route refuses it, at any depth, naming the key.
#[tokio::test]
async fn a_key_repeated_anywhere_in_a_body_is_422_naming_it() {
    let app = TestApp::fresh().await;
    app.created("alpha").await;
    let before = snapshot(&app.sessions_dir);
    let persona = serde_json::to_string(&custom_persona()).unwrap();
    let turns_twice = persona.replacen(r#""max_turns":5"#, r#""max_turns":5,"max_turns":1"#, 1);
    assert_ne!(turns_twice, persona);
    let cases = [
        (
            Method::POST,
            "/sessions",
            r#"{"name": "beta", "name": "gamma"}"#.to_owned(),
            "name",
        ),
        (
            Method::POST,
            "/sessions",
            r#"{"name": "beta", "name": "beta"}"#.to_owned(),
            "name",
        ),
        (
            Method::POST,
            "/sessions",
            format!(r#"{{"name": "beta", "persona": {turns_twice}}}"#),
            "max_turns",
        ),
        (
            Method::PUT,
            "/sessions/active",
            r#"{"name": "alpha", "name": "alpha"}"#.to_owned(),
            "name",
        ),
        (
            Method::PATCH,
            "/sessions/alpha",
            r#"{"pid": 7, "pid": -1}"#.to_owned(),
            "pid",
        ),
        (
            Method::PUT,
            "/sessions/alpha/persona",
            persona_text_with(r#""system_prompt": "other""#),
            "system_prompt",
        ),
        (
            Method::PUT,
            "/sessions/alpha/persona",
            persona_text_with(r#""deep": [{"deeper": {"k": 1, "k": 2}}]"#),
            "k",
        ),
    ];
    for (method, path, body, key) in cases {
        let response = send_text(&app, method.clone(), path, &body).await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            &format!("the key {key:?} appears twice"),
            format!("{method} {path} {body}"),
        )
        .await;
    }
    assert_eq!(
        snapshot(&app.sessions_dir),
        before,
        "a refused body changed the store"
    );

    // The same key in two objects is no repeat.
    let body = persona_text_with(r#""more": {"name": "n", "settings": {"name": "m"}}"#);
    let response = send_text(&app, Method::PUT, "/sessions/alpha/persona", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

/// The detail quotes the client's own key, escaped, and at most 50 characters of it.
#[tokio::test]
async fn a_repeated_key_is_quoted_escaped_and_cut_short() {
    let app = TestApp::fresh().await;
    app.created("alpha").await;
    let long = format!("{}é{}", "k".repeat(49), "z".repeat(200));
    let odd = "a\"\n\u{7}\u{202e}";
    for key in [long.as_str(), odd] {
        let key_text = serde_json::to_string(key).unwrap();
        let body = format!("{{{key_text}: 1, {key_text}: 2}}");
        let problem = assert_problem(
            send_text(&app, Method::PATCH, "/sessions/alpha", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        )
        .await;
        let detail = problem["detail"].as_str().unwrap();
        let shown: String = key.chars().take(50).collect();
        assert!(detail.contains(&format!("{shown:?}")), "{detail}");
        assert!(detail.len() < 200, "{detail}");
        assert!(
            !detail.contains('\n') && !detail.contains('\u{7}') && !detail.contains('\u{202e}')
        );
    }
    app.stop().await;
}

/// Syntax is checked first: a body that repeats a key and is also broken is 400.
#[tokio::test]
async fn a_broken_body_with_a_repeated_key_is_still_400() {
    let app = TestApp::fresh().await;
    for body in [
        r#"{"name": "a", "name": "b""#,
        r#"{"name": "a", "name": "b"} x"#,
        r#"{"name": "a", "name": "b", }"#,
    ] {
        assert_problem(
            send_text(&app, Method::POST, "/sessions", body).await,
            StatusCode::BAD_REQUEST,
            "malformed-json",
        )
        .await;
    }
    let deep = format!(
        "{{\"name\": \"a\", \"x\": {}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_problem(
        send_text(&app, Method::POST, "/sessions", &deep).await,
        StatusCode::BAD_REQUEST,
        "malformed-json",
    )
    .await;
    assert_eq!(app.sessions_on_disk(), Vec::<String>::new());
    app.stop().await;
}

/// JSON Schema takes `1.0` for an integer, and so does the service; what it stores is
/// the integer `1`, as the original module (and a Python `int`) writes it.
#[tokio::test]
async fn a_whole_max_turns_written_as_a_float_is_stored_as_an_integer() {
    let app = TestApp::fresh().await;
    let turns = |value: f64| persona_with("/settings/max_turns", json!(value));
    let persona_file = |name: &str| {
        let text = std::fs::read_to_string(app.session_dir(name).join("persona.json")).unwrap();
        (serde_json::from_str::<Value>(&text).unwrap(), text)
    };

    let created = app.create_session("work", Some(turns(1.0))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let (stored, text) = persona_file("work");
    assert_eq!(stored["settings"]["max_turns"], json!(1));
    assert!(!text.contains("1.0"), "{text}");

    let answer = assert_json(
        app.send_json(Method::PUT, "/sessions/work/persona", &turns(30.0))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["settings"]["max_turns"], json!(30));
    let (stored, text) = persona_file("work");
    assert_eq!(stored["settings"]["max_turns"], json!(30));
    assert!(!text.contains("30.0"), "{text}");
    assert_eq!(app.get_ok("/sessions/work/persona").await, stored);
    app.stop().await;
}
