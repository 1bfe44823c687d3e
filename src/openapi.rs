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
Public reads are limited per client address (`RELAI_PUBLIC_RATE_LIMIT` per minute, 600 by default): their \
answers carry the draft IETF headers `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and \
`RateLimit-Policy`, and past the limit they are refused with 429 and `Retry-After`. Every answer carries \
`X-Request-Id` (the request's own when it sent a sane one, up to 128 visible ASCII characters); quote it \
when reporting a problem.\n\n\
Numbers and outages flagged `demo: true` are the historical demonstration of the 2 June 2021 outage: never dial them.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "lookup", description = "What to dial here"),
        (name = "numbers", description = "Substitute numbers"),
        (name = "outages", description = "Declared outages"),
        (name = "reference", description = "Territories and the service catalogue"),
        (name = "operations", description = "Probes and metrics for operators and load balancers"),
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
    let mut api = api;
    document_public_rate_limit(&mut api);
    api
}

/// Adds the 429 of the public rate limit to every public read: the limit is a middleware,
/// so no handler declares it. Applied to the served document and the committed one.
pub fn document_public_rate_limit(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Ref, RefOr, Response};
    let integer = serde_json::json!({"schema": {"type": "integer"}});
    let Ok(rate_limited) = serde_json::from_value::<Response>(serde_json::json!({
        "description": "Too many public reads from this address; retry after `Retry-After` seconds",
        "headers": {
            "Retry-After": integer,
            "RateLimit-Limit": integer,
            "RateLimit-Remaining": integer,
            "RateLimit-Reset": integer,
            "RateLimit-Policy": {"schema": {"type": "string"}, "description": "`LIMIT;w=WINDOW_SECONDS`"},
        },
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })) else {
        return;
    };
    let components = api.components.get_or_insert_with(Default::default);
    components
        .responses
        .insert("RateLimited".to_owned(), RefOr::T(rate_limited));
    for (path, item) in api.paths.paths.iter_mut() {
        if !crate::ratelimit::is_public_read(&actix_web::http::Method::GET, path) {
            continue;
        }
        for operation in [item.get.as_mut(), item.head.as_mut()]
            .into_iter()
            .flatten()
        {
            operation
                .responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("RateLimited")));
        }
    }
}

/// The document as committed in `openapi/openapi.json`.
pub fn spec_json() -> String {
    let mut text = spec().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
