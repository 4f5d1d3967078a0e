//! Whether a session's recorded process lives, judged from `/proc`, and the lists and
//! health report built on it.

use reqwest::StatusCode;
use serde_json::json;

use super::*;
use crate::helpers::*;

#[tokio::test]
async fn a_recorded_process_is_alive_until_it_ends_and_then_gone() {
    let app = TestApp::fresh().await;
    app.created("other").await;
    app.created("bot").await;
    let mut child = LiveChild::spawn();
    let pid = child.pid();

    let patched = assert_json(
        app.patch("bot", &json!({ "pid": pid })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["process"], "alive");
    let recorded = recorded_now(&patched);
    let on_disk = app.metadata_on_disk("bot");
    assert_eq!(
        (&on_disk["pid"], &on_disk["pid_recorded"]),
        (&json!(pid), &recorded)
    );
    let list = app.get_ok("/sessions?process=alive").await;
    assert_eq!(names(&list), ["bot"]);
    let list = assert_json(app.get("/sessions").await, StatusCode::OK).await;
    assert_eq!(list[0]["process"], "alive");
    assert_eq!(list[1]["process"], "none");

    // Another pid over the live one: refused, naming the live one.
    let problem = assert_problem(
        app.patch("bot", &json!({ "pid": NO_SUCH_PID })).await,
        StatusCode::CONFLICT,
        "process-alive",
    )
    .await;
    assert_eq!(problem["pid"], pid);
    assert_eq!(app.metadata_on_disk("bot"), on_disk);
    // The same pid again: still that process, recorded now.
    let again = assert_json(
        app.patch("bot", &json!({ "pid": pid })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["process"], "alive");
    recorded_now(&again);

    // A launch while it lives: refused, unless taking over.
    let problem = assert_problem(
        launch(&app, "bot", "").await,
        StatusCode::CONFLICT,
        "process-alive",
    )
    .await;
    assert_eq!(problem["pid"], pid);
    let spec = launched(&app, "bot", "?takeover=true").await;
    assert_eq!(spec["mode"], "new");

    app.switched("bot").await;
    assert_eq!(app.health().await["problems"], json!([]));
    let list = assert_json(app.get("/sessions").await, StatusCode::OK).await;
    assert_eq!(list[0]["process"], "alive");
    // A poller that has the session and its process's state gets 304 ...
    let tag = |response: &reqwest::Response| response.headers()["etag"].clone();
    let polled = app.get("/sessions/bot").await;
    let alive_tag = tag(&polled);
    let unchanged = app
        .request(reqwest::Method::GET, "/sessions/bot")
        .header("if-none-match", alive_tag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    child.end();
    // ... until the process ends, although nothing was written: the tag covers it.
    let polled = app
        .request(reqwest::Method::GET, "/sessions/bot")
        .header("if-none-match", alive_tag.clone())
        .send()
        .await
        .unwrap();
    assert_ne!(tag(&polled), alive_tag);
    let answer = assert_json(polled, StatusCode::OK).await;
    assert_eq!(answer["process"], "gone");
    let list = assert_json(app.get("/sessions").await, StatusCode::OK).await;
    assert_eq!(list[0]["name"], "bot");
    assert_eq!(
        list[0]["process"], "gone",
        "the list is not older than the end"
    );
    assert_eq!(names(&app.get_ok("/sessions?process=gone").await), ["bot"]);
    assert_eq!(names(&app.get_ok("/sessions?process=alive").await), [""; 0]);
    assert_eq!(
        names(&app.get_ok("/sessions?process=gone&status=active").await),
        ["bot"]
    );
    let current = assert_json(app.get("/sessions/active").await, StatusCode::OK).await;
    assert_eq!(current["session"]["process"], "gone");
    let health = app.health().await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(
        health["problems"],
        json!(["1 session(s) are active or suspended but their process is gone: bot"])
    );

    // Its end recorded: nothing to report any more.
    let idle = assert_json(
        app.patch("bot", &json!({ "pid": null, "status": "idle" }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(idle["process"], "none");
    assert_eq!(idle.get("pid_recorded"), None);
    assert_eq!(app.health().await["problems"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_pid_recorded_before_its_process_started_is_gone() {
    let dirs = Dirs::new();
    let child = LiveChild::spawn();
    let hour_ago = minutes_ago(60);
    // The same running process, recorded an hour before it started (its pid was
    // reused since) and recorded after it started.
    let mut reused = python_metadata("reused", &hour_ago, &hour_ago, "suspended");
    reused["pid"] = json!(child.pid());
    reused["pid_recorded"] = json!(hour_ago);
    write_python_session(&dirs.sessions(), "reused", &reused);
    let now = minutes_ago(0);
    let mut recorded = python_metadata("recorded", &now, &now, "suspended");
    recorded["pid"] = json!(child.pid());
    recorded["pid_recorded"] = json!(now);
    write_python_session(&dirs.sessions(), "recorded", &recorded);
    let app = TestApp::spawn(&dirs).await;

    let answer = assert_json(app.get("/sessions/reused").await, StatusCode::OK).await;
    assert_eq!(answer["process"], "gone");
    let answer = assert_json(app.get("/sessions/recorded").await, StatusCode::OK).await;
    assert_eq!(answer["process"], "alive");
    assert_eq!(
        names(&app.get_ok("/sessions?process=gone").await),
        ["reused"]
    );
    assert_eq!(
        app.health().await["problems"],
        json!(["1 session(s) are active or suspended but their process is gone: reused"])
    );
    // The recorded process is gone, so a new one may be recorded.
    let patched = assert_json(
        app.patch("reused", &json!({ "pid": NO_SUCH_PID })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["process"], "gone");
    recorded_now(&patched);
    assert_eq!(launched(&app, "reused", "").await["mode"], "new");
    // The pid given again, for a process started since: recorded now, so it is that
    // process (a pid once recorded may be the bot's next process's too).
    let mut reused = python_metadata("again", &hour_ago, &hour_ago, "suspended");
    reused["pid"] = json!(child.pid());
    reused["pid_recorded"] = json!(hour_ago);
    app.stop().await;
    write_python_session(&dirs.sessions(), "again", &reused);
    let app = TestApp::spawn(&dirs).await;
    let answer = assert_json(app.get("/sessions/again").await, StatusCode::OK).await;
    assert_eq!(answer["process"], "gone");
    let patched = assert_json(
        app.patch("again", &json!({ "pid": child.pid() })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["process"], "alive");
    recorded_now(&patched);
    app.stop().await;
}

#[tokio::test]
async fn sessions_are_listed_by_process_and_by_idle_time() {
    let dirs = Dirs::new();
    let hour_ago = minutes_ago(60);
    let mut old = python_metadata("old", &hour_ago, &hour_ago, "suspended");
    old["pid"] = json!(NO_SUCH_PID);
    write_python_session(&dirs.sessions(), "old", &old);
    // Idle, with a process that is gone: nothing a bot should have said otherwise.
    let mut quiet = python_metadata("quiet", &hour_ago, &hour_ago, "idle");
    quiet["pid"] = json!(NO_SUCH_PID);
    write_python_session(&dirs.sessions(), "quiet", &quiet);
    let app = TestApp::spawn(&dirs).await;
    app.created("new").await;
    assert_eq!(
        app.health().await["problems"],
        json!(["1 session(s) are active or suspended but their process is gone: old"])
    );

    let old_answer = assert_json(app.get("/sessions/old").await, StatusCode::OK).await;
    assert!(
        old_answer["idle_seconds"]
            .as_u64()
            .is_some_and(|s| (3600..3660).contains(&s)),
        "{old_answer}"
    );
    for (query, expected) in [
        ("?idle_for=30m", vec!["old", "quiet"]),
        ("?idle_for=59m", vec!["old", "quiet"]),
        ("?idle_for=61m", vec![]),
        ("?process=gone", vec!["old", "quiet"]),
        ("?process=none", vec!["new"]),
        ("?process=unknown", vec![]),
        ("?process=gone&idle_for=30m&status=suspended", vec!["old"]),
        ("?process=gone&status=idle", vec!["quiet"]),
    ] {
        let list = app.get_ok(&format!("/sessions{query}")).await;
        assert_eq!(names(&list), expected, "{query}");
    }
    // A report about a session makes it not idle.
    let counted = post_usage(&app, "old", &result("r-1", 0.01)).await;
    assert_eq!(counted.status(), StatusCode::OK);
    assert_eq!(
        names(&app.get_ok("/sessions?idle_for=30m").await),
        ["quiet"]
    );

    for bad in [
        "?process=dead",
        "?idle_for=30",
        "?idle_for=0s",
        "?idle_for=soon",
        "?status=busy",
    ] {
        let response = app.get(&format!("/sessions{bad}")).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn with_process_checks_off_every_recorded_process_is_unknown() {
    let app = TestApp::fresh_with(Options {
        args: vec!["--process-check=off".into()],
        ..Options::default()
    })
    .await;
    app.created("bot").await;
    let child = LiveChild::spawn();
    let patched = assert_json(
        app.patch("bot", &json!({ "pid": child.pid() })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["process"], "unknown");
    assert_eq!(
        names(&app.get_ok("/sessions?process=unknown").await),
        ["bot"]
    );
    assert_eq!(app.health().await["problems"], json!([]));
}
