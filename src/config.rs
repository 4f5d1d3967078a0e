//! Command line and environment (SPEC §5), the checks made before anything starts, and
//! [`build`], which assembles what serves. Parsing has no side effects: directories are
//! created by `build`, through the store and the persona library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::http::security::{Auth, HostGuard};
use crate::http::state::AppState;
use crate::launch::LaunchConfig;
use crate::personas::Personas;
use crate::store::{Options, Store, StoreError};
use crate::transcript::Transcripts;

#[derive(Debug, Parser)]
#[command(name = "session-manager", version, about, after_help = crate::client::EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
    /// Client commands: print the API's JSON instead of a table or a sentence.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Probe a running instance's /healthz on --listen; exit 0 when it answers 200.
    Healthcheck,
    #[command(flatten)]
    Client(crate::client::ClientCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "SESSION_MANAGER_LISTEN",
        default_value = "127.0.0.1:8765",
        global = true
    )]
    pub listen: SocketAddr,

    /// Directory of the sessions [default: ~/telegram/sessions]
    #[arg(long, env = "SESSION_MANAGER_SESSIONS_DIR", global = true)]
    pub sessions_dir: Option<PathBuf>,

    /// Directory of the persona library, seeded with the shipped personas when missing
    /// or empty [default: ~/telegram/personas]
    #[arg(long, env = "SESSION_MANAGER_PERSONAS_DIR", global = true)]
    pub personas_dir: Option<PathBuf>,

    /// File whose first line is the bearer token (the token itself may instead be given
    /// in SESSION_MANAGER_TOKEN, never on the command line).
    #[arg(long, env = "SESSION_MANAGER_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// Allow listening beyond loopback without a token.
    #[arg(long, env = "SESSION_MANAGER_ALLOW_UNAUTHENTICATED", global = true)]
    pub allow_unauthenticated: bool,

    /// Extra host names or addresses accepted in the Host and Origin headers
    /// (comma-separated), for example the container's service name, or the LAN address
    /// the operator's browser uses.
    #[arg(
        long = "allowed-host",
        env = "SESSION_MANAGER_ALLOWED_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_hosts: Vec<String>,

    /// Also serve /metrics, without the token, on this address (loopback only), for a
    /// local Prometheus.
    #[arg(long, env = "SESSION_MANAGER_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// How long a write may take before it is answered 503 and /healthz turns
    /// unhealthy (hung storage), e.g. `10s`, `500ms`.
    #[arg(
        long,
        env = "SESSION_MANAGER_WRITE_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
        global = true
    )]
    pub write_timeout: std::time::Duration,

    /// The Claude Code program the launch spec names (a name looked up in the bot's
    /// PATH, or an absolute path).
    #[arg(
        long,
        env = "SESSION_MANAGER_CLAUDE_BIN",
        default_value = "claude",
        global = true
    )]
    pub claude_bin: String,

    /// The most sessions whose process may be alive at once: a launch spec that would
    /// make one more is 429, naming the live sessions the bot may stop first
    /// [default: unlimited].
    #[arg(long, env = "SESSION_MANAGER_MAX_LIVE", global = true)]
    pub max_live: Option<std::num::NonZeroUsize>,

    /// Purge archived (deleted) sessions archived more than this many days ago, at start
    /// and then daily, each logged; one whose process is alive is kept [default: keep
    /// them forever].
    #[arg(
        long,
        env = "SESSION_MANAGER_ARCHIVE_KEEP_DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36_500),
        global = true
    )]
    pub archive_keep_days: Option<u32>,

    /// Whether recorded processes are checked in /proc: `off` when the bot runs in
    /// another PID namespace (another container), where its pids mean nothing here;
    /// every process is then `unknown`.
    #[arg(
        long,
        env = "SESSION_MANAGER_PROCESS_CHECK",
        value_enum,
        default_value = "on",
        global = true
    )]
    pub process_check: Switch,

    /// The Claude Code CLI's config directory, where it keeps the sessions' transcripts
    /// (`projects/`), read only [default: $CLAUDE_CONFIG_DIR, or ~/.claude]
    #[arg(long, env = "SESSION_MANAGER_CLAUDE_CONFIG_DIR", global = true)]
    pub claude_config_dir: Option<PathBuf>,

    /// Do not serve the operator's page (/ui/, and / leading to it): both are then 404
    /// like any unknown path.
    #[arg(long, env = "SESSION_MANAGER_NO_UI", global = true)]
    pub no_ui: bool,

    /// Log format on stderr.
    #[arg(
        long,
        env = "SESSION_MANAGER_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// Why the service refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("HOME is not set, so the default {0} cannot be found; pass it explicitly")]
    NoHome(&'static str),
    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token is empty (check SESSION_MANAGER_TOKEN or the token file)")]
    EmptyToken,
    #[error(
        "refusing to listen on {0} (not loopback) without a token: set SESSION_MANAGER_TOKEN \
         or --token-file, or pass --allow-unauthenticated"
    )]
    UnauthenticatedExposure(SocketAddr),
    #[error(
        "--metrics-listen {0} is not a loopback address; metrics without a token are only \
         served on loopback (on other addresses, scrape /metrics with the token)"
    )]
    MetricsNotLoopback(SocketAddr),
}

/// The environment variable that carries the token itself.
pub const TOKEN_ENV: &str = "SESSION_MANAGER_TOKEN";

impl Config {
    pub fn sessions_dir(&self) -> Result<PathBuf, ConfigError> {
        resolve_dir(&self.sessions_dir, "telegram/sessions", "--sessions-dir")
    }

    pub fn personas_dir(&self) -> Result<PathBuf, ConfigError> {
        resolve_dir(&self.personas_dir, "telegram/personas", "--personas-dir")
    }

    /// The Claude Code CLI's config directory: the flag, else the CLI's own
    /// `CLAUDE_CONFIG_DIR`, else `~/.claude`; `None` when none is given and HOME is not
    /// set (the transcripts are then not served, and the rest is).
    pub fn claude_config_dir(&self) -> Option<PathBuf> {
        claude_config_dir(
            self.claude_config_dir.clone(),
            std::env::var_os("CLAUDE_CONFIG_DIR"),
            std::env::var_os("HOME"),
        )
    }

    /// The bearer token, if one is configured: the environment variable wins over the file.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let token = match (std::env::var(TOKEN_ENV).ok(), &self.token_file) {
            (Some(token), _) => token,
            (None, Some(path)) => read_token_file(path)?,
            (None, None) => return Ok(None),
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        Ok(Some(token))
    }

    /// The start-up rule of SPEC §5: no unauthenticated listener beyond loopback.
    pub fn check_exposure(&self, has_token: bool) -> Result<(), ConfigError> {
        if let Some(addr) = self.metrics_listen.filter(|a| !a.ip().is_loopback()) {
            return Err(ConfigError::MetricsNotLoopback(addr));
        }
        if self.listen.ip().is_loopback() || has_token || self.allow_unauthenticated {
            Ok(())
        } else {
            Err(ConfigError::UnauthenticatedExposure(self.listen))
        }
    }
}

/// A duration with a unit: `500ms`, `10s`, `2m`, `1h`, `7d`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write it as 500ms, 10s, 2m, 1h or 7d"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m, h or d")),
    };
    if duration.is_zero() {
        return Err("the duration must be more than zero".to_owned());
    }
    Ok(duration)
}

/// [`Config::claude_config_dir`], from the values of the flag and the environment.
fn claude_config_dir(
    flag: Option<PathBuf>,
    claude_env: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let given = |v: &std::ffi::OsString| !v.is_empty();
    flag.or_else(|| claude_env.filter(given).map(PathBuf::from))
        .or_else(|| home.filter(given).map(|h| PathBuf::from(h).join(".claude")))
}

fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn resolve_dir(
    given: &Option<PathBuf>,
    under_home: &str,
    flag: &'static str,
) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = given {
        return Ok(dir.clone());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(ConfigError::NoHome(flag))?;
    Ok(PathBuf::from(home).join(under_home))
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the persona library {}: {source}", dir.display())]
    Personas {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Checks `config` and assembles the service it describes: the store on the sessions
/// directory (locked, scanned, repaired), the persona library (seeded on a first start)
/// and the state every handler gets. `main` and the test harness both start here.
pub fn build(config: &Config) -> Result<AppState, StartError> {
    let token = config.token()?;
    config.check_exposure(token.is_some())?;
    let sessions_dir = config.sessions_dir()?;
    let personas_dir = config.personas_dir()?;
    let store = Store::open_with(
        &sessions_dir,
        Options {
            write_timeout: config.write_timeout,
            process_check: config.process_check == Switch::On,
        },
    )?;
    let personas = Personas::open(&personas_dir).map_err(|source| StartError::Personas {
        dir: personas_dir,
        source,
    })?;
    let state = AppState::new(
        store,
        personas,
        Auth::new(token.as_deref()),
        HostGuard::new(config.listen, &config.allowed_hosts),
        LaunchConfig {
            claude_bin: config.claude_bin.clone(),
            max_live: config.max_live.map(|n| n.get()),
        },
        Transcripts::new(config.claude_config_dir()),
    );
    let shared = state
        .into_shared()
        .expect("a state just made is not shared yet");
    Ok(AppState::with(crate::http::state::Shared {
        archive_keep: config
            .archive_keep_days
            .map(|days| std::time::Duration::from_secs(u64::from(days) * 24 * 60 * 60)),
        ui: !config.no_ui,
        ..shared
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claude_config_dir_is_the_flag_then_the_clis_variable_then_home() {
        let some = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            claude_config_dir(Some("/flag".into()), some("/env"), some("/home/op")),
            Some(PathBuf::from("/flag"))
        );
        assert_eq!(
            claude_config_dir(None, some("/env"), some("/home/op")),
            Some(PathBuf::from("/env"))
        );
        assert_eq!(
            claude_config_dir(None, some(""), some("/home/op")),
            Some(PathBuf::from("/home/op/.claude"))
        );
        assert_eq!(claude_config_dir(None, None, some("")), None);
    }
}
