//! The conversation a session's runs are in: the CLI's `init` message, forks, and the
//! history a session keeps.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::*;
use crate::helpers::*;

#[tokio::test]
async fn a_conversation_is_recorded_resumed_forked_cleared_and_kept_across_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("bot").await;

    let first = assert_json(
        report(&app, "/sessions/bot/conversations", A).await,
        StatusCode::CREATED,
    )
    .await;
    let started = first["conversations"][0]["started"].clone();
    assert_timestamp(&started);
    assert_eq!(first["conversation"], A);
    assert_eq!(
        first["conversations"],
        json!([{ "id": A, "started": started, "model": MODEL }])
    );
    assert_eq!(first["last_report"], started);
    let on_disk = app.metadata_on_disk("bot");
    assert_eq!(on_disk["conversation"], A);
    assert_eq!(on_disk["conversations"], first["conversations"]);

    // The same conversation again (a resumed run): nothing new.
    let again = assert_json(
        report(&app, "/sessions/bot/conversations", A).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["conversation"], A);
    assert_eq!(again["conversations"], first["conversations"]);
    assert_eq!(
        app.metadata_on_disk("bot")["conversations"],
        first["conversations"]
    );

    // A fork: the launch spec says where to report it, with its parent.
    let spec = launched(&app, "bot", "?mode=fork").await;
    let forked_id = new_conversation(&spec);
    assert_eq!(
        spec["report"]["conversations"],
        format!("/sessions/bot/conversations?parent={A}")
    );
    let path = spec["report"]["conversations"].as_str().unwrap();
    let forked = assert_json(report(&app, path, &forked_id).await, StatusCode::CREATED).await;
    let conversations = &forked["conversations"];
    let ended_at = conversations[0]["ended"]["at"].clone();
    assert_timestamp(&ended_at);
    assert_eq!(
        *conversations,
        json!([
            { "id": A, "started": started, "model": MODEL,
              "ended": { "at": ended_at, "reason": "forked" } },
            { "id": forked_id, "started": conversations[1]["started"], "parent": A,
              "model": MODEL },
        ])
    );
    assert_eq!(forked["conversation"], forked_id);

    // Cleared: no conversation, the last one ended as "cleared".
    let cleared = app.patched("bot", &json!({ "conversation": null })).await;
    assert_eq!(cleared.get("conversation"), None, "{cleared}");
    assert_eq!(cleared["conversations"][0], conversations[0]);
    assert_eq!(cleared["conversations"][1]["ended"]["reason"], "cleared");
    assert_eq!(app.metadata_on_disk("bot").get("conversation"), None);
    assert_eq!(
        app.metadata_on_disk("bot")["conversations"],
        cleared["conversations"]
    );

    app.stop().await;
    let app = TestApp::spawn(&dirs).await;
    assert_eq!(app.session("bot").await, cleared);
    // With no conversation, a launch starts a new one.
    let spec = launched(&app, "bot", "").await;
    assert_eq!(spec["mode"], "new");
    // The first conversation taken up again: not new, and the most recent one now.
    let resumed = assert_json(
        report(&app, "/sessions/bot/conversations", A).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(resumed["conversation"], A);
    assert_eq!(
        resumed["conversations"],
        json!([
            cleared["conversations"][1],
            { "id": A, "started": started, "model": MODEL },
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn conversation_ids_that_are_not_uuids_and_unknown_parents_are_refused() {
    let app = TestApp::fresh().await;
    app.created("bot").await;
    assert_eq!(
        report(&app, "/sessions/bot/conversations", A)
            .await
            .status(),
        StatusCode::CREATED
    );
    let before = snapshot(&app.session_dir("bot"));

    let rule = "must be a conversation id: a UUID";
    for id in [
        "../x",
        "../../etc/passwd",
        "0b7b4a8e9c414f4e9a433f5d2f8a1c20",
        "{0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20}",
        "",
    ] {
        let response = report(&app, "/sessions/bot/conversations", id).await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            &format!("session_id: {rule}"),
            id,
        )
        .await;
        let response = report(&app, &format!("/sessions/bot/conversations?parent={id}"), B).await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-filter",
            rule,
            id,
        )
        .await;
        let response = app.patch("bot", &json!({ "conversation": id })).await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            rule,
            id,
        )
        .await;
    }
    // A parent that is not one of the session's conversations.
    let response = report(&app, &format!("/sessions/bot/conversations?parent={B}"), B).await;
    assert_problem_mentioning(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-body",
        "is not one of this session's conversations",
        "unknown parent",
    )
    .await;
    // Another message than the init one.
    let mut assistant = init(B);
    assistant["type"] = json!("assistant");
    let response = app
        .send_json(Method::POST, "/sessions/bot/conversations", &assistant)
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;

    assert_eq!(snapshot(&app.session_dir("bot")), before);
    let response = report(&app, "/sessions/nobody/conversations", A).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}
