//! The public number list and detail.

use actix_web::{get, web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::directory::NumberFilter;
use crate::domain::{DepartementCode, ServiceCode, TerritoryKind};
use crate::error::{ApiError, Problem};
use crate::http::cached_json;
use crate::model::Number;
use crate::public_number::PublicNumber;
use crate::state::AppState;

/// Default and largest page sizes of lists.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Filters and paging of `GET /v1/numbers`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NumberQuery {
    /// Only this service.
    #[param(example = "18")]
    pub service: Option<String>,
    /// Only numbers of this département and of its communes.
    #[param(example = "33")]
    pub departement: Option<String>,
    /// Only numbers of territories of this kind.
    #[param(value_type = Option<crate::domain::TerritoryKind>)]
    pub territory_kind: Option<String>,
    /// Only numbers of the territory with this code (with `territory_kind`, one territory).
    pub territory_code: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of numbers.
#[derive(Serialize, ToSchema)]
pub struct NumberPage {
    /// Published numbers in force, oldest publication first.
    #[schema(value_type = Vec<Number>)]
    pub items: Vec<PublicNumber>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_param(
                "limit",
                format!("an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn encode_cursor(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| uuid::Uuid::parse_str(s).is_ok())
        .ok_or_else(|| ApiError::bad_param("cursor", "not a cursor returned by this API"))
}

impl NumberQuery {
    pub fn filter(&self) -> Result<NumberFilter, ApiError> {
        Ok(NumberFilter {
            service: self
                .service
                .as_deref()
                .map(|s| ServiceCode::parse(s).map(|c| c.as_str().to_owned()))
                .transpose()
                .map_err(|e| ApiError::bad_param("service", e.to_string()))?,
            departement: self
                .departement
                .as_deref()
                .map(|d| DepartementCode::parse(d).map(|c| c.as_str().to_owned()))
                .transpose()
                .map_err(|e| ApiError::bad_param("departement", e.to_string()))?,
            territory_kind: self
                .territory_kind
                .as_deref()
                .map(TerritoryKind::parse)
                .transpose()
                .map_err(|e| ApiError::bad_param("territory_kind", e.to_string()))?,
            territory_code: self.territory_code.clone(),
        })
    }
}

/// List the numbers in force
///
/// Published numbers in force, with filters, paged by cursor.
#[utoipa::path(
    tag = "numbers",
    params(NumberQuery),
    responses(
        (status = 200, description = "A page of numbers", body = NumberPage),
        (status = 400, description = "Malformed filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/numbers")]
pub async fn list_numbers(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NumberQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let limit = parse_limit(query.limit.as_deref())?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let dir = state.directory();
    let now = crate::store::now();
    let mut items: Vec<PublicNumber> = dir
        .filter_in_force(&filter, now)
        .filter(|n| after.as_ref().is_none_or(|a| n.id() > a.as_str()))
        .take(limit + 1)
        .cloned()
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|n| encode_cursor(n.id()))
    } else {
        None
    };
    cached_json(&req, &NumberPage { items, next_cursor })
}

/// Get a number
///
/// One number, published or retired (pending and rejected submissions are not public).
/// Published numbers are answered from the snapshot; retired ones from storage (503 while
/// storage is unavailable).
#[utoipa::path(
    tag = "numbers",
    params(("id" = String, Path, description = "Number id")),
    responses(
        (status = 200, description = "The number; its ETag is its version", body = Number),
        (status = 304, description = "Not modified since the ETag in If-None-Match"),
        (status = 404, description = "Unknown number", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A retired number, while storage is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/numbers/{id}")]
pub async fn get_number(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if let Some(number) = state.directory().number(&id) {
        return Ok(crate::http::cached_with_etag(
            &req,
            "application/json",
            number.json().as_bytes().to_vec(),
            crate::http::version_etag(number.version()),
        ));
    }
    let atlas = state.atlas().clone();
    let lookup_id = id.clone();
    let number = state
        .into_inner()
        .read(move |conn| crate::store::public_number(conn, &atlas, &lookup_id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown number {id}")))?;
    let body = serde_json::to_vec(&number).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(crate::http::cached_with_etag(
        &req,
        "application/json",
        body,
        crate::http::version_etag(number.version),
    ))
}

/// A number's history.
#[derive(Serialize, ToSchema)]
pub struct NumberHistory {
    /// Every change of the number, oldest first, with the organization that made it.
    pub items: Vec<crate::store::HistoryEvent>,
}

/// History of a number
///
/// Its audit trail: when it was published, corrected and retired, by which organization
/// and why. Read from storage (not the snapshot): 503 while storage is unavailable.
#[utoipa::path(
    tag = "numbers",
    params(("id" = String, Path, description = "Number id")),
    responses(
        (status = 200, description = "The events, oldest first", body = NumberHistory),
        (status = 404, description = "Unknown number", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/numbers/{id}/history")]
pub async fn number_history(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let lookup_id = id.clone();
    let events = state
        .into_inner()
        .read(move |conn| crate::store::number_history(conn, &lookup_id))
        .await?;
    let items = events.ok_or_else(|| ApiError::NotFound(format!("unknown number {id}")))?;
    cached_json(&req, &NumberHistory { items })
}

/// Cells a spreadsheet would run as a formula are prefixed with `'` (CSV injection).
fn safe_cell(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

/// The numbers in force as CSV
///
/// The same filters as `/v1/numbers`, all pages at once. Columns: the import columns
/// (`service,territory_kind,territory_code,phone,label,valid_until`, phone in national form)
/// then `id,provenance,organization,source_url,demo`. Cells that a spreadsheet would take for
/// a formula are prefixed with `'`.
#[utoipa::path(
    tag = "numbers",
    params(NumberQuery),
    responses(
        (status = 200, description = "The numbers", content_type = "text/csv", body = String),
        (status = 400, description = "Malformed filter", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/numbers.csv")]
pub async fn numbers_csv(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NumberQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let dir = state.directory();
    let mut out = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| ApiError::Internal(e.to_string());
    out.write_record([
        "service",
        "territory_kind",
        "territory_code",
        "phone",
        "label",
        "valid_until",
        "id",
        "provenance",
        "organization",
        "source_url",
        "demo",
    ])
    .map_err(csv_err)?;
    for n in dir.filter_in_force(&filter, crate::store::now()) {
        let n = n.to_number();
        let (provenance, organization, source) = match &n.provenance {
            crate::model::Provenance::Official { organization } => {
                ("official", organization.name.as_str(), "")
            }
            crate::model::Provenance::Relayed {
                source_url,
                verified_by,
            } => (
                "relayed",
                verified_by.as_ref().map(|v| v.name.as_str()).unwrap_or(""),
                source_url.as_str(),
            ),
        };
        let until = n
            .valid_until
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        out.write_record([
            safe_cell(&n.service).as_ref(),
            n.territory.kind.as_str(),
            safe_cell(&n.territory.code).as_ref(),
            &n.phone.national,
            safe_cell(&n.label).as_ref(),
            &until,
            &n.id,
            provenance,
            safe_cell(organization).as_ref(),
            safe_cell(source).as_ref(),
            if n.demo { "true" } else { "false" },
        ])
        .map_err(csv_err)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(crate::http::cached(&req, "text/csv; charset=utf-8", body))
}
