//! The launch spec: exactly how the bot starts Claude Code for a session — the working
//! directory, the command line and the environment — built from the session's own
//! persona and its conversation. The one place where persona settings become CLI flags.
//!
//! The service never runs the command; it only describes it. The CLI's facts it
//! encodes: `--resume <id>` continues a conversation, and looks the id up under the
//! working directory only (so `cwd` is always the session's directory); `--session-id
//! <uuid>` starts a new conversation with a chosen id; `--fork-session` with `--resume`
//! starts a new conversation from an old one; `--system-prompt` replaces the built-in
//! prompt and `--append-system-prompt` adds to it; `--max-turns` and `--max-budget-usd`
//! apply in print mode (`-p`) only, where `--output-format stream-json` (which needs
//! `--verbose` there) prints the `init` and `result` messages the bot reports back, and
//! `--input-format stream-json` makes each line of stdin a prompt answered as it comes
//! (without it, all of stdin is one prompt, answered only at its end, so a process that
//! stays alive between prompts could never answer one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{LaunchSettings, Persona, PromptMode, SessionName};

/// How this service makes launch specs (`--claude-bin`, `--max-live`).
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    pub claude_bin: String,
    /// The most sessions whose process may be alive at once.
    pub max_live: Option<usize>,
}

/// Which conversation a run continues or starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Continue the session's conversation (the default when it has one).
    Resume,
    /// Start a new conversation (the default when it has none).
    New,
    /// Start a new conversation from the session's conversation.
    Fork,
}

/// What to run, as the bot should run it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchSpec {
    /// The session's directory: the CLI finds a conversation to resume under it only.
    pub cwd: PathBuf,
    /// The program and its arguments, one string each (no shell).
    pub argv: Vec<String>,
    /// Variables to set on top of the bot's own environment.
    pub env: BTreeMap<String, String>,
    /// The conversation the run will be in: the one resumed, or the new one's id.
    pub conversation: String,
    pub mode: Mode,
}

/// Why there is no launch spec for what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "session '{0}' has no conversation to {1}; ask for mode=new, or record the \
         conversation first"
    )]
    NoConversation(SessionName, &'static str),
    #[error("the session's persona has launch settings that are not valid: {0}")]
    Settings(String),
}

/// What a launch spec is built from.
#[derive(Debug)]
pub struct Launch<'a> {
    pub claude_bin: &'a str,
    pub name: &'a SessionName,
    pub cwd: &'a Path,
    pub persona: &'a Persona,
    /// The session's conversation, if it has one.
    pub conversation: Option<&'a str>,
    /// The mode asked for; `None` for the default.
    pub mode: Option<Mode>,
    /// Print mode (`-p`), for a bot that drives the CLI through stream-json.
    pub print: bool,
}

/// The environment variable naming the session, for hooks and tools run inside it.
pub const SESSION_ENV: &str = "SESSION_MANAGER_SESSION";

impl Launch<'_> {
    /// Builds the spec; `new_id` makes the id of a new conversation (a UUID).
    pub fn spec(&self, new_id: impl FnOnce() -> String) -> Result<LaunchSpec, LaunchError> {
        let settings = LaunchSettings::from_settings(&self.persona.settings.extra)
            .map_err(LaunchError::Settings)?;
        let mode = self.mode.unwrap_or(match self.conversation {
            Some(_) => Mode::Resume,
            None => Mode::New,
        });
        let current = || {
            let verb = if mode == Mode::Fork { "fork" } else { "resume" };
            self.conversation
                .map(str::to_owned)
                .ok_or_else(|| LaunchError::NoConversation(self.name.clone(), verb))
        };
        let mut argv = vec![self.claude_bin.to_owned()];
        let mut push = |flag: &str, value: &str| argv.extend([flag.to_owned(), value.to_owned()]);
        // Flags that take lists come first, each followed by another flag, so a list
        // never swallows what follows.
        for tool in &settings.allowed_tools {
            push("--allowedTools", tool);
        }
        for tool in &settings.disallowed_tools {
            push("--disallowedTools", tool);
        }
        for dir in &settings.add_dirs {
            push("--add-dir", dir);
        }
        push("--model", &self.persona.settings.model);
        if let Some(permission_mode) = &settings.permission_mode {
            push("--permission-mode", permission_mode);
        }
        let prompt_flag = match settings.system_prompt_mode {
            PromptMode::Append => "--append-system-prompt",
            PromptMode::Replace => "--system-prompt",
        };
        push(prompt_flag, &self.persona.system_prompt);
        let conversation = match mode {
            Mode::Resume => {
                let id = current()?;
                push("--resume", &id);
                id
            }
            Mode::New => {
                let id = new_id();
                push("--session-id", &id);
                id
            }
            Mode::Fork => {
                let from = current()?;
                let id = new_id();
                push("--resume", &from);
                argv.push("--fork-session".to_owned());
                argv.extend(["--session-id".to_owned(), id.clone()]);
                id
            }
        };
        if self.print {
            argv.extend(
                [
                    "-p",
                    "--input-format",
                    "stream-json",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                ]
                .map(str::to_owned),
            );
            argv.extend([
                "--max-turns".to_owned(),
                self.persona.settings.max_turns.to_string(),
            ]);
            if let Some(dollars) = settings.max_budget_usd {
                argv.extend(["--max-budget-usd".to_owned(), dollars.to_string()]);
            }
        }
        argv.extend(settings.extra_args);
        Ok(LaunchSpec {
            cwd: self.cwd.to_path_buf(),
            argv,
            env: BTreeMap::from([(SESSION_ENV.to_owned(), self.name.to_string())]),
            conversation,
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NEW: &str = "11111111-2222-4333-8444-555555555555";
    const OLD: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

    fn spec(
        persona: &Value,
        conversation: Option<&str>,
        mode: Option<Mode>,
        print: bool,
    ) -> Result<LaunchSpec, LaunchError> {
        let persona = Persona::from_value(persona.clone()).unwrap();
        let name: SessionName = "homelab".parse().unwrap();
        Launch {
            claude_bin: "claude",
            name: &name,
            cwd: Path::new("/data/sessions/homelab"),
            persona: &persona,
            conversation,
            mode,
            print,
        }
        .spec(|| NEW.to_owned())
    }

    /// The conversation, the mode asked, print mode; the argv, conversation and mode
    /// expected.
    type Row<'a> = (
        Option<&'a str>,
        Option<Mode>,
        bool,
        Vec<String>,
        &'a str,
        Mode,
    );

    /// Every shipped persona, in every mode, with and without print mode: the whole
    /// command line, written out.
    #[test]
    fn every_shipped_persona_in_every_mode() {
        for (key, text) in crate::personas::SHIPPED {
            let persona: Value = serde_json::from_str(text).unwrap();
            let prompt = persona["system_prompt"].as_str().unwrap().to_owned();
            let model = persona["settings"]["model"].as_str().unwrap().to_owned();
            let turns = persona["settings"]["max_turns"].to_string();
            let head = |rest: &[&str]| {
                let mut argv: Vec<String> = [
                    "claude",
                    "--model",
                    &model,
                    "--append-system-prompt",
                    &prompt,
                ]
                .map(str::to_owned)
                .to_vec();
                argv.extend(rest.iter().map(|s| s.to_string()));
                argv
            };
            let print_tail = [
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--verbose",
                "--max-turns",
                &turns,
            ];
            let table: [Row; 8] = [
                (
                    None,
                    None,
                    false,
                    head(&["--session-id", NEW]),
                    NEW,
                    Mode::New,
                ),
                (
                    Some(OLD),
                    None,
                    false,
                    head(&["--resume", OLD]),
                    OLD,
                    Mode::Resume,
                ),
                (
                    Some(OLD),
                    Some(Mode::Resume),
                    false,
                    head(&["--resume", OLD]),
                    OLD,
                    Mode::Resume,
                ),
                (
                    Some(OLD),
                    Some(Mode::New),
                    false,
                    head(&["--session-id", NEW]),
                    NEW,
                    Mode::New,
                ),
                (
                    Some(OLD),
                    Some(Mode::Fork),
                    false,
                    head(&["--resume", OLD, "--fork-session", "--session-id", NEW]),
                    NEW,
                    Mode::Fork,
                ),
                (
                    None,
                    None,
                    true,
                    head(&[&["--session-id", NEW][..], &print_tail[..]].concat()),
                    NEW,
                    Mode::New,
                ),
                (
                    Some(OLD),
                    None,
                    true,
                    head(&[&["--resume", OLD][..], &print_tail[..]].concat()),
                    OLD,
                    Mode::Resume,
                ),
                (
                    Some(OLD),
                    Some(Mode::Fork),
                    true,
                    head(
                        &[
                            &["--resume", OLD, "--fork-session", "--session-id", NEW][..],
                            &print_tail[..],
                        ]
                        .concat(),
                    ),
                    NEW,
                    Mode::Fork,
                ),
            ];
            for (conversation, mode, print, argv, id, resolved) in table {
                let got = spec(&persona, conversation, mode, print).unwrap();
                assert_eq!(
                    got.argv, argv,
                    "{key} {conversation:?} {mode:?} print={print}"
                );
                assert_eq!(got.conversation, id, "{key}");
                assert_eq!(got.mode, resolved, "{key}");
                assert_eq!(got.cwd, Path::new("/data/sessions/homelab"));
                assert_eq!(got.env[SESSION_ENV], "homelab");
            }
        }
    }

    #[test]
    fn a_custom_persona_with_every_launch_setting() {
        let persona = json!({
            "name": "Ops", "description": "d", "system_prompt": "Only this.",
            "settings": {
                "model": "claude-opus-4-1", "max_turns": 5,
                "system_prompt_mode": "replace", "permission_mode": "plan",
                "allowed_tools": ["Read", "Bash(git log:*)"], "disallowed_tools": ["WebFetch"],
                "add_dirs": ["/srv/shared"], "extra_args": ["--debug"],
                "max_budget_usd": 2.5
            }
        });
        let expected: Vec<&str> = vec![
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
            "plan",
            "--system-prompt",
            "Only this.",
            "--resume",
            OLD,
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
            "5",
            "--max-budget-usd",
            "2.5",
            "--debug",
        ];
        assert_eq!(
            spec(&persona, Some(OLD), None, true).unwrap().argv,
            expected
        );
        // Without print mode, the print-only flags are left out.
        let interactive = spec(&persona, Some(OLD), None, false).unwrap().argv;
        assert!(
            !interactive
                .iter()
                .any(|a| a == "--max-turns" || a == "--max-budget-usd" || a == "-p")
        );
        assert_eq!(interactive.last().map(String::as_str), Some("--debug"));
    }

    #[test]
    fn resume_and_fork_need_a_conversation() {
        let (_, text) = crate::personas::SHIPPED[0];
        let persona: Value = serde_json::from_str(text).unwrap();
        for (mode, verb) in [(Mode::Resume, "resume"), (Mode::Fork, "fork")] {
            let err = spec(&persona, None, Some(mode), false).unwrap_err();
            assert_eq!(
                err,
                LaunchError::NoConversation("homelab".parse().unwrap(), verb)
            );
        }
    }
}
