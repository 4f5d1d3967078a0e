//! The command-line client, in the same binary: `session-manager ls`, `new`, `switch`,
//! … speak the HTTP API of the running instance at `--listen`, with the token from the
//! environment or the token file, exactly as a script with curl would. It knows nothing
//! of the store: only the public API.
//!
//! - `http`: one request per connection, over the standard library's TCP;
//! - `show`: how answers are printed for a person (tables, "5 min ago", colour on a
//!   terminal only, `NO_COLOR` honoured); `--json` prints the API's JSON instead.
//!
//! A problem answer is printed as its `detail`, and the exit code says what kind of
//! failure it was ([`ClientError::exit_code`], listed in `--help`).

mod http;
mod show;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};

pub use http::Endpoint;

/// The exit codes, for `--help`.
pub const EXIT_CODES: &str = "Exit codes of the client commands:
  0  done
  1  any other failure
  2  bad command line
  3  not found (no such session, persona or archive entry)
  4  conflict (the name is taken, the process is alive, the budget is spent, ...)
  5  invalid (a bad name, title, tag or persona file)
  6  service unreachable (nothing answers at --listen)
  7  refused (a missing or wrong token, a host or origin not allowed)
  8  service unavailable (storage failing, a write timed out)";

#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// List the sessions: name, title, status, process, persona, cost, last active; the
    /// current one is marked with *.
    Ls {
        /// Only sessions with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only sessions whose name or title contains this (case-insensitive).
        #[arg(long)]
        q: Option<String>,
    },
    /// Show one session.
    Show { name: String },
    /// Create a session, from a library persona (default: the library's `default`) or a
    /// persona file of your own.
    New {
        name: String,
        #[arg(long, conflicts_with = "persona_file")]
        persona: Option<String>,
        #[arg(long)]
        persona_file: Option<PathBuf>,
    },
    /// Make a session the current one.
    Switch { name: String },
    /// Delete a session: it moves, whole, to the archive (see `archive`).
    Rm { name: String },
    /// Add tags to a session (or, with --remove, take them off).
    Tag {
        name: String,
        #[arg(required = true)]
        tags: Vec<String>,
        #[arg(long)]
        remove: bool,
    },
    /// Give a session a title (a rename would break its conversations' resume).
    Title { name: String, text: String },
    /// The persona library; `personas reload` re-reads its directory.
    Personas {
        #[command(subcommand)]
        action: Option<PersonasAction>,
    },
    /// Archived sessions: list, restore, purge for good.
    Archive {
        #[command(subcommand)]
        action: ArchiveAction,
    },
    /// The last messages of a session's current conversation.
    Tail {
        name: String,
        /// How many messages.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum PersonasAction {
    /// Re-read the persona directory; a broken file is reported, its previous version
    /// stays served.
    Reload,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ArchiveAction {
    /// List archived sessions, newest first.
    Ls,
    /// Put an archived session back (under another name with --as, if it has no
    /// conversation).
    Restore {
        id: String,
        #[arg(long = "as")]
        as_name: Option<String>,
    },
    /// Delete an archived session for good.
    Purge { id: String },
}

/// Why a client command failed; each kind has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "cannot reach session-manager at {addr} ({cause}); is it running, and is --listen right?"
    )]
    Unreachable { addr: SocketAddr, cause: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Other(_) => 1,
            ClientError::NotFound(_) => 3,
            ClientError::Conflict(_) => 4,
            ClientError::Invalid(_) => 5,
            ClientError::Unreachable { .. } => 6,
            ClientError::Refused(_) => 7,
            ClientError::Unavailable(_) => 8,
        }
    }

    /// The failure a problem answer stands for, said with its `detail`.
    fn from_problem(status: u16, problem: &Value) -> Self {
        let detail = problem["detail"]
            .as_str()
            .map_or_else(|| format!("the service answered {status}"), str::to_owned);
        match status {
            404 => ClientError::NotFound(detail),
            409 | 412 | 429 => ClientError::Conflict(detail),
            400 | 413 | 415 | 422 => ClientError::Invalid(detail),
            401 | 403 | 421 => ClientError::Refused(detail),
            503 | 507 => ClientError::Unavailable(detail),
            _ => ClientError::Other(detail),
        }
    }
}

/// Runs `command` against the service at `endpoint`; what to print on success.
pub fn run(
    endpoint: &Endpoint,
    command: ClientCommand,
    as_json: bool,
) -> Result<String, ClientError> {
    let call = |method: &str, path: &str, body: Option<Value>| call(endpoint, method, path, body);
    let out = |value: Value, human: fn(&Value) -> String| {
        if as_json {
            serde_json::to_string_pretty(&value).unwrap_or_default()
        } else {
            human(&value)
        }
    };
    Ok(match command {
        ClientCommand::Ls { tag, q } => {
            let mut query = Vec::new();
            if let Some(tag) = &tag {
                query.push(format!("tag={}", encode(tag)));
            }
            if let Some(q) = &q {
                query.push(format!("q={}", encode(q)));
            }
            let path = match query.is_empty() {
                true => "/sessions".to_owned(),
                false => format!("/sessions?{}", query.join("&")),
            };
            let sessions = call("GET", &path, None)?;
            if as_json {
                return Ok(out(sessions, |_| String::new()));
            }
            let current = call("GET", "/sessions/active", None)?;
            show::sessions(&sessions, current["active"].as_str(), show::Style::detect())
        }
        ClientCommand::Show { name } => out(call("GET", &session(&name), None)?, show::session),
        ClientCommand::New {
            name,
            persona,
            persona_file,
        } => {
            let persona = match (persona, persona_file) {
                (Some(key), _) => Value::String(key),
                (None, Some(file)) => read_persona_file(&file)?,
                (None, None) => Value::Null,
            };
            let created = call(
                "POST",
                "/sessions",
                Some(json!({ "name": name, "persona": persona })),
            )?;
            out(created, |s| format!("created {}", show::session_line(s)))
        }
        ClientCommand::Switch { name } => {
            let switched = call("PUT", "/sessions/active", Some(json!({ "name": name })))?;
            out(switched, show::switched)
        }
        ClientCommand::Rm { name } => {
            call("DELETE", &session(&name), None)?;
            out(json!({ "deleted": name }), |v| {
                format!(
                    "{} moved to the archive",
                    v["deleted"].as_str().unwrap_or_default()
                )
            })
        }
        ClientCommand::Tag { name, tags, remove } => {
            let current = call("GET", &session(&name), None)?;
            let mut now: Vec<String> = current["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if remove {
                now.retain(|t| !tags.contains(t));
            } else {
                for tag in tags {
                    if !now.contains(&tag) {
                        now.push(tag);
                    }
                }
            }
            let patched = call("PATCH", &session(&name), Some(json!({ "tags": now })))?;
            out(patched, show::session_line)
        }
        ClientCommand::Title { name, text } => {
            let patched = call("PATCH", &session(&name), Some(json!({ "title": text })))?;
            out(patched, show::session_line)
        }
        ClientCommand::Personas { action: None } => {
            out(call("GET", "/personas", None)?, show::personas)
        }
        ClientCommand::Personas {
            action: Some(PersonasAction::Reload),
        } => out(call("POST", "/personas/reload", None)?, show::reloaded),
        ClientCommand::Archive { action } => match action {
            ArchiveAction::Ls => out(call("GET", "/archive", None)?, show::archive),
            ArchiveAction::Restore { id, as_name } => {
                let body = as_name
                    .map(|name| json!({ "as": name }))
                    .unwrap_or(json!({}));
                let restored = call(
                    "POST",
                    &format!("/archive/{}/restore", encode(&id)),
                    Some(body),
                )?;
                out(restored, |s| format!("restored {}", show::session_line(s)))
            }
            ArchiveAction::Purge { id } => {
                call("DELETE", &format!("/archive/{}", encode(&id)), None)?;
                out(json!({ "purged": id }), |v| {
                    format!(
                        "{} deleted for good",
                        v["purged"].as_str().unwrap_or_default()
                    )
                })
            }
        },
        ClientCommand::Tail { name, lines } => {
            let path = format!("{}/transcript?tail={lines}", session(&name));
            out(call("GET", &path, None)?, show::transcript)
        }
    })
}

fn session(name: &str) -> String {
    format!("/sessions/{}", encode(name))
}

/// One call; a problem answer becomes the error of its kind.
fn call(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, ClientError> {
    let answer = endpoint.send(method, path, body.as_ref())?;
    let value = answer.json()?;
    if (200..300).contains(&answer.status) {
        Ok(value)
    } else {
        Err(ClientError::from_problem(answer.status, &value))
    }
}

fn read_persona_file(file: &std::path::Path) -> Result<Value, ClientError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ClientError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::Invalid(format!("{} is not JSON: {e}", file.display())))
}

/// Percent-encodes what is not a URL's unreserved character, so that no name or id can
/// change the path it is put in (the service refuses bad names anyway).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_the_path() {
        assert_eq!(encode("a/../b c"), "a%2F..%2Fb%20c");
        assert_eq!(encode("work_1-x"), "work_1-x");
    }

    #[test]
    fn each_problem_has_its_exit_code() {
        let problem = json!({ "detail": "nope" });
        for (status, code) in [
            (404, 3),
            (409, 4),
            (412, 4),
            (422, 5),
            (400, 5),
            (401, 7),
            (503, 8),
            (500, 1),
        ] {
            let error = ClientError::from_problem(status, &problem);
            assert_eq!(error.exit_code(), code, "{status}");
            assert_eq!(error.to_string(), "nope");
        }
    }
}
