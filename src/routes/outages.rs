//! The public list of outages.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem};
use crate::http::cached_json;
use crate::model::{Outage, OutageStatus};
use crate::state::AppState;

/// Filters of `GET /v1/outages`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutageQuery {
    /// `active` or `resolved`; both when absent.
    #[param(value_type = Option<crate::model::OutageStatus>)]
    pub status: Option<String>,
}

/// Outages.
#[derive(Serialize, ToSchema)]
pub struct OutageList {
    /// Newest first.
    #[schema(value_type = Vec<Outage>)]
    pub items: Vec<Arc<Outage>>,
}

/// List the outages
///
/// Declared outages, newest first.
#[utoipa::path(
    tag = "outages",
    params(OutageQuery),
    responses(
        (status = 200, description = "The outages", body = OutageList),
        (status = 400, description = "Unknown status", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/outages")]
pub async fn list_outages(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OutageQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some("active") => Some(OutageStatus::Active),
        Some("resolved") => Some(OutageStatus::Resolved),
        Some(_) => return Err(ApiError::bad_param("status", "active or resolved")),
    };
    let dir = state.directory();
    let items = dir
        .outages()
        .iter()
        .filter(|o| status.is_none_or(|s| o.status == s))
        .cloned()
        .collect();
    cached_json(&req, &OutageList { items })
}
