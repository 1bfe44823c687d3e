//! The authenticated write endpoints for numbers and outages. Each handler parses the
//! request into domain types, checks role and territorial scope, then runs one write
//! through `AppState::write` (with `Idempotency-Key` support).

use actix_web::http::header;
use actix_web::{patch, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{self, Caller, CallerError};
use crate::atlas::Atlas;
use crate::auth::{Auth, WriteCaller};
use crate::db::DbConnection;
use crate::domain::{PhoneNumber, Role, ServiceCode, Territory};
use crate::error::{ApiError, FieldError, Problem};
use crate::http::version_etag;
use crate::idempotency::{self, StoredAnswer};
use crate::import;
use crate::model::{Number, Outage};
use crate::moderation;
use crate::state::AppState;
use crate::store::{self, Correction, NewNumber, NewOutage, NewProvenance, StoreError};

/// Fields that the service sets and a caller never may.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "status",
    "provenance",
    "organization",
    "verified_by",
    "version",
    "published_at",
    "updated_at",
    "retired_at",
    "retire_reason",
    "declared_at_server",
    "resolved_at",
    "declared_by",
    "demo",
];

/// Parses a JSON body, refusing fields the caller may not set and fields it does not know,
/// each named in the 422.
fn parse_body<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    allowed: &[&str],
) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as application/json".to_owned(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let mut errors = Vec::new();
    for key in object.keys() {
        if SERVER_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                "set by the service; a caller may not set it",
            ));
        } else if !allowed.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                format!("unknown field; expected one of {}", allowed.join(", ")),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable {
            detail: "the body has fields that may not be set".to_owned(),
            errors,
        });
    }
    serde_json::from_value(value).map_err(|e| ApiError::Unprocessable {
        detail: format!("invalid body: {e}"),
        errors: vec![FieldError::new("body", e.to_string())],
    })
}

/// A territory as written in a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TerritoryInput {
    /// `national`, `zone`, `departement` or `commune`.
    #[schema(value_type = crate::domain::TerritoryKind)]
    pub kind: String,
    /// `FR`, a zone name, a département code or an INSEE commune code.
    pub code: String,
}

fn territory(input: &TerritoryInput, errors: &mut Vec<FieldError>) -> Option<Territory> {
    Territory::parse(&input.kind, &input.code)
        .map_err(|e| errors.push(FieldError::new("territory", e.to_string())))
        .ok()
}

fn service(code: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<ServiceCode> {
    ServiceCode::parse(code)
        .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
        .ok()
}

fn phone(input: &str, errors: &mut Vec<FieldError>) -> Option<PhoneNumber> {
    PhoneNumber::parse(input)
        .map_err(|e| errors.push(FieldError::new("phone", e.to_string())))
        .ok()
}

/// Unknown services and territories are invalid input (422), not a matter of scope (403).
fn check_known(
    atlas: &Atlas,
    services: &[&ServiceCode],
    territory: &Territory,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for s in services {
        if atlas.service(s.as_str()).is_none() {
            errors.push(FieldError::new(
                "service",
                format!("unknown service {s}; see /v1/services"),
            ));
        }
    }
    if atlas.describe(territory).is_none() {
        errors.push(FieldError::new(
            "territory",
            format!(
                "no {} with code {:?} in the reference data",
                territory.kind(),
                territory.code()
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(unprocessable(errors))
    }
}

fn unprocessable(errors: Vec<FieldError>) -> ApiError {
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    let detail = format!("invalid field(s): {}", fields.join(", "));
    ApiError::Unprocessable { detail, errors }
}

/// The organization a caller publishes for; moderators and admins without one cannot.
fn acting_organization(caller: &Caller) -> Result<String, ApiError> {
    match (caller.role, &caller.organization) {
        (Role::Moderator, _) => Err(ApiError::Forbidden(
            "moderators submit numbers for review; an authority publishes".to_owned(),
        )),
        (_, Some(org)) => Ok(org.id.clone()),
        (_, None) => Err(ApiError::Forbidden(
            "this account acts for no organization, so it cannot publish or declare".to_owned(),
        )),
    }
}

fn out_of_scope(caller: &Caller, service: &ServiceCode, territory: &Territory) -> ApiError {
    let org = caller
        .organization
        .as_ref()
        .map(|o| o.name.as_str())
        .unwrap_or("this account");
    ApiError::Forbidden(format!(
        "{org} may not act for service {service} in {territory}"
    ))
}

fn json_answer<T: Serialize>(
    status: u16,
    value: &T,
    location: Option<String>,
    etag: Option<String>,
) -> Result<StoredAnswer, StoreError> {
    let body = serde_json::to_string(value).map_err(|e| StoreError::Conflict(e.to_string()))?;
    Ok(StoredAnswer {
        status,
        body,
        location,
        etag,
    })
}

fn number_answer(status: u16, n: &Number) -> Result<StoredAnswer, StoreError> {
    json_answer(
        status,
        n,
        Some(format!("/v1/numbers/{}", n.id)),
        Some(version_etag(n.version)),
    )
}

/// Runs a write under the caller's `Idempotency-Key` if any, and turns its answer into a
/// response. Inside the write's transaction, before anything else, the caller is read
/// again and must be the one the handler checked (see [`WriteCaller`]).
async fn run_write<F>(
    state: web::Data<AppState>,
    req: &HttpRequest,
    writer: &WriteCaller,
    body: &[u8],
    op: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(&mut DbConnection, &Atlas) -> Result<StoredAnswer, StoreError> + Send + 'static,
{
    let caller = &writer.caller;
    let checked = caller.clone();
    let (sub, jti) = writer.ids();
    let (sub, jti) = (sub.to_owned(), jti.to_owned());
    let auth = writer.auth().clone();
    let key = match req.headers().get("Idempotency-Key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if idempotency::valid_key(k) => Some(k.to_owned()),
            _ => {
                return Err(ApiError::bad_param(
                    "Idempotency-Key",
                    "1 to 255 visible ASCII characters",
                ))
            }
        },
    };
    let digest = idempotency::request_digest(req.method().as_str(), req.path(), body);
    let account = caller.account_id.clone();
    let (answer, replayed) = state
        .into_inner()
        .write(move |conn, atlas| {
            confirm_caller(conn, &auth, &sub, &jti, &checked)?;
            match key {
                Some(key) => {
                    idempotency::run_once(conn, &account, &key, &digest, store::now(), |c| {
                        op(c, atlas)
                    })
                }
                None => op(conn, atlas).map(|a| (a, false)),
            }
        })
        .await?;
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(location) = answer.location {
        response.insert_header((header::LOCATION, location));
    }
    if let Some(etag) = answer.etag {
        response.insert_header((header::ETAG, etag));
    }
    if replayed {
        response.insert_header(("Idempotency-Replayed", "true"));
    }
    Ok(response.body(answer.body))
}

/// Reads the caller of token `jti` again, inside the write's transaction: a write goes on
/// only if it is still exactly the caller its handler checked. A revoked token or a
/// disabled account is refused (401), a change of role, organization or scopes asks for
/// the request again (409, read afresh then); either way nothing is written.
fn confirm_caller(
    conn: &mut DbConnection,
    auth: &Auth,
    sub: &str,
    jti: &str,
    checked: &Caller,
) -> Result<(), StoreError> {
    match accounts::load_caller(conn, sub, jti) {
        Ok(now) if now == *checked => {
            auth.remember(jti, sub, &now);
            Ok(())
        }
        Ok(_) => {
            auth.forget(jti);
            Err(StoreError::Conflict(
                "the account's role, organization or scopes changed while this request was \
                 checked: nothing was written, send it again"
                    .to_owned(),
            ))
        }
        Err(CallerError::Db(e)) => Err(StoreError::Db(e)),
        Err(e) => {
            auth.forget(jti);
            Err(StoreError::Unauthorized(
                crate::auth::refusal(&e).to_owned(),
            ))
        }
    }
}

/// A number to publish.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PublishRequest {
    /// The service it replaces (see `/v1/services`).
    #[schema(example = "18")]
    pub service: String,
    /// Where it applies (and everything inside that has no more specific number).
    pub territory: TerritoryInput,
    /// The number, in any usual spelling (`05 56 12 34 56`, `+33556123456`).
    #[schema(example = "05 56 12 34 56")]
    pub phone: String,
    /// Whom and where it serves, e.g. "CTA-CODIS Gironde".
    pub label: String,
    /// In force from (default: now).
    pub valid_from: Option<DateTime<Utc>>,
    /// In force until (exclusive); none means until retired.
    pub valid_until: Option<DateTime<Utc>>,
    /// The active outage it answers; resolving the outage retires it. Authorities only.
    pub outage_id: Option<String>,
    /// Moderators only, required: where the number was seen (the post's address).
    pub source_url: Option<String>,
    /// Moderators only: anything the reviewer should know.
    pub comment: Option<String>,
}

const PUBLISH_FIELDS: &[&str] = &[
    "service",
    "territory",
    "phone",
    "label",
    "valid_from",
    "valid_until",
    "outage_id",
    "source_url",
    "comment",
];

/// A moderator's submission: pending until a second person approves it.
#[allow(clippy::too_many_arguments)]
async fn submit_for_review(
    req: &HttpRequest,
    state: web::Data<AppState>,
    writer: &WriteCaller,
    body: &[u8],
    input: PublishRequest,
    service: ServiceCode,
    territory: Territory,
    phone: PhoneNumber,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    if input.outage_id.is_some() {
        errors.push(FieldError::new(
            "outage_id",
            "authorities link numbers to outages; moderators do not",
        ));
    }
    if input.valid_from.is_some() {
        errors.push(FieldError::new(
            "valid_from",
            "a submission is in force from its approval",
        ));
    }
    let Some(source_url) = input.source_url.filter(|_| errors.is_empty()) else {
        if errors.is_empty() {
            errors.push(FieldError::new(
                "source_url",
                "required: the address of the post where the number was seen",
            ));
        }
        return Err(unprocessable(errors));
    };
    let new = moderation::NewSubmission {
        kind: moderation::SubmissionKind::Submission,
        service,
        territory,
        phone,
        label: input.label,
        source_url,
        comment: input.comment,
        valid_until: input.valid_until,
        submitted_by: Some(writer.caller.actor()),
    };
    run_write(state, req, writer, body, move |conn, atlas| {
        let n = moderation::submit(conn, atlas, new, store::now())?;
        number_answer(202, &n)
    })
    .await
}

/// Publish a number
///
/// An authority publishes a substitute number for a service and a territory inside its
/// organization's scopes; it is public at once, with `provenance.kind = official`.
/// `Idempotency-Key` makes a retry safe.
#[utoipa::path(
    tag = "numbers",
    request_body = PublishRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first answer and write nothing twice")),
    responses(
        (status = 201, description = "Published; `Location` names it, `ETag` is its version", body = Number),
        (status = 202, description = "A moderator's submission, pending review (`status: pending`, not public)", body = Number),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the organization's scopes, or not an authority", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same number is already in force for this service and territory; or the account's rights changed while the request was checked: nothing was written, send it again", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (premium-rate or short number, unknown territory, fields a caller may not set...)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/numbers")]
pub async fn publish(
    req: HttpRequest,
    state: web::Data<AppState>,
    writer: WriteCaller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = writer.caller.clone();
    let input: PublishRequest = parse_body(&req, &body, PUBLISH_FIELDS)?;
    let mut errors = Vec::new();
    let service = service(&input.service, "service", &mut errors);
    let territory = territory(&input.territory, &mut errors);
    let phone = phone(&input.phone, &mut errors);
    let (Some(service), Some(territory), Some(phone)) = (service, territory, phone) else {
        return Err(unprocessable(errors));
    };
    check_known(state.atlas(), &[&service], &territory)?;
    if caller.role == Role::Moderator {
        return submit_for_review(
            &req, state, &writer, &body, input, service, territory, phone,
        )
        .await;
    }
    if input.source_url.is_some() || input.comment.is_some() {
        let field = if input.source_url.is_some() {
            "source_url"
        } else {
            "comment"
        };
        return Err(unprocessable(vec![FieldError::new(
            field,
            "only moderators' submissions carry it; an authority's number is official",
        )]));
    }
    let organization_id = acting_organization(&caller)?;
    if !caller.may_act(&service, &territory, state.atlas().as_ref()) {
        return Err(out_of_scope(&caller, &service, &territory));
    }
    let new = NewNumber {
        service,
        territory,
        phone,
        label: input.label,
        provenance: NewProvenance::Official { organization_id },
        outage_id: input.outage_id,
        valid_from: input.valid_from,
        valid_until: input.valid_until,
        demo: false,
        by_account: Some(caller.account_id.clone()),
    };
    run_write(state, &req, &writer, &body, move |conn, atlas| {
        let n = store::publish_number(conn, atlas, new, store::now())?;
        number_answer(201, &n)
    })
    .await
}

/// A correction: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CorrectionRequest {
    /// The corrected number.
    pub phone: Option<String>,
    /// The corrected label.
    pub label: Option<String>,
    /// A new end of validity; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub valid_until: Option<Option<DateTime<Utc>>>,
    /// Why, for the history.
    pub reason: Option<String>,
    /// Moderators only, required: where the corrected number was seen.
    pub source_url: Option<String>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
    Option::<DateTime<Utc>>::deserialize(d).map(Some)
}

/// Correct a number
///
/// An authority in scope corrects a published number in place. `If-Match` with the
/// number's ETag (its version) is required, so two people never overwrite each other.
/// The service and the territory cannot change: retire the number and publish anew.
#[utoipa::path(
    tag = "numbers",
    request_body = CorrectionRequest,
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Number id"),
        ("If-Match" = String, Header, description = "The number's current ETag, e.g. \"1\""),
    ),
    responses(
        (status = 200, description = "Corrected; `ETag` is the new version", body = Number),
        (status = 202, description = "A moderator's correction, pending review; the number stays as it is", body = Number),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the organization's scopes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown number", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not published, or the new phone is already in force here; or the account's rights changed while the request was checked: nothing was written, send it again", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names an older version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "`If-Match` is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/numbers/{id}")]
pub async fn correct(
    req: HttpRequest,
    state: web::Data<AppState>,
    writer: WriteCaller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = writer.caller.clone();
    let id = path.into_inner();
    let if_match = req.headers().get(header::IF_MATCH).ok_or_else(|| {
        ApiError::PreconditionRequired("send If-Match with the number's ETag".to_owned())
    })?;
    let expected: i32 = if_match
        .to_str()
        .ok()
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        })
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::PreconditionFailed(
                "If-Match does not name a version of this number".to_owned(),
            )
        })?;
    let input: CorrectionRequest = parse_body(
        &req,
        &body,
        &["phone", "label", "valid_until", "reason", "source_url"],
    )
    .map_err(|e| match e {
        ApiError::Unprocessable { mut errors, .. } => {
            for err in errors
                .iter_mut()
                .filter(|e| e.field == "service" || e.field == "territory")
            {
                err.message = "cannot change: retire the number and publish a new one".to_owned();
            }
            unprocessable(errors)
        }
        other => other,
    })?;
    let (service, territory) = number_scope(&state, &id).await?;
    if caller.role != Role::Moderator
        && !caller.may_act(&service, &territory, state.atlas().as_ref())
    {
        return Err(out_of_scope(&caller, &service, &territory));
    }
    let mut errors = Vec::new();
    let phone = input.phone.as_deref().map(|p| phone(p, &mut errors));
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    let source_url = input.source_url.clone();
    let correction = Correction {
        phone: phone.flatten(),
        label: input.label,
        valid_until: input.valid_until,
        reason: input.reason,
        source_url: input.source_url,
    };
    let actor = caller.actor();
    if caller.role == Role::Moderator {
        // A moderator's correction waits for review; the published number stays as it is.
        if source_url.is_none() {
            return Err(unprocessable(vec![FieldError::new(
                "source_url",
                "required for a moderator's correction",
            )]));
        }
        return run_write(state, &req, &writer, &body, move |conn, atlas| {
            let n = moderation::submit_correction(
                conn,
                atlas,
                &actor,
                &id,
                expected,
                correction,
                store::now(),
            )?;
            number_answer(202, &n)
        })
        .await;
    }
    if source_url.is_some() {
        return Err(unprocessable(vec![FieldError::new(
            "source_url",
            "only moderators' corrections carry it",
        )]));
    }
    run_write(state, &req, &writer, &body, move |conn, atlas| {
        let n =
            store::correct_number(conn, atlas, &actor, &id, expected, correction, store::now())?;
        number_answer(200, &n)
    })
    .await
}

/// Why a number is retired or an outage resolved.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReasonRequest {
    /// Why, in words a citizen may read in the history.
    pub reason: String,
}

/// Retire a number
///
/// An authority in scope (or an admin) withdraws a number; it disappears from lookups at
/// once and stays readable, retired, at its URL.
#[utoipa::path(
    tag = "numbers",
    request_body = ReasonRequest,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Number id")),
    responses(
        (status = 200, description = "Retired", body = Number),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the organization's scopes, or a moderator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown number", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already retired; or the account's rights changed while the request was checked: nothing was written, send it again", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/numbers/{id}/retire")]
pub async fn retire(
    req: HttpRequest,
    state: web::Data<AppState>,
    writer: WriteCaller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = writer.caller.clone();
    let id = path.into_inner();
    if caller.role == Role::Moderator {
        return Err(ApiError::Forbidden(
            "moderators cannot retire numbers".to_owned(),
        ));
    }
    let input: ReasonRequest = parse_body(&req, &body, &["reason"])?;
    let (service, territory) = number_scope(&state, &id).await?;
    if !caller.may_act(&service, &territory, state.atlas().as_ref()) {
        return Err(out_of_scope(&caller, &service, &territory));
    }
    let actor = caller.actor();
    run_write(state, &req, &writer, &body, move |conn, atlas| {
        let n = store::retire_number(conn, atlas, &actor, &id, &input.reason, store::now())?;
        number_answer(200, &n)
    })
    .await
}

/// The service and territory of a public number, for the scope check: from the snapshot
/// for a published number, from storage for a retired one (the store then refuses to
/// change it, 409).
async fn number_scope(
    state: &web::Data<AppState>,
    id: &str,
) -> Result<(ServiceCode, Territory), ApiError> {
    let (service, territory) = match state.directory().number(id) {
        Some(n) => (n.service().to_owned(), n.territory().clone()),
        None => {
            let atlas = state.atlas().clone();
            let lookup_id = id.to_owned();
            let n = state
                .clone()
                .into_inner()
                .read(move |conn| store::public_number(conn, &atlas, &lookup_id))
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("unknown number {id}")))?;
            let territory = Territory::from_parts(n.territory.kind, &n.territory.code)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            (n.service, territory)
        }
    };
    let service = ServiceCode::parse(&service).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((service, territory))
}

/// An outage to declare.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OutageRequest {
    /// The services whose short number fails.
    #[schema(example = json!(["15", "18"]))]
    pub services: Vec<String>,
    /// Where they fail.
    pub territory: TerritoryInput,
    /// What is known, in French, for the public.
    pub description: String,
    /// When it began, if declared afterwards (default: now; never in the future).
    pub declared_at: Option<DateTime<Utc>>,
}

/// Declare an outage
///
/// An authority declares that short numbers fail in a territory of its scopes, for
/// services of its scopes: lookups there say `outage` at once.
#[utoipa::path(
    tag = "outages",
    request_body = OutageRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first answer and write nothing twice")),
    responses(
        (status = 201, description = "Declared", body = Outage),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the organization's scopes, or a moderator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account's rights changed while the request was checked: nothing was written, send it again", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/outages")]
pub async fn declare(
    req: HttpRequest,
    state: web::Data<AppState>,
    writer: WriteCaller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = writer.caller.clone();
    if caller.role == Role::Moderator {
        return Err(ApiError::Forbidden(
            "moderators cannot declare outages".to_owned(),
        ));
    }
    let input: OutageRequest = parse_body(
        &req,
        &body,
        &["services", "territory", "description", "declared_at"],
    )?;
    let mut errors = Vec::new();
    let services: Vec<Option<ServiceCode>> = input
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| service(s, &format!("services[{i}]"), &mut errors))
        .collect();
    let territory = territory(&input.territory, &mut errors);
    let Some(territory) = territory.filter(|_| errors.is_empty()) else {
        return Err(unprocessable(errors));
    };
    let services: Vec<ServiceCode> = services.into_iter().flatten().collect();
    check_known(
        state.atlas(),
        &services.iter().collect::<Vec<_>>(),
        &territory,
    )?;
    let organization = acting_organization(&caller)?;
    if let Some(s) = services
        .iter()
        .find(|s| !caller.may_act(s, &territory, state.atlas().as_ref()))
    {
        return Err(out_of_scope(&caller, s, &territory));
    }
    let new = NewOutage {
        services,
        territory,
        description: input.description,
        declared_by: organization,
        declared_at: input.declared_at,
        demo: false,
        by_account: Some(caller.account_id.clone()),
    };
    run_write(state, &req, &writer, &body, move |conn, atlas| {
        let o = store::declare_outage(conn, atlas, new, store::now())?;
        json_answer(201, &o, Some(format!("/v1/outages/{}", o.id)), None)
    })
    .await
}

/// The end of an outage.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedOutage {
    /// The outage, now resolved.
    pub outage: Outage,
    /// The numbers published for it, now retired.
    pub retired: Vec<Number>,
}

/// Resolve an outage
///
/// The short numbers work again: the outage ends and the numbers published for it are
/// retired. Authorities whose scopes cover all its services there, and admins.
#[utoipa::path(
    tag = "outages",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Outage id")),
    responses(
        (status = 200, description = "Resolved", body = ResolvedOutage),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Outside the organization's scopes, or a moderator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown outage", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already resolved; or the account's rights changed while the request was checked: nothing was written, send it again", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/outages/{id}/resolve")]
pub async fn resolve(
    req: HttpRequest,
    state: web::Data<AppState>,
    writer: WriteCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = writer.caller.clone();
    let id = path.into_inner();
    if caller.role == Role::Moderator {
        return Err(ApiError::Forbidden(
            "moderators cannot resolve outages".to_owned(),
        ));
    }
    let outage = state
        .directory()
        .outages()
        .iter()
        .find(|o| o.id == id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("unknown outage {id}")))?;
    let territory = Territory::from_parts(outage.territory.kind, &outage.territory.code)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    for s in &outage.services {
        let s = ServiceCode::parse(s).map_err(|e| ApiError::Internal(e.to_string()))?;
        if !caller.may_act(&s, &territory, state.atlas().as_ref()) {
            return Err(out_of_scope(&caller, &s, &territory));
        }
    }
    let actor = caller.actor();
    run_write(state, &req, &writer, &[], move |conn, atlas| {
        let (outage, retired) = store::resolve_outage(conn, atlas, &actor, &id, store::now())?;
        json_answer(200, &ResolvedOutage { outage, retired }, None, None)
    })
    .await
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    /// How many numbers were published (every row of the file).
    pub imported: usize,
    /// Their ids, in the order of the file.
    pub ids: Vec<String>,
}

/// Import numbers from CSV
///
/// `text/csv`, UTF-8, header `service,territory_kind,territory_code,phone,label,valid_until`
/// (`valid_until` may be empty). Every row is published, or none: a 422 lists every bad line
/// (the header is line 1) and field. Authorities import inside their scopes.
#[utoipa::path(
    tag = "numbers",
    security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv", description = "The rows to publish"),
    responses(
        (status = 201, description = "All rows published", body = ImportResult),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A row is outside the organization's scopes, or a moderator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A number of the file is already in force for its service and territory; nothing was imported; or the account's rights changed while the request was checked: nothing was written, send it again", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "File too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not text/csv", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong header, not UTF-8, no rows, or bad lines (each listed with `line` and `field`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/numbers/import")]
pub async fn import_csv(
    req: HttpRequest,
    state: web::Data<AppState>,
    writer: WriteCaller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = writer.caller.clone();
    if caller.role == Role::Moderator {
        return Err(ApiError::Forbidden(
            "moderators cannot import numbers".to_owned(),
        ));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("text/csv")
    {
        return Err(ApiError::UnsupportedMediaType(
            "send the file as text/csv".to_owned(),
        ));
    }
    let organization_id = acting_organization(&caller)?;
    let rows = import::parse(&body).map_err(|e| e.into_api())?;
    let atlas = state.atlas().clone();
    let unknown: Vec<FieldError> = rows
        .iter()
        .filter_map(|r| match check_known(&atlas, &[&r.service], &r.territory) {
            Err(ApiError::Unprocessable { errors, .. }) => {
                Some(errors.into_iter().map(move |mut e| {
                    e.line = Some(r.line);
                    e
                }))
            }
            _ => None,
        })
        .flatten()
        .collect();
    if !unknown.is_empty() {
        return Err(unprocessable(unknown));
    }
    let outside: Vec<String> = rows
        .iter()
        .filter(|r| !caller.may_act(&r.service, &r.territory, atlas.as_ref()))
        .map(|r| r.line.to_string())
        .collect();
    if !outside.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "lines outside the organization's scopes: {}; nothing was imported",
            outside.join(", ")
        )));
    }
    let account = caller.account_id.clone();
    let rows: Vec<(u64, NewNumber)> = rows
        .into_iter()
        .map(|r| {
            (
                r.line,
                r.into_new_number(&organization_id, Some(account.clone())),
            )
        })
        .collect();
    run_write(state, &req, &writer, &body, move |conn, atlas| {
        let published = store::import_numbers(conn, atlas, rows, store::now())?;
        let ids: Vec<String> = published.into_iter().map(|n| n.id).collect();
        json_answer(
            201,
            &ImportResult {
                imported: ids.len(),
                ids,
            },
            None,
            None,
        )
    })
    .await
}
