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
    modifiers(&BearerScheme),
    tags(
        (name = "lookup", description = "What to dial here"),
        (name = "numbers", description = "Substitute numbers"),
        (name = "outages", description = "Declared outages"),
        (name = "reference", description = "Territories and the service catalogue"),
        (name = "operations", description = "Probes for operators and load balancers"),
        (name = "feeds", description = "Live and syndicated views of the changes, for maps and bots"),
        (name = "moderation", description = "Citizens' tips, the review queue and decisions: only checked numbers reach the public"),
        (name = "admin", description = "Organizations, accounts, tokens and the audit trail (admins only)"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme the write and admin endpoints use.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An EdDSA (Ed25519) JWT issued by `relai token issue` or `POST /v1/admin/tokens`.",
                    ))
                    .build(),
            ),
        );
    }
}

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
