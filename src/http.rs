//! HTTP helpers shared by the public read handlers: content negotiation, ETag and 304,
//! `Cache-Control`.

use actix_web::body::MessageBody;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// How long shared caches and browsers may reuse a public answer: short, because a
/// number can change at any moment in a crisis.
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=10";

/// A strong validator derived from the exact bytes of the body.
pub fn etag_for(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// Whether `If-None-Match` names this ETag (or `*`).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag.trim_start_matches("W/"))
}

/// A public, cacheable answer with its ETag, or 304 when the client has it already.
pub fn cached(req: &HttpRequest, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let etag = etag_for(&body);
    cached_with_etag(req, content_type, body, etag)
}

/// The ETag of a number: its version, so that `If-Match` can name it.
pub fn version_etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// [`cached`] with a given validator.
pub fn cached_with_etag(
    req: &HttpRequest,
    content_type: &'static str,
    body: Vec<u8>,
    etag: String,
) -> HttpResponse {
    match HeaderValue::from_str(&etag) {
        Ok(etag) => cached_with_header(req, content_type, body, &etag),
        Err(_) => cached(req, content_type, body),
    }
}

/// [`cached`] with a validator kept ready as a header value (cloning one is a reference
/// count, not a copy): the comparison with `If-None-Match` is weak, as RFC 9110 asks
/// for `GET`.
pub fn cached_with_header(
    req: &HttpRequest,
    content_type: &'static str,
    body: impl MessageBody + 'static,
    etag: &HeaderValue,
) -> HttpResponse {
    let fresh = not_modified(req, etag.to_str().unwrap_or_default());
    let etag = etag.clone();
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    // Static header values: a `&str` would be checked and copied into a new buffer on
    // every answer (this is the lookups' hot path).
    response
        .insert_header((header::ETAG, etag))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static(PUBLIC_CACHE_CONTROL),
        ))
        .insert_header((
            header::VARY,
            HeaderValue::from_static("Accept, Accept-Encoding"),
        ));
    if fresh {
        response.finish()
    } else {
        response
            .content_type(HeaderValue::from_static(content_type))
            .body(body)
    }
}

/// A public JSON answer with its ETag.
pub fn cached_json<T: Serialize>(req: &HttpRequest, value: &T) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(cached(req, "application/json", body))
}

/// Whether the client asked for plain text rather than JSON.
pub fn prefers_text(req: &HttpRequest) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let position = |needle: &str| accept.find(needle);
    match (position("text/plain"), position("application/json")) {
        (Some(_), None) => true,
        (Some(text), Some(json)) => text < json,
        _ => false,
    }
}
