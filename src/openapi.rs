//! The OpenAPI 3.1 document, collected from the routes actually served.

use actix_web::App;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

/// What the document says beyond the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Relai",
        description = "Substitute emergency numbers for France when the short numbers (15, 17, 18, 112...) fail.\n\n\
Public reads need no token and are served from an in-memory snapshot; they carry `ETag` (answer `If-None-Match` \
with 304) and `Cache-Control: public, max-age=10`, and CORS is open to any origin. Errors are RFC 9457 \
`application/problem+json` documents; validation problems list each field in `errors`. Lists take `limit` \
(1-1000, default 100) and `cursor` (the `next_cursor` of the previous page). Times are RFC 3339 in UTC.\n\n\
Numbers and outages flagged `demo: true` are the historical demonstration of the 2 June 2021 outage: never dial them.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    tags(
        (name = "lookup", description = "What to dial here"),
        (name = "numbers", description = "Substitute numbers"),
        (name = "outages", description = "Declared outages"),
        (name = "reference", description = "Territories and the service catalogue"),
        (name = "operations", description = "Probes for operators and load balancers"),
    )
)]
pub struct ApiDoc;

/// Builds the document without a running server.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    api
}

/// The document as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    let mut text = spec().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
