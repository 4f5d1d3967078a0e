//! The launch spec: the whole command line for each shipped persona and each mode, a
//! custom persona's launch settings, and `--max-live`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::helpers::*;

/// `?mode=…&print=true`, as far as given.
fn query(mode: Option<&str>, print: bool) -> String {
    let parts: Vec<String> = mode
        .map(|m| format!("mode={m}"))
        .into_iter()
        .chain(print.then(|| "print=true".to_owned()))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The whole launch answer expected beside `spec`, whose run id, random, is checked to
/// be a UUID and taken.
fn launch_answer(
    spec: &Value,
    app: &TestApp,
    name: &str,
    argv: &[String],
    conversation: &str,
    mode: &str,
    parent: Option<&str>,
) -> Value {
    let query = parent.map_or(String::new(), |p| format!("?parent={p}"));
    let usage = spec["report"]["usage"].as_str().unwrap_or_default();
    let prefix = format!("/sessions/{name}/usage?run=");
    let run = usage.strip_prefix(&prefix).expect("a run id to post with");
    new_conversation(&json!({ "conversation": run }));
    json!({
        "cwd": app.session_dir(name),
        "argv": argv,
        "env": { "SESSION_MANAGER_SESSION": name },
        "conversation": conversation,
        "mode": mode,
        "report": {
            "conversations": format!("/sessions/{name}/conversations{query}"),
            "usage": format!("{prefix}{run}"),
        },
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The flags print mode adds for a persona of `max_turns`.
fn print_tail(max_turns: &str) -> Vec<String> {
    strings(&[
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--max-turns",
        max_turns,
    ])
}

#[tokio::test]
async fn every_shipped_persona_launches_in_every_mode() {
    let app = TestApp::fresh().await;
    let personas = app.get_ok("/personas").await;
    let personas = personas.as_array().unwrap();
    assert!(personas.len() >= 4, "{personas:?}");
    let mut new_ids = Vec::new();
    for persona in personas {
        let key = persona["key"].as_str().unwrap();
        let settings = persona["settings"].as_object().unwrap();
        // Nothing beside the model and the turns: the command lines below are whole.
        assert_eq!(
            settings.keys().collect::<Vec<_>>(),
            ["model", "max_turns"],
            "{key}"
        );
        let name = format!("with-{key}");
        let created = app.create_session(&name, Some(json!(key))).await;
        assert_eq!(created.status(), StatusCode::CREATED, "{key}");
        let turns = settings["max_turns"].to_string();
        let argv = |flags: &[&str], print: bool| {
            let mut argv = strings(&[
                "claude",
                "--model",
                settings["model"].as_str().unwrap(),
                "--append-system-prompt",
                persona["system_prompt"].as_str().unwrap(),
            ]);
            argv.extend(strings(flags));
            if print {
                argv.extend(print_tail(&turns));
            }
            argv
        };

        for print in [false, true] {
            // No conversation yet: a new one, by default or asked for.
            for mode in [None, Some("new")] {
                let spec = launched(&app, &name, &query(mode, print)).await;
                let id = new_conversation(&spec);
                let expected = argv(&["--session-id", &id], print);
                assert_eq!(
                    spec,
                    launch_answer(&spec, &app, &name, &expected, &id, "new", None)
                );
                new_ids.push(id);
            }
            for mode in ["resume", "fork"] {
                let response = launch(&app, &name, &query(Some(mode), print)).await;
                assert_problem_mentioning(
                    response,
                    StatusCode::CONFLICT,
                    "no-conversation",
                    &format!("has no conversation to {mode}"),
                    &name,
                )
                .await;
            }
        }

        report(&app, &format!("/sessions/{name}/conversations"), A).await;
        for print in [false, true] {
            for mode in [None, Some("resume")] {
                let spec = launched(&app, &name, &query(mode, print)).await;
                let expected = argv(&["--resume", A], print);
                assert_eq!(
                    spec,
                    launch_answer(&spec, &app, &name, &expected, A, "resume", None)
                );
            }
            let spec = launched(&app, &name, &query(Some("new"), print)).await;
            let id = new_conversation(&spec);
            let expected = argv(&["--session-id", &id], print);
            assert_eq!(
                spec,
                launch_answer(&spec, &app, &name, &expected, &id, "new", None)
            );
            new_ids.push(id);

            let spec = launched(&app, &name, &query(Some("fork"), print)).await;
            let id = new_conversation(&spec);
            let expected = argv(
                &["--resume", A, "--fork-session", "--session-id", &id],
                print,
            );
            assert_eq!(
                spec,
                launch_answer(&spec, &app, &name, &expected, &id, "fork", Some(A))
            );
            new_ids.push(id);
        }
    }
    let count = new_ids.len();
    new_ids.sort();
    new_ids.dedup();
    assert_eq!(
        new_ids.len(),
        count,
        "every new conversation has an id of its own"
    );

    for bad in ["?mode=continue", "?print=yes", "?takeover=1", "?other=1"] {
        let response = launch(&app, "with-default", bad).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
    }
    let response = launch(&app, "nobody", "").await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

/// A custom persona with every launch setting.
fn ops_persona() -> Value {
    json!({
        "name": "Ops",
        "description": "Runs the homelab's maintenance",
        "system_prompt": "Only this prompt.",
        "settings": {
            "model": "claude-opus-4-1",
            "max_turns": 5,
            "system_prompt_mode": "replace",
            "permission_mode": "acceptEdits",
            "allowed_tools": ["Read", "Bash(git log:*)"],
            "disallowed_tools": ["WebFetch"],
            "add_dirs": ["/srv/shared"],
            "extra_args": ["--debug", "api"],
            "max_budget_usd": 2.5,
            "budget_usd": 20
        }
    })
}

#[tokio::test]
async fn a_custom_persona_with_every_launch_setting_launches_with_each_flag() {
    let app = TestApp::fresh().await;
    let created = app.create_session("ops", Some(ops_persona())).await;
    let created = assert_json(created, StatusCode::CREATED).await;
    // The persona's budget is the session's.
    assert_eq!(created["budget_usd"], json!(20.0));
    assert_eq!(app.metadata_on_disk("ops")["budget_usd"], json!(20.0));
    assert_eq!(
        read_json(&app.session_dir("ops").join("persona.json")),
        ops_persona()
    );

    let head = strings(&[
        "claude",
        "--allowedTools",
        "Read",
        "--allowedTools",
        "Bash(git log:*)",
        "--disallowedTools",
        "WebFetch",
        "--add-dir",
        "/srv/shared",
        "--model",
        "claude-opus-4-1",
        "--permission-mode",
        "acceptEdits",
        "--system-prompt",
        "Only this prompt.",
    ]);
    let argv = |flags: &[&str], print: bool| {
        let mut argv = head.clone();
        argv.extend(strings(flags));
        if print {
            argv.extend(print_tail("5"));
            argv.extend(strings(&["--max-budget-usd", "2.5"]));
        }
        argv.extend(strings(&["--debug", "api"]));
        argv
    };
    for print in [false, true] {
        let spec = launched(&app, "ops", &query(None, print)).await;
        let id = new_conversation(&spec);
        let expected = argv(&["--session-id", &id], print);
        assert_eq!(
            spec,
            launch_answer(&spec, &app, "ops", &expected, &id, "new", None)
        );
    }
    report(&app, "/sessions/ops/conversations", A).await;
    for print in [false, true] {
        let spec = launched(&app, "ops", &query(None, print)).await;
        let expected = argv(&["--resume", A], print);
        assert_eq!(
            spec,
            launch_answer(&spec, &app, "ops", &expected, A, "resume", None)
        );
        let spec = launched(&app, "ops", &query(Some("fork"), print)).await;
        let id = new_conversation(&spec);
        let expected = argv(
            &["--resume", A, "--fork-session", "--session-id", &id],
            print,
        );
        assert_eq!(
            spec,
            launch_answer(&spec, &app, "ops", &expected, &id, "fork", Some(A))
        );
    }
}

#[tokio::test]
async fn a_persona_with_an_invalid_launch_setting_is_refused_at_create_and_on_put() {
    let app = TestApp::fresh().await;
    app.created("kept").await;
    let kept = snapshot(&app.session_dir("kept"));
    for (setting, value, rule) in [
        (
            "permission_mode",
            json!("yolo"),
            "settings.permission_mode must be one of default, acceptEdits",
        ),
        (
            "extra_args",
            json!(["--verbose-ish", "--resume", "x"]),
            "settings.extra_args may not set --resume",
        ),
        (
            "extra_args",
            json!(["--model=claude-opus-4-1"]),
            "settings.extra_args may not set --model",
        ),
        (
            "extra_args",
            json!(["--session-id", A]),
            "settings.extra_args may not set --session-id",
        ),
        // Short flags with their value attached, or in a cluster, as the CLI reads them.
        (
            "extra_args",
            json!([format!("-r{A}")]),
            "settings.extra_args may not set -r",
        ),
        (
            "extra_args",
            json!(["-pc"]),
            "settings.extra_args may not set -p",
        ),
        (
            "system_prompt_mode",
            json!("prepend"),
            "settings.system_prompt_mode must be \"append\" or \"replace\"",
        ),
        (
            "allowed_tools",
            json!("Read"),
            "settings.allowed_tools must be a list of non-empty strings",
        ),
        (
            "add_dirs",
            json!([" "]),
            "settings.add_dirs must be a list of non-empty strings",
        ),
        (
            "budget_usd",
            json!(-1),
            "settings.budget_usd must be a positive number",
        ),
        (
            "max_budget_usd",
            json!(0),
            "settings.max_budget_usd must be a positive number",
        ),
    ] {
        let mut persona = custom_persona();
        persona["settings"][setting] = value;
        let sent = format!("{setting}: {}", persona["settings"][setting]);
        let response = app.create_session("refused", Some(persona.clone())).await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            rule,
            &sent,
        )
        .await;
        let response = app
            .send_json(Method::PUT, "/sessions/kept/persona", &persona)
            .await;
        assert_problem_mentioning(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            rule,
            &sent,
        )
        .await;
    }
    assert_eq!(app.sessions_on_disk(), ["kept"]);
    assert_eq!(snapshot(&app.session_dir("kept")), kept);
}

#[tokio::test]
async fn past_max_live_a_launch_names_the_live_sessions_least_recently_used_first() {
    let app = TestApp::fresh_with(Options {
        args: vec!["--max-live=2".into()],
        ..Options::default()
    })
    .await;
    // Used in this order: zeta, then alpha (so not in the order of their names).
    app.created("zeta").await;
    app.created("alpha").await;
    app.created("third").await;
    let mut zeta = LiveChild::spawn();
    let mut alpha = LiveChild::spawn();
    app.patched("zeta", &json!({ "pid": zeta.pid() })).await;
    app.patched("alpha", &json!({ "pid": alpha.pid() })).await;

    let stop_first = |problem: &Value| -> Vec<(Value, Value)> {
        let list = problem["stop_first"].as_array().expect("stop_first");
        for item in list {
            assert!(item["idle_seconds"].is_u64(), "{item}");
        }
        list.iter()
            .map(|item| (item["name"].clone(), item["pid"].clone()))
            .collect()
    };
    let problem = assert_problem(
        launch(&app, "third", "").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-live",
    )
    .await;
    assert_eq!(
        stop_first(&problem),
        [
            (json!("zeta"), json!(zeta.pid())),
            (json!("alpha"), json!(alpha.pid()))
        ]
    );
    // Switching to zeta uses it: alpha is the least recently used now.
    app.switched("zeta").await;
    let problem = assert_problem(
        launch(&app, "third", "?mode=new&print=true").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-live",
    )
    .await;
    assert_eq!(
        stop_first(&problem),
        [
            (json!("alpha"), json!(alpha.pid())),
            (json!("zeta"), json!(zeta.pid()))
        ]
    );
    // A live session itself is not held back by the cap, only by its own process.
    assert_problem(
        launch(&app, "alpha", "").await,
        StatusCode::CONFLICT,
        "process-alive",
    )
    .await;
    launched(&app, "alpha", "?takeover=true").await;

    alpha.end();
    launched(&app, "third", "").await;
    zeta.end();
    launched(&app, "third", "").await;
}
