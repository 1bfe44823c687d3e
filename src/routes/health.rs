//! Liveness and readiness probes.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// A probe's answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The last changes-log sequence the directory snapshot includes.
    pub snapshot_seq: i64,
}

/// Liveness
///
/// The process answers. Says nothing about storage.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Health {
            status: "ok".to_owned(),
            snapshot_seq: state.directory().seq(),
        })
}

/// Readiness
///
/// Storage is reachable, so writes can be taken. Public reads are served from memory
/// even when this says not ready.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Storage unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // The follower notices storage going away within its interval; no need to wait for
    // a connection timeout then.
    let probe = state.clone();
    let ready = state.storage_up()
        && web::block(move || probe.storage_ready())
            .await
            .unwrap_or(false);
    if !ready {
        return Err(ApiError::Unavailable("storage is unreachable".to_owned()));
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Health {
            status: "ok".to_owned(),
            snapshot_seq: state.directory().seq(),
        }))
}
