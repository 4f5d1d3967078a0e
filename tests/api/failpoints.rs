//! Crashes and I/O errors at exactly each step of a durable write, through the
//! failpoints of `src/store/failpoint.rs` (built with `--features failpoints`, armed by
//! `SESSION_MANAGER_FAILPOINTS=step=action@n`).
//!
//! Every case starts the real binary on a copy of one prepared directory: `alpha`
//! (current and `active`), `beta` (persona `planner`, a pid no process has), `gamma` (a custom
//! persona) and `delta`. One write — a create, a patch, a switch, a persona
//! replacement, a delete or a rename — then meets the failpoint at the n-th hit of a step, for
//! every step and every n at which that write reaches it:
//!
//! - `crash`: the process aborts there, as `kill -9` would. After a restart the store
//!   keeps SPEC §1/§3/§6 (`helpers::check_store`), the write is wholly applied or wholly
//!   absent — applied exactly when the crash came at or after the rename that commits
//!   it — and the other sessions are untouched; a switch that crashed halfway is
//!   finished by the restart.
//! - `eio` / `enospc`: the write fails there. The client gets a 503 / 507 problem, no
//!   temporary entry is left, reads keep working and agree with the disk, `/healthz`
//!   says "degraded" with the failure in `problems`, the next write succeeds (and clears
//!   it), a retry of the write succeeds, and it all survives a restart.
//!
//! Each write's sequence of steps is written out below (`Write::steps`): the test also
//! checks that the write reaches each step exactly that many times, so a change of the
//! write protocol shows up here.

use crate::helpers::*;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

const STEPS: [&str; 5] = [
    "temp-written",
    "temp-synced",
    "renamed",
    "dir-synced",
    "switch-halfway",
];

/// The steps of one `fsio::replace_file`, in order.
const REPLACE: [&str; 4] = ["temp-written", "temp-synced", "renamed", "dir-synced"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Patch,
    Switch,
    PersonaReplace,
    Delete,
    Rename,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Applied,
    Absent,
    Half(String),
}

fn replacement_persona() -> Value {
    json!({
        "name": "Replaced",
        "description": "replaced by the failpoint test",
        "system_prompt": "Answer the operator.",
        "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 7 }
    })
}

impl Write {
    fn request(self) -> (Method, &'static str, Option<Value>, StatusCode) {
        match self {
            Write::Create => (
                Method::POST,
                "/sessions",
                Some(json!({ "name": "epsilon", "persona": "research" })),
                StatusCode::CREATED,
            ),
            Write::Patch => (
                Method::PATCH,
                "/sessions/beta",
                Some(json!({ "pid": NO_SUCH_PID + 1 })),
                StatusCode::OK,
            ),
            Write::Switch => (
                Method::PUT,
                "/sessions/active",
                Some(json!({ "name": "beta" })),
                StatusCode::OK,
            ),
            Write::PersonaReplace => (
                Method::PUT,
                "/sessions/beta/persona",
                Some(replacement_persona()),
                StatusCode::OK,
            ),
            Write::Delete => (
                Method::DELETE,
                "/sessions/alpha",
                None,
                StatusCode::NO_CONTENT,
            ),
            // beta is idle, its process gone, and it has no conversation.
            Write::Rename => (
                Method::POST,
                "/sessions/beta/rename",
                Some(json!({ "to": "omega" })),
                StatusCode::OK,
            ),
        }
    }

    /// The failpoint steps the write meets, in order, and the index in that list of the
    /// rename that commits it: a crash there or later must leave it applied.
    fn steps(self) -> (Vec<&'static str>, usize) {
        let mut steps = Vec::new();
        let commit = match self {
            // Two files written in a staging directory, then one rename publishes it.
            Write::Create => {
                steps.extend(["temp-written", "temp-synced", "temp-written", "temp-synced"]);
                steps.extend(["renamed", "dir-synced"]);
                4
            }
            Write::Patch => {
                steps.extend(REPLACE);
                2
            }
            // The three temp files written and fsynced together (each on its own
            // thread, so which meets a step first varies), then the pointer's rename
            // (the commit point), halfway, and the two sessions' renames together.
            Write::Switch => {
                for _ in 0..3 {
                    steps.extend(["temp-written", "temp-synced"]);
                }
                steps.extend(["renamed", "dir-synced", "switch-halfway"]);
                steps.extend(["renamed", "dir-synced", "renamed", "dir-synced"]);
                6
            }
            // The staged persona, the metadata (the commit point), the move into place.
            Write::PersonaReplace => {
                steps.extend(REPLACE);
                steps.extend(REPLACE);
                steps.extend(["renamed", "dir-synced"]);
                6
            }
            // The move to the archive (the commit point), then the pointer: it was current.
            Write::Delete => {
                steps.extend(["renamed", "dir-synced"]);
                steps.extend(REPLACE);
                0
            }
            // The intent, beta's metadata naming omega, the directory's move (the
            // commit point); removing the intent meets no failpoint.
            Write::Rename => {
                steps.extend(REPLACE);
                steps.extend(REPLACE);
                steps.extend(["renamed", "dir-synced"]);
                8
            }
        };
        (steps, commit)
    }

    /// Where the n-th hit of `step` falls in [`Write::steps`], if the write reaches it.
    fn position(self, step: &str, n: usize) -> Option<usize> {
        self.steps()
            .0
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == step)
            .nth(n - 1)
            .map(|(i, _)| i)
    }

    fn hits(self, step: &str) -> usize {
        self.steps().0.iter().filter(|s| **s == step).count()
    }

    fn expected_after_crash(self, step: &str, n: usize) -> Outcome {
        let position = self.position(step, n).expect("a step the write reaches");
        if position >= self.steps().1 {
            Outcome::Applied
        } else {
            Outcome::Absent
        }
    }

    /// Whether what is served is the prepared state (`Absent`), the prepared state with
    /// this write applied (`Applied`), or something else. `untouched` also requires the
    /// sessions the write does not touch to be as prepared.
    fn outcome(self, before: &StoreSeen, after: &StoreSeen, untouched: bool) -> Outcome {
        let touched: &[&str] = match self {
            Write::Create => &["epsilon"],
            Write::Patch | Write::PersonaReplace => &["beta"],
            Write::Switch => &["alpha", "beta"],
            Write::Delete => &["alpha"],
            Write::Rename => &["beta", "omega"],
        };
        if untouched {
            for (name, session) in &before.sessions {
                if !touched.contains(&name.as_str()) && after.sessions.get(name) != Some(session) {
                    return Outcome::Half(format!(
                        "{name}, which the write does not touch, changed: {:?}",
                        after.sessions.get(name)
                    ));
                }
            }
        }
        let same = |name: &str| before.sessions.get(name) == after.sessions.get(name);
        let meta = |seen: &StoreSeen, name: &str| {
            seen.sessions
                .get(name)
                .map(|s| s.metadata.clone())
                .unwrap_or(Value::Null)
        };
        let with = |name: &str, changes: Value| {
            let mut metadata = meta(before, name);
            for (k, v) in changes.as_object().unwrap() {
                metadata[k] = v.clone();
            }
            metadata
        };
        let describe = || {
            Outcome::Half(format!(
                "current {:?}; {}",
                after.current,
                touched
                    .iter()
                    .map(|n| format!("{n}: {:?}", after.sessions.get(*n)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        };
        let absent = touched.iter().all(|n| same(n)) && after.current == before.current;
        if absent {
            return Outcome::Absent;
        }
        let applied = match self {
            Write::Create => {
                after.current == before.current
                    && after.sessions.get("epsilon").is_some_and(|s| {
                        s.metadata["persona"] == "research"
                            && s.metadata["status"] == "idle"
                            && s.metadata["pid"].is_null()
                    })
            }
            Write::Patch => {
                let mut beta = meta(after, "beta");
                let recorded = beta["pid_recorded"].take();
                after.current == before.current
                    && recorded.is_string()
                    && recorded != meta(before, "beta")["pid_recorded"]
                    && beta
                        == with(
                            "beta",
                            json!({ "pid": NO_SUCH_PID + 1, "pid_recorded": null }),
                        )
            }
            Write::Switch => {
                let beta = meta(after, "beta");
                after.current.as_deref() == Some("beta")
                    && meta(after, "alpha") == with("alpha", json!({ "status": "suspended" }))
                    && beta["status"] == "active"
                    && beta["last_active"] != meta(before, "beta")["last_active"]
                    && beta
                        == with(
                            "beta",
                            json!({ "status": "active", "last_active": beta["last_active"] }),
                        )
            }
            Write::PersonaReplace => {
                after.current == before.current
                    && meta(after, "beta") == with("beta", json!({ "persona": "custom" }))
                    && after.sessions["beta"].persona == replacement_persona()
            }
            Write::Delete => after.current.is_none() && !after.sessions.contains_key("alpha"),
            Write::Rename => {
                let mut omega = with("beta", json!({ "name": "omega" }));
                omega["previous_names"] = json!(["beta"]);
                after.current == before.current
                    && !after.sessions.contains_key("beta")
                    && meta(after, "omega") == omega
                    && after.sessions["omega"].persona == before.sessions["beta"].persona
            }
        };
        if applied {
            Outcome::Applied
        } else {
            describe()
        }
    }
}

/// The prepared directory every case starts from, and what it serves.
struct Template {
    root: TempDir,
    seen: StoreSeen,
}

impl Template {
    async fn new() -> Self {
        let dirs = Dirs::new();
        let mut server =
            BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()));
        let custom = json!({
            "name": "Custom",
            "description": "gamma's own persona",
            "system_prompt": "Answer briefly.",
            "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 2 }
        });
        for (body, status) in [
            (json!({ "name": "alpha" }), StatusCode::CREATED),
            (
                json!({ "name": "beta", "persona": "planner" }),
                StatusCode::CREATED,
            ),
            (
                json!({ "name": "gamma", "persona": custom }),
                StatusCode::CREATED,
            ),
            (json!({ "name": "delta" }), StatusCode::CREATED),
        ] {
            let (got, answer) = server.must(Method::POST, "/sessions", Some(&body)).await;
            assert_eq!(got, status, "{answer}");
        }
        let (got, answer) = server
            .must(
                Method::PUT,
                "/sessions/active",
                Some(&json!({ "name": "alpha" })),
            )
            .await;
        assert_eq!(got, StatusCode::OK, "{answer}");
        let (got, answer) = server
            .must(
                Method::PATCH,
                "/sessions/beta",
                Some(&json!({ "pid": NO_SUCH_PID })),
            )
            .await;
        assert_eq!(got, StatusCode::OK, "{answer}");
        let (seen, violations) = check_store(&server, &dirs.sessions(), &dirs.personas()).await;
        assert!(violations.is_empty(), "the template: {violations:?}");
        // Every write was acknowledged, so it is on disk: no clean stop needed.
        server.process.kill();
        Self {
            root: dirs.root,
            seen,
        }
    }

    /// A fresh copy of the prepared directories.
    fn instance(&self) -> Instance {
        let root = tempfile::tempdir().unwrap();
        copy_tree(self.root.path(), root.path());
        Instance { root }
    }
}

struct Instance {
    root: TempDir,
}

impl Instance {
    fn sessions(&self) -> PathBuf {
        std::fs::canonicalize(self.root.path().join("sessions")).unwrap()
    }
    fn personas(&self) -> PathBuf {
        self.root.path().join("personas")
    }
    fn start(&self, failpoints: Option<&str>) -> BinaryServer {
        let mut command = binary_command(&self.sessions(), &self.personas());
        if let Some(spec) = failpoints {
            command.env("SESSION_MANAGER_FAILPOINTS", spec);
        }
        BinaryServer::start(&mut command)
    }
}

/// Sends the write; returns its status, content type and body, or `None` when no answer
/// came (the process crashed).
async fn send(server: &BinaryServer, write: Write) -> Option<(StatusCode, String, Value)> {
    let (method, path, body, _) = write.request();
    let mut request = server.request(method, path);
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().await.ok()?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.ok()?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some((status, content_type, body))
}

/// Crashes `write` at every hit of every step, and checks each restart.
async fn crash_at_each_step(write: Write) {
    let template = Template::new().await;
    for step in STEPS {
        for n in 1.. {
            let case = format!("{write:?} {step}=crash@{n}");
            let instance = template.instance();
            let mut server = instance.start(Some(&format!("{step}=crash@{n}")));
            if let Some((status, _, body)) = send(&server, write).await {
                assert_eq!(status, write.request().3, "{case}: {body}");
                assert_eq!(
                    n - 1,
                    write.hits(step),
                    "{case}: the write met {step} {} times, the protocol says {} (a binary \
                     built without `--features failpoints` meets none)",
                    n - 1,
                    write.hits(step)
                );
                server.process.kill();
                break;
            }
            let exit = server.process.wait_exit(BINARY_REQUEST_TIMEOUT);
            let log = server.process.log();
            assert_eq!(
                exit.signal(),
                Some(6),
                "{case}: not aborted ({exit:?}): {log}"
            );
            assert!(log.contains("crashing"), "{case}: not the failpoint: {log}");
            assert!(
                n <= write.hits(step),
                "{case}: crashed, but the protocol says the write meets {step} {} times",
                write.hits(step)
            );
            drop(server);

            let restarted = instance.start(None);
            let (seen, violations) =
                check_store(&restarted, &instance.sessions(), &instance.personas()).await;
            assert!(
                violations.is_empty(),
                "{case}: after the restart: {violations:#?}\nstart-up log:\n{}",
                restarted.startup_log.join("\n")
            );
            let outcome = write.outcome(&template.seen, &seen, true);
            let expected = write.expected_after_crash(step, n);
            let repairs: Vec<&String> = restarted
                .startup_log
                .iter()
                .filter(|l| l.contains(" WARN "))
                .collect();
            println!(
                "failpoints: {case} -> {outcome:?}; {} start-up repairs",
                repairs.len()
            );
            assert_eq!(
                outcome,
                expected,
                "{case}: the interrupted write must be {expected:?}; start-up log:\n{}",
                restarted.startup_log.join("\n")
            );
            if step == "switch-halfway" {
                assert!(
                    repairs
                        .iter()
                        .any(|l| l.contains("finishing an interrupted switch")),
                    "{case}: the restart did not say it finished the switch: {repairs:?}"
                );
            }
            if write == Write::Delete && outcome == Outcome::Applied {
                let archived = dir_names(&instance.sessions().join(".archive"));
                assert!(
                    archived.iter().any(|n| n.starts_with("alpha.")),
                    "{case}: alpha is not in the archive: {archived:?}"
                );
            }
            drop(restarted);
        }
    }
}

/// Fails `write` with `action` (`eio` or `enospc`) at every hit of every step.
async fn fail_at_each_step(write: Write) {
    let template = Template::new().await;
    for action in ["eio", "enospc"] {
        let (status, slug, needle) = match action {
            "eio" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot be written",
            ),
            _ => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient-storage",
                "no space",
            ),
        };
        for step in STEPS {
            for n in 1.. {
                let case = format!("{write:?} {step}={action}@{n}");
                let instance = template.instance();
                let (sessions, personas) = (instance.sessions(), instance.personas());
                let mut server = instance.start(Some(&format!("{step}={action}@{n}")));
                let (got, content_type, problem) = send(&server, write)
                    .await
                    .unwrap_or_else(|| panic!("{case}: no answer: {}", server.process.log()));
                if got == write.request().3 {
                    assert_eq!(
                        n - 1,
                        write.hits(step),
                        "{case}: hits of {step} (none: built without `--features failpoints`?)"
                    );
                    server.process.kill();
                    break;
                }
                // The client is told, in a problem it can act on.
                let answer = (got.as_u16(), Some(content_type.as_str()), &problem);
                assert_problem_parts(&case, answer, status.as_u16(), &[slug]);
                let detail = problem["detail"].as_str().unwrap_or_default();
                assert!(detail.contains(needle), "{case}: detail {detail:?}");

                // Nothing half-written stays; reads work and say what is on disk.
                let temps = temp_entries(&sessions);
                assert!(
                    temps.is_empty(),
                    "{case}: temporary entries left: {temps:?}"
                );
                for path in [
                    "/sessions",
                    "/sessions/delta",
                    "/sessions/gamma/persona",
                    "/personas",
                ] {
                    server.get_ok(path).await;
                }
                let (_, violations) = check_store(&server, &sessions, &personas).await;
                assert!(
                    violations.is_empty(),
                    "{case}: after the failure: {violations:#?}"
                );
                let health = server.get_ok("/healthz").await;
                assert_eq!(health["status"], "degraded", "{case}: {health}");
                let problems = health["problems"].to_string();
                assert!(
                    problems.contains("the last write failed") && problems.contains(needle),
                    "{case}: /healthz problems {problems}"
                );

                // The next write succeeds, and the condition clears.
                let (next, answer) = server
                    .must(
                        Method::PATCH,
                        "/sessions/delta",
                        Some(&json!({ "pid": 77 })),
                    )
                    .await;
                assert_eq!(next, StatusCode::OK, "{case}: the next write: {answer}");
                let health = server.get_ok("/healthz").await;
                assert!(
                    !health["problems"]
                        .to_string()
                        .contains("the last write failed"),
                    "{case}: /healthz still reports the failure after a good write: {health}"
                );
                // So does the write itself, retried (or it had taken effect after all).
                let (retried, _, answer) = send(&server, write).await.expect("an answer");
                let done_already = match write {
                    Write::Create => retried == StatusCode::CONFLICT,
                    Write::Delete | Write::Rename => retried == StatusCode::NOT_FOUND,
                    _ => false,
                };
                assert!(
                    retried == write.request().3 || done_already,
                    "{case}: the retry answered {retried}: {answer}"
                );
                let (seen, violations) = check_store(&server, &sessions, &personas).await;
                assert!(
                    violations.is_empty(),
                    "{case}: after the retry: {violations:#?}"
                );
                assert_eq!(
                    write.outcome(&template.seen, &seen, false),
                    Outcome::Applied,
                    "{case}: after the retry"
                );
                server.process.kill();

                let restarted = instance.start(None);
                let (after, violations) = check_store(&restarted, &sessions, &personas).await;
                assert!(
                    violations.is_empty(),
                    "{case}: after a restart: {violations:#?}"
                );
                assert_eq!(
                    after.sessions, seen.sessions,
                    "{case}: changed by a restart"
                );
                assert_eq!(after.current, seen.current, "{case}: changed by a restart");
                println!("failpoints: {case} -> {got}, then recovered");
                drop(restarted);
            }
        }
    }
}

#[tokio::test]
async fn a_create_crashed_at_any_step_is_whole_or_absent_after_a_restart() {
    crash_at_each_step(Write::Create).await;
}

#[tokio::test]
async fn a_patch_crashed_at_any_step_is_whole_or_absent_after_a_restart() {
    crash_at_each_step(Write::Patch).await;
}

#[tokio::test]
async fn a_switch_crashed_at_any_step_is_whole_or_absent_and_finished_from_halfway() {
    crash_at_each_step(Write::Switch).await;
}

#[tokio::test]
async fn a_persona_replacement_crashed_at_any_step_is_whole_or_absent_after_a_restart() {
    crash_at_each_step(Write::PersonaReplace).await;
}

#[tokio::test]
async fn a_delete_crashed_at_any_step_is_whole_or_absent_after_a_restart() {
    crash_at_each_step(Write::Delete).await;
}

#[tokio::test]
async fn a_rename_crashed_at_any_step_is_whole_or_absent_after_a_restart() {
    crash_at_each_step(Write::Rename).await;
}

#[tokio::test]
async fn a_create_failing_with_eio_or_enospc_at_any_step_answers_a_problem_and_recovers() {
    fail_at_each_step(Write::Create).await;
}

#[tokio::test]
async fn a_patch_failing_with_eio_or_enospc_at_any_step_answers_a_problem_and_recovers() {
    fail_at_each_step(Write::Patch).await;
}

#[tokio::test]
async fn a_switch_failing_with_eio_or_enospc_at_any_step_answers_a_problem_and_recovers() {
    fail_at_each_step(Write::Switch).await;
}

#[tokio::test]
async fn a_persona_replacement_failing_with_eio_or_enospc_at_any_step_answers_a_problem_and_recovers()
 {
    fail_at_each_step(Write::PersonaReplace).await;
}

#[tokio::test]
async fn a_delete_failing_with_eio_or_enospc_at_any_step_answers_a_problem_and_recovers() {
    fail_at_each_step(Write::Delete).await;
}

#[tokio::test]
async fn a_rename_failing_with_eio_or_enospc_at_any_step_answers_a_problem_and_recovers() {
    fail_at_each_step(Write::Rename).await;
}
