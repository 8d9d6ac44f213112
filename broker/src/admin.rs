//! The admin listener (`--admin-listen`, D13): plain HTTP for operators and orchestrators.
//!
//! - `GET /metrics`: the broker's metrics in Prometheus text format ([`crate::metrics`]);
//! - `GET /healthz`: 200 while the process serves at all (a liveness probe);
//! - `GET /readyz`: 200 when the broker is ready ([`Broker::readiness`]: the metadata
//!   quorum reached, this broker registered, every partition placed here open), else 503;
//!   the body is JSON either way, naming each problem.
//!
//! It is not authenticated and carries no data but figures: bind it to an address only
//! operators reach.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::node::Broker;

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(broker);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(broker): State<Arc<Broker>>) -> Response {
    let text = broker.render_metrics().await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(broker): State<Arc<Broker>>) -> Response {
    let r = broker.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}
