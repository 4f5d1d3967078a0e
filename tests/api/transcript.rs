//! `GET /sessions/{name}/transcript`: the tail of a transcript written the way the
//! Claude Code CLI writes it, the `tail` bounds, the 404s, the config dir from the flag
//! and the environment, and a hostile tree under the config dir (symlinks, a FIFO, a
//! huge file, a line cap), where nothing outside is ever read or changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const ID: &str = "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";

/// The CLI's directory name for a working directory, computed here independently.
fn slug(dir: &Path) -> String {
    dir.to_str()
        .unwrap()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Where the CLI keeps the transcript of conversation `id` of session `name`.
fn transcript_path(app: &TestApp, config_dir: &Path, name: &str, id: &str) -> PathBuf {
    config_dir
        .join("projects")
        .join(slug(&app.session_dir(name)))
        .join(format!("{id}.jsonl"))
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.concat()).unwrap();
}

/// A line as the CLI writes it: compact JSON with its bookkeeping fields, and a newline.
fn line(kind: &str, uuid: &str, at: &str, message: Value) -> String {
    let mut line = json!({
        "parentUuid": null, "isSidechain": false, "userType": "external",
        "cwd": "/srv/sessions/work", "sessionId": ID, "version": "2.0.14", "gitBranch": "",
        "type": kind, "message": message, "uuid": uuid, "timestamp": at,
    });
    if kind == "assistant" {
        line["requestId"] = json!("req_011CUx");
    }
    format!("{line}\n")
}

fn user_text(uuid: &str, at: &str, text: &str) -> String {
    line("user", uuid, at, json!({"role": "user", "content": text}))
}

fn assistant(uuid: &str, at: &str, id: &str, blocks: Value) -> String {
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": blocks, "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 4, "output_tokens": 12, "cache_read_input_tokens": 1200}
    });
    line("assistant", uuid, at, message)
}

/// What a tool answered: in the transcript, never in an answer.
const TOOL_OUTPUT: &str = "TOOL-OUTPUT-grafana-unhealthy-4711";

/// A short conversation, with the lines around it that are not messages.
fn conversation() -> Vec<String> {
    vec![
        format!(
            "{}\n",
            json!({"type": "summary", "summary": "Containers", "leafUuid": "a3"})
        ),
        user_text(
            "u1",
            "2026-11-24T21:22:16.123Z",
            "Which containers are running?",
        ),
        assistant(
            "a1",
            "2026-11-24T21:22:18.000Z",
            "msg_01",
            json!([{"type": "thinking", "thinking": "docker ps will say", "signature": "x"}]),
        ),
        assistant(
            "a2",
            "2026-11-24T21:22:18.500Z",
            "msg_01",
            json!([{"type": "text", "text": "I'll ask Docker."}]),
        ),
        assistant(
            "a3",
            "2026-11-24T21:22:19.000Z",
            "msg_01",
            json!([{"type": "tool_use", "id": "toolu_01", "name": "Bash",
                    "input": {"command": "docker ps --format '{{.Names}}'"}}]),
        ),
        line(
            "user",
            "u2",
            "2026-11-24T21:22:20.000Z",
            json!({"role": "user", "content": [{"tool_use_id": "toolu_01", "type": "tool_result",
                    "content": TOOL_OUTPUT, "is_error": false}]}),
        ),
        assistant(
            "a4",
            "2026-11-24T21:22:22.000Z",
            "msg_02",
            json!([{"type": "text", "text": "Three are running; grafana is unhealthy."}]),
        ),
        format!(
            "{}\n",
            json!({"type": "system", "subtype": "informational", "content": "note",
                   "isMeta": false, "timestamp": "2026-11-24T21:22:23.000Z"})
        ),
        "{\"type\": \"user\", \"message\": {\"role\": \"user\", \"content\": \"cut\n".to_owned(),
        line(
            "user",
            "u3",
            "2026-11-24T21:23:00.000Z",
            json!({"role": "user", "content": [{"type": "text", "text": "Restart it."}]}),
        ),
        assistant(
            "a5",
            "2026-11-24T21:23:02.000Z",
            "msg_03",
            json!([
                {"type": "text", "text": "Restarting grafana."},
                {"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"command": "x"}},
                {"type": "tool_use", "id": "toolu_03", "name": "Read", "input": {"file_path": "y"}}
            ]),
        ),
        format!(
            "{}\n",
            json!({"type": "summary", "summary": "Restart", "leafUuid": "a5"})
        ),
    ]
}

fn expected_messages() -> Value {
    json!([
        {"role": "user", "time": "2026-11-24T21:22:16.123000+00:00",
         "text": "Which containers are running?", "tools": []},
        {"role": "assistant", "time": "2026-11-24T21:22:18.000000+00:00",
         "text": "I'll ask Docker.", "tools": ["Bash"]},
        {"role": "assistant", "time": "2026-11-24T21:22:22.000000+00:00",
         "text": "Three are running; grafana is unhealthy.", "tools": []},
        {"role": "user", "time": "2026-11-24T21:23:00.000000+00:00",
         "text": "Restart it.", "tools": []},
        {"role": "assistant", "time": "2026-11-24T21:23:02.000000+00:00",
         "text": "Restarting grafana.", "tools": ["Bash", "Read"]},
    ])
}

/// A session `name` whose current conversation is [`ID`].
async fn session_in_conversation(app: &TestApp, name: &str) {
    app.created(name).await;
    app.patched(name, &json!({ "conversation": ID })).await;
}

fn transcript_url(name: &str, query: &str) -> String {
    format!("/sessions/{name}/transcript{query}")
}

#[tokio::test]
async fn the_tail_of_a_transcript_as_the_cli_writes_it() {
    let app = TestApp::fresh().await;
    session_in_conversation(&app, "work").await;
    write_lines(
        &transcript_path(&app, &app.claude_dir, "work", ID),
        &conversation(),
    );
    let before = snapshot(&app.claude_dir);

    let response = app.get(&transcript_url("work", "")).await;
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(TOOL_OUTPUT) && !text.contains("docker ps"),
        "{text}"
    );
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer,
        json!({
            "session": "work",
            "conversation": ID,
            "messages": expected_messages(),
            "skipped_lines": 1,
            "truncated": false,
        })
    );
    // Read only: nothing under the config dir changed.
    assert_eq!(snapshot(&app.claude_dir), before);
    app.stop().await;
}

#[tokio::test]
async fn tail_takes_1_to_200_messages() {
    let app = TestApp::fresh().await;
    session_in_conversation(&app, "work").await;
    write_lines(
        &transcript_path(&app, &app.claude_dir, "work", ID),
        &conversation(),
    );
    let two = app.get_ok(&transcript_url("work", "?tail=2")).await;
    assert_eq!(
        two["messages"],
        json!(expected_messages().as_array().unwrap()[3..])
    );
    assert_eq!(two["truncated"], false);
    let one = app.get_ok(&transcript_url("work", "?tail=1")).await;
    assert_eq!(one["messages"][0]["text"], "Restarting grafana.");
    let all = app.get_ok(&transcript_url("work", "?tail=200")).await;
    assert_eq!(all["messages"], expected_messages());

    for query in [
        "?tail=0",
        "?tail=201",
        "?tail=-1",
        "?tail=abc",
        "?tail=1.5",
        "?tail=",
        "?n=3",
    ] {
        let response = app.get(&transcript_url("work", query)).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-filter").await;
    }
    let response = app.get(&transcript_url("work", "?tail=0")).await;
    assert_problem_mentioning(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-filter",
        "tail must be a whole number from 1 to 200",
        "tail=0",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn each_reason_for_no_transcript_has_its_own_answer() {
    let app = TestApp::fresh().await;
    app.created("fresh").await;
    let response = app.get(&transcript_url("fresh", "")).await;
    assert_problem_mentioning(
        response,
        StatusCode::NOT_FOUND,
        "no-current-conversation",
        "session 'fresh' has no current conversation",
        "a session without a conversation",
    )
    .await;

    session_in_conversation(&app, "work").await;
    let path = transcript_path(&app, &app.claude_dir, "work", ID);
    // No config dir yet, then no transcript in it: both a missing transcript.
    for _ in 0..2 {
        let response = app.get(&transcript_url("work", "")).await;
        let problem = assert_problem(response, StatusCode::NOT_FOUND, "transcript-missing").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("cleanupPeriodDays"), "{detail}");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    let response = app.get(&transcript_url("work", "")).await;
    assert_problem_mentioning(
        response,
        StatusCode::NOT_FOUND,
        "transcript-missing",
        &format!("{} does not exist", path.display()),
        "the file alone is missing",
    )
    .await;

    let response = app.get(&transcript_url("nobody", "")).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = app.get(&transcript_url("bad.name", "")).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-name").await;
    // A conversation cleared: none again.
    app.patched("work", &json!({ "conversation": null })).await;
    let response = app.get(&transcript_url("work", "")).await;
    assert_problem(response, StatusCode::NOT_FOUND, "no-current-conversation").await;
    app.stop().await;
}

#[tokio::test]
async fn the_config_dir_given_by_flag_is_the_one_read() {
    let dirs = Dirs::new();
    let elsewhere = dirs.root.path().join("bot-home").join(".claude");
    let app = TestApp::spawn_with(
        &dirs,
        Options {
            claude_config_dir: Some(elsewhere.clone()),
            ..Options::default()
        },
    )
    .await;
    session_in_conversation(&app, "work").await;
    // The same transcript under the default dir of the tests is not read.
    write_lines(
        &transcript_path(&app, &dirs.claude(), "work", ID),
        &[user_text("u", "2026-11-24T21:22:16Z", "not this one")],
    );
    write_lines(
        &transcript_path(&app, &elsewhere, "work", ID),
        &conversation(),
    );
    let answer = app.get_ok(&transcript_url("work", "")).await;
    assert_eq!(answer["messages"], expected_messages());
    app.stop().await;
}

/// The binary finds the config dir as the CLI does: `CLAUDE_CONFIG_DIR`, else
/// `~/.claude`; its own flag's variable wins over both.
#[tokio::test]
async fn the_binary_finds_the_config_dir_from_the_environment() {
    let root = tempfile::tempdir().unwrap();
    let (sessions, personas) = (root.path().join("sessions"), root.path().join("personas"));
    let home = root.path().join("home");
    let cases = [
        (vec![], home.join(".claude")),
        (
            vec![("CLAUDE_CONFIG_DIR", root.path().join("cli"))],
            root.path().join("cli"),
        ),
        (
            vec![
                ("CLAUDE_CONFIG_DIR", root.path().join("cli")),
                (
                    "SESSION_MANAGER_CLAUDE_CONFIG_DIR",
                    root.path().join("ours"),
                ),
            ],
            root.path().join("ours"),
        ),
    ];
    for (i, (env, config_dir)) in cases.into_iter().enumerate() {
        let mut command = binary_command(&sessions, &personas);
        command.env("HOME", &home);
        for (key, value) in &env {
            command.env(key, value);
        }
        let mut server = BinaryServer::start(&mut command);
        let name = format!("s{i}");
        let (status, _) = server
            .must(Method::POST, "/sessions", Some(&json!({ "name": name })))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let patch = json!({ "conversation": ID });
        let (status, _) = server
            .must(Method::PATCH, &format!("/sessions/{name}"), Some(&patch))
            .await;
        assert_eq!(status, StatusCode::OK);
        let dir = std::fs::canonicalize(&sessions).unwrap().join(&name);
        let path = config_dir
            .join("projects")
            .join(slug(&dir))
            .join(format!("{ID}.jsonl"));
        write_lines(&path, &conversation());
        let answer = server.get_ok(&transcript_url(&name, "?tail=1")).await;
        assert_eq!(
            answer["messages"][0]["tools"],
            json!(["Bash", "Read"]),
            "{env:?}"
        );
        server.process.kill();
    }
}

#[tokio::test]
async fn a_planted_symlink_or_fifo_is_never_followed_nor_read() {
    let app = TestApp::fresh().await;
    session_in_conversation(&app, "work").await;
    let path = transcript_path(&app, &app.claude_dir, "work", ID);
    let project = path.parent().unwrap().to_path_buf();
    let projects = project.parent().unwrap().to_path_buf();
    let file_name = format!("{ID}.jsonl");
    // Outside: a transcript holding the secret, at each place a symlink may lead.
    let outside = Outside::new();
    let stolen = [user_text("u", "2026-11-24T21:22:16Z", SECRET)].concat();
    let secret_file = outside.file("stolen.jsonl", &stolen);
    outside.file(&format!("project/{file_name}"), &stolen);
    let outside_slug = format!("projects/{}/{file_name}", slug(&app.session_dir("work")));
    outside.file(&outside_slug, &stolen);
    let before = outside.snapshot();

    let refused = |kind: &'static str| {
        let app = &app;
        async move {
            let started = Instant::now();
            let response = app.get(&transcript_url("work", "")).await;
            let problem =
                assert_problem(response, StatusCode::CONFLICT, "transcript-refused").await;
            let text = problem.to_string();
            assert!(!text.contains(SECRET), "{text}");
            assert!(text.contains(kind), "{kind}: {text}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "blocked on {kind}"
            );
        }
    };
    std::fs::create_dir_all(&project).unwrap();
    // The transcript itself: a symlink to a file outside, a FIFO (the open does not
    // wait for a writer), a directory.
    plant_symlink(&path, &secret_file);
    refused("is a symlink, which is never followed").await;
    std::fs::remove_file(&path).unwrap();
    let fifo = rustix::fs::Mode::from_raw_mode(0o600);
    rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, fifo, 0).unwrap();
    refused("is a FIFO, not a regular file").await;
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    refused("is a directory, not a regular file").await;
    // The project's directory, then `projects` itself: symlinks to directories outside.
    plant_symlink(&project, &outside.path().join("project"));
    refused("is a symlink, which is never followed").await;
    plant_symlink(&projects, &outside.path().join("projects"));
    refused("is a symlink, which is never followed").await;

    outside.unchanged_since(&before).unwrap();
    app.stop().await;
}

/// A conversation id only ever comes from a validated UUID: a path trick is refused on
/// the way in, and one planted in `metadata.json` makes the session corrupt, never a
/// path.
#[tokio::test]
async fn a_conversation_id_cannot_name_a_path() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs).await;
    app.created("work").await;
    let outside = Outside::new();
    outside.file(
        "x.jsonl",
        [user_text("u", "2026-11-24T21:22:16Z", SECRET)].concat(),
    );
    let trick = format!("../../../../../../..{}/x", outside.path().display());
    let tricks = [
        trick.as_str(),
        "../x",
        "..",
        "a/b",
        "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20/..",
        "{0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20}",
        "",
    ];
    for id in tricks {
        let response = app.patch("work", &json!({ "conversation": id })).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
    }
    // An id in upper case is the same conversation, whose file the CLI names in lower
    // case.
    app.created("upper").await;
    app.patched("upper", &json!({ "conversation": ID.to_uppercase() }))
        .await;
    write_lines(
        &transcript_path(&app, &app.claude_dir, "upper", ID),
        &conversation(),
    );
    let answer = app.get_ok(&transcript_url("upper", "?tail=1")).await;
    assert_eq!(answer["conversation"], ID);
    app.stop().await;

    // The trick planted on disk, as a shell in the session could: once read, the
    // session is corrupt, and no path is built from it.
    let mut metadata = app_metadata(&dirs, "work");
    metadata["conversation"] = json!(trick);
    std::fs::write(
        dirs.sessions().join("work").join("metadata.json"),
        metadata.to_string(),
    )
    .unwrap();
    let app = TestApp::spawn(&dirs).await;
    let response = app.get(&transcript_url("work", "")).await;
    let problem = assert_problem(response, StatusCode::CONFLICT, "corrupt-entry").await;
    assert!(!problem.to_string().contains(SECRET), "{problem}");
    app.stop().await;
}

fn app_metadata(dirs: &Dirs, name: &str) -> Value {
    read_json(&dirs.sessions().join(name).join("metadata.json"))
}

#[tokio::test]
async fn a_huge_transcript_is_read_only_at_its_end() {
    let app = TestApp::fresh().await;
    session_in_conversation(&app, "work").await;
    let path = transcript_path(&app, &app.claude_dir, "work", ID);
    write_lines(
        &path,
        &[user_text("u0", "2026-11-24T21:00:00Z", "the very first")],
    );
    // 4 GiB of nothing (sparse), then the conversation.
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.set_len(4 << 30).unwrap();
    drop(file);
    let mut tail = vec!["\n".to_owned()];
    tail.extend(conversation());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, tail.concat().as_bytes()).unwrap();
    drop(file);

    let started = Instant::now();
    let answer = app.get_ok(&transcript_url("work", "")).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(answer["messages"], expected_messages());
    // Fewer than asked, and the start of the file was not read: there may be more.
    assert_eq!(answer["truncated"], true);
    let answer = app.get_ok(&transcript_url("work", "?tail=5")).await;
    assert_eq!(answer["truncated"], false);

    // One line longer than the window: nothing whole is in it.
    let line = user_text(
        "big",
        "2026-11-24T21:00:00Z",
        &"x".repeat(WINDOW_BYTES as usize),
    );
    write_lines(&path, &[line]);
    let answer = app.get_ok(&transcript_url("work", "")).await;
    assert_eq!(
        (&answer["messages"], &answer["truncated"]),
        (&json!([]), &json!(true))
    );

    // More lines than are looked at, after the last message.
    let mut lines = conversation();
    lines.extend(std::iter::repeat_n("{}\n".to_owned(), MAX_LINES));
    write_lines(&path, &lines);
    let answer = app.get_ok(&transcript_url("work", "")).await;
    assert_eq!(
        (&answer["messages"], &answer["truncated"]),
        (&json!([]), &json!(true))
    );
    // The summary line and the reply before it come into reach.
    lines.truncate(lines.len() - 2);
    write_lines(&path, &lines);
    let answer = app.get_ok(&transcript_url("work", "?tail=1")).await;
    assert_eq!(answer["messages"][0]["text"], "Restarting grafana.");
    app.stop().await;
}
