//! Every error the gateway answers, as JSON: `{"error":{"code","message"[,"wire_code"]}}`,
//! with the HTTP status a caller can act on (see GATEWAY.md, "Errors").

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use steme_client::ClientError;
use steme_protocol::{ApiError, ErrorCode};

/// One record of a post that cannot be stored, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadRecord {
    /// Its place in the request, from 0.
    pub index: usize,
    /// Why.
    pub error: String,
}

/// An error answer.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: String,
    message: String,
    wire_code: Option<u16>,
    retry_after: Option<Duration>,
    records: Vec<BadRecord>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
    #[serde(skip_serializing_if = "<[BadRecord]>::is_empty")]
    records: &'a [BadRecord],
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wire_code: Option<u16>,
}

impl HttpError {
    /// An error of the gateway's own (not a broker's).
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            code: code.to_owned(),
            message: message.into(),
            wire_code: None,
            retry_after: None,
            records: Vec::new(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 naming each record that cannot be stored; nothing of the request was.
    pub fn invalid_records(total: usize, records: Vec<BadRecord>) -> HttpError {
        let message = format!(
            "{} of {total} records are invalid; nothing was stored",
            records.len()
        );
        HttpError {
            records,
            ..HttpError::new(StatusCode::BAD_REQUEST, "invalid_records", message)
        }
    }

    /// 429: try again after `after`.
    pub fn too_many(code: &str, message: impl Into<String>, after: Duration) -> HttpError {
        HttpError::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(after)
    }

    /// Adds a `Retry-After` header (whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> HttpError {
        self.retry_after = Some(after);
        self
    }

    /// The status answered.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// How many records it names as bad.
    pub fn bad_records(&self) -> usize {
        self.records.len()
    }

    /// The error's name.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// A broker's error: its name and number, and the status that fits it.
    fn api(e: &ApiError) -> HttpError {
        use ErrorCode as C;
        let code = e.code();
        let (status, retry) = match code {
            C::UnknownTopic | C::UnknownPartition | C::UnknownGroup => {
                (StatusCode::NOT_FOUND, None)
            }
            C::AuthorizationDenied => (StatusCode::FORBIDDEN, None),
            C::InvalidRequest
            | C::InvalidSignature
            | C::InvalidAssertion
            | C::WrongPartition
            | C::OffsetOutOfRange
            | C::FrameTooLarge => (StatusCode::BAD_REQUEST, None),
            C::Throttled => (StatusCode::TOO_MANY_REQUESTS, Some(throttle_of(e))),
            C::NotLeader
            | C::NotEnoughReplicas
            | C::ShuttingDown
            | C::Timeout
            | C::StaleMap
            | C::SplitPending
            | C::NotCoordinator
            | C::Storage
            | C::ClockSkew => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(1)),
            ),
            // The gateway's own broker credentials were refused: its configuration is wrong.
            _ => (StatusCode::BAD_GATEWAY, None),
        };
        HttpError {
            status,
            code: snake_case(&format!("{code:?}")),
            message: e.to_string(),
            wire_code: Some(code as u16),
            retry_after: retry,
            records: Vec::new(),
        }
    }
}

fn throttle_of(e: &ApiError) -> Duration {
    match e {
        ApiError::Throttled { retry_after_ms, .. } => {
            Duration::from_millis(u64::from(*retry_after_ms))
        }
        _ => Duration::from_secs(1),
    }
}

/// `UnknownTopic` → `unknown_topic`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl From<&ClientError> for HttpError {
    fn from(e: &ClientError) -> HttpError {
        let unavailable = |code: &str| {
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, code, error_chain(e))
                .retry_after(Duration::from_secs(1))
        };
        match e {
            ClientError::Api(api) => HttpError::api(api),
            // The cause's code and status, with the partition and attempts in the message.
            ClientError::ProduceFailed { cause, .. } => HttpError {
                message: error_chain(e),
                ..HttpError::from(cause.as_ref())
            },
            ClientError::UnknownTopic { .. } => {
                HttpError::new(StatusCode::NOT_FOUND, "unknown_topic", e.to_string())
            }
            ClientError::UnknownPartition { .. } => {
                HttpError::new(StatusCode::NOT_FOUND, "unknown_partition", e.to_string())
            }
            ClientError::NoLeader { .. } => unavailable("no_leader"),
            ClientError::NoBrokers { .. }
            | ClientError::Connect { .. }
            | ClientError::ConnectionLost { .. } => unavailable("no_broker"),
            ClientError::Timeout { .. } => unavailable("broker_timeout"),
            ClientError::ProducerClosed => unavailable("shutting_down"),
            ClientError::OffsetOutOfRange { .. } => HttpError::new(
                StatusCode::BAD_REQUEST,
                "offset_out_of_range",
                e.to_string(),
            ),
            ClientError::CorruptData { .. }
            | ClientError::SkippedData { .. }
            | ClientError::CorruptBatch { .. }
            | ClientError::OffsetDiscontinuity { .. }
            | ClientError::FetchStalled { .. }
            | ClientError::Verify { .. } => {
                HttpError::new(StatusCode::BAD_GATEWAY, "unreadable_data", error_chain(e))
            }
            _ => HttpError::new(StatusCode::BAD_GATEWAY, "broker_error", error_chain(e)),
        }
    }
}

impl From<ClientError> for HttpError {
    fn from(e: ClientError) -> HttpError {
        HttpError::from(&e)
    }
}

/// The error and its causes, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl HttpError {
    /// The response, with `status` in place of the error's own.
    pub fn into_response_with(mut self, status: StatusCode) -> Response {
        self.status = status;
        self.into_response()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: &self.code,
                message: &self.message,
                wire_code: self.wire_code,
            },
            records: &self.records,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_become_snake_case() {
        assert_eq!(snake_case("UnknownTopic"), "unknown_topic");
        assert_eq!(snake_case("AuthorizationDenied"), "authorization_denied");
        assert_eq!(snake_case("Timeout"), "timeout");
    }

    #[test]
    fn broker_errors_keep_their_code_and_get_a_fitting_status() {
        let e = HttpError::from(ClientError::Api(ApiError::other(
            ErrorCode::AuthorizationDenied,
            "no",
        )));
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.code, "authorization_denied");
        assert_eq!(e.wire_code, Some(31));
        let e = HttpError::from(ClientError::Api(ApiError::Throttled {
            retry_after_ms: 1500,
            message: "quota".into(),
        }));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        // A partition whose storage failed is reopened: try again.
        let e = HttpError::from(ClientError::Api(ApiError::other(ErrorCode::Storage, "")));
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "storage")
        );
        assert_eq!(e.into_response().headers()[header::RETRY_AFTER], "1");
    }
}
