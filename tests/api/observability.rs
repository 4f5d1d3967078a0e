//! What an operator monitors: `/healthz` fields, `/metrics` (behind the token, or on
//! its own loopback listener), and request logs (one line per request, with the route
//! template, status, latency and request id; never the token).

use crate::helpers::*;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The value of the first sample of `metric` whose labels include every `label`.
fn sample(exposition: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn healthz_reports_version_uptime_counts_current_and_storage() {
    let app = TestApp::fresh().await;
    app.created("one").await;
    app.created("two").await;
    app.switch("two").await;

    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_seconds"].is_u64());
    assert_eq!(
        health["sessions"],
        json!({ "total": 2, "idle": 1, "active": 1, "suspended": 0 })
    );
    assert_eq!(health["current"], "two");
    assert_eq!(health["personas"], 4);
    assert_eq!(health["skipped"], json!([]));
    assert_eq!(health["problems"], json!([]));
    let storage = &health["storage"];
    assert!(storage["free_bytes"].as_u64().unwrap() <= storage["total_bytes"].as_u64().unwrap());
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_behind_the_token() {
    let app = TestApp::fresh_with(Options {
        token: Some("metrics-token".into()),
        ..Options::default()
    })
    .await;
    app.created("alpha").await;
    assert_eq!(app.get("/sessions/alpha").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/sessions/nope").await.status(),
        StatusCode::NOT_FOUND
    );

    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let requests = "session_manager_http_requests_total";
    let route = "route=\"/sessions/{name}\"";
    assert!(
        sample(
            &text,
            requests,
            &[route, "method=\"GET\"", "status=\"200\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            requests,
            &[route, "method=\"GET\"", "status=\"404\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        !text.contains("/sessions/alpha") && !text.contains("/sessions/nope"),
        "raw paths never become labels"
    );
    for metric in [
        "session_manager_http_request_duration_seconds_count",
        "session_manager_store_operation_duration_seconds_count",
        "session_manager_fsync_duration_seconds_count",
    ] {
        assert!(sample(&text, metric, &[]).unwrap() >= 1.0, "{metric}");
    }
    assert!(
        sample(
            &text,
            "session_manager_errors_total",
            &["kind=\"not-found\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "session_manager_errors_total",
            &["kind=\"unauthorized\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(sample(&text, "session_manager_build_info", &["version=\""]).is_some());
    assert!(text.contains("session_manager_sessions{status=\"idle\"}"));
    assert!(text.ends_with("# EOF\n"));
    app.stop().await;
}

#[tokio::test]
async fn a_metrics_listener_serves_metrics_without_the_token_and_nothing_else() {
    let dirs = Dirs::new();
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("SESSION_MANAGER_TOKEN", "t0ken");
    let mut server = BinaryServer::start(&mut command);
    let line = server
        .process
        .wait_for_line("serving metrics on ", BINARY_START_TIMEOUT)
        .unwrap();
    let metrics_addr = line
        .split("serving metrics on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    let client = bounded_client();
    let scraped = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("session_manager_build_info")
    );
    let other = client
        .get(format!("http://{metrics_addr}/sessions"))
        .send()
        .await
        .unwrap();
    assert_problem(other, StatusCode::NOT_FOUND, "not-found").await;
    let (status, _) = server.must(Method::GET, "/metrics", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the main listener keeps the token"
    );

    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    assert_eq!(
        server.process.wait_exit(BINARY_START_TIMEOUT).code(),
        Some(0)
    );
}

#[test]
fn a_metrics_listener_beyond_loopback_is_refused() {
    let dirs = Dirs::new();
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command.args(["--metrics-listen", "0.0.0.0:0"]);
    let mut process = BinaryProcess::spawn(&mut command);
    assert_eq!(process.wait_exit(BINARY_START_TIMEOUT).code(), Some(1));
    assert!(
        process
            .log()
            .contains("--metrics-listen 0.0.0.0:0 is not a loopback address")
    );
}

#[tokio::test]
async fn each_request_is_logged_once_as_json_with_its_route_status_latency_and_id() {
    let dirs = Dirs::new();
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command
        .args(["--log-format", "json"])
        .env("SESSION_MANAGER_TOKEN", "do-not-log-me");
    let mut server = BinaryServer::start(&mut command);

    let created = server
        .request(Method::POST, "/sessions")
        .bearer_auth("do-not-log-me")
        .json(&json!({ "name": "logged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let answered = server
        .request(Method::GET, "/sessions/logged")
        .bearer_auth("do-not-log-me")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(answered.headers()["x-request-id"], "trace-me-42");
    let made_up = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!made_up.is_empty(), "an id is made up when none was sent");

    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    assert_eq!(
        server.process.wait_exit(BINARY_START_TIMEOUT).code(),
        Some(0)
    );
    let log = server.process.log();
    assert!(!log.contains("do-not-log-me"), "the token is never logged");

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let for_id = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["id"] == id && l["fields"]["status"].is_u64())
            .collect()
    };
    let traced = for_id("trace-me-42");
    assert_eq!(traced.len(), 1, "one line per request: {log}");
    let line = traced[0];
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["route"], "/sessions/{name}");
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["latency"].is_string());
    assert_eq!(for_id(&made_up).len(), 1);
}
