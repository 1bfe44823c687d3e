//! The public map page: one self-contained French page (no CDN, no tile server).

use actix_web::http::header;
use actix_web::{get, HttpRequest, HttpResponse};

const INDEX: &str = include_str!("../web/index.html");

/// The public map page
///
/// A French, mobile-first page: search by postcode or commune, numbers as tap-to-call
/// links with their provenance, a map of the départements coloured by status, live
/// updates from `/v1/events`. Every asset is inline.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
#[get("/")]
pub async fn index(req: HttpRequest) -> HttpResponse {
    let mut response =
        crate::http::cached(&req, "text/html; charset=utf-8", INDEX.as_bytes().to_vec());
    // Revalidate every time, so a new release of the page is seen at once.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors *",
        ),
    );
    response
}
