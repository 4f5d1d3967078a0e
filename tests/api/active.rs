//! `/sessions/active`: which session is current, switching (the original module's
//! `switch_session` scenarios), clearing, and that all of it survives a restart.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_first_switch_answers_previous_null_and_activates() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let answer = app.switched("work").await;

    assert_eq!(
        answer,
        json!({ "previous": null, "active": "work", "changed": true })
    );
    let now = app.session("work").await;
    assert_eq!(now["status"], "active");
    assert!(assert_timestamp(&now["last_active"]) > assert_timestamp(&created["last_active"]));
    let mut expected = created.clone();
    expected["status"] = json!("active");
    expected["last_active"] = now["last_active"].clone();
    assert_eq!(now, expected);
    assert_eq!(app.metadata_on_disk("work")["status"], "active");
    assert_eq!(
        app.metadata_on_disk("work")["last_active"],
        now["last_active"]
    );
    assert_eq!(
        read_json(&app.sessions_dir.join(".current.json"))["name"],
        "work"
    );
    app.stop().await;
}

#[tokio::test]
async fn switching_answers_the_previous_and_suspends_it() {
    let app = TestApp::fresh().await;
    app.created("one").await;
    let two_created = app.created("two").await;
    app.switched("one").await;
    let one_before = app.session("one").await;

    let answer = app.switched("two").await;

    assert_eq!(
        answer,
        json!({ "previous": "one", "active": "two", "changed": true })
    );
    let mut one_expected = one_before.clone();
    one_expected["status"] = json!("suspended");
    assert_eq!(app.session("one").await, one_expected);
    let two = app.session("two").await;
    assert_eq!(two["status"], "active");
    assert!(assert_timestamp(&two["last_active"]) > assert_timestamp(&one_before["last_active"]));
    assert_eq!(two["created"], two_created["created"]);
    assert_eq!(app.metadata_on_disk("one")["status"], "suspended");
    assert_eq!(app.metadata_on_disk("two")["status"], "active");
    assert_eq!(
        app.list_sessions("?status=active").await,
        json!([two.clone()])
    );
    assert_eq!(
        app.current().await,
        json!({ "active": "two", "session": two })
    );

    let back = app.switched("one").await;
    assert_eq!(
        back,
        json!({ "previous": "two", "active": "one", "changed": true })
    );
    assert_eq!(app.session("two").await["status"], "suspended");
    assert_eq!(app.session("one").await["status"], "active");
    app.stop().await;
}

#[tokio::test]
async fn switching_to_the_current_session_changes_nothing() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    app.switched("work").await;
    let before = app.session("work").await;
    let bytes_before = std::fs::read(app.session_dir("work").join("metadata.json")).unwrap();

    let answer = app.switched("work").await;

    assert_eq!(
        answer,
        json!({ "previous": null, "active": "work", "changed": false })
    );
    assert_eq!(app.session("work").await, before);
    assert_eq!(
        std::fs::read(app.session_dir("work").join("metadata.json")).unwrap(),
        bytes_before
    );
    app.stop().await;
}

#[tokio::test]
async fn a_previous_session_that_is_not_active_keeps_its_status() {
    let app = TestApp::fresh().await;
    app.created("one").await;
    app.created("two").await;
    app.switched("one").await;
    // Its process ended: the current session is idle now.
    assert_json(
        app.patch("one", &json!({ "status": "idle" })).await,
        StatusCode::OK,
    )
    .await;
    let one_before = app.session("one").await;

    let answer = app.switched("two").await;

    assert_eq!(
        answer,
        json!({ "previous": "one", "active": "two", "changed": true })
    );
    assert_eq!(app.session("one").await, one_before);
    assert_eq!(app.session("two").await["status"], "active");
    app.stop().await;
}

#[tokio::test]
async fn get_active_with_nothing_current() {
    let app = TestApp::fresh().await;
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    app.created("work").await;

    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    app.stop().await;
}

#[tokio::test]
async fn get_active_answers_the_current_session_with_its_metadata() {
    let app = TestApp::fresh().await;
    app.created("other").await;
    app.created("work").await;
    app.switched("work").await;

    let answer = app.current().await;

    let work = app.session("work").await;
    assert_eq!(answer, json!({ "active": "work", "session": work }));
    assert_eq!(
        answer["session"],
        with_dir(&app.metadata_on_disk("work"), &app.session_dir("work"))
    );
    app.stop().await;
}

#[tokio::test]
async fn clearing_the_current_session_suspends_it() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    app.switched("work").await;
    let before = app.session("work").await;

    let answer = assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;

    assert_eq!(
        answer,
        json!({ "previous": "work", "active": null, "changed": true })
    );
    let mut expected = before.clone();
    expected["status"] = json!("suspended");
    assert_eq!(app.session("work").await, expected);
    assert_eq!(app.metadata_on_disk("work")["status"], "suspended");
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    // No longer current, so it cannot be active.
    assert_problem(
        app.patch("work", &json!({ "status": "active" })).await,
        StatusCode::CONFLICT,
        "status-conflict",
    )
    .await;
    assert_eq!(
        app.switched("work").await,
        json!({ "previous": null, "active": "work", "changed": true })
    );
    app.stop().await;
}

#[tokio::test]
async fn clearing_an_idle_current_session_keeps_it_idle() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    app.switched("work").await;
    assert_json(
        app.patch("work", &json!({ "status": "idle" })).await,
        StatusCode::OK,
    )
    .await;
    let before = app.session("work").await;

    let answer = assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;

    assert_eq!(
        answer,
        json!({ "previous": "work", "active": null, "changed": true })
    );
    assert_eq!(app.session("work").await, before);
    app.stop().await;
}

#[tokio::test]
async fn clearing_with_nothing_current_changes_nothing() {
    let app = TestApp::fresh().await;
    let created = app.created("work").await;

    let answer = assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;

    assert_eq!(
        answer,
        json!({ "previous": null, "active": null, "changed": false })
    );
    assert_eq!(app.session("work").await, created);
    app.stop().await;
}

#[tokio::test]
async fn switching_to_an_unknown_session_is_404_and_changes_nothing() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    app.switched("work").await;
    let before = app.session("work").await;

    let problem =
        assert_problem(app.switch("nope").await, StatusCode::NOT_FOUND, "not-found").await;

    assert!(problem["detail"].as_str().unwrap().contains("'nope'"));
    assert_eq!(app.session("work").await, before);
    assert_eq!(app.current().await["active"], "work");
    app.stop().await;
}

#[tokio::test]
async fn switching_with_an_invalid_body_is_422() {
    let app = TestApp::fresh().await;
    app.created("work").await;
    let too_long = "a".repeat(51);

    for (body, mentions) in [
        (json!({ "name": "active" }), "reserved"),
        (json!({ "name": "../work" }), "may only contain"),
        (json!({ "name": "" }), "must not be empty"),
        (json!({ "name": too_long }), "at most 50"),
        (json!({ "name": 5 }), "name"),
        (json!({ "name": null }), "name"),
        (json!({}), "name"),
        (json!({ "name": "work", "force": true }), "force"),
    ] {
        assert_problem_mentioning(
            app.send_json(Method::PUT, "/sessions/active", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            mentions,
            &body,
        )
        .await;
    }
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    app.stop().await;
}

#[tokio::test]
async fn switching_with_a_body_that_is_not_an_object_is_422() {
    let app = TestApp::fresh().await;
    app.created("work").await;

    let bodies = [json!(["work"]), json!("work"), json!(null)];
    let wrong = not_refused_with_422(&app, Method::PUT, "/sessions/active", bodies).await;
    assert_eq!(wrong, Vec::<String>::new(), "bodies not refused with 422");
    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    app.stop().await;
}

#[tokio::test]
async fn switching_with_malformed_json_is_400_and_without_json_415() {
    let app = TestApp::fresh().await;
    app.created("work").await;

    let malformed = app
        .request(Method::PUT, "/sessions/active")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST, "malformed-json").await;
    let untyped = app
        .request(Method::PUT, "/sessions/active")
        .body("{\"name\": \"work\"}")
        .send()
        .await
        .unwrap();
    assert_problem(
        untyped,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;

    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    app.stop().await;
}

#[tokio::test]
async fn the_current_session_survives_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("one").await;
    app.created("two").await;
    app.switched("one").await;
    app.switched("two").await;
    let before = app.current().await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(app.current().await, before);
    assert_eq!(before["active"], "two");
    assert_eq!(app.session("two").await["status"], "active");
    assert_eq!(app.session("one").await["status"], "suspended");
    assert_eq!(
        app.switched("two").await,
        json!({ "previous": null, "active": "two", "changed": false })
    );
    assert_eq!(
        app.switched("one").await,
        json!({ "previous": "two", "active": "one", "changed": true })
    );
    app.stop().await;
}

#[tokio::test]
async fn an_idle_current_session_is_still_current_after_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("one").await;
    app.created("two").await;
    app.switched("two").await;
    assert_json(
        app.patch("two", &json!({ "status": "idle" })).await,
        StatusCode::OK,
    )
    .await;
    let before = app.current().await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(app.current().await, before);
    assert_eq!(before["active"], "two");
    assert_eq!(before["session"]["status"], "idle");
    app.stop().await;
}

#[tokio::test]
async fn no_current_session_survives_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("work").await;
    app.switched("work").await;
    assert_json(app.delete("/sessions/active").await, StatusCode::OK).await;
    let sessions = app.list_sessions("").await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(
        app.current().await,
        json!({ "active": null, "session": null })
    );
    assert_eq!(app.list_sessions("").await, sessions);
    assert_eq!(sessions[0]["status"], "suspended");
    app.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("alpha").await;
    app.create_session("beta", Some(json!("research"))).await;
    app.create_session("gamma", Some(custom_persona())).await;
    app.created("delta").await;
    app.created("gone").await;
    assert_json(
        app.patch("alpha", &json!({ "pid": 1001, "status": "suspended" }))
            .await,
        StatusCode::OK,
    )
    .await;
    app.switched("beta").await;
    assert_json(
        app.patch("beta", &json!({ "pid": 2002 })).await,
        StatusCode::OK,
    )
    .await;
    app.switched("gamma").await;
    assert_json(
        app.send_json(Method::PUT, "/sessions/delta/persona", &custom_persona())
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        app.delete("/sessions/gone").await.status(),
        StatusCode::NO_CONTENT
    );
    let sessions = app.list_sessions("").await;
    let active = app.current().await;
    let mut personas = Vec::new();
    for name in ["alpha", "beta", "gamma", "delta"] {
        let persona = app.get(&format!("/sessions/{name}/persona")).await;
        personas.push(assert_json(persona, StatusCode::OK).await);
    }
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;

    assert_eq!(app.list_sessions("").await, sessions);
    assert_eq!(app.current().await, active);
    for (name, persona) in ["alpha", "beta", "gamma", "delta"].iter().zip(&personas) {
        let got = app.get(&format!("/sessions/{name}/persona")).await;
        assert_eq!(&assert_json(got, StatusCode::OK).await, persona, "{name}");
    }
    assert_problem(
        app.get("/sessions/gone").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(names(&sessions), ["gamma", "beta", "delta", "alpha"]);
    assert_eq!(active["active"], "gamma");
    app.stop().await;
}
