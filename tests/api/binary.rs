//! The real binary (SPEC §5, §6): the directory lock against a second instance, graceful
//! stops on SIGTERM and SIGINT, `healthcheck`, the start-up checks on the listen address
//! and the token, state across `kill -9`, and the default directories under HOME.
//!
//! Each instance listens on `127.0.0.1:0`; the tests read the port from its
//! "listening on" log line, never sleep, and bound every wait.

use crate::helpers::*;

use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a stop may take (in-flight requests have at most SHUTDOWN_GRACE).
const EXIT_TIMEOUT: Duration = Duration::from_secs(25);

/// Arguments for an instance on `dirs` at a free loopback port.
fn serve_args(dirs: &Dirs) -> Vec<OsString> {
    binary_serve_args(&dirs.sessions(), &dirs.personas())
}

fn home_of(dirs: &Dirs) -> PathBuf {
    let home = dirs.root.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// An instance on `dirs`, with its HOME under them.
fn serve_on(dirs: &Dirs) -> BinaryServer {
    BinaryServer::start(binary_command_in_home(&home_of(dirs)).args(serve_args(dirs)))
}

/// The status of `GET path`, with `token` as the bearer token when given.
async fn get_status(server: &BinaryServer, path: &str, token: Option<&str>) -> StatusCode {
    let mut request = server.request(Method::GET, path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await;
    response
        .unwrap_or_else(|e| panic!("GET {path}: {e}; stderr:\n{}", server.process.log()))
        .status()
}

#[tokio::test]
async fn a_second_instance_on_the_same_sessions_dir_is_refused_at_once() {
    let dirs = Dirs::new();
    let first = serve_on(&dirs);
    let holder = format!("pid {}", first.process.pid());
    let canonical = std::fs::canonicalize(dirs.sessions()).unwrap();
    let alias = dirs.root.path().join("alias");
    std::os::unix::fs::symlink(dirs.sessions(), &alias).unwrap();

    let spellings = (0..20)
        .map(|_| dirs.sessions())
        .chain([dirs.sessions().join("."), alias]);
    for (attempt, sessions_dir) in spellings.enumerate() {
        let mut second = BinaryProcess::spawn(
            binary_command_in_home(&home_of(&dirs))
                .args(["--listen", "127.0.0.1:0", "--personas-dir"])
                .arg(dirs.personas())
                .arg("--sessions-dir")
                .arg(&sessions_dir),
        );
        let status = second.wait_exit_by(second.started(), Duration::from_secs(1));
        let stderr = second.log();
        assert_eq!(status.code(), Some(1), "attempt {attempt}: {stderr}");
        assert!(
            stderr.contains(&canonical.display().to_string()) && stderr.contains(&holder),
            "attempt {attempt}: the message names the directory and {holder}: {stderr}"
        );
        assert!(!stderr.contains("listening on"), "{stderr}");
        assert_eq!(get_status(&first, "/healthz", None).await, StatusCode::OK);
    }
    // The first instance still owns the directory and still writes to it.
    let lock = std::fs::read_to_string(canonical.join(".lock")).unwrap();
    assert_eq!(lock.trim(), holder);
    let (created, _) = first
        .must(Method::POST, "/sessions", Some(&json!({ "name": "after" })))
        .await;
    assert_eq!(created, StatusCode::CREATED);
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    let dirs = Dirs::new();
    let mut server = BinaryServer::start(
        binary_command_in_home(&home_of(&dirs))
            // The trace layer says when a request reached the service.
            .env("RUST_LOG", "info,tower_http=debug")
            .args(serve_args(&dirs)),
    );
    for name in ["alpha", "beta"] {
        let (status, _) = server
            .must(Method::POST, "/sessions", Some(&json!({ "name": name })))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }

    // A switch whose body is only half sent: the request is in the handler, waiting.
    let body = json!({ "name": "beta" }).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT /sessions/active HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first_half.as_bytes()).await.unwrap();
    server
        .process
        .expect_line("started processing request", BINARY_START_TIMEOUT);

    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    server
        .process
        .expect_line("SIGTERM received", Duration::from_secs(5));
    server
        .process
        .expect_line("shutting down", Duration::from_secs(5));
    // Nothing new is accepted once the shutdown began.
    let refused = tokio::net::TcpStream::connect(server.addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during shutdown"
    );

    // The request in flight is still answered, in full.
    stream.write_all(second_half.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the request in flight was not answered within 10 s")
        .unwrap();
    let response = parse_raw_response(&response);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({ "previous": null, "active": "beta", "changed": true })
    );

    let status = server.process.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.process.log());
    assert!(server.process.log().contains("stopped"));
    drop(server);

    // What it acknowledged during the shutdown is on disk.
    let server = serve_on(&dirs);
    assert_eq!(server.get_ok("/sessions/active").await["active"], "beta");
}

#[tokio::test]
async fn sigint_stops_it_gracefully_with_exit_0() {
    let dirs = Dirs::new();
    let mut server = serve_on(&dirs);
    assert_eq!(get_status(&server, "/healthz", None).await, StatusCode::OK);
    BinaryProcess::signal_pid(server.process.pid(), "INT");
    let status = server.process.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.process.log());
    let stderr = server.process.log();
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn healthcheck_exits_0_when_healthy_and_1_otherwise() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let mut server = serve_on(&dirs);
    let probe = |addr: SocketAddr| {
        binary_run(
            binary_command_in_home(&home)
                .arg("healthcheck")
                .arg("--listen")
                .arg(addr.to_string()),
            Duration::from_secs(15),
        )
    };

    let (status, stdout, stderr) = probe(server.addr);
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("200"), "{stdout}");

    // Something that answers, but not 200.
    let unhealthy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unhealthy_addr = unhealthy.local_addr().unwrap();
    let answer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, _) = unhealthy.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    });
    let (status, stdout, stderr) = probe(unhealthy_addr);
    answer.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("503"), "{stderr}");

    // Nothing listening any more.
    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    assert_eq!(server.process.wait_exit(EXIT_TIMEOUT).code(), Some(0));
    let (status, stdout, stderr) = probe(server.addr);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("unhealthy") && stderr.contains(&server.addr.to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let args = |listen: &str| {
        let mut args = serve_args(&dirs);
        args[1] = listen.into();
        args
    };

    let (status, _, stderr) = binary_run(
        binary_command_in_home(&home).args(args("0.0.0.0:0")),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("token") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
    // Refused before anything was touched.
    assert!(!dirs.sessions().exists() && !dirs.personas().exists());

    let mut server = BinaryServer::start(
        binary_command_in_home(&home)
            .args(args("0.0.0.0:0"))
            .arg("--allow-unauthenticated"),
    );
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    assert_eq!(get_status(&server, "/sessions", None).await, StatusCode::OK);
    // The container's probe reaches a wildcard listener on loopback.
    let (status, stdout, stderr) = binary_run(
        binary_command_in_home(&home)
            .args(["healthcheck", "--listen"])
            .arg(server.addr.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    assert_eq!(server.process.wait_exit(EXIT_TIMEOUT).code(), Some(0));
}

#[tokio::test]
async fn a_token_from_the_environment_is_required_everywhere_but_healthz() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let token = "env-token-3f9a1c";
    let mut args = serve_args(&dirs);
    args[1] = "0.0.0.0:0".into();
    let server = BinaryServer::start(
        binary_command_in_home(&home)
            .env("SESSION_MANAGER_TOKEN", token)
            .args(&args),
    );
    assert_eq!(
        get_status(&server, "/sessions", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_status(&server, "/sessions", Some("wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_status(&server, "/sessions", Some(token)).await,
        StatusCode::OK
    );
    assert_eq!(get_status(&server, "/healthz", None).await, StatusCode::OK);
    let (status, stdout, stderr) = binary_run(
        binary_command_in_home(&home)
            .args(["healthcheck", "--listen"])
            .arg(server.addr.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        !server.process.log().contains(token),
        "the token is in the log"
    );
}

#[tokio::test]
async fn a_token_file_gives_its_first_line_and_an_empty_one_is_refused() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let token_file = dirs.root.path().join("token");
    std::fs::write(&token_file, "file-token-7d2e\nsecond-line\n").unwrap();
    let server = BinaryServer::start(
        binary_command_in_home(&home)
            .args(serve_args(&dirs))
            .arg("--token-file")
            .arg(&token_file),
    );
    assert_eq!(
        get_status(&server, "/sessions", Some("file-token-7d2e")).await,
        StatusCode::OK
    );
    for wrong in [
        None,
        Some("second-line"),
        Some("file-token-7d2e second-line"),
    ] {
        assert_eq!(
            get_status(&server, "/sessions", wrong).await,
            StatusCode::UNAUTHORIZED
        );
    }
    drop(server);

    let refuse = |configure: &dyn Fn(&mut Command), what: &str, needle: &str| {
        let mut command = binary_command_in_home(&home);
        command.args(serve_args(&dirs));
        configure(&mut command);
        let (status, _, stderr) = binary_run(&mut command, Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert!(!stderr.contains("listening on"), "{what}: {stderr}");
    };
    let empty = dirs.root.path().join("empty-token");
    std::fs::write(&empty, "").unwrap();
    refuse(
        &|c| {
            c.arg("--token-file").arg(&empty);
        },
        "an empty token file",
        "token is empty",
    );
    let blank = dirs.root.path().join("blank-token");
    std::fs::write(&blank, "  \n\nnot-the-first-line\n").unwrap();
    refuse(
        &|c| {
            c.arg("--token-file").arg(&blank);
        },
        "a token file whose first line is blank",
        "token is empty",
    );
    let missing = dirs.root.path().join("no-such-token");
    refuse(
        &|c| {
            c.arg("--token-file").arg(&missing);
        },
        "a missing token file",
        &missing.display().to_string(),
    );
    refuse(
        &|c| {
            c.env("SESSION_MANAGER_TOKEN", "");
        },
        "an empty SESSION_MANAGER_TOKEN",
        "token is empty",
    );
}

#[tokio::test]
async fn sessions_and_the_current_one_survive_kill_9() {
    let dirs = Dirs::new();
    let mut server = serve_on(&dirs);
    for name in ["alpha", "beta", "gamma"] {
        let (status, _) = server
            .must(Method::POST, "/sessions", Some(&json!({ "name": name })))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for name in ["alpha", "beta"] {
        let (status, _) = server
            .must(
                Method::PUT,
                "/sessions/active",
                Some(&json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = server
        .must(
            Method::PATCH,
            "/sessions/beta",
            Some(&json!({ "pid": 4242 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sessions = server.get_ok("/sessions").await;
    let active = server.get_ok("/sessions/active").await;

    BinaryProcess::signal_pid(server.process.pid(), "KILL");
    let status = server.process.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), None, "killed by a signal");
    drop(server);

    let server = serve_on(&dirs);
    assert_eq!(server.get_ok("/sessions").await, sessions);
    assert_eq!(server.get_ok("/sessions/active").await, active);
    assert_eq!(active["active"], "beta");
    assert_eq!(active["session"]["status"], "active");
    assert_eq!(active["session"]["pid"], 4242);
    let alpha = server.get_ok("/sessions/alpha").await;
    assert_eq!(alpha["status"], "suspended");
}

#[tokio::test]
async fn without_dir_flags_it_uses_home_telegram_and_seeds_the_library() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let server =
        BinaryServer::start(binary_command_in_home(&home).args(["--listen", "127.0.0.1:0"]));
    let sessions = home.join("telegram").join("sessions");
    let personas = home.join("telegram").join("personas");
    assert!(sessions.is_dir());
    for key in ["default", "brainstorm", "planner", "research"] {
        let persona = read_json(&personas.join(format!("{key}.json")));
        assert_eq!(persona["settings"]["model"], "claude-sonnet-4-20250514");
    }
    let keys: Vec<String> = server
        .get_ok("/personas")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    for key in ["brainstorm", "default", "planner", "research"] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    let (status, _) = server
        .must(Method::POST, "/sessions", Some(&json!({ "name": "one" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(sessions.join("one").join("metadata.json").is_file());

    // The default listen address, as the binary itself documents it.
    let (status, stdout, _) = binary_run(
        binary_command_in_home(&home).arg("--help"),
        Duration::from_secs(10),
    );
    assert!(status.success());
    assert!(stdout.contains("[default: 127.0.0.1:8765]"), "{stdout}");

    // No HOME and no flags: refused with a message, not a directory in the cwd.
    let mut no_home = binary_command_in_home(&home);
    no_home.env_remove("HOME").args(["--listen", "127.0.0.1:0"]);
    let (status, _, stderr) = binary_run(&mut no_home, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HOME"), "{stderr}");
}
