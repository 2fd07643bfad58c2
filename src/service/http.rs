//! The service's HTTP endpoints on `service.metrics_listen`: `GET /healthz` (200 or 503 with a
//! JSON body) and `GET /metrics` (Prometheus text format). Nothing else is served, and only on
//! the configured address (off by default).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Status, StopHandle};

/// Parses `service.metrics_listen`: `address:port` (`localhost:PORT` is 127.0.0.1).
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    let v = match raw.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => raw.to_string(),
    };
    v.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{raw}` is not an address and port; e.g. 127.0.0.1:9464 (this machine only) or \
             0.0.0.0:9464 (every interface)"
        )
    })
}

/// The running HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// Stops serving (requests in flight finish).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn healthz(State(status): State<Arc<Status>>) -> Response {
    let h = status.health(chrono::Utc::now());
    let code = if h.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(h)).into_response()
}

async fn metrics(State(status): State<Arc<Status>>) -> Response {
    match status.metrics_text() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}

/// Binds `listen` and serves the endpoints until shut down (or `stop`).
pub async fn serve(listen: &str, status: Arc<Status>, stop: StopHandle) -> anyhow::Result<Server> {
    let addr = parse_listen(listen).map_err(crate::errors::ConfigError)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "service.metrics_listen: cannot listen on {addr} (another program may use the port, \
             or the address is not one of this machine's)"
        )
    })?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "health and metrics are served on {addr}, reachable from other machines \
             (service.metrics_listen)"
        );
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            tokio::select! {
                _ = rx => {}
                () = stop.stopped() => {}
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("the health and metrics server stopped: {e}");
        }
    });
    tracing::info!("health and metrics on http://{addr}/healthz and /metrics");
    Ok(Server {
        addr,
        task,
        stop: tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:9464").unwrap(),
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:9464").unwrap(),
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen("[::1]:9464").is_ok());
        let e = parse_listen("9464").unwrap_err();
        assert!(e.contains("127.0.0.1:9464"), "{e}");
    }
}
