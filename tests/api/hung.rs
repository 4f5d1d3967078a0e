//! A write on storage that stops answering (the `hang` failpoint: the write blocks for
//! ever at a step, as on a dead NFS server or a wedged disk). It must not hang its
//! caller, the next writes, the health check or shutdown.

use crate::helpers::*;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

/// The bound the binary is started with, to keep the test short.
const BOUND: Duration = Duration::from_secs(1);

/// Prepares a store holding session `a`, then starts the binary on it with the
/// failpoints armed, so the first write of the test is the first to reach them.
async fn start_with_a(dirs: &Dirs, failpoints: &str) -> BinaryServer {
    let mut server = BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()));
    let (status, created) = server
        .must(Method::POST, "/sessions", Some(&json!({ "name": "a" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    server.process.kill();
    start(dirs, failpoints)
}

fn start(dirs: &Dirs, failpoints: &str) -> BinaryServer {
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command
        .arg("--write-timeout=1s")
        .env("SESSION_MANAGER_FAILPOINTS", failpoints);
    BinaryServer::start(&mut command)
}

async fn problem(
    server: &BinaryServer,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> (StatusCode, String, Duration) {
    let start = Instant::now();
    let (status, answer) = server.must(method, path, Some(&body)).await;
    (
        status,
        answer["detail"].as_str().unwrap_or_default().to_owned(),
        start.elapsed(),
    )
}

#[tokio::test]
async fn a_hung_write_answers_503_in_its_bound_turns_health_unhealthy_and_does_not_stop_shutdown() {
    let dirs = Dirs::new();
    let mut server = start_with_a(&dirs, "temp-written=hang").await;

    // The write that hangs: answered within about its bound, saying it may still apply.
    let (status, detail, took) =
        problem(&server, Method::PATCH, "/sessions/a", json!({ "pid": 7 })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
    assert!(detail.contains("may still be applied"), "{detail}");
    assert!(took >= BOUND && took < BOUND * 5, "answered after {took:?}");

    // While it hangs: health is unhealthy (so a container runtime restarts the
    // service), reads still work, and every write is refused at once.
    let (status, health) = server.must(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert!(
        health["detail"]
            .as_str()
            .unwrap()
            .contains("running for more than 1 s"),
        "{health}"
    );
    let session = server.get_ok("/sessions/a").await;
    assert_eq!(
        session["pid"],
        json!(null),
        "the hung write was never published"
    );
    for (method, path, body) in [
        (Method::PATCH, "/sessions/a", json!({ "pid": 8 })),
        (Method::POST, "/sessions", json!({ "name": "b" })),
        (Method::PUT, "/sessions/active", json!({ "name": "a" })),
    ] {
        let (status, detail, took) = problem(&server, method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {detail}"
        );
        assert!(detail.contains("no write is taken"), "{detail}");
        assert!(
            took < BOUND,
            "{method} {path} waited {took:?} instead of failing at once"
        );
    }
    assert!(
        server
            .process
            .log()
            .contains("a write did not finish within its bound"),
        "{}",
        server.process.log()
    );

    // SIGTERM still stops it, without waiting for the hung write.
    let stopping = Instant::now();
    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    let status = server.process.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}: {}", server.process.log());
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}

// Multi-threaded: the test thread blocks on the log while the first request runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_behind_a_hung_one_is_never_applied_after_its_caller_heard_503() {
    let dirs = Dirs::new();
    let mut server = start_with_a(&dirs, "temp-written=hang").await;
    // Two writes at once: one hangs holding the writer lock, the other waits for it.
    let hung = tokio::spawn(
        server
            .request(Method::PATCH, "/sessions/a")
            .json(&json!({ "pid": 7 }))
            .send(),
    );
    server
        .process
        .expect_line("failpoint TempWritten: hanging", Duration::from_secs(10));
    let (status, detail, _) = problem(
        &server,
        Method::PUT,
        "/sessions/active",
        json!({ "name": "a" }),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
    assert!(detail.contains("it was not applied"), "{detail}");
    let first = hung.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.process.kill();
    // After a restart (the hang is gone), the queued switch did not happen.
    let server = BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()));
    let current = server.get_ok("/sessions/active").await;
    assert_eq!(current["active"], json!(null), "{current}");
}
