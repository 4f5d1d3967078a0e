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
