//! A session's runs of Claude Code, as the bot drives them over HTTP, a module per
//! concern: the conversation a run is in (`conversations`), the launch spec and
//! `--max-live` (`launch`), whether the recorded process lives (`liveness`), what the runs
//! cost and the budget (`usage`), and conditional requests (`conditional`). This file
//! holds what they share: the CLI's messages as the bot posts them, the routes' calls,
//! and a child process to record.

mod conditional;
mod conversations;
mod launch;
mod liveness;
mod usage;

use std::process::{Command, Stdio};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const MODEL: &str = "claude-sonnet-4-20250514";
const A: &str = "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";
const B: &str = "1c8c5b9f-ad52-4a5f-8b54-4a6e3a9b2d31";

/// The CLI's `system`/`init` stream-json message for conversation `id`, as it comes.
fn init(id: &str) -> Value {
    json!({
        "type": "system",
        "subtype": "init",
        "cwd": "/data/sessions/bot",
        "session_id": id,
        "tools": ["Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write", "WebFetch"],
        "mcp_servers": [{ "name": "homelab", "status": "connected" }],
        "model": MODEL,
        "permissionMode": "default",
        "slash_commands": ["compact", "cost", "review"],
        "apiKeySource": "none",
        "output_style": "default",
        "uuid": "5e1f9c2a-0d3b-4c8e-9f61-2a7b3c4d5e6f"
    })
}

/// The CLI's `result` message with id `uuid`, for a run of two turns that cost `cost`.
fn result(uuid: &str, cost: f64) -> Value {
    json!({
        "type": "result",
        "subtype": "success",
        "is_error": false,
        "duration_ms": 2345,
        "duration_api_ms": 2100,
        "num_turns": 2,
        "result": "Done.",
        "session_id": A,
        "total_cost_usd": cost,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 40,
            "server_tool_use": { "web_search_requests": 0 },
            "service_tier": "standard"
        },
        "permission_denials": [],
        "uuid": uuid
    })
}

/// Posts an `init` message for conversation `id` to `path` (a session's `conversations`,
/// with its query if any).
async fn report(app: &TestApp, path: &str, id: &str) -> Response {
    app.send_json(Method::POST, path, &init(id)).await
}

async fn post_usage(app: &TestApp, name: &str, body: &Value) -> Response {
    app.send_json(Method::POST, &format!("/sessions/{name}/usage"), body)
        .await
}

async fn launch(app: &TestApp, name: &str, query: &str) -> Response {
    app.get(&format!("/sessions/{name}/launch{query}")).await
}

/// The launch spec, asserted 200.
async fn launched(app: &TestApp, name: &str, query: &str) -> Value {
    assert_json(launch(app, name, query).await, StatusCode::OK).await
}

/// The id of the new conversation a launch spec starts, asserted to be a random UUID as
/// the CLI's `--session-id` takes it.
fn new_conversation(spec: &Value) -> String {
    let id = spec["conversation"].as_str().expect("a conversation id");
    let well_formed = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            14 => c == '4',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        });
    assert!(well_formed, "not a random UUID: {spec}");
    id.to_owned()
}

/// A timestamp `minutes` ago, as the service writes them.
fn minutes_ago(minutes: i64) -> String {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes);
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A process that lives until it is ended, killed and reaped when dropped.
struct LiveChild(std::process::Child);

impl LiveChild {
    fn spawn() -> Self {
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        Self(child)
    }

    fn pid(&self) -> i64 {
        i64::from(self.0.id())
    }

    /// Kills it and waits until it is reaped, so that not even a zombie is left.
    fn end(&mut self) {
        let _ = self.0.kill();
        self.0.wait().expect("reap the child");
    }
}

impl Drop for LiveChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
