//! A [`Probe`] asks the real binary, bounded in time, and collects every expectation the
//! answers break, so that one run of a test says all that is wrong, not only the first
//! thing: for the hostile-tree tests, where a fix may mend one symptom and not the next.
//! No answer may hold the outside directory's [`SECRET`].

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use super::app::Dirs;
use super::assert::{lenient_json, problem_type};
use super::binary::{BinaryProcess, BinaryServer, binary_command};
use super::hostile::SECRET;

/// The binary on `dirs`, listening. (A [`BinaryServer`] is the process, its address
/// and a client bounded in time.)
pub fn start_binary(dirs: &Dirs) -> BinaryServer {
    BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()))
}

/// SIGTERM, then the exit, which must be 0 within `timeout` (the wait kills it and
/// fails the test otherwise).
pub fn stop_gracefully(server: &mut BinaryServer, timeout: Duration) {
    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    let status = server.process.wait_exit(timeout);
    assert_eq!(status.code(), Some(0), "{}", server.process.log());
}

/// An answer of the binary, read whole.
#[derive(Debug)]
pub struct Answer {
    /// The request, for messages ("PATCH /sessions/a").
    pub what: String,
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Answer {
    /// Whether it is a problem with `status` and `slug` whose detail mentions one of
    /// `needles` (ignoring case; any detail when none is given).
    pub fn is_problem(&self, status: StatusCode, slug: &str, needles: &[&str]) -> bool {
        let detail = self.body["detail"].as_str().unwrap_or_default();
        self.status == status
            && self.content_type.as_deref() == Some("application/problem+json")
            && self.body["type"] == problem_type(slug)
            && (needles.is_empty() || mentions(detail, needles))
    }
}

/// Asks the binary, and collects what it got wrong; [`finish`](Self::finish) fails the
/// test with all of it. A request without an answer (the client's time bound ran out,
/// the process died) fails the test at once: whatever follows would wait as long.
pub struct Probe<'a> {
    pub server: &'a BinaryServer,
    failures: Vec<String>,
}

impl<'a> Probe<'a> {
    pub fn new(server: &'a BinaryServer) -> Self {
        Self {
            server,
            failures: Vec::new(),
        }
    }

    /// Records a broken expectation unless `ok`.
    pub fn expect(&mut self, ok: bool, failure: impl Display) {
        if !ok {
            self.failures.push(failure.to_string());
        }
    }

    /// Records `result`'s error, if any.
    pub fn expect_ok(&mut self, result: Result<(), String>) {
        if let Err(failure) = result {
            self.failures.push(failure);
        }
    }

    /// Sends a request (with a JSON body when given) and reads the whole answer, which
    /// must not hold [`SECRET`].
    pub async fn ask(&mut self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let what = format!("{method} {path}");
        let mut request = self.server.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = read_answer(what, request)
            .await
            .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", self.server.process.log()));
        self.check_secret(&answer);
        answer
    }

    /// `count` copies of `GET path` at once; each answer is checked as [`ask`](Self::ask)
    /// does, and requests without one are recorded, not fatal.
    pub async fn get_concurrently(&mut self, path: &str, count: usize) -> Vec<Answer> {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..count {
            let request = self.server.request(Method::GET, path);
            requests.spawn(read_answer(format!("GET {path}"), request));
        }
        let mut answers = Vec::new();
        let mut unanswered = Vec::new();
        while let Some(result) = requests.join_next().await {
            match result.expect("a request task panicked") {
                Ok(answer) => {
                    self.check_secret(&answer);
                    answers.push(answer);
                }
                Err(e) => unanswered.push(e),
            }
        }
        if let Some(first) = unanswered.first() {
            let n = unanswered.len();
            self.failures
                .push(format!("{n} of {count} got no answer; the first: {first}"));
        }
        answers
    }

    /// Expects every one of `answers` to be a problem as [`expect_problem`](Self::expect_problem)
    /// says; reports how many were not, and the first of them.
    pub fn expect_all_problems(
        &mut self,
        answers: &[Answer],
        status: StatusCode,
        slug: &str,
        needles: &[&str],
    ) {
        let wrong: Vec<&Answer> = answers
            .iter()
            .filter(|a| !a.is_problem(status, slug, needles))
            .collect();
        if let Some(first) = wrong.first() {
            self.failures.push(format!(
                "{} of {} answers are not {status} {slug} problems mentioning {needles:?}; \
                 the first: {} {}",
                wrong.len(),
                answers.len(),
                first.status,
                first.body
            ));
        }
    }

    /// Setup, not an expectation: creates session `name`, which must succeed.
    pub async fn created(&mut self, name: &str) {
        let body = json!({ "name": name });
        let answer = self.ask(Method::POST, "/sessions", Some(body)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "setup: {answer:?}");
    }

    /// Setup, not an expectation: makes `name` the current session.
    pub async fn switched(&mut self, name: &str) {
        let body = json!({ "name": name });
        let answer = self.ask(Method::PUT, "/sessions/active", Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "setup: {answer:?}");
    }

    fn check_secret(&mut self, answer: &Answer) {
        self.expect(
            !answer.body.to_string().contains(SECRET),
            format!(
                "{}: the answer holds the outside secret: {}",
                answer.what, answer.body
            ),
        );
    }

    /// Expects the answer's status.
    pub fn expect_status(&mut self, answer: &Answer, status: StatusCode) {
        self.expect(
            answer.status == status,
            format!(
                "{}: expected {status}, got {}: {}",
                answer.what, answer.status, answer.body
            ),
        );
    }

    /// Expects a problem answer with `status` and `slug` whose detail mentions one of
    /// `needles` (ignoring case; any detail when none is given).
    pub fn expect_problem(
        &mut self,
        answer: &Answer,
        status: StatusCode,
        slug: &str,
        needles: &[&str],
    ) {
        self.expect(
            answer.is_problem(status, slug, needles),
            format!(
                "{}: expected a {status} {slug} problem whose detail mentions {needles:?}, \
                 got {} {:?}: {}",
                answer.what, answer.status, answer.content_type, answer.body
            ),
        );
    }

    /// `GET /healthz`, expected 200; its body.
    pub async fn health(&mut self) -> Value {
        let answer = self.ask(Method::GET, "/healthz", None).await;
        self.expect_status(&answer, StatusCode::OK);
        answer.body
    }

    /// Expects `/healthz` to list the skipped entry whose file name is `entry`, with a
    /// reason that mentions one of `needles` (ignoring case).
    pub async fn expect_skipped(&mut self, entry: &str, needles: &[&str]) {
        let health = self.health().await;
        let reason = skipped_reason(&health, entry);
        self.expect(
            reason.as_deref().is_some_and(|r| mentions(r, needles)),
            format!(
                "/healthz: expected {entry:?} skipped with a reason mentioning {needles:?}, \
                 got {reason:?} in {health}"
            ),
        );
    }

    /// Fails the test with every broken expectation, after a last look at `/healthz`
    /// (answered, without the secret). The tail of the service's log is attached.
    pub async fn finish(mut self) {
        self.ask(Method::GET, "/healthz", None).await;
        if self.failures.is_empty() {
            return;
        }
        let log = self.server.process.log_lines();
        let tail = log[log.len().saturating_sub(20)..].join("\n");
        panic!(
            "{} broken expectation(s):\n- {}\n--- the service's log, last lines:\n{tail}",
            self.failures.len(),
            self.failures.join("\n- ")
        );
    }
}

async fn read_answer(what: String, request: RequestBuilder) -> Result<Answer, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: no answer ({})", causes(&e)))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("{what}: the answer was cut short ({})", causes(&e)))?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        lenient_json(&bytes)
    };
    Ok(Answer {
        what,
        status,
        content_type,
        body,
    })
}

/// An error and its causes, "operation timed out" among them.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Whether `text` holds one of `needles`, ignoring case.
pub fn mentions(text: &str, needles: &[&str]) -> bool {
    let text = text.to_lowercase();
    needles.iter().any(|n| text.contains(&n.to_lowercase()))
}

/// The reason `/healthz` gives for skipping the entry whose file name is `entry`.
pub fn skipped_reason(health: &Value, entry: &str) -> Option<String> {
    health["skipped"].as_array()?.iter().find_map(|item| {
        let path = Path::new(item["path"].as_str()?);
        (path.file_name()? == entry).then(|| item["reason"].as_str().unwrap_or("").to_owned())
    })
}

/// Whether an item of a list answer has `value` as its `field`.
pub fn lists(list: &Value, field: &str, value: &str) -> bool {
    list.as_array()
        .is_some_and(|items| items.iter().any(|item| item[field] == value))
}
