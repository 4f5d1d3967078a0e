//! The `session-manager` binary: parse the command line, set up logging, then serve or
//! probe. Exit codes: 0 on a clean stop or a healthy probe, 1 otherwise.

use std::process::ExitCode;

use clap::Parser;
use session_manager::config::{Cli, Command, Config, LogFormat};
use session_manager::personas::Personas;
use session_manager::security::{Auth, HostGuard};
use session_manager::state::AppState;
use session_manager::store::Store;
use session_manager::{app, healthcheck};
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
    let token = config.token()?;
    config.check_exposure(token.is_some())?;
    let sessions_dir = config.sessions_dir()?;
    let personas_dir = config.personas_dir()?;

    let store = Store::open(&sessions_dir)?;
    let personas = Personas::open(&personas_dir).map_err(|e| {
        format!(
            "cannot open the persona library {}: {e}",
            personas_dir.display()
        )
    })?;
    let state = AppState::new(
        store,
        personas,
        Auth::new(token.as_deref()),
        HostGuard::new(config.listen, &config.allowed_hosts),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        tracing::info!(
            sessions_dir = %sessions_dir.display(),
            personas_dir = %personas_dir.display(),
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
                    until_stopped(),
                )))
            }
            None => None,
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        app::serve(listener, state, until_stopped()).await?;
        if let Some(server) = metrics_server {
            server.await??;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
