//! The `session-manager` binary: parse the command line, set up logging, then serve or
//! probe. Exit codes: 0 on a clean stop or a healthy probe, 1 otherwise. Serving, it
//! raises its open-files limit first, and hears SIGTERM and SIGINT (stop) and SIGHUP
//! (reload the persona library).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use session_manager::client::{ClientCommand, Endpoint};
use session_manager::config::{self, Cli, Command, Config, LogFormat};
use session_manager::http::app;
use session_manager::limits::BLOCKING_GRACE;
use session_manager::personas::Personas;
use session_manager::{healthcheck, limits};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => match healthcheck::probe(cli.config.listen) {
            Ok(status) => {
                println!("healthy: {status}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Client(command) => client(&cli.config, command, cli.json),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "session-manager",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Serve => match run(cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("session-manager: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A client command against the instance at `--listen`, with the configured token.
fn client(config: &Config, command: ClientCommand, json: bool) -> ExitCode {
    let token = match config.token() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("session-manager: {e}");
            return ExitCode::from(2);
        }
    };
    let endpoint = Endpoint {
        addr: healthcheck::target(config.listen),
        token,
    };
    match session_manager::client::run(&endpoint, command, json) {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("session-manager: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    open_files();
    let state = config::build(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        // Before anything is served: a service that cannot hear SIGTERM must not start.
        let signals =
            Signals::install().map_err(|e| format!("cannot install the signal handlers: {e}"))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        tracing::info!(
            sessions_dir = %state.store.dir().display(),
            personas_dir = %state.personas.dir().display(),
            claude_config_dir = %state
                .transcripts
                .config_dir()
                .map_or("none (HOME is not set)".into(), |d| d.display().to_string()),
            auth = state.auth.enabled(),
            "listening on {}",
            listener.local_addr()?
        );
        // One signal stops every listener.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let metrics_server = match config.metrics_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
                tracing::info!("serving metrics on {}", listener.local_addr()?);
                let router = app::metrics_router(state.clone());
                Some(tokio::spawn(app::serve_router(
                    listener,
                    router,
                    limits::METRICS_MAX_CONNECTIONS,
                    until_stopped(),
                )))
            }
            None => None,
        };
        let personas = state.personas.clone();
        tokio::spawn(async move {
            signals.serve(personas).await;
            let _ = stop.send(true);
        });
        app::serve(listener, state, until_stopped()).await?;
        if let Some(server) = metrics_server {
            server.await??;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    // A write stuck on hung storage keeps a blocking thread; dropping the runtime would
    // wait for it for ever. Its caller was already answered 503.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft open-files limit to the hard one, and logs both with the number of
/// connections `serve` takes at once under it.
fn open_files() {
    let files = limits::raise_open_files_limit();
    if let Some(e) = &files.error {
        tracing::warn!(
            "cannot raise the open-files limit from {} to {}: {e}",
            files.was,
            files.hard
        );
    }
    let connections = limits::max_connections(files.soft);
    let raised = if files.soft == files.was {
        String::new()
    } else {
        format!(", raised from {}", files.was)
    };
    tracing::info!(
        "open-files limit: {} (hard {}{raised}); at most {connections} connections at once",
        files.soft,
        files.hard
    );
}

/// The signals the service acts on: SIGTERM and SIGINT stop it gracefully, SIGHUP
/// reloads the persona library.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Reloads `personas` on each SIGHUP; returns on SIGTERM or SIGINT.
    async fn serve(mut self, personas: Arc<Personas>) {
        loop {
            let stop = tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.hup.recv() => {
                    reload(personas.clone()).await;
                    continue;
                }
            };
            tracing::info!("{stop} received");
            return;
        }
    }
}

/// Reads the persona library again, off the runtime's threads; the library loaded
/// before stays in service when that fails.
async fn reload(personas: Arc<Personas>) {
    let reloaded = tokio::task::spawn_blocking(move || {
        let library = personas.reload()?;
        Ok::<_, std::io::Error>((library.personas.len(), library.skipped.len()))
    })
    .await;
    match reloaded {
        Ok(Ok((loaded, skipped))) => tracing::info!(
            "SIGHUP received: persona library reloaded ({loaded} personas, {skipped} skipped)"
        ),
        Ok(Err(e)) => tracing::error!(
            "SIGHUP received: the persona library could not be reloaded: {e}; the library \
             loaded before is still served"
        ),
        Err(e) => tracing::error!("SIGHUP received: the reload failed: {e}"),
    }
}
