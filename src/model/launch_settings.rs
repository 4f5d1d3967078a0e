//! The launch settings a persona's `settings` may carry beside `model` and `max_turns`:
//! how the Claude Code CLI is started for a session (see `crate::launch`, which turns
//! them into a command line). Each is optional and checked here, so a persona that would
//! make a wrong command line is refused when it is stored or loaded, not when a bot
//! starts it.

use serde_json::{Map, Value};

/// Whether the persona's prompt replaces the CLI's built-in one or is added to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptMode {
    /// `--append-system-prompt`: the CLI keeps its own prompt (its tools, its rules).
    #[default]
    Append,
    /// `--system-prompt`: the persona's prompt is the whole prompt.
    Replace,
}

/// The CLI's permission modes (`--permission-mode`); `manual` is its alias of `default`.
pub const PERMISSION_MODES: [&str; 7] = [
    "default",
    "acceptEdits",
    "plan",
    "auto",
    "dontAsk",
    "bypassPermissions",
    "manual",
];

/// The flags the launch spec sets itself, which `extra_args` may not carry (in either
/// `--flag value` or `--flag=value` form): a second value would silently win or clash.
pub const RESERVED_FLAGS: [&str; 24] = [
    "-p",
    "--print",
    "-r",
    "--resume",
    "-c",
    "--continue",
    "--session-id",
    "--fork-session",
    "--system-prompt",
    "--system-prompt-file",
    "--append-system-prompt",
    "--append-system-prompt-file",
    "--model",
    "--permission-mode",
    "--allowedTools",
    "--allowed-tools",
    "--disallowedTools",
    "--disallowed-tools",
    "--add-dir",
    "--max-turns",
    "--max-budget-usd",
    "--output-format",
    "--input-format",
    "--verbose",
];

/// A persona's launch settings, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LaunchSettings {
    pub system_prompt_mode: PromptMode,
    pub permission_mode: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub add_dirs: Vec<String>,
    pub extra_args: Vec<String>,
    /// The CLI's own cap for one print-mode run (`--max-budget-usd`).
    pub max_budget_usd: Option<f64>,
    /// The session's total budget, kept by the service (a default for `budget_usd`).
    pub budget_usd: Option<f64>,
}

impl LaunchSettings {
    /// Reads the launch settings from a persona's `settings` (its fields other than
    /// `model` and `max_turns`), with a message naming each broken rule. Fields this
    /// does not know are left alone: `settings` is the persona author's to extend.
    pub fn from_settings(settings: &Map<String, Value>) -> Result<Self, String> {
        let mut errors = Vec::new();
        let mut out = LaunchSettings::default();
        if let Some(value) = settings.get("system_prompt_mode") {
            let result: Result<(), String> = match value.as_str() {
                Some("append") => Ok(()),
                Some("replace") => {
                    out.system_prompt_mode = PromptMode::Replace;
                    Ok(())
                }
                _ => Err(r#"settings.system_prompt_mode must be "append" or "replace""#.into()),
            };
            errors.extend(result.err());
        }
        if let Some(value) = settings.get("permission_mode") {
            let result: Result<(), String> = match value.as_str() {
                Some(mode) if PERMISSION_MODES.contains(&mode) => {
                    out.permission_mode = Some(mode.to_owned());
                    Ok(())
                }
                _ => Err(format!(
                    "settings.permission_mode must be one of {}",
                    PERMISSION_MODES.join(", ")
                )),
            };
            errors.extend(result.err());
        }
        for (field, target) in [
            ("allowed_tools", &mut out.allowed_tools),
            ("disallowed_tools", &mut out.disallowed_tools),
            ("add_dirs", &mut out.add_dirs),
            ("extra_args", &mut out.extra_args),
        ] {
            if let Some(value) = settings.get(field) {
                errors.extend(strings(field, value).map(|list| *target = list).err());
            }
        }
        if let Some(flag) = out.extra_args.iter().find_map(|arg| reserved(arg)) {
            errors.push(format!(
                "settings.extra_args may not set {flag}: the launch spec sets it from the \
                 persona and the session"
            ));
        }
        for (field, target) in [
            ("max_budget_usd", &mut out.max_budget_usd),
            ("budget_usd", &mut out.budget_usd),
        ] {
            if let Some(value) = settings.get(field) {
                errors.extend(dollars(field, value).map(|n| *target = Some(n)).err());
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The reserved flag `arg` sets, if any. A short flag counts however it is written: the
/// CLI reads `-rID` as `-r ID` and `-pc` as `-p -c`.
fn reserved(arg: &str) -> Option<&'static str> {
    let flag = arg.split_once('=').map_or(arg, |(flag, _)| flag);
    let short = arg
        .strip_prefix('-')
        .filter(|rest| !rest.starts_with('-'))
        .and_then(|rest| rest.chars().next());
    RESERVED_FLAGS
        .iter()
        .copied()
        .find(|r| *r == flag || (r.len() == 2 && short.is_some_and(|c| r.ends_with(c))))
}

/// A list of non-empty strings without NUL (each becomes one argument).
fn strings(field: &str, value: &Value) -> Result<Vec<String>, String> {
    let message = || format!("settings.{field} must be a list of non-empty strings");
    let items = value.as_array().ok_or_else(message)?;
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(s) if !s.trim().is_empty() && !s.contains('\0') => Ok(s.to_owned()),
            _ => Err(message()),
        })
        .collect()
}

/// A positive, finite amount of US dollars.
fn dollars(field: &str, value: &Value) -> Result<f64, String> {
    match value.as_f64() {
        Some(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!(
            "settings.{field} must be a positive number of US dollars"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<LaunchSettings, String> {
        LaunchSettings::from_settings(value.as_object().unwrap())
    }

    #[test]
    fn every_setting_is_read() {
        let settings = parse(json!({
            "model": "m", "max_turns": 3, "unknown_to_us": true,
            "system_prompt_mode": "replace", "permission_mode": "acceptEdits",
            "allowed_tools": ["Read", "Bash(git log:*)"], "disallowed_tools": ["WebFetch"],
            "add_dirs": ["/srv/shared"], "extra_args": ["--debug", "api"],
            "max_budget_usd": 1.5, "budget_usd": 20
        }))
        .unwrap();
        assert_eq!(settings.system_prompt_mode, PromptMode::Replace);
        assert_eq!(settings.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(settings.allowed_tools, ["Read", "Bash(git log:*)"]);
        assert_eq!(settings.disallowed_tools, ["WebFetch"]);
        assert_eq!(settings.add_dirs, ["/srv/shared"]);
        assert_eq!(settings.extra_args, ["--debug", "api"]);
        assert_eq!(settings.max_budget_usd, Some(1.5));
        assert_eq!(settings.budget_usd, Some(20.0));
        assert_eq!(parse(json!({})).unwrap(), LaunchSettings::default());
    }

    #[test]
    fn each_broken_rule_is_named() {
        let err = parse(json!({
            "system_prompt_mode": "prepend", "permission_mode": "yolo",
            "allowed_tools": "Read", "add_dirs": [""], "max_budget_usd": 0,
            "budget_usd": "10"
        }))
        .unwrap_err();
        for part in [
            "settings.system_prompt_mode must be \"append\" or \"replace\"",
            "settings.permission_mode must be one of default, acceptEdits",
            "settings.allowed_tools must be a list of non-empty strings",
            "settings.add_dirs must be a list of non-empty strings",
            "settings.max_budget_usd must be a positive number",
            "settings.budget_usd must be a positive number",
        ] {
            assert!(err.contains(part), "{part:?} in {err}");
        }
    }

    #[test]
    fn extra_args_may_not_set_a_flag_of_the_spec() {
        for arg in [
            "--resume",
            "--model=opus",
            "-p",
            "--session-id",
            "--add-dir=/",
            "-r0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20",
            "-pc",
            "-c",
        ] {
            let err = parse(json!({ "extra_args": ["--debug", arg] })).unwrap_err();
            assert!(
                err.starts_with("settings.extra_args may not set -"),
                "{arg}: {err}"
            );
        }
        assert!(parse(json!({ "extra_args": ["--resume-later"] })).is_ok());
        assert!(parse(json!({ "extra_args": ["-d", "-", "--", "--debug=api"] })).is_ok());
    }
}
