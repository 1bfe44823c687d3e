//! Feeds: Server-Sent Events (more views of the changes log come with the feeds issue).

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, Problem};
use crate::feeds::{events as sse, ChangeEvent};
use crate::state::AppState;
use crate::store::{self, StoreError};

/// The most missed changes replayed on reconnection; further back, read `/v1/feed.atom`.
pub const MAX_REPLAY: i64 = 10_000;

/// Where to resume.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this sequence number (same as the `Last-Event-ID` header, which wins).
    pub since: Option<i64>,
}

/// Server-Sent Events of every change
///
/// `text/event-stream` of every public change (number published, corrected, retired or
/// superseded; outage declared or resolved) as it is committed. Each event's `id` is its
/// sequence in the changes log, `event` its kind, `data` a JSON `ChangeEvent`. A client
/// that reconnects with `Last-Event-ID` (or `?since=`) first receives exactly what it
/// missed. A comment line is sent every 15 seconds as a heartbeat.
#[utoipa::path(
    tag = "feeds",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "The last event received; the stream resumes after it"),
    ),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = ChangeEvent),
        (status = 400, description = "Malformed Last-Event-ID", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/events")]
pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let last_event_id = match req.headers().get("Last-Event-ID") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::bad_param("Last-Event-ID", "the id of an event of this stream")
                })?,
        ),
        None => query.since.filter(|n| *n >= 0),
    };
    // Subscribe before reading the backlog, so that nothing falls between the two.
    let live = state.subscribe();
    let (backlog, last_seen) = match last_event_id {
        Some(after) => {
            let read_state = state.clone();
            let rows = web::block(move || {
                let mut conn = read_state
                    .pool()
                    .get()
                    .map_err(|e| ApiError::Unavailable(format!("storage is unavailable: {e}")))?;
                store::changes_after(&mut conn, after, MAX_REPLAY)
                    .map_err(|e| ApiError::from(StoreError::Db(e)))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            (
                rows.into_iter().filter_map(ChangeEvent::public).collect(),
                after,
            )
        }
        None => (Vec::new(), state.directory().seq()),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        // Compressing would buffer the stream: events must leave at once.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .streaming(sse::stream(backlog, live, last_seen)))
}
