//! One error type for the HTTP API, mapped to RFC 9457 problem+json in one place.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::StoreError;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field (or query parameter) at fault, e.g. `phone`, `territory`, `postcode`.
    pub field: String,
    /// What is wrong with it and what is expected.
    pub message: String,
    /// For CSV imports: the line of the file (the header is line 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
            line: None,
        }
    }
}

/// An RFC 9457 problem detail, served as `application/problem+json`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for a person.
    pub detail: String,
    /// For validation problems, each invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

/// Everything a handler can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Malformed request or parameter (400).
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// No valid token (401, with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// The role or the territorial scope forbids it (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown resource (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but invalid (422).
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// `If-Match` does not match the current version (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body is larger than allowed (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not of the expected content type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// `If-Match` is required and missing (428).
    #[error("{0}")]
    PreconditionRequired(String),
    /// Rate limited (429, with `Retry-After`).
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// Storage cannot take writes now (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected storage failure (500). Never for bad input.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_param(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            detail: format!("invalid {field}: {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::PreconditionRequired(_) => "precondition-required",
            ApiError::TooManyRequests { .. } => "rate-limited",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable { .. } => "invalid",
            ApiError::Unavailable(_) => "storage-unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let (detail, errors) = match self {
            ApiError::BadRequest { detail, errors }
            | ApiError::Unprocessable { detail, errors } => (detail.clone(), errors.clone()),
            // Internal details stay in the log, not in the answer.
            ApiError::Internal(_) => (
                "an unexpected error occurred; it has been logged".to_owned(),
                vec![],
            ),
            other => (other.to_string(), vec![]),
        };
        Problem {
            kind: format!("https://relai.example/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

/// Builds a problem+json response for any status (also used by the extractors' error handlers).
pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(problem).unwrap_or_else(|_| "{}".to_owned());
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut response = problem_response(&self.problem());
        if let ApiError::Unauthorized(detail) = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, bearer_challenge(detail));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict(detail) => ApiError::Conflict(detail),
            StoreError::Forbidden(detail) => ApiError::Forbidden(detail),
            StoreError::Unauthorized(detail) => ApiError::Unauthorized(detail),
            StoreError::Stale { .. } => ApiError::PreconditionFailed(e.to_string()),
            StoreError::Invalid(errors) => ApiError::Unprocessable {
                detail: summarize(&errors),
                errors,
            },
            StoreError::Db(db) => db_error(db),
        }
    }
}

/// The RFC 6750 challenge: without an error code when no token was sent, with
/// `invalid_token` and the reason otherwise.
fn bearer_challenge(detail: &str) -> header::HeaderValue {
    if detail == NO_TOKEN {
        return header::HeaderValue::from_static("Bearer realm=\"relai\"");
    }
    let value = format!(
        "Bearer realm=\"relai\", error=\"invalid_token\", error_description=\"{}\"",
        detail.replace(['"', '\\'], "'")
    );
    header::HeaderValue::from_str(&value).unwrap_or_else(|_| {
        header::HeaderValue::from_static("Bearer realm=\"relai\", error=\"invalid_token\"")
    })
}

/// The detail of a 401 for a request without token.
pub const NO_TOKEN: &str = "a bearer token is required";

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        db_error(e)
    }
}

fn summarize(errors: &[FieldError]) -> String {
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    format!("invalid field(s): {}", fields.join(", "))
}

/// Messages of PostgreSQL and libpq that mean "try again": the connection or the server
/// is going or gone, or a deadlock or serialization failure aborted the transaction.
fn is_transient(message: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "terminating connection",
        "server closed the connection",
        "connection to server",
        "no connection to the server",
        "could not connect",
        "could not send data",
        "could not receive data",
        "the database system is",
        "is not currently accepting connections",
        "deadlock detected",
        "could not serialize access",
        "canceling statement due to",
        "SSL connection has been closed",
        "database is locked",
    ];
    TRANSIENT.iter().any(|t| message.contains(t))
}

fn db_error(e: diesel::result::Error) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            ApiError::Conflict(format!("already exists: {}", info.message()))
        }
        // SQLite answers "database is locked" when another process holds the write lock
        // longer than busy_timeout: a transient unavailability, not a bug.
        Error::DatabaseError(DatabaseErrorKind::Unknown, ref info)
            if info.message().contains("database is locked") =>
        {
            ApiError::Unavailable("storage is busy; retry shortly".to_owned())
        }
        // PostgreSQL refuses the NUL character in text (SQLite stores it): the input is at
        // fault, not the service.
        Error::DatabaseError(_, ref info)
            if info.message().contains("invalid byte sequence")
                && info.message().contains("0x00") =>
        {
            ApiError::Unprocessable {
                detail: "text must not contain the NUL character (U+0000)".to_owned(),
                errors: vec![FieldError::new(
                    "body",
                    "a text contains the NUL character (U+0000)",
                )],
            }
        }
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | Error::BrokenTransactionManager => {
            ApiError::Unavailable("storage is unavailable; retry shortly".to_owned())
        }
        // The server went away or is restarting mid-request, or two writers collided:
        // transient, never a bug of the request.
        Error::DatabaseError(DatabaseErrorKind::Unknown, ref info)
        | Error::DatabaseError(DatabaseErrorKind::SerializationFailure, ref info)
            if is_transient(info.message()) =>
        {
            ApiError::Unavailable("storage is unavailable; retry shortly".to_owned())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    #[test]
    fn a_locked_database_is_a_503_not_a_500() {
        let locked = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("database is locked".to_owned()),
        );
        assert_eq!(
            ApiError::from(locked).status_code(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let other = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("disk I/O error".to_owned()),
        );
        assert_eq!(
            ApiError::from(other).status_code(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        for message in [
            "terminating connection due to administrator command",
            "server closed the connection unexpectedly",
            "deadlock detected",
        ] {
            let e = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()));
            assert_eq!(
                ApiError::from(e).status_code(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{message}"
            );
        }
        let unique = Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("dup".to_owned()),
        );
        assert_eq!(ApiError::from(unique).status_code(), StatusCode::CONFLICT);
        let nul = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("invalid byte sequence for encoding \"UTF8\": 0x00".to_owned()),
        );
        assert_eq!(
            ApiError::from(nul).status_code(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
