//! `TestApp`: the real router served by `app::serve` on a random loopback port, over
//! temp directories, with typed helpers. Dropping it without `stop` aborts the server;
//! `stop` shuts it down gracefully and fails the test if the server failed.
//!
//! This is the one file that names paths into the crate (`session_manager::...`): the
//! app's parts here, and the few items other tests need at the end of the file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use session_manager::config::{self, Cli, StartError};
use session_manager::http::app;
use session_manager::http::state::AppState;
use session_manager::store::StoreError;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::assert::assert_json;
use super::fixtures::{read_json, session_dirs, without_live_fields};

/// The directories a test app runs on; kept across restarts of the app.
pub struct Dirs {
    pub root: TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn sessions(&self) -> PathBuf {
        self.root.path().join("sessions")
    }
    pub fn personas(&self) -> PathBuf {
        self.root.path().join("personas")
    }
    /// The Claude Code config dir the app reads transcripts from, unless a test gives
    /// another: never the machine's own `~/.claude`.
    pub fn claude(&self) -> PathBuf {
        self.root.path().join("claude")
    }
}

#[derive(Default, Clone)]
pub struct Options {
    pub token: Option<String>,
    pub allowed_hosts: Vec<String>,
    /// Further command-line arguments, such as `--max-live=2`.
    pub args: Vec<String>,
    /// `--claude-config-dir`; [`Dirs::claude`] when `None`.
    pub claude_config_dir: Option<PathBuf>,
    /// `--archive-keep-days`.
    pub archive_keep_days: Option<u32>,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    pub token: Option<String>,
    pub sessions_dir: PathBuf,
    pub personas_dir: PathBuf,
    pub claude_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// The directories of an app from [`fresh`](Self::fresh), removed with it.
    own_dirs: Option<Dirs>,
}

/// `config::build`, waiting while the directory lock is held by this very process: the
/// lock is an `flock`, and a child that another test is spawning holds a copy of the
/// previous app's lock descriptor from its fork until its exec (the descriptor is
/// close-on-exec). That window is short; a lock held by anyone else fails at once.
async fn build_when_unlocked(config: &session_manager::config::Config) -> AppState {
    let ours = format!("pid {}", std::process::id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match config::build(config) {
            Ok(state) => return state,
            Err(StartError::Store(StoreError::Locked { holder, .. }))
                if holder == ours && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => panic!("build the app: {e}"),
        }
    }
}

impl TestApp {
    /// Starts the app on temp directories of its own, kept as long as it is: for a test
    /// that does not restart on the same directories.
    pub async fn fresh() -> Self {
        Self::fresh_with(Options::default()).await
    }

    pub async fn fresh_with(options: Options) -> Self {
        let dirs = Dirs::new();
        let mut app = Self::spawn_with(&dirs, options).await;
        app.own_dirs = Some(dirs);
        app
    }

    /// Starts the app on `dirs`, which the caller keeps: to prepare them first, or to
    /// start another app on them after this one stopped.
    pub async fn spawn(dirs: &Dirs) -> Self {
        Self::spawn_with(dirs, Options::default()).await
    }

    pub async fn spawn_with(dirs: &Dirs, options: Options) -> Self {
        // Bound before the server task starts, so no request can race the listener.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        // Assembled as `main` assembles it: from the command line, by `config::build`.
        let claude_dir = options.claude_config_dir.clone().unwrap_or(dirs.claude());
        let mut args = vec![
            "session-manager".to_owned(),
            format!("--listen={addr}"),
            format!("--sessions-dir={}", dirs.sessions().display()),
            format!("--personas-dir={}", dirs.personas().display()),
            format!("--claude-config-dir={}", claude_dir.display()),
        ];
        if let Some(token) = &options.token {
            let file = dirs.root.path().join("token");
            std::fs::write(&file, format!("{token}\n")).unwrap();
            args.push(format!("--token-file={}", file.display()));
        }
        args.extend(
            options
                .allowed_hosts
                .iter()
                .map(|h| format!("--allowed-host={h}")),
        );
        args.extend(options.args.iter().cloned());
        if let Some(days) = options.archive_keep_days {
            args.push(format!("--archive-keep-days={days}"));
        }
        let cli = Cli::try_parse_from(args).expect("the test's command line parses");
        let state = build_when_unlocked(&cli.config).await;
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app::serve(listener, state, async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: Client::new(),
            token: options.token,
            sessions_dir: std::fs::canonicalize(dirs.sessions()).unwrap(),
            personas_dir: dirs.personas(),
            claude_dir,
            shutdown: Some(tx),
            server: Some(server),
            own_dirs: None,
        }
    }

    /// Stops the server gracefully and waits for it; panics if it failed. The store's
    /// directory lock is released when this returns.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.server
            .take()
            .unwrap()
            .await
            .expect("server task panicked")
            .expect("server failed");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the token (when the app has one).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path).json(body).send().await.unwrap()
    }

    pub async fn create_session(&self, name: &str, persona: Option<Value>) -> Response {
        let mut body = json!({ "name": name });
        if let Some(persona) = persona {
            body["persona"] = persona;
        }
        self.send_json(Method::POST, "/sessions", &body).await
    }

    /// Creates a session and asserts it was created.
    pub async fn created(&self, name: &str) -> Value {
        let response = self.create_session(name, None).await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {name}");
        without_live_fields(response.json().await.unwrap())
    }

    pub async fn switch(&self, name: &str) -> Response {
        self.send_json(Method::PUT, "/sessions/active", &json!({ "name": name }))
            .await
    }

    pub async fn patch(&self, name: &str, body: &Value) -> Response {
        self.send_json(Method::PATCH, &format!("/sessions/{name}"), body)
            .await
    }

    /// Patches and asserts 200; the answer less its live fields.
    pub async fn patched(&self, name: &str, body: &Value) -> Value {
        let response = self.patch(name, body).await;
        without_live_fields(assert_json(response, StatusCode::OK).await)
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    pub fn session_dir(&self, name: &str) -> PathBuf {
        self.sessions_dir.join(name)
    }

    /// The session directories on disk, sorted.
    pub fn sessions_on_disk(&self) -> Vec<String> {
        session_dirs(&self.sessions_dir)
    }

    /// The session's `metadata.json` as on disk.
    pub fn metadata_on_disk(&self, name: &str) -> Value {
        read_json(&self.session_dir(name).join("metadata.json"))
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.unwrap()
    }

    /// `GET path`, asserted a JSON 200, less the sessions' live fields
    /// ([`without_live_fields`]).
    pub async fn get_ok(&self, path: &str) -> Value {
        without_live_fields(assert_json(self.get(path).await, StatusCode::OK).await)
    }

    /// `GET /sessions/{name}`, asserted 200.
    pub async fn session(&self, name: &str) -> Value {
        self.get_ok(&format!("/sessions/{name}")).await
    }

    /// `GET /sessions/active`, asserted 200.
    pub async fn current(&self) -> Value {
        self.get_ok("/sessions/active").await
    }

    /// `GET /sessions` (with an optional query), asserted 200.
    pub async fn list_sessions(&self, query: &str) -> Value {
        self.get_ok(&format!("/sessions{query}")).await
    }

    /// Switches and asserts 200; returns the answer.
    pub async fn switched(&self, name: &str) -> Value {
        assert_json(self.switch(name).await, StatusCode::OK).await
    }

    /// `GET /healthz`, asserted 200.
    pub async fn health(&self) -> Value {
        self.get_ok("/healthz").await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

// ---- The rest of the crate that tests use.

pub use session_manager::limits::{
    ARCHIVE_PAGE_MAX, ARCHIVE_SIZE_DEPTH, BODY_LIMIT, FEED_HISTORY, FEED_SUBSCRIBERS,
    HEADER_READ_TIMEOUT, max_connections,
};
pub use session_manager::model::{
    ARCHIVE_ID_LEN, ARCHIVE_ID_PATTERN, PERMISSION_MODES, RESERVED_FLAGS, visible_text_pattern,
};
pub use session_manager::transcript::{MAX_LINES, WINDOW_BYTES};

/// The paths of the router's table (`routes::table()`).
pub fn route_paths() -> BTreeSet<String> {
    session_manager::http::routes::table()
        .into_iter()
        .map(|(path, _, _)| path.to_owned())
        .collect()
}

/// Where a client reaches a listener on `listen`: loopback for a wildcard address, as
/// the binary's own `healthcheck` does.
pub fn reachable_addr(listen: SocketAddr) -> SocketAddr {
    session_manager::healthcheck::target(listen)
}

/// Whether `value` is a valid persona by the service's own rules; why not, if not.
pub fn check_persona(value: Value) -> Result<(), String> {
    session_manager::model::Persona::from_value(value).map(drop)
}
