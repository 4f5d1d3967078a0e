//! Many clients at once, on a multi-threaded runtime so requests really run in
//! parallel: no acknowledged write is lost, no answer is a 5xx, and §3's invariants
//! (at most one `active`, and it is the current one) hold on disk, in the index, and
//! again after a restart on the same directories.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::helpers::*;

/// Clients of the mixed load, each with its own `reqwest::Client` (its own connections).
const CLIENTS: usize = 32;
/// Sessions every client switches among.
const SHARED: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A bound on a whole concurrent phase, so a hang fails the test instead of stalling it.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

fn shared(i: usize) -> String {
    format!("shared-{:02}", i % SHARED)
}

fn own(client: usize, which: char) -> String {
    format!("c{client:02}-{which}")
}

/// A distinct pid for each (client, step), so the stored one names the write it came from.
fn pid(client: usize, step: usize) -> i64 {
    NO_SUCH_PID + (client * 100 + step) as i64
}

/// A valid custom persona that names the write it came from.
fn persona(client: usize, step: usize) -> Value {
    let mut persona = custom_persona();
    persona["name"] = json!(format!("Reviewer {client}.{step}"));
    persona["description"] = json!(format!("written by client {client} at step {step}"));
    persona
}

fn new_client() -> Client {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("reqwest client")
}

/// Runs `tasks` to completion within [`PHASE_TIMEOUT`]; a panic in one fails the test.
async fn join_all<T: Send + 'static>(
    tasks: Vec<impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let joined = async {
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(handle.await.expect("a client task panicked"));
        }
        results
    };
    tokio::time::timeout(PHASE_TIMEOUT, joined)
        .await
        .expect("the concurrent phase did not finish in time")
}

/// A write the service acknowledged (2xx), with what it set.
#[derive(Debug, Clone)]
enum Ack {
    Created(String),
    Pid(String, i64),
    Persona(String, Value),
    Deleted(String),
    /// A switch to the target, and the answer.
    Switched(String, Value),
}

/// What one client sent and saw, in its own order.
#[derive(Debug, Default)]
struct Log {
    sent: usize,
    server_errors: usize,
    /// Answers that were not the expected ones: request, status and body.
    unexpected: Vec<String>,
    acks: Vec<Ack>,
    /// Checks made on answers while the load ran (consistent snapshots).
    checks: usize,
}

/// One client of the load.
struct Caller {
    client: Client,
    base: String,
    log: Log,
}

impl Caller {
    fn new(base: &str) -> Self {
        Self {
            client: new_client(),
            base: base.to_owned(),
            log: Log::default(),
        }
    }

    /// Sends a request; returns the JSON body (null when empty) if the status is the
    /// expected one, and records it as unexpected otherwise.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: StatusCode,
    ) -> Option<Value> {
        self.log.sent += 1;
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        if status.is_server_error() {
            self.log.server_errors += 1;
        }
        if status != expected {
            let sent = body.map(Value::to_string).unwrap_or_default();
            self.log.unexpected.push(format!(
                "{method} {path} {sent} -> {status} (expected {expected}): {value}"
            ));
            return None;
        }
        Some(value)
    }

    /// Records a failed check of an answer without stopping the load.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.log.checks += 1;
        if !ok {
            self.log.unexpected.push(what());
        }
    }

    async fn create(&mut self, name: &str, persona: Option<Value>) {
        let mut body = json!({ "name": name });
        if let Some(persona) = persona.clone() {
            body["persona"] = persona;
        }
        if let Some(answer) = self
            .call(Method::POST, "/sessions", Some(&body), StatusCode::CREATED)
            .await
        {
            self.check(answer["name"] == name, || {
                format!("create {name} answered {answer}")
            });
            self.log.acks.push(Ack::Created(name.to_owned()));
            if let Some(custom) = persona.filter(Value::is_object) {
                self.log.acks.push(Ack::Persona(name.to_owned(), custom));
            }
        }
    }

    async fn patch_pid(&mut self, name: &str, pid: i64) {
        let path = format!("/sessions/{name}");
        let body = json!({ "pid": pid });
        if let Some(answer) = self
            .call(Method::PATCH, &path, Some(&body), StatusCode::OK)
            .await
        {
            self.check(answer["pid"] == pid, || {
                format!("PATCH {path} pid {pid} answered {answer}")
            });
            self.log.acks.push(Ack::Pid(name.to_owned(), pid));
        }
    }

    async fn replace_persona(&mut self, name: &str, persona: Value) {
        let path = format!("/sessions/{name}/persona");
        if let Some(answer) = self
            .call(Method::PUT, &path, Some(&persona), StatusCode::OK)
            .await
        {
            self.check(answer == persona, || {
                format!("PUT {path} answered {answer}, not what was sent")
            });
            self.log.acks.push(Ack::Persona(name.to_owned(), answer));
        }
    }

    async fn switch(&mut self, name: &str) {
        let body = json!({ "name": name });
        if let Some(answer) = self
            .call(Method::PUT, "/sessions/active", Some(&body), StatusCode::OK)
            .await
        {
            self.check(answer["active"] == name, || {
                format!("switch to {name} answered {answer}")
            });
            self.log.acks.push(Ack::Switched(name.to_owned(), answer));
        }
    }

    async fn delete(&mut self, name: &str) {
        let path = format!("/sessions/{name}");
        if self
            .call(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
            .await
            .is_some()
        {
            self.log.acks.push(Ack::Deleted(name.to_owned()));
        }
    }

    /// `GET /sessions` (optionally filtered): each answer is one snapshot, so it may
    /// never hold two `active` sessions.
    async fn list(&mut self, query: &str) {
        let path = format!("/sessions{query}");
        if let Some(list) = self.call(Method::GET, &path, None, StatusCode::OK).await {
            let active = list
                .as_array()
                .map(|l| l.iter().filter(|s| s["status"] == "active").count());
            self.check(active.is_some_and(|n| n <= 1), || {
                format!("GET {path} answered {active:?} active sessions: {list}")
            });
        }
    }

    /// `GET /sessions/active`: `active` and `session` describe the same session.
    async fn current(&mut self) {
        if let Some(answer) = self
            .call(Method::GET, "/sessions/active", None, StatusCode::OK)
            .await
        {
            let consistent = match answer["active"].as_str() {
                None => answer["session"].is_null(),
                Some(name) => answer["session"]["name"] == name,
            };
            self.check(consistent, || {
                format!("GET /sessions/active answered {answer}")
            });
        }
    }
}

/// Fails on any 5xx and on any answer or check that was not as expected, showing the
/// count and the first few.
fn assert_all_expected(logs: &[Log]) {
    let server_errors: usize = logs.iter().map(|l| l.server_errors).sum();
    let unexpected: Vec<&String> = logs.iter().flat_map(|l| &l.unexpected).collect();
    let first: Vec<&&String> = unexpected.iter().take(3).collect();
    assert_eq!(
        server_errors, 0,
        "5xx answers; the first unexpected: {first:#?}"
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers; the first: {first:#?}",
        unexpected.len()
    );
}

/// One client's script: about fifteen requests mixing creates of its own names, reads,
/// pid updates, switches among the shared sessions, persona replacements and a delete.
/// Clients below `SHARED` are also the only ones to update their shared session's pid
/// and persona, so the last acknowledged value of each is well defined.
async fn run_client(i: usize, base: String, start: Arc<Barrier>) -> Log {
    let mut c = Caller::new(&base);
    let (a, b) = (own(i, 'a'), own(i, 'b'));
    start.wait().await;

    let library = (i % 2 == 1).then(|| json!("planner"));
    c.create(&a, library).await;
    c.create(&b, Some(persona(i, 0))).await;
    c.patch_pid(&a, pid(i, 1)).await;
    c.switch(&shared(i * 3)).await;
    c.list("").await;
    c.replace_persona(&a, persona(i, 1)).await;
    c.patch_pid(&a, pid(i, 2)).await;
    // Read your own writes.
    let path = format!("/sessions/{a}");
    if let Some(answer) = c.call(Method::GET, &path, None, StatusCode::OK).await {
        let ok = answer["pid"] == pid(i, 2) && answer["persona"] == "custom";
        c.check(ok, || format!("GET {path} after its writes: {answer}"));
    }
    c.delete(&b).await;
    c.call(
        Method::GET,
        &format!("/sessions/{b}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    c.switch(&shared(i + 5)).await;
    c.current().await;
    if i < SHARED {
        let s = shared(i);
        c.patch_pid(&s, pid(i, 3)).await;
        c.replace_persona(&s, persona(i, 3)).await;
        c.patch_pid(&s, pid(i, 4)).await;
    } else {
        let path = format!("/sessions/{}/persona", shared(i));
        c.call(Method::GET, &path, None, StatusCode::OK).await;
    }
    c.list("?status=active").await;
    c.log
}

/// Every entry under `dir`, at any depth, whose name starts with `.tmp-`.
fn temp_entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(entry.path());
            }
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

/// §3 and §6's invariants, checked on a quiet service: at most one `active` session,
/// and it is the current one (in the index, in `.current.json` and on disk); every
/// session directory holds a `metadata.json` that parses, names its directory and
/// equals what the API answers minus `dir`; the list holds exactly those sessions; no
/// temp entry is left. Returns how many checks were made.
async fn check_invariants(app: &TestApp) -> usize {
    let mut checks = 0;
    let list = app.list_sessions("").await;
    let list = list.as_array().expect("GET /sessions answers an array");
    let current = app.current().await;

    let active: Vec<&Value> = list.iter().filter(|s| s["status"] == "active").collect();
    assert!(
        active.len() <= 1,
        "more than one active session: {active:?}"
    );
    checks += 1;
    if let Some(active) = active.first() {
        assert_eq!(
            current["active"], active["name"],
            "the active session is not the current one"
        );
        checks += 1;
    }
    match current["active"].as_str() {
        Some(name) => {
            let listed = list.iter().find(|s| s["name"] == name);
            assert_eq!(Some(&current["session"]), listed, "GET /sessions/active");
        }
        None => assert_eq!(current["session"], Value::Null, "GET /sessions/active"),
    }
    checks += 1;
    let pointer = app.sessions_dir.join(".current.json");
    let on_disk = if pointer.exists() {
        read_json(&pointer)["name"].clone()
    } else {
        Value::Null
    };
    assert_eq!(
        on_disk, current["active"],
        ".current.json names the current one"
    );
    checks += 1;

    let dirs = app.sessions_on_disk();
    let mut listed: Vec<String> = list
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, dirs, "the listed sessions are the directories");
    checks += 1;
    let mut active_on_disk = 0;
    for name in &dirs {
        let metadata = app.metadata_on_disk(name);
        assert_eq!(metadata["name"], name.as_str(), "{name}/metadata.json");
        assert!(metadata.get("dir").is_none(), "dir is never stored: {name}");
        let answer = app.session(name).await;
        assert_eq!(
            answer,
            with_dir(&metadata, &app.session_dir(name)),
            "{name}"
        );
        let listed = list.iter().find(|s| s["name"] == name.as_str());
        assert_eq!(listed, Some(&answer), "{name} in GET /sessions");
        let status = metadata["status"].as_str().unwrap();
        assert!(
            ["idle", "active", "suspended"].contains(&status),
            "{name}: {status}"
        );
        if status == "active" {
            active_on_disk += 1;
            assert_eq!(current["active"], name.as_str(), "{name} is active on disk");
        }
        checks += 6;
    }
    assert!(
        active_on_disk <= 1,
        "{active_on_disk} sessions active on disk"
    );
    checks += 1;
    let leftovers = temp_entries(&app.sessions_dir);
    assert!(leftovers.is_empty(), "temp entries left: {leftovers:?}");
    checks + 1
}

/// What the acknowledged writes of the mixed load imply; returns how many checks.
async fn check_acks(app: &TestApp, logs: &[Log]) -> usize {
    let mut checks = 0;
    let mut created = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut pids = BTreeMap::new();
    let mut personas = BTreeMap::new();
    let mut switches = Vec::new();
    // Each session's pid and persona come from one client, so its log's order is theirs.
    for ack in logs.iter().flat_map(|log| &log.acks) {
        match ack {
            Ack::Created(name) => assert!(created.insert(name.clone()), "{name} twice"),
            Ack::Deleted(name) => assert!(deleted.insert(name.clone()), "{name} twice"),
            Ack::Pid(name, pid) => {
                pids.insert(name.clone(), *pid);
            }
            Ack::Persona(name, persona) => {
                personas.insert(name.clone(), persona.clone());
            }
            Ack::Switched(target, answer) => switches.push((target.clone(), answer.clone())),
        }
    }

    for name in created.difference(&deleted) {
        app.session(name).await;
        assert!(
            app.session_dir(name).join("metadata.json").is_file(),
            "{name}"
        );
        checks += 2;
    }
    let archived = dir_names(&app.sessions_dir.join(".archive"));
    for name in &deleted {
        assert_problem(
            app.get(&format!("/sessions/{name}")).await,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
        assert!(!app.session_dir(name).exists(), "{name} is still there");
        let prefix = format!("{name}.");
        let entry = archived.iter().find(|e| e.starts_with(&prefix));
        let entry = entry.unwrap_or_else(|| panic!("{name} is not under .archive: {archived:?}"));
        let metadata = read_json(
            &app.sessions_dir
                .join(".archive")
                .join(entry)
                .join("metadata.json"),
        );
        assert_eq!(metadata["name"], name.as_str(), "archived {entry}");
        checks += 3;
    }
    for (name, pid) in pids.iter().filter(|(n, _)| !deleted.contains(*n)) {
        let answer = app.session(name).await;
        assert_eq!(answer["pid"], *pid, "the last acknowledged pid of {name}");
        assert_eq!(app.metadata_on_disk(name)["pid"], *pid, "{name} on disk");
        checks += 2;
    }
    for (name, persona) in personas.iter().filter(|(n, _)| !deleted.contains(*n)) {
        let answer = app.get_ok(&format!("/sessions/{name}/persona")).await;
        assert_eq!(&answer, persona, "the last acknowledged persona of {name}");
        let on_disk = read_json(&app.session_dir(name).join("persona.json"));
        assert_eq!(&on_disk, persona, "{name}/persona.json");
        assert_eq!(app.metadata_on_disk(name)["persona"], "custom", "{name}");
        checks += 3;
    }
    let current = app.current().await;
    checks + check_chain(&switches, &current["active"])
}

/// The switches answered with `changed: true` form one chain from "none current" to the
/// final current session: their `previous` values plus the final one equal their targets
/// plus null once (as multisets). A `changed: false` answer names no previous.
fn check_chain(switches: &[(String, Value)], final_active: &Value) -> usize {
    let mut previous = vec![final_active.clone()];
    let mut targets = vec![Value::Null];
    for (target, answer) in switches {
        assert_eq!(answer["active"], target.as_str(), "{answer}");
        if answer["changed"] == true {
            assert_ne!(answer["previous"], target.as_str(), "{answer}");
            previous.push(answer["previous"].clone());
            targets.push(json!(target));
        } else {
            assert_eq!(answer["changed"], false, "{answer}");
            assert_eq!(answer["previous"], Value::Null, "{answer}");
        }
    }
    let key = |v: &Value| v.to_string();
    previous.sort_by_key(key);
    targets.sort_by_key(key);
    assert_eq!(
        previous, targets,
        "the previous values of the switches do not form a chain"
    );
    switches.len() + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_load_from_32_clients_loses_no_acknowledged_write() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    for i in 0..SHARED {
        app.created(&shared(i)).await;
    }

    let start = Arc::new(Barrier::new(CLIENTS));
    let tasks = (0..CLIENTS)
        .map(|i| run_client(i, app.base.clone(), start.clone()))
        .collect();
    let logs = join_all(tasks).await;

    let sent: usize = logs.iter().map(|l| l.sent).sum();
    let acked: usize = logs.iter().map(|l| l.acks.len()).sum();
    let server_errors: usize = logs.iter().map(|l| l.server_errors).sum();
    assert!(sent >= 200, "only {sent} requests");
    assert_all_expected(&logs);
    let mut checks: usize = logs.iter().map(|l| l.checks).sum();
    checks += check_invariants(&app).await;
    checks += check_acks(&app, &logs).await;
    let app = restart_unchanged(app, &dirs).await;
    checks += check_invariants(&app).await;
    checks += check_acks(&app, &logs).await;
    println!(
        "mixed load: {CLIENTS} clients, {sent} requests sent, {acked} acknowledged writes, \
         {checks} invariant checks, {server_errors} 5xx"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_of_one_name_make_one_session() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;

    let start = Arc::new(Barrier::new(50));
    let tasks = (0..50)
        .map(|_| {
            let (url, start) = (app.url("/sessions"), start.clone());
            async move {
                let client = new_client();
                start.wait().await;
                client
                    .post(url)
                    .json(&json!({ "name": "same" }))
                    .send()
                    .await
                    .expect("create")
            }
        })
        .collect();
    let responses: Vec<Response> = join_all(tasks).await;

    let mut created = Vec::new();
    let mut conflicts = 0;
    for response in responses {
        if response.status() == StatusCode::CREATED {
            created.push(assert_json(response, StatusCode::CREATED).await);
        } else {
            let problem = assert_problem(response, StatusCode::CONFLICT, "exists").await;
            assert!(
                problem["detail"].as_str().unwrap().contains("same"),
                "{problem}"
            );
            conflicts += 1;
        }
    }
    assert_eq!(created.len(), 1, "one 201: {created:?}");
    assert_eq!(conflicts, 49);
    assert_eq!(app.sessions_on_disk(), ["same"]);
    assert_eq!(
        without_live_fields(created[0].clone()),
        with_dir(&app.metadata_on_disk("same"), &app.session_dir("same"))
    );
    let mut checks = 4 + check_invariants(&app).await;
    app.stop().await;

    let app = TestApp::spawn(&dirs).await;
    checks += check_invariants(&app).await;
    assert_eq!(
        app.session("same").await,
        without_live_fields(created[0].clone())
    );
    println!(
        "concurrent creates of one name: 50 requests sent, 1 acknowledged write, \
         {checks} invariant checks"
    );
    app.stop().await;
}

/// Switches to `targets` all at once, each from its own client; returns the answers,
/// all asserted 200, with their targets.
async fn switch_concurrently(app: &TestApp, targets: &[String]) -> Vec<(String, Value)> {
    let start = Arc::new(Barrier::new(targets.len()));
    let tasks = targets
        .iter()
        .map(|target| {
            let (url, start, target) = (app.url("/sessions/active"), start.clone(), target.clone());
            async move {
                let client = new_client();
                start.wait().await;
                let response = client
                    .put(url)
                    .json(&json!({ "name": target }))
                    .send()
                    .await
                    .expect("switch");
                (target, response)
            }
        })
        .collect();
    let mut answers = Vec::new();
    for (target, response) in join_all(tasks).await {
        answers.push((target, assert_json(response, StatusCode::OK).await));
    }
    answers
}

/// Stops `app`, starts a new one on the same directories, and asserts that it serves
/// the same `GET /sessions` and `GET /sessions/active`.
async fn restart_unchanged(app: TestApp, dirs: &Dirs) -> TestApp {
    let list = app.get_ok("/sessions").await;
    let active = app.current().await;
    app.stop().await;
    let app = TestApp::spawn(dirs).await;
    assert_eq!(app.get_ok("/sessions").await, list, "after a restart");
    assert_eq!(app.current().await, active, "after a restart");
    app
}

/// After concurrent switches: exactly one session is `active`, the current one, on
/// disk and in `GET /sessions`; every other one is `suspended` or `idle`.
async fn check_one_active(app: &TestApp, names: &[String]) -> usize {
    let current = app.current().await;
    let active = current["active"].as_str().expect("a session is current");
    assert_eq!(
        app.list_sessions("?status=active").await,
        json!([current["session"].clone()])
    );
    for name in names {
        let status = app.metadata_on_disk(name)["status"].clone();
        if name == active {
            assert_eq!(status, "active", "{name}");
        } else {
            assert!(
                status == "suspended" || status == "idle",
                "{name}: {status}"
            );
        }
    }
    names.len() + 1 + check_invariants(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_switches_to_fifty_sessions_form_one_chain() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    let names: Vec<String> = (0..50).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        app.created(name).await;
    }

    let answers = switch_concurrently(&app, &names).await;

    // No target was current before its own switch, so every switch changed something,
    // and following previous -> target from "none" visits every target once.
    assert!(
        answers.iter().all(|(_, a)| a["changed"] == true),
        "{answers:?}"
    );
    let next: BTreeMap<String, String> = answers
        .iter()
        .map(|(target, a)| (a["previous"].to_string(), target.clone()))
        .collect();
    assert_eq!(
        next.len(),
        50,
        "two switches answered the same previous: {answers:?}"
    );
    let mut at = Value::Null;
    for _ in 0..50 {
        let target = next
            .get(&at.to_string())
            .unwrap_or_else(|| panic!("the chain breaks after {at}: {answers:?}"));
        at = json!(target);
    }
    let current = app.current().await;
    assert_eq!(
        current["active"], at,
        "the chain ends at the current session"
    );
    let mut checks = check_chain(&answers, &current["active"]) + 52;
    checks += check_one_active(&app, &names).await;
    // Every session but the last was active, then suspended by the next switch.
    let suspended = app.list_sessions("?status=suspended").await;
    assert_eq!(suspended.as_array().unwrap().len(), 49);
    let app = restart_unchanged(app, &dirs).await;
    checks += check_one_active(&app, &names).await;
    assert_eq!(app.current().await, current);
    println!(
        "concurrent switches to 50 sessions: 50 requests sent, 50 acknowledged writes, \
         {checks} invariant checks"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_switches_among_five_sessions_form_one_chain() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    let names: Vec<String> = (0..5).map(|i| format!("few-{i}")).collect();
    for name in &names {
        app.created(name).await;
    }
    let targets: Vec<String> = (0..50).map(|i| names[i % 5].clone()).collect();

    let answers = switch_concurrently(&app, &targets).await;

    let current = app.current().await;
    let changed = answers.iter().filter(|(_, a)| a["changed"] == true).count();
    let mut checks = check_chain(&answers, &current["active"]);
    checks += check_one_active(&app, &names).await;
    let app = restart_unchanged(app, &dirs).await;
    checks += check_one_active(&app, &names).await;
    assert_eq!(app.current().await, current);
    println!(
        "concurrent switches among 5 sessions: 50 requests sent, {changed} acknowledged \
         changes, {checks} invariant checks"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_during_switches_never_see_a_suspended_current_session() {
    let app = TestApp::fresh().await;
    let names: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
    for name in &names {
        app.created(name).await;
    }

    // Eight switchers, and eight readers of GET /sessions/active that keep reading for
    // as long as any switcher runs (at most `MAX_READS` each).
    const SWITCHERS: usize = 8;
    const MAX_READS: usize = 400;
    let start = Arc::new(Barrier::new(2 * SWITCHERS));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..2 * SWITCHERS {
        let (base, start, names) = (app.base.clone(), start.clone(), names.clone());
        let finished = finished.clone();
        tasks.push(async move {
            let mut c = Caller::new(&base);
            start.wait().await;
            if i < SWITCHERS {
                for round in 0..12 {
                    c.switch(&names[(i + round) % names.len()]).await;
                }
                finished.fetch_add(1, Ordering::SeqCst);
                return c.log;
            }
            for read in 0..MAX_READS {
                if finished.load(Ordering::SeqCst) == SWITCHERS {
                    break;
                }
                let Some(answer) = c
                    .call(Method::GET, "/sessions/active", None, StatusCode::OK)
                    .await
                else {
                    continue;
                };
                // §3: the current session is `active` or `idle`; `suspended` means not current.
                let status = &answer["session"]["status"];
                c.check(answer["active"].is_null() || status != "suspended", || {
                    format!("GET /sessions/active answered a suspended current session: {answer}")
                });
                if read % 4 == 0 {
                    c.list("").await;
                }
            }
            c.log
        });
    }
    let logs = join_all(tasks).await;

    let sent: usize = logs.iter().map(|l| l.sent).sum();
    let mut checks: usize = logs.iter().map(|l| l.checks).sum();
    assert_all_expected(&logs);
    let switches: Vec<(String, Value)> = logs
        .iter()
        .flat_map(|l| &l.acks)
        .filter_map(|ack| match ack {
            Ack::Switched(target, answer) => Some((target.clone(), answer.clone())),
            _ => None,
        })
        .collect();
    let current = app.current().await;
    checks += check_chain(&switches, &current["active"]);
    checks += check_one_active(&app, &names).await;
    println!(
        "readers during switches: {sent} requests sent, {} acknowledged writes, \
         {checks} invariant checks",
        switches.len()
    );
    app.stop().await;
}
