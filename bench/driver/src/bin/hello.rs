//! The ceiling of the benchmark (`bench/run`): a minimal axum server on the same tokio
//! runtime as the service (multi-thread, default number of workers), answering
//! `GET /` (and `GET /healthz`, so start-up is measured the same way) with a short body.
//!
//! Usage: `hello <listen address>`, a loopback one, e.g. `hello 127.0.0.1:8080`. Runs
//! until a signal ends it (SIGTERM's and SIGINT's default action).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: hello <listen address>")?
        .parse()?;
    if !addr.ip().is_loopback() {
        return Err(
            format!("refusing to listen on {addr}: the benchmark stays on loopback").into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            .route("/healthz", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}
