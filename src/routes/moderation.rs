//! Moderation: citizens' tips, the review queue, and decisions (one by one or in a batch).

use std::time::Instant;

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::Caller;
use crate::atlas::Atlas;
use crate::auth::Authenticated;
use crate::db::DbConnection;
use crate::domain::{DepartementCode, PhoneNumber, Role, ServiceCode, Territory};
use crate::error::{ApiError, FieldError, Problem};
use crate::model::Number;
use crate::moderation::{self, Decision, NewSubmission, QueueItem, Reviewer, SubmissionKind};
use crate::ratelimit::RateLimiter;
use crate::routes::writes::TerritoryInput;
use crate::state::AppState;
use crate::store::{self, StoreError};

/// The limiter of `POST /v1/tips`.
pub struct TipLimiter(pub RateLimiter);

/// The largest tip body.
pub const MAX_TIP_BYTES: usize = 4096;

/// A citizen's report of a number seen elsewhere.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TipRequest {
    /// The service the number is said to replace.
    #[schema(example = "18")]
    pub service: String,
    /// Where it is said to apply.
    pub territory: TerritoryInput,
    /// The number seen.
    #[schema(example = "04 71 04 51 12")]
    pub phone: String,
    /// Where it was seen (the post's address).
    pub source_url: String,
    /// Anything else worth knowing, for the reviewers.
    pub comment: Option<String>,
}

/// Report a number
///
/// A citizen reports a substitute number seen elsewhere. It waits for review and is never
/// public before a moderator or an authority checks it. Nothing is kept of the sender.
/// Strictly rate limited per address (429 with `Retry-After`).
#[utoipa::path(
    tag = "moderation",
    request_body = TipRequest,
    responses(
        (status = 202, description = "Received, waiting for review", body = TipReceipt),
        (status = 400, description = "The body could not be read", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already published or waiting for review", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reports from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/tips")]
pub async fn tip(
    req: HttpRequest,
    state: web::Data<AppState>,
    limiter: web::Data<TipLimiter>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if let Some(addr) = crate::net::client_ip(&req) {
        limiter
            .0
            .check(addr, Instant::now())
            .map_err(|wait| ApiError::TooManyRequests {
                detail: "too many reports from this address; try again later".to_owned(),
                retry_after: wait.as_secs().max(1),
            })?;
    }
    // Read at most MAX_TIP_BYTES (after decompression), and nothing when more is
    // announced: an anonymous sender never gets the server to buffer a large body.
    let too_large = || ApiError::PayloadTooLarge(format!("a tip is at most {MAX_TIP_BYTES} bytes"));
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_TIP_BYTES as u64) {
        return Err(too_large());
    }
    let stream = actix_web::dev::Decompress::from_headers(payload.into_inner(), req.headers());
    let body =
        actix_web::body::to_bytes_limited(actix_web::body::BodyStream::new(stream), MAX_TIP_BYTES)
            .await
            .map_err(|_| too_large())?
            .map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}")))?;
    let input: TipRequest = serde_json::from_slice(&body).map_err(|e| ApiError::Unprocessable {
        detail: format!("invalid tip: {e}"),
        errors: vec![FieldError::new("body", e.to_string())],
    })?;
    let mut errors = Vec::new();
    let service = ServiceCode::parse(&input.service)
        .map_err(|e| errors.push(FieldError::new("service", e.to_string())))
        .ok();
    let territory = Territory::parse(&input.territory.kind, &input.territory.code)
        .map_err(|e| errors.push(FieldError::new("territory", e.to_string())))
        .ok();
    let phone = PhoneNumber::parse(&input.phone)
        .map_err(|e| errors.push(FieldError::new("phone", e.to_string())))
        .ok();
    let (Some(service), Some(territory), Some(phone)) = (service, territory, phone) else {
        return Err(ApiError::Unprocessable {
            detail: "invalid tip".to_owned(),
            errors,
        });
    };
    let new = NewSubmission {
        kind: SubmissionKind::Tip,
        service,
        territory,
        phone,
        label: "Signalement citoyen".to_owned(),
        source_url: input.source_url,
        comment: input.comment,
        valid_until: None,
        submitted_by: None,
    };
    let number = state
        .into_inner()
        .write(move |conn, atlas| moderation::submit(conn, atlas, new, store::now()))
        .await?;
    Ok(HttpResponse::Accepted().json(TipReceipt {
        id: number.id,
        status: "pending".to_owned(),
    }))
}

/// A tip was received.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TipReceipt {
    /// Its id (it is not public until checked).
    pub id: String,
    /// Always `pending`.
    pub status: String,
}

/// Filters and paging of the moderation queue.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Only this service.
    pub service: Option<String>,
    /// Only items of this département (itself and its communes).
    pub departement: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the moderation queue.
#[derive(Serialize, ToSchema)]
pub struct QueuePage {
    /// Pending submissions, tips and corrections, oldest first.
    pub items: Vec<QueueItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn in_departement(atlas: &Atlas, territory: &Territory, dep: &str) -> bool {
    match territory {
        Territory::Departement(d) => d.as_str() == dep,
        Territory::Commune(c) => atlas
            .commune(c.as_str())
            .is_some_and(|c| c.departement == dep),
        _ => false,
    }
}

/// Whether the caller may review this item: moderators and admins anything, authorities
/// inside their scopes.
fn may_review(
    caller: &Caller,
    service: &ServiceCode,
    territory: &Territory,
    atlas: &Atlas,
) -> bool {
    match caller.role {
        Role::Moderator | Role::Admin => true,
        Role::Authority => caller.may_act(service, territory, atlas),
    }
}

/// The moderation queue
///
/// Pending submissions, tips and corrections, oldest first, each with the numbers already
/// in force for the same service and territory, so that a conflict shows at a glance.
/// Authorities see the items of their scopes; moderators and admins everything.
#[utoipa::path(
    tag = "moderation",
    security(("bearer" = [])),
    params(QueueQuery),
    responses(
        (status = 200, description = "A page of the queue", body = QueuePage),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/moderation/queue")]
pub async fn queue(
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.0;
    let limit = crate::routes::numbers::parse_limit(query.limit.as_deref())?;
    let service = query
        .service
        .as_deref()
        .map(|s| ServiceCode::parse(s).map(|c| c.as_str().to_owned()))
        .transpose()
        .map_err(|e| ApiError::bad_param("service", e.to_string()))?;
    let departement = query
        .departement
        .as_deref()
        .map(|d| DepartementCode::parse(d).map(|c| c.as_str().to_owned()))
        .transpose()
        .map_err(|e| ApiError::bad_param("departement", e.to_string()))?;
    let after = match query.cursor.as_deref() {
        None => None,
        Some(c) if uuid::Uuid::parse_str(c).is_ok() => Some(c.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_param(
                "cursor",
                "not a cursor returned by this API",
            ))
        }
    };
    let dir = state.directory();
    let atlas_for_read = state.atlas().clone();
    // The queue is short in practice; the scope filter runs in memory.
    let rows = state
        .clone()
        .into_inner()
        .read(move |conn| {
            moderation::pending(
                conn,
                &atlas_for_read,
                after.as_deref(),
                service.as_deref(),
                100_000,
            )
        })
        .await?;
    let now = store::now();
    let atlas = dir.atlas();
    let mut items = Vec::new();
    let mut more = false;
    for (row, number) in rows {
        let (Ok(service), Ok(territory)) = (
            ServiceCode::parse(&number.service),
            Territory::from_parts(number.territory.kind, &number.territory.code),
        ) else {
            continue;
        };
        if departement
            .as_deref()
            .is_some_and(|d| !in_departement(atlas, &territory, d))
        {
            continue;
        }
        if !may_review(&caller, &service, &territory, atlas) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        let in_force = dir
            .in_force_at(service.as_str(), &territory, now)
            .iter()
            .map(|n| n.to_number())
            .collect();
        items.push(QueueItem::new(&row, number, &caller.account_id, in_force));
    }
    let next_cursor = if more {
        items.last().map(|i: &QueueItem| i.number.id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(QueuePage { items, next_cursor }))
}

/// Checks the caller may decide on `id`, then decides.
fn decide_one(
    conn: &mut DbConnection,
    atlas: &Atlas,
    caller: &Caller,
    id: &str,
    decision: Decision,
) -> Result<Number, StoreError> {
    let row = store::load_number_row(conn, id)?;
    let service =
        ServiceCode::parse(&row.service_code).map_err(|e| StoreError::Conflict(e.to_string()))?;
    let territory = Territory::parse(&row.territory_kind, &row.territory_code)
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    if !may_review(caller, &service, &territory, atlas) {
        return Err(StoreError::Forbidden(format!(
            "this account may not review service {service} in {territory}"
        )));
    }
    let reviewer = Reviewer {
        account_id: caller.account_id.clone(),
        organization_id: caller.organization.as_ref().map(|o| o.id.clone()),
    };
    moderation::decide(conn, atlas, &reviewer, id, decision, store::now())
}

/// A reason for a decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionReason {
    /// Why; required to reject.
    pub reason: Option<String>,
}

fn reason_body(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let r: DecisionReason = serde_json::from_slice(body).map_err(|e| ApiError::Unprocessable {
        detail: format!("invalid body: {e}"),
        errors: vec![FieldError::new("body", e.to_string())],
    })?;
    Ok(r.reason)
}

/// Approve a submission
///
/// Publishes a pending submission, tip or correction with `provenance.kind = relayed`,
/// its `source_url`, and `verified_by` the reviewer's organization. Never one's own
/// submission (four eyes). An approved correction supersedes the number it corrects.
#[utoipa::path(
    tag = "moderation",
    security(("bearer" = [])),
    request_body(content = Option<DecisionReason>, description = "An optional reason"),
    params(("id" = String, Path, description = "Pending number id")),
    responses(
        (status = 200, description = "Published", body = Number),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "One's own submission, or outside an authority's scopes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown submission", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided, or an official number is in force there or would be replaced", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/numbers/{id}/approve")]
pub async fn approve(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.0;
    let reason = reason_body(&body)?;
    let id = path.into_inner();
    let n = state
        .into_inner()
        .write(move |conn, atlas| {
            decide_one(conn, atlas, &caller, &id, Decision::Approve { reason })
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(n))
}

/// Reject a submission
///
/// A reason is required; the submission is never published.
#[utoipa::path(
    tag = "moderation",
    security(("bearer" = [])),
    request_body = DecisionReason,
    params(("id" = String, Path, description = "Pending number id")),
    responses(
        (status = 200, description = "Rejected", body = Number),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "One's own submission, or outside an authority's scopes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown submission", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/numbers/{id}/reject")]
pub async fn reject(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.0;
    let reason = reason_body(&body)?.unwrap_or_default();
    let id = path.into_inner();
    let n = state
        .into_inner()
        .write(move |conn, atlas| {
            decide_one(conn, atlas, &caller, &id, Decision::Reject { reason })
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(n))
}

/// One decision of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionItem {
    /// The pending number.
    pub id: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// Why; required to reject.
    pub reason: Option<String>,
}

/// A batch of decisions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBatch {
    /// At most 1000 decisions, applied in order, each on its own.
    pub decisions: Vec<DecisionItem>,
}

/// The outcome of one decision of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionOutcome {
    /// The pending number.
    pub id: String,
    /// The HTTP status this decision alone would have had.
    pub status: u16,
    /// The number after the decision, when it applied.
    pub number: Option<Number>,
    /// Why it did not apply.
    pub problem: Option<Problem>,
}

/// The outcomes of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionResults {
    /// One per decision, in order.
    pub results: Vec<DecisionOutcome>,
    /// How many applied.
    pub applied: usize,
}

/// The largest batch of decisions.
pub const MAX_BATCH: usize = 1000;

/// Decide in a batch
///
/// Each decision is applied on its own, as if sent alone; the answer reports each one.
#[utoipa::path(
    tag = "moderation",
    security(("bearer" = [])),
    request_body = DecisionBatch,
    responses(
        (status = 200, description = "Each decision's outcome", body = DecisionResults),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed batch, or more than 1000 decisions", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/moderation/decisions")]
pub async fn decisions(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.0;
    let batch: DecisionBatch =
        serde_json::from_slice(&body).map_err(|e| ApiError::Unprocessable {
            detail: format!("invalid batch: {e}"),
            errors: vec![FieldError::new("decisions", e.to_string())],
        })?;
    if batch.decisions.len() > MAX_BATCH || batch.decisions.is_empty() {
        return Err(ApiError::Unprocessable {
            detail: format!("send 1 to {MAX_BATCH} decisions"),
            errors: vec![FieldError::new(
                "decisions",
                format!("1 to {MAX_BATCH} items"),
            )],
        });
    }
    let results = state
        .into_inner()
        .write(move |conn, atlas| {
            let results: Vec<DecisionOutcome> = batch
                .decisions
                .into_iter()
                .map(|item| {
                    let decision = match item.decision.as_str() {
                        "approve" => Ok(Decision::Approve {
                            reason: item.reason,
                        }),
                        "reject" => Ok(Decision::Reject {
                            reason: item.reason.unwrap_or_default(),
                        }),
                        _ => Err(StoreError::invalid("decision", "approve or reject")),
                    };
                    match decision.and_then(|d| decide_one(conn, atlas, &caller, &item.id, d)) {
                        Ok(n) => DecisionOutcome {
                            id: item.id,
                            status: 200,
                            number: Some(n),
                            problem: None,
                        },
                        Err(e) => {
                            let problem = ApiError::from(e).problem();
                            DecisionOutcome {
                                id: item.id,
                                status: problem.status,
                                number: None,
                                problem: Some(problem),
                            }
                        }
                    }
                })
                .collect();
            Ok(results)
        })
        .await?;
    let applied = results.iter().filter(|r| r.status == 200).count();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(DecisionResults { results, applied }))
}
