//! Feeds: Server-Sent Events (more views of the changes log come with the feeds issue).

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, Problem};
use crate::feeds::{events as sse, ChangeEvent};
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::store;

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
/// missed. A comment line is sent every 15 seconds as a heartbeat. When the service shuts
/// down, the stream ends with `retry: 1000` and an `event: reconnect` (no `id`): reconnect
/// with `Last-Event-ID` as usual.
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
    shutdown: web::Data<Shutdown>,
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
            let rows = state
                .clone()
                .into_inner()
                .read(move |conn| store::changes_after(conn, after, MAX_REPLAY))
                .await?;
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
        // The connection ends with the stream (the client reconnects anyway), so that a
        // shutdown does not wait for idle keep-alive connections.
        .force_close()
        .streaming(sse::stream(backlog, live, last_seen, shutdown.subscribe())))
}

/// The GeoJSON media type (RFC 7946).
const GEO_JSON: &str = "application/geo+json";

/// Numbers as GeoJSON
///
/// An RFC 7946 FeatureCollection with a Feature per published number in force (the same
/// filters as `/v1/numbers`): a Point at the commune's centroid, or at the chef-lieu for a
/// département; `geometry: null` for zones and the national territory. Properties are the
/// Number.
#[utoipa::path(
    tag = "feeds",
    params(crate::routes::numbers::NumberQuery),
    responses(
        (status = 200, description = "The FeatureCollection", content_type = "application/geo+json", body = Object),
        (status = 304, description = "Not modified since the ETag in If-None-Match"),
        (status = 400, description = "Malformed filter", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/numbers.geojson")]
pub async fn numbers_geojson(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<crate::routes::numbers::NumberQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let dir = state.directory();
    let body = serde_json::to_vec(&crate::feeds::geojson::numbers(&dir, &filter, store::now()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(crate::http::cached(&req, GEO_JSON, body))
}

/// Filter of the départements map.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapQuery {
    /// Only this service (a lighter map for one service).
    pub service: Option<String>,
    /// Only this département.
    pub departement: Option<String>,
}

/// Départements as GeoJSON
///
/// The outlines of the 101 départements (properties `code`, `name`) with, per service,
/// `status` (`outage` when an active outage covers the whole département, `partial` when
/// it covers some of its communes only, else `normal`) and the numbers in force at
/// département level or above: what a choropleth map needs in one request.
#[utoipa::path(
    tag = "feeds",
    params(MapQuery),
    responses(
        (status = 200, description = "The FeatureCollection", content_type = "application/geo+json", body = Object),
        (status = 304, description = "Not modified since the ETag in If-None-Match"),
        (status = 400, description = "Malformed service", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/departements.geojson")]
pub async fn departements_geojson(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<MapQuery>,
) -> Result<HttpResponse, ApiError> {
    let service = query
        .service
        .as_deref()
        .map(|s| crate::domain::ServiceCode::parse(s).map(|c| c.as_str().to_owned()))
        .transpose()
        .map_err(|e| ApiError::bad_param("service", e.to_string()))?;
    let departement = query
        .departement
        .as_deref()
        .map(|d| crate::domain::DepartementCode::parse(d).map(|c| c.as_str().to_owned()))
        .transpose()
        .map_err(|e| ApiError::bad_param("departement", e.to_string()))?;
    let dir = state.directory();
    let body = serde_json::to_vec(&crate::feeds::geojson::departements(
        &dir,
        service.as_deref(),
        departement.as_deref(),
        store::now(),
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(crate::http::cached(&req, GEO_JSON, body))
}

/// Paging of the Atom feed.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtomQuery {
    /// Only changes before this sequence number: the `next` link of the previous page.
    pub before: Option<i64>,
}

/// The base URL links are made from: the address the client used.
pub fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// Atom feed of the changes
///
/// Atom 1.0 of the latest public changes (numbers published, corrected, retired; outages
/// declared and resolved), newest first, 50 per page, with French titles. Entry ids are
/// stable (`tag:…:change:SEQ`); the `next` link pages back through older changes.
#[utoipa::path(
    tag = "feeds",
    params(AtomQuery),
    responses(
        (status = 200, description = "The feed", content_type = "application/atom+xml", body = String),
        (status = 304, description = "Not modified since the ETag in If-None-Match"),
        (status = 400, description = "Malformed `before`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/feed.atom")]
pub async fn feed_atom(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AtomQuery>,
) -> Result<HttpResponse, ApiError> {
    let before = query.before;
    if before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_param(
            "before",
            "a sequence number from a next link",
        ));
    }
    // Public changes are most of the log; reading a few more than a page leaves room for
    // the private ones (submissions, rejections) that are skipped.
    let rows = state
        .clone()
        .into_inner()
        .read(move |conn| {
            store::changes_before(
                conn,
                before.unwrap_or(i64::MAX),
                crate::feeds::atom::PAGE * 4,
            )
        })
        .await?;
    let scanned_all = (rows.len() as i64) < crate::feeds::atom::PAGE * 4;
    let last_scanned = rows.last().map(|r| r.seq);
    let mut page_events: Vec<ChangeEvent> =
        rows.into_iter().filter_map(ChangeEvent::public).collect();
    let page = crate::feeds::atom::PAGE as usize;
    let next_before = if page_events.len() > page {
        page_events.truncate(page);
        page_events.last().map(|e| e.seq)
    } else if !scanned_all {
        last_scanned
    } else {
        None
    };
    let body = crate::feeds::atom::render(
        state.atlas(),
        &base_url(&req),
        &page_events,
        before,
        next_before,
    );
    Ok(crate::http::cached(
        &req,
        "application/atom+xml; charset=utf-8",
        body.into_bytes(),
    ))
}

/// The CAP media type.
const CAP_XML: &str = "application/cap+xml";

/// A CAP 1.2 message
///
/// The immutable CAP 1.2 message of one change of a number: `Alert` for a publication,
/// `Update` for a correction, `Cancel` for a retirement (including the end of the outage it
/// answered), the last two with `references` to the earlier messages about the same number.
/// `category` Infra; `event` names the service; `area` has `areaDesc` and the INSEE
/// `geocode` (`INSEE` for a commune, `INSEE-DEP` for a département); the number is in
/// `instruction`, `contact` and the `telephone` parameter; times carry `+00:00`.
/// Demonstration data has status `Exercise`.
#[utoipa::path(
    tag = "feeds",
    params(("identifier" = String, Path, description = "The message identifier, e.g. relai-change-12")),
    responses(
        (status = 200, description = "The message", content_type = "application/cap+xml", body = String),
        (status = 404, description = "No such message", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/cap/alerts/{identifier}.xml")]
pub async fn cap_alert(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let identifier = path.into_inner();
    let not_found = || ApiError::NotFound(format!("no CAP message {identifier}"));
    let seq = crate::feeds::cap::parse_identifier(&identifier).ok_or_else(not_found)?;
    let (row, earlier) = state
        .clone()
        .into_inner()
        .read(move |conn| -> diesel::QueryResult<_> {
            let Some(row) = store::change(conn, seq)? else {
                return Ok(None);
            };
            let earlier = store::entity_changes_before(conn, &row.entity_id, seq)?;
            Ok(Some((row, earlier)))
        })
        .await?
        .ok_or_else(not_found)?;
    if !crate::feeds::cap::is_cap(&row.kind) {
        return Err(not_found());
    }
    let event = ChangeEvent::public(row).ok_or_else(not_found)?;
    let earlier: Vec<ChangeEvent> = earlier
        .into_iter()
        .filter(|r| crate::feeds::cap::is_cap(&r.kind))
        .filter_map(ChangeEvent::public)
        .collect();
    let body = crate::feeds::cap::render(state.atlas(), &base_url(&req), &event, &earlier);
    let etag = crate::http::etag_for(body.as_bytes());
    // A message never changes once sent.
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CAP_XML))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400, immutable"))
        .insert_header((header::ETAG, etag))
        .body(body))
}

/// Atom feed of the CAP messages
///
/// The latest CAP messages (one per change of a number), newest first, 50 per page, each
/// entry linking to its message (`application/cap+xml`); `next` pages back.
#[utoipa::path(
    tag = "feeds",
    params(AtomQuery),
    responses(
        (status = 200, description = "The feed", content_type = "application/atom+xml", body = String),
        (status = 304, description = "Not modified since the ETag in If-None-Match"),
        (status = 400, description = "Malformed `before`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/cap/feed.atom")]
pub async fn cap_feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AtomQuery>,
) -> Result<HttpResponse, ApiError> {
    let before = query.before;
    if before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_param(
            "before",
            "a sequence number from a next link",
        ));
    }
    let page = crate::feeds::atom::PAGE;
    let kinds = [
        crate::store::change_kind::NUMBER_PUBLISHED,
        crate::store::change_kind::NUMBER_CORRECTED,
        crate::store::change_kind::NUMBER_RETIRED,
        crate::store::change_kind::NUMBER_SUPERSEDED,
    ];
    let rows = state
        .clone()
        .into_inner()
        .read(move |conn| {
            store::changes_of_kinds_before(conn, &kinds, before.unwrap_or(i64::MAX), page + 1)
        })
        .await?;
    let mut cap_events: Vec<ChangeEvent> =
        rows.into_iter().filter_map(ChangeEvent::public).collect();
    let next_before = if cap_events.len() as i64 > page {
        cap_events.truncate(page as usize);
        cap_events.last().map(|e| e.seq)
    } else {
        None
    };
    let body = crate::feeds::cap::feed(
        state.atlas(),
        &base_url(&req),
        &cap_events,
        before,
        next_before,
    );
    Ok(crate::http::cached(
        &req,
        "application/atom+xml; charset=utf-8",
        body.into_bytes(),
    ))
}
