//! The bot's whole loop against the real binary, with a fake Claude Code CLI
//! (`tests/fake-claude`) as the launch spec's program: create a session, get its launch
//! spec, start the CLI as the spec says, report what it prints, record its pid and
//! status, follow the change feed through an operator's switch and the process's end,
//! restart the service, and resume the same conversation from the same directory; a
//! fork, and a resume from another directory, which the CLI refuses.
//!
//! Every wait is bounded: the fake's lines by [`LINE_BOUND`], the service's answers by
//! the binary's request timeout, the feed's events by [`EVENT_BOUND`].

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The fake CLI: the launch spec's program.
const FAKE_CLAUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-claude");
/// How long a line the fake owes may take (a Python start-up on a busy machine).
const LINE_BOUND: Duration = Duration::from_secs(20);

/// What the operator asks, one prompt per turn.
const PROMPTS: [&str; 3] = [
    "Which containers are running?",
    "Restart grafana, please.",
    "Is grafana healthy now?",
];

/// The binary on `dirs`, with the fake as the CLI its launch specs name.
fn start(dirs: &Dirs) -> BinaryServer {
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command.args(["--claude-bin", FAKE_CLAUDE]);
    BinaryServer::start(&mut command)
}

/// What the fake charges for a prompt of `n` bytes, in nano-dollars: n input, 2n output,
/// 4n cache-read and 2n cache-write tokens at $3, $15, $0.30 and $3.75 a million.
fn cost_nanos(prompt: &str) -> u64 {
    41_700 * prompt.len() as u64
}

fn dollars(nanos: u64) -> Value {
    json!(nanos as f64 / 1e9)
}

/// A session's usage totals after the results of `prompts`, each counted once.
fn usage_after(prompts: &[&str], updated: &Value) -> Value {
    let n: u64 = prompts.iter().map(|p| p.len() as u64).sum();
    json!({
        "cost_usd": dollars(prompts.iter().map(|p| cost_nanos(p)).sum()),
        "turns": prompts.len(), "input_tokens": n, "output_tokens": 2 * n,
        "cache_read_tokens": 4 * n, "cache_creation_tokens": 2 * n,
        "results": prompts.len(), "updated": updated,
    })
}

/// `request` ("METHOD /path") with a JSON `body`, which must answer `status`; its body.
async fn call(server: &BinaryServer, request: &str, body: &Value, status: u16) -> Value {
    let (method, path) = request.split_once(' ').unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let (got, answer) = server.must(method, path, Some(body)).await;
    assert_eq!(got.as_u16(), status, "{request}: {answer}");
    answer
}

/// Follows the change feed, with a client whose only bound is each event's.
async fn follow(server: &BinaryServer) -> EventStream {
    let client = reqwest::Client::builder()
        .connect_timeout(BINARY_REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let request = client.get(server.url("/events")).send();
    let response = tokio::time::timeout(BINARY_REQUEST_TIMEOUT, request)
        .await
        .expect("the feed answers in time")
        .expect("GET /events");
    EventStream::new(response)
}

/// The next event of type `kind` that `matches`, passing over the others (the feed
/// carries every change; each is read within [`EVENT_BOUND`]).
async fn hear(feed: &mut EventStream, kind: &str, matches: impl Fn(&Value) -> bool) -> SseEvent {
    loop {
        let event = feed.next().await;
        if event.event == kind && matches(&event.data) {
            return event;
        }
    }
}

/// The operator's switch, with curl where there is one.
async fn operator_switches(server: &BinaryServer, name: &str) -> Value {
    let url = server.url("/sessions/active");
    let body = json!({ "name": name }).to_string();
    let curl = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "10", "-X", "PUT"])
        .args(["-H", "content-type: application/json", "-d", &body, &url])
        .output();
    match curl {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "curl: {stderr}");
            serde_json::from_slice(&out.stdout).expect("curl printed JSON")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let switch = json!({ "name": name });
            call(server, "PUT /sessions/active", &switch, 200).await
        }
        Err(e) => panic!("run curl: {e}"),
    }
}

/// A run of the fake CLI, started as a launch spec says: its stdout read line by line
/// on a thread, its stderr collected on another; killed when dropped.
struct Run {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// One prompt's messages.
struct Turn {
    init: Value,
    assistant: Value,
    result: Value,
}

/// How a run ended.
struct Ended {
    status: ExitStatus,
    /// The lines it printed after the last one read.
    rest: Vec<Value>,
    stderr: String,
}

impl Run {
    /// Starts `spec` in its `cwd`, with its `env` and the CLI's config dir.
    fn start(spec: &Value, config_dir: &Path) -> Self {
        Self::start_in(spec, Path::new(spec["cwd"].as_str().unwrap()), config_dir)
    }

    /// Starts `spec` in `cwd` instead.
    fn start_in(spec: &Value, cwd: &Path, config_dir: &Path) -> Self {
        let argv: Vec<&str> = spec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]).current_dir(cwd);
        for (key, value) in spec["env"].as_object().unwrap() {
            command.env(key, value.as_str().unwrap());
        }
        let mut child = command
            .env("CLAUDE_CONFIG_DIR", config_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a prompt as a stream-json user message.
    fn say(&mut self, prompt: &str) {
        let message = json!({ "type": "user", "message": { "role": "user", "content": prompt } });
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .expect("write a prompt");
    }

    /// The next message it prints.
    fn next(&mut self) -> Value {
        match self.lines.recv_timeout(LINE_BOUND) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")),
            Err(RecvTimeoutError::Timeout) => panic!("no line within {LINE_BOUND:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let ended = self.end();
                panic!("it ended ({}): {}", ended.status, ended.stderr)
            }
        }
    }

    /// A prompt, and the messages that answer it.
    fn turn(&mut self, prompt: &str) -> Turn {
        self.say(prompt);
        let turn = Turn {
            init: self.next(),
            assistant: self.next(),
            result: self.next(),
        };
        assert_eq!(
            (&turn.init["type"], &turn.init["subtype"]),
            (&json!("system"), &json!("init"))
        );
        assert_eq!(turn.assistant["type"], "assistant");
        assert_eq!(turn.result["type"], "result");
        assert_eq!(turn.result["subtype"], "success");
        turn
    }

    /// Closes its input and waits for it to end: its output closing is the signal.
    fn end(&mut self) -> Ended {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(LINE_BOUND) {
                Ok(line) => rest.push(serde_json::from_str(&line).unwrap()),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("still running {LINE_BOUND:?} on"),
            }
        }
        let status = self.child.wait().expect("reap the run");
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        Ended {
            status,
            rest,
            stderr,
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The transcript of conversation `id` of the directory `cwd`, as the CLI keeps it.
fn transcript(config_dir: &Path, cwd: &str, id: &str) -> Vec<Value> {
    let slug: String = cwd
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path: PathBuf = config_dir
        .join("projects")
        .join(slug)
        .join(format!("{id}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn argv_has(spec: &Value, pair: [&str; 2]) -> bool {
    spec["argv"]
        .as_array()
        .unwrap()
        .windows(2)
        .any(|w| w[0] == pair[0] && w[1] == pair[1])
}

#[tokio::test]
async fn the_bots_loop_survives_a_switch_the_process_end_and_a_restart() {
    let dirs = Dirs::new();
    let config_dir = dirs.root.path().join("claude");
    let server = start(&dirs);
    let mut feed = follow(&server).await;

    // The session the bot talks to, and another one the operator will switch to.
    let homelab = json!({ "name": "homelab" });
    let created = call(&server, "POST /sessions", &homelab, 201).await;
    call(&server, "POST /sessions", &json!({ "name": "ideas" }), 201).await;
    let switched = call(&server, "PUT /sessions/active", &homelab, 200).await;
    let expected = json!({ "previous": null, "active": "homelab", "changed": true });
    assert_eq!(switched, expected);

    // The launch spec: a new conversation, in the session's directory.
    let spec = server.get_ok("/sessions/homelab/launch?print=true").await;
    assert_eq!(spec["mode"], "new");
    assert_eq!(spec["cwd"], created["dir"]);
    assert_eq!(spec["argv"][0], FAKE_CLAUDE);
    let id = spec["conversation"].as_str().unwrap().to_owned();
    assert!(argv_has(&spec, ["--session-id", &id]), "{spec}");
    let report = |what: &str| spec["report"][what].as_str().unwrap().to_owned();
    let init_to = format!("POST {}", report("conversations"));
    let result_to = format!("POST {}", report("usage"));

    // The bot knows the pid as soon as it has started the run.
    let mut run = Run::start(&spec, &config_dir);
    let bookkeeping = json!({ "pid": run.pid(), "status": "active" });
    let patched = call(&server, "PATCH /sessions/homelab", &bookkeeping, 200).await;
    assert_eq!(patched["process"], "alive");

    // The first prompt: the init message names the conversation the spec chose.
    let first = run.turn(PROMPTS[0]);
    assert_eq!(first.init["session_id"], id.as_str());
    assert_eq!(first.init["cwd"], spec["cwd"]);
    let reported = call(&server, &init_to, &first.init, 201).await;
    assert_eq!(reported["conversation"], id.as_str());
    let counted = call(&server, &result_to, &first.result, 200).await;
    assert_eq!(counted["counted"], true);
    assert_eq!(counted["budget_exhausted"], false);
    let usage = &counted["session"]["usage"];
    assert_eq!(*usage, usage_after(&PROMPTS[..1], &usage["updated"]));
    // Posted again (a retry after a lost answer): nothing more is counted.
    let again = call(&server, &result_to, &first.result, 200).await;
    assert_eq!(again["counted"], false);
    assert_eq!(again["session"]["usage"], *usage);

    // A second prompt to the same process: its result restates what the process has
    // spent so far, and the session counts what it spent since.
    let second = run.turn(PROMPTS[1]);
    let spent: u64 = PROMPTS[..2].iter().map(|p| cost_nanos(p)).sum();
    assert_eq!(second.result["total_cost_usd"], dollars(spent));
    let resumed = call(&server, &init_to, &second.init, 200).await;
    assert_eq!(resumed["conversations"], reported["conversations"]);
    let counted = call(&server, &result_to, &second.result, 200).await;
    let usage = &counted["session"]["usage"];
    assert_eq!(*usage, usage_after(&PROMPTS[..2], &usage["updated"]));

    // The operator switches to the other session; the bot, following the feed since
    // before, hears it, and the process it left runs on, suspended.
    let answer = operator_switches(&server, "ideas").await;
    let expected = json!({ "previous": "homelab", "active": "ideas", "changed": true });
    assert_eq!(answer, expected);
    let heard = hear(&mut feed, "session.switched", |d| d["active"] == "ideas").await;
    assert_eq!(heard.data["previous"], "homelab");
    let left = server.get_ok("/sessions/homelab").await;
    assert_eq!(
        (&left["status"], &left["process"]),
        (&json!("suspended"), &json!("alive"))
    );

    // The process ends; the bot notices on a read, and the feed says so.
    let ended = run.end();
    assert!(ended.status.success(), "{}", ended.stderr);
    assert_eq!(ended.rest, Vec::<Value>::new());
    assert_eq!(server.get_ok("/sessions/homelab").await["process"], "gone");
    let gone = hear(&mut feed, "session.process_gone", |d| {
        d["name"] == "homelab"
    })
    .await;
    assert_eq!(gone.data["session"]["pid"], run.pid());
    let idle = json!({ "pid": null, "status": "idle" });
    let before = call(&server, "PATCH /sessions/homelab", &idle, 200).await;
    assert_eq!(before["process"], "none");

    // A restart on the same directories (a crash, even): the conversation and the
    // totals are there, and the next run resumes the same conversation.
    let mut server = server;
    server.process.kill();
    let server = start(&dirs);
    let after = server.get_ok("/sessions/homelab").await;
    assert_eq!(without_live_fields(after), without_live_fields(before));
    let spec = server.get_ok("/sessions/homelab/launch?print=true").await;
    assert_eq!(
        (&spec["mode"], &spec["conversation"]),
        (&json!("resume"), &json!(id))
    );
    assert!(argv_has(&spec, ["--resume", &id]), "{spec}");
    let mut run = Run::start(&spec, &config_dir);
    call(
        &server,
        "PATCH /sessions/homelab",
        &json!({ "pid": run.pid() }),
        200,
    )
    .await;
    let third = run.turn(PROMPTS[2]);
    assert_eq!(third.init["session_id"], id.as_str());
    let text = third.assistant["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    let found = format!("Reply 3 in conversation {id}: ");
    assert!(
        text.starts_with(&found),
        "the CLI found the history: {text}"
    );
    assert_eq!(
        third.result["total_cost_usd"],
        dollars(cost_nanos(PROMPTS[2]))
    );
    let report = |what: &str| format!("POST {}", spec["report"][what].as_str().unwrap());
    let resumed = call(&server, &report("conversations"), &third.init, 200).await;
    assert_eq!(resumed["conversations"], reported["conversations"]);
    let counted = call(&server, &report("usage"), &third.result, 200).await;
    let usage = &counted["session"]["usage"];
    assert_eq!(*usage, usage_after(&PROMPTS, &usage["updated"]));
    assert!(run.end().status.success());

    let lines = transcript(&config_dir, spec["cwd"].as_str().unwrap(), &id);
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user", "assistant"].repeat(3));
    assert!(lines.iter().all(|l| l["sessionId"] == id.as_str()));
}

#[tokio::test]
async fn a_fork_keeps_its_lineage_and_the_cli_resumes_only_from_the_sessions_directory() {
    let dirs = Dirs::new();
    let config_dir = dirs.root.path().join("claude");
    let server = start(&dirs);
    call(
        &server,
        "POST /sessions",
        &json!({ "name": "homelab" }),
        201,
    )
    .await;
    let elsewhere = call(&server, "POST /sessions", &json!({ "name": "ideas" }), 201).await;

    let spec = server.get_ok("/sessions/homelab/launch?print=true").await;
    let id = spec["conversation"].as_str().unwrap().to_owned();
    let report =
        |spec: &Value, what: &str| format!("POST {}", spec["report"][what].as_str().unwrap());
    let mut run = Run::start(&spec, &config_dir);
    let first = run.turn(PROMPTS[0]);
    call(&server, &report(&spec, "conversations"), &first.init, 201).await;
    call(&server, &report(&spec, "usage"), &first.result, 200).await;
    assert!(run.end().status.success());

    // The resume, started anywhere but the session's directory: the CLI looks the
    // conversation up under its working directory, and does not find it.
    let resume = server.get_ok("/sessions/homelab/launch?print=true").await;
    assert_eq!(resume["mode"], "resume");
    let cwd = Path::new(elsewhere["dir"].as_str().unwrap());
    let ended = Run::start_in(&resume, cwd, &config_dir).end();
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    let refusal = format!("No conversation found with session ID: {id}");
    assert_eq!(ended.stderr.trim_end(), refusal);
    assert_eq!(ended.rest.len(), 1);
    assert_eq!(ended.rest[0]["is_error"], true);
    assert_eq!(ended.rest[0]["errors"], json!([refusal]));

    // A fork: a new conversation that starts with the old one's history.
    let fork = server
        .get_ok("/sessions/homelab/launch?mode=fork&print=true")
        .await;
    let forked = fork["conversation"].as_str().unwrap().to_owned();
    assert_ne!(forked, id);
    assert!(argv_has(&fork, ["--resume", &id]) && argv_has(&fork, ["--session-id", &forked]));
    let init_to = report(&fork, "conversations");
    assert_eq!(
        init_to,
        format!("POST /sessions/homelab/conversations?parent={id}")
    );
    let mut run = Run::start(&fork, &config_dir);
    let turn = run.turn(PROMPTS[1]);
    assert_eq!(turn.init["session_id"], forked.as_str());
    let text = turn.assistant["message"]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        text.starts_with(&format!("Reply 2 in conversation {forked}: ")),
        "{text}"
    );
    let reported = call(&server, &init_to, &turn.init, 201).await;
    assert_eq!(reported["conversation"], forked.as_str());
    let lineage = &reported["conversations"];
    assert_eq!(
        (&lineage[0]["id"], &lineage[0]["ended"]["reason"]),
        (&json!(id), &json!("forked"))
    );
    assert_eq!(
        (&lineage[1]["id"], &lineage[1]["parent"]),
        (&json!(forked), &json!(id))
    );
    let counted = call(&server, &report(&fork, "usage"), &turn.result, 200).await;
    let usage = &counted["session"]["usage"];
    assert_eq!(*usage, usage_after(&PROMPTS[..2], &usage["updated"]));
    assert!(run.end().status.success());

    // The old transcript is as it was; the fork's starts with a copy of it.
    let cwd = fork["cwd"].as_str().unwrap();
    let old = transcript(&config_dir, cwd, &id);
    let new = transcript(&config_dir, cwd, &forked);
    assert_eq!((old.len(), new.len()), (2, 4));
    let uuids =
        |lines: &[Value]| -> Vec<Value> { lines.iter().map(|l| l["uuid"].clone()).collect() };
    assert_eq!(uuids(&new[..2]), uuids(&old));
}
