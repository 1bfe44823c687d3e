//! `GET /v1/lookup`: what to dial, commune by commune.

use std::sync::Arc;

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::answers::RenderedAnswer;
use crate::directory::Directory;
use crate::domain::{InseeCode, Postcode};
use crate::error::{ApiError, Problem};
use crate::http::{cached_with_header, prefers_text};
use crate::lookup::{self as answers, LookupResponse};
use crate::state::AppState;

/// Exactly one of `postcode` and `insee`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// A five-digit postcode; it may serve several communes.
    #[param(example = "33000")]
    pub postcode: Option<String>,
    /// An INSEE commune code (municipal arrondissements too: 75116).
    #[param(example = "33063")]
    pub insee: Option<String>,
}

/// What to dial here
///
/// For each commune of the postcode (or the commune of the INSEE code), every service of
/// the catalogue with its status (`outage` when an active outage covers the commune) and
/// the numbers in force at the most specific level that has any. With `Accept: text/plain`,
/// the same answer as short French text, ready to post as is.
#[utoipa::path(
    tag = "lookup",
    params(LookupQuery),
    responses(
        (status = 200, description = "The answer", content(
            (LookupResponse = "application/json"),
            (String = "text/plain", example = "Bordeaux (Gironde - 33)\nAucune panne connue : composez les numéros habituels.")
        )),
        (status = 304, description = "Not modified since the ETag in If-None-Match"),
        (status = 400, description = "Malformed postcode or code, or not exactly one of postcode and insee", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown postcode (CEDEX codes are unknown) or commune", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/lookup")]
pub async fn lookup(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LookupQuery>,
) -> Result<HttpResponse, ApiError> {
    let dir = state.directory();
    let now = crate::store::now();
    let rendered = match (&query.postcode, &query.insee) {
        (Some(p), None) => {
            let p =
                Postcode::parse(p).map_err(|e| ApiError::bad_param("postcode", e.to_string()))?;
            // The hot path: an answer rendered once and shared until a change reaches it.
            dir.postcode_answer(p.as_str(), now).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "unknown postcode {p} (CEDEX codes are not in the base)"
                ))
            })?
        }
        (None, Some(i)) => {
            let i = InseeCode::parse(i).map_err(|e| ApiError::bad_param("insee", e.to_string()))?;
            Arc::new(
                answers::render_insee(&dir, i.as_str(), now)
                    .ok_or_else(|| ApiError::NotFound(format!("unknown commune {i}")))?,
            )
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of the query parameters postcode and insee",
            ))
        }
    };
    Ok(respond(&req, &rendered, &dir))
}

/// The answer as JSON or text, with its weak ETag.
fn respond(req: &HttpRequest, answer: &Arc<RenderedAnswer>, dir: &Directory) -> HttpResponse {
    if prefers_text(req) {
        cached_with_header(
            req,
            "text/plain; charset=utf-8",
            answer.text(dir.text_footer()),
            answer.text_etag(),
        )
    } else {
        cached_with_header(
            req,
            "application/json",
            answer.json(dir.built_at_json()),
            answer.json_etag(),
        )
    }
}
