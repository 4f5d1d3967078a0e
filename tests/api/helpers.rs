//! `TestApp`: the real router served by `app::serve` on a random loopback port, over
//! temp directories, with typed helpers. Dropping it without `stop` aborts the server;
//! `stop` shuts it down gracefully and fails the test if the server failed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use session_manager::app;
use session_manager::personas::Personas;
use session_manager::security::{Auth, HostGuard};
use session_manager::state::AppState;
use session_manager::store::Store;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
}

#[derive(Default, Clone)]
pub struct Options {
    pub token: Option<String>,
    pub allowed_hosts: Vec<String>,
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub client: Client,
    pub token: Option<String>,
    pub sessions_dir: PathBuf,
    pub personas_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Starts the app on fresh temp directories.
    pub async fn spawn(dirs: &Dirs) -> Self {
        Self::spawn_with(dirs, Options::default()).await
    }

    pub async fn spawn_with(dirs: &Dirs, options: Options) -> Self {
        let store = Store::open(&dirs.sessions()).expect("open the store");
        let personas = Personas::open(&dirs.personas()).expect("open the personas");
        // Bound before the server task starts, so no request can race the listener.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(
            store,
            personas,
            Auth::new(options.token.as_deref()),
            HostGuard::new(addr, &options.allowed_hosts),
        );
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
            shutdown: Some(tx),
            server: Some(server),
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
        response.json().await.unwrap()
    }

    pub async fn switch(&self, name: &str) -> Response {
        self.send_json(Method::PUT, "/sessions/active", &json!({ "name": name }))
            .await
    }

    pub async fn patch(&self, name: &str, body: &Value) -> Response {
        self.send_json(Method::PATCH, &format!("/sessions/{name}"), body)
            .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    pub fn session_dir(&self, name: &str) -> PathBuf {
        self.sessions_dir.join(name)
    }

    /// The session's `metadata.json` as on disk.
    pub fn metadata_on_disk(&self, name: &str) -> Value {
        read_json(&self.session_dir(name).join("metadata.json"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts a problem answer: status, content type, and the `status`/`title` members;
/// returns the body for further checks on `detail`.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "content type of a {status} answer"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// A persona object that passes validation.
pub fn custom_persona() -> Value {
    json!({
        "name": "Reviewer",
        "description": "Reviews diffs",
        "system_prompt": "Review the operator's changes.",
        "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 5, "effort": "high" },
        "color": "blue"
    })
}
