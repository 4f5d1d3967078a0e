//! Conditional requests, so that the bot and the operator do not overwrite each other: a
//! strong `ETag` on each single-resource read, `If-Match` on each write (412 when stale),
//! `If-None-Match` on reads (304), and a create retried with `?if_exists=return`.

use reqwest::header::{ETAG, IF_MATCH, IF_NONE_MATCH};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{A, B, init};
use crate::helpers::*;

fn etag_of(response: &Response) -> String {
    response
        .headers()
        .get(ETAG)
        .unwrap_or_else(|| panic!("no ETag from {}", response.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The ETag a 200 answer to `GET path` carries, asserted to be a strong one.
async fn current_tag(app: &TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let tag = etag_of(&response);
    assert!(
        tag.len() > 2 && tag.starts_with('"') && tag.ends_with('"'),
        "not a strong entity tag: {tag}"
    );
    tag
}

/// A request, sent with whatever `If-Match` is given.
struct Write {
    method: Method,
    path: &'static str,
    body: Option<Value>,
}

impl Write {
    fn new(method: Method, path: &'static str, body: Option<Value>) -> Self {
        Self { method, path, body }
    }

    async fn send(&self, app: &TestApp, if_match: Option<&str>) -> Response {
        let mut request = app.request(self.method.clone(), self.path);
        if let Some(tag) = if_match {
            request = request.header(IF_MATCH, tag);
        }
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }
}

/// Takes the ETag `GET read` gives, lets `other` change the resource, and asserts that
/// `write` with the old tag is 412 and changes nothing on disk, and that with the fresh
/// tag it is `status`. Returns that answer.
async fn refused_when_stale_done_when_fresh(
    app: &TestApp,
    read: &str,
    other: Write,
    write: Write,
    status: StatusCode,
) -> Response {
    let stale = current_tag(app, read).await;
    let response = other.send(app, None).await;
    assert!(response.status().is_success(), "{}", response.status());
    let fresh = current_tag(app, read).await;
    assert_ne!(fresh, stale, "{read} changed");

    let before = snapshot(&app.sessions_dir);
    let response = write.send(app, Some(&stale)).await;
    assert_problem_mentioning(
        response,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
        "GET it again and retry with the new ETag",
        format!("{} {} after {read} changed", write.method, write.path),
    )
    .await;
    assert_eq!(snapshot(&app.sessions_dir), before);

    let response = write.send(app, Some(&fresh)).await;
    assert_eq!(response.status(), status, "{} {}", write.method, write.path);
    response
}

/// Asserts that `response` carries the ETag that `GET read` gives now.
async fn answers_the_new_tag(app: &TestApp, response: &Response, read: &str) {
    assert_eq!(etag_of(response), current_tag(app, read).await, "{read}");
}

#[tokio::test]
async fn each_conditional_write_is_refused_when_stale_and_done_when_fresh() {
    use Method as M;
    let app = TestApp::fresh().await;
    app.created("bot").await;
    app.created("spare").await;

    let response = refused_when_stale_done_when_fresh(
        &app,
        "/sessions/bot",
        Write::new(
            M::PATCH,
            "/sessions/bot",
            Some(json!({ "pid": NO_SUCH_PID })),
        ),
        Write::new(M::PATCH, "/sessions/bot", Some(json!({ "pid": null }))),
        StatusCode::OK,
    )
    .await;
    answers_the_new_tag(&app, &response, "/sessions/bot").await;
    assert_eq!(response.json::<Value>().await.unwrap()["pid"], json!(null));

    let mut planner = custom_persona();
    planner["name"] = json!("Planner of the bot");
    let response = refused_when_stale_done_when_fresh(
        &app,
        "/sessions/bot/persona",
        Write::new(M::PUT, "/sessions/bot/persona", Some(custom_persona())),
        Write::new(M::PUT, "/sessions/bot/persona", Some(planner.clone())),
        StatusCode::OK,
    )
    .await;
    answers_the_new_tag(&app, &response, "/sessions/bot/persona").await;
    assert_eq!(response.json::<Value>().await.unwrap(), planner);

    let response = refused_when_stale_done_when_fresh(
        &app,
        "/sessions/bot",
        Write::new(M::POST, "/sessions/bot/conversations", Some(init(A))),
        Write::new(M::POST, "/sessions/bot/conversations", Some(init(B))),
        StatusCode::CREATED,
    )
    .await;
    answers_the_new_tag(&app, &response, "/sessions/bot").await;
    assert_eq!(response.json::<Value>().await.unwrap()["conversation"], B);

    refused_when_stale_done_when_fresh(
        &app,
        "/sessions/active",
        Write::new(M::PUT, "/sessions/active", Some(json!({ "name": "spare" }))),
        Write::new(M::PUT, "/sessions/active", Some(json!({ "name": "bot" }))),
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.current().await["active"], "bot");

    // A change of the current session itself changes /sessions/active.
    refused_when_stale_done_when_fresh(
        &app,
        "/sessions/active",
        Write::new(M::PATCH, "/sessions/bot", Some(json!({ "budget_usd": 5 }))),
        Write::new(M::DELETE, "/sessions/active", None),
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.current().await["active"], json!(null));

    refused_when_stale_done_when_fresh(
        &app,
        "/sessions/bot",
        Write::new(M::PATCH, "/sessions/bot", Some(json!({ "budget_usd": 6 }))),
        Write::new(M::DELETE, "/sessions/bot", None),
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(app.sessions_on_disk(), ["spare"]);
    let response = app.get("/sessions/bot").await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn if_match_takes_a_star_or_a_list_of_strong_tags_and_nothing_else() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("bot").await;
    let patch = Write::new(
        Method::PATCH,
        "/sessions/bot",
        Some(json!({ "budget_usd": 1 })),
    );

    // `*`: any version of a session that exists.
    let response = patch.send(&app, Some("*")).await;
    assert_eq!(response.status(), StatusCode::OK);
    answers_the_new_tag(&app, &response, "/sessions/bot").await;
    for (method, path) in [
        (Method::DELETE, "/sessions/active"),
        (Method::PUT, "/sessions/active"),
    ] {
        let body = (method == Method::PUT).then(|| json!({ "name": "bot" }));
        let response = Write { method, path, body }.send(&app, Some("*")).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let missing = Write::new(
        Method::PATCH,
        "/sessions/nobody",
        Some(json!({ "pid": null })),
    );
    let response = missing.send(&app, Some("*")).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;

    // A list with the current tag in it; a weak tag never matches.
    let tag = current_tag(&app, "/sessions/bot").await;
    let response = patch.send(&app, Some(&format!("W/{tag}"))).await;
    assert_problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    let response = patch.send(&app, Some(&format!("\"other\", {tag}"))).await;
    assert_eq!(response.status(), StatusCode::OK);

    // Malformed: refused before anything is written.
    let before = snapshot(&app.sessions_dir);
    let tag = current_tag(&app, "/sessions/bot").await;
    let unquoted = tag.trim_matches('"').to_owned();
    let writes = [
        patch,
        Write::new(Method::PUT, "/sessions/bot/persona", Some(custom_persona())),
        Write::new(Method::POST, "/sessions/bot/conversations", Some(init(A))),
        Write::new(
            Method::PUT,
            "/sessions/active",
            Some(json!({ "name": "bot" })),
        ),
        Write::new(Method::DELETE, "/sessions/active", None),
        Write::new(Method::DELETE, "/sessions/bot", None),
    ];
    for write in &writes {
        for malformed in [unquoted.as_str(), "\"unterminated", "W/x"] {
            let response = write.send(&app, Some(malformed)).await;
            assert_problem_mentioning(
                response,
                StatusCode::BAD_REQUEST,
                "bad-request",
                "if-match must be * or a list of quoted entity tags",
                format!("{} {} with If-Match: {malformed}", write.method, write.path),
            )
            .await;
        }
    }
    assert_eq!(snapshot(&app.sessions_dir), before);

    // Tags name the run that gave them: after a restart, an old one is stale.
    app.stop().await;
    let app = TestApp::spawn(&dirs).await;
    let fresh = current_tag(&app, "/sessions/bot").await;
    assert_ne!(fresh, tag);
    let response = writes[0].send(&app, Some(&tag)).await;
    assert_problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    let response = writes[0].send(&app, Some(&fresh)).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn each_read_answers_304_to_the_tag_it_gave_until_it_changes() {
    let app = TestApp::fresh().await;
    app.created("bot").await;
    app.switched("bot").await;
    for path in ["/sessions/bot", "/sessions/bot/persona", "/sessions/active"] {
        let tag = current_tag(&app, path).await;
        // A weak tag matches too (If-None-Match compares weakly): a proxy that
        // compresses the body may have weakened the tag it passed on.
        for if_none_match in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            "*".to_owned(),
        ] {
            let response = app
                .request(Method::GET, path)
                .header(IF_NONE_MATCH, &if_none_match)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::NOT_MODIFIED,
                "{path} with {if_none_match}"
            );
            assert_eq!(etag_of(&response), tag);
            assert!(response.bytes().await.unwrap().is_empty());
        }
    }
    // A change (here a switch away, which suspends bot) moves each of them.
    let tags = [
        current_tag(&app, "/sessions/bot").await,
        current_tag(&app, "/sessions/bot/persona").await,
        current_tag(&app, "/sessions/active").await,
    ];
    app.send_json(Method::PUT, "/sessions/bot/persona", &custom_persona())
        .await;
    app.send_json(Method::DELETE, "/sessions/active", &json!({}))
        .await;
    for (path, tag) in ["/sessions/bot", "/sessions/bot/persona", "/sessions/active"]
        .into_iter()
        .zip(tags)
    {
        let response = app
            .request(Method::GET, path)
            .header(IF_NONE_MATCH, &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_ne!(etag_of(&response), tag, "{path}");
        assert_eq!(etag_of(&response), current_tag(&app, path).await);
    }
}

#[tokio::test]
async fn a_create_retried_with_if_exists_return_answers_the_session_it_made() {
    let app = TestApp::fresh().await;
    let post = |body: Value, query: &'static str| {
        let app = &app;
        async move {
            app.send_json(Method::POST, &format!("/sessions{query}"), &body)
                .await
        }
    };
    let created = post(
        json!({ "name": "bot", "persona": "planner" }),
        "?if_exists=return",
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let tag = etag_of(&created);
    let created = without_live_fields(created.json().await.unwrap());
    let on_disk = snapshot(&app.session_dir("bot"));

    let retried = post(
        json!({ "name": "bot", "persona": "planner" }),
        "?if_exists=return",
    )
    .await;
    assert_eq!(etag_of(&retried), tag);
    let retried = assert_json(retried, StatusCode::OK).await;
    assert_eq!(without_live_fields(retried), created);
    assert_eq!(snapshot(&app.session_dir("bot")), on_disk);

    for other in [json!("research"), json!(null), custom_persona()] {
        let response = post(
            json!({ "name": "bot", "persona": other }),
            "?if_exists=return",
        )
        .await;
        assert_problem_mentioning(
            response,
            StatusCode::CONFLICT,
            "exists",
            "already exists with another persona",
            &other,
        )
        .await;
    }
    let response = post(json!({ "name": "bot", "persona": "planner" }), "").await;
    assert_problem(response, StatusCode::CONFLICT, "exists").await;
    let response = post(
        json!({ "name": "bot", "persona": "planner" }),
        "?if_exists=fail",
    )
    .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;

    // A custom persona: the same one, however its numbers are written, is the same.
    let mine = custom_persona();
    let created = post(
        json!({ "name": "mine", "persona": mine }),
        "?if_exists=return",
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = without_live_fields(created.json().await.unwrap());
    let mut same = custom_persona();
    same["settings"]["max_turns"] = json!(5.0);
    let retried = post(
        json!({ "name": "mine", "persona": same }),
        "?if_exists=return",
    )
    .await;
    let retried = assert_json(retried, StatusCode::OK).await;
    assert_eq!(without_live_fields(retried), created);
    let mut changed = custom_persona();
    changed["system_prompt"] = json!("Review only the tests.");
    let response = post(
        json!({ "name": "mine", "persona": changed }),
        "?if_exists=return",
    )
    .await;
    assert_problem(response, StatusCode::CONFLICT, "exists").await;
    let response = post(
        json!({ "name": "mine", "persona": "planner" }),
        "?if_exists=return",
    )
    .await;
    assert_problem(response, StatusCode::CONFLICT, "exists").await;
    assert_eq!(app.sessions_on_disk(), ["bot", "mine"]);
}
