//! `GET /v1/lookup`: what to dial, commune by commune.

use std::sync::Arc;

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

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
    let (rendered, place) = match (&query.postcode, &query.insee) {
        (Some(p), None) => {
            let p =
                Postcode::parse(p).map_err(|e| ApiError::bad_param("postcode", e.to_string()))?;
            // The hot path: an answer rendered once and shared until a change reaches it.
            let rendered = dir.postcode_answer(p.as_str(), now).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "unknown postcode {p} (CEDEX codes are not in the base)"
                ))
            })?;
            (rendered, Asked::Postcode(p))
        }
        (None, Some(i)) => {
            let i = InseeCode::parse(i).map_err(|e| ApiError::bad_param("insee", e.to_string()))?;
            let rendered = answers::render_insee(&dir, i.as_str(), now)
                .ok_or_else(|| ApiError::NotFound(format!("unknown commune {i}")))?;
            (Arc::new(rendered), Asked::Insee(i))
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of the query parameters postcode and insee",
            ))
        }
    };
    if prefers_text(&req) {
        let (body, etag) = rendered.text(dir.text_footer(), || {
            let answer = match &place {
                Asked::Postcode(p) => answers::by_postcode(&dir, p.as_str(), now),
                Asked::Insee(i) => answers::by_insee(&dir, i.as_str(), now),
            };
            answer
                .map(|a| answers::to_text_body(&a))
                .unwrap_or_default()
        });
        Ok(cached_with_header(
            &req,
            "text/plain; charset=utf-8",
            body,
            etag,
        ))
    } else {
        Ok(cached_with_header(
            &req,
            "application/json",
            rendered.json(dir.built_at_json()),
            rendered.json_etag(),
        ))
    }
}

/// What the lookup was asked for.
enum Asked {
    Postcode(Postcode),
    Insee(InseeCode),
}
