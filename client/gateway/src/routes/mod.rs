//! The routes (GATEWAY.md), and what wraps every request: its deadline and its metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::HttpError;
use crate::state::Gateway;

mod extract;
pub mod post;
pub mod read;
pub mod topics;

pub use extract::{PathParams, QueryParams};

/// The stream route: held open for as long as the caller reads, so no deadline.
const STREAM_ROUTE: &str = "/v1/topics/{topic}/partitions/{partition}/stream";

/// Every route, with the deadline and the metrics around each.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/topics", get(topics::list))
        .route("/v1/topics/{topic}", get(topics::describe))
        .route("/v1/topics/{topic}/assertions", post(post::post))
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            get(read::records),
        )
        .route(STREAM_ROUTE, get(read::stream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(gateway.clone(), around))
        .with_state(gateway)
}

/// Answers within the deadline (504 past it) and counts the answer.
async fn around(State(gateway): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let is_post = req.method() == axum::http::Method::POST;
    let response = if route == STREAM_ROUTE {
        next.run(req).await
    } else {
        let limit = gateway.limits.request_timeout;
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            Err(_) => timed_out(limit, is_post).into_response(),
        }
    };
    gateway.metrics.request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn timed_out(limit: Duration, is_post: bool) -> HttpError {
    let mut message = format!("no answer within {limit:?}");
    if is_post {
        message.push_str(
            "; the records may or may not be stored: posting them again is safe (a stored one is answered as a duplicate)",
        );
    }
    HttpError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
}

async fn not_found() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route (see GATEWAY.md)",
    )
}

async fn method_not_allowed() -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method (see GATEWAY.md)",
    )
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        gateway.metrics.encode(),
    )
        .into_response()
}

/// 200 while a broker answers a metadata request, else 503 saying why.
async fn healthz(State(gateway): State<Arc<Gateway>>) -> Response {
    let asked =
        tokio::time::timeout(Duration::from_secs(2), gateway.health.refresh(Some(&[]))).await;
    match asked {
        Ok(Ok(meta)) => axum::Json(serde_json::json!({
            "status": "ok",
            "brokers": meta.brokers.len(),
        }))
        .into_response(),
        Ok(Err(e)) => HttpError::from(&e).into_response_with(StatusCode::SERVICE_UNAVAILABLE),
        Err(_) => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_broker",
            "no broker answered within 2 s",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use clap::Parser;
    use tower::ServiceExt;

    use super::*;
    use crate::args::Args;

    /// The router of a gateway whose cluster is never reached (nothing here needs it).
    fn app() -> Router {
        let args = Args::parse_from(["steme-gateway", "--bootstrap", "127.0.0.1:1"]);
        router(Gateway::from_args(&args).expect("the gateway starts"))
    }

    async fn answer(method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("a request");
        let response = app().oneshot(req).await.expect("an answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, serde_json::from_slice(&body).expect("a JSON body"))
    }

    #[tokio::test]
    async fn refusals_before_any_broker_is_asked_are_json() {
        for (method, uri, status, code) in [
            (
                "GET",
                "/v1/topics/t/partitions/abc/records",
                400,
                "bad_request",
            ),
            (
                "GET",
                "/v1/topics/t/partitions/99999999999/records",
                400,
                "bad_request",
            ),
            (
                "GET",
                "/v1/topics/t/partitions/0/records?bogus=1",
                400,
                "bad_request",
            ),
            (
                "GET",
                "/v1/topics/t/partitions/0/records?max=x",
                400,
                "bad_request",
            ),
            (
                "GET",
                "/v1/topics/t/partitions/0/records?max=0",
                400,
                "bad_request",
            ),
            (
                "GET",
                "/v1/topics/t/partitions/0/records?from=soon",
                400,
                "bad_request",
            ),
            (
                "GET",
                "/v1/topics/t/partitions/0/stream?max=3",
                400,
                "bad_request",
            ),
            ("DELETE", "/v1/topics", 405, "method_not_allowed"),
            ("GET", "/v2/anything", 404, "no_route"),
        ] {
            let (got, body) = answer(method, uri).await;
            assert_eq!(got.as_u16(), status, "{method} {uri}: {body}");
            assert_eq!(body["error"]["code"], code, "{method} {uri}: {body}");
            assert!(
                body["error"]["message"].is_string(),
                "{method} {uri}: {body}"
            );
        }
    }
}
