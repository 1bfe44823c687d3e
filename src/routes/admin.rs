//! `/v1/admin/`: organizations, accounts, tokens and the audit trail, for admins, so an
//! operator can work without shell access.

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{self, Account, AuditEvent, IssuedToken, Organization};
use crate::auth::{Auth, Authenticated};
use crate::error::{ApiError, Problem};
use crate::feeds::webhooks::{self, Delivery, Webhook};
use crate::startup::WebhookSettings;
use crate::state::AppState;
use crate::store;

async fn read<T: Send + 'static>(
    state: web::Data<AppState>,
    f: impl FnOnce(&mut crate::db::DbConnection) -> diesel::QueryResult<T> + Send + 'static,
) -> Result<T, ApiError> {
    state.into_inner().read(f).await
}

fn json<T: Serialize>(status: actix_web::http::StatusCode, value: &T) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(value)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Unprocessable {
        detail: format!("invalid body: {e}"),
        errors: vec![crate::error::FieldError::new("body", e.to_string())],
    })
}

/// A list of organizations.
#[derive(Serialize, ToSchema)]
pub struct OrganizationList {
    /// Every organization, by name.
    pub items: Vec<Organization>,
}

/// List organizations
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "The organizations", body = OrganizationList),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/organizations")]
pub async fn list_organizations(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let items = read(state, accounts::list_organizations).await?;
    Ok(json(
        actix_web::http::StatusCode::OK,
        &OrganizationList { items },
    ))
}

/// An organization to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganizationRequest {
    /// Public name, e.g. "SDIS 33".
    pub name: String,
    /// sdis, police, gendarmerie, samu, prefecture, ministry or volunteers.
    pub kind: String,
    /// `SERVICE:KIND:CODE` scopes, e.g. `18:departement:33`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Create an organization
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = NewOrganizationRequest, responses(
    (status = 201, description = "Created", body = Organization),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid kind, name or scope", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/organizations")]
pub async fn create_organization(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.admin()?.actor();
    let input: NewOrganizationRequest = parse(&body)?;
    let org = state
        .into_inner()
        .write(move |conn, atlas| {
            accounts::create_organization(
                conn,
                atlas,
                Some(&actor),
                &input.name,
                &input.kind,
                &input.scopes,
                store::now(),
            )
        })
        .await?;
    Ok(json(actix_web::http::StatusCode::CREATED, &org))
}

/// A list of accounts.
#[derive(Serialize, ToSchema)]
pub struct AccountList {
    /// Every account.
    pub items: Vec<Account>,
}

/// List accounts
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "The accounts", body = AccountList),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/accounts")]
pub async fn list_accounts(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let items = read(state, accounts::list_accounts).await?;
    Ok(json(
        actix_web::http::StatusCode::OK,
        &AccountList { items },
    ))
}

/// An account to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountRequest {
    /// The organization it acts for (required for authorities and moderators).
    pub organization_id: Option<String>,
    /// admin, authority or moderator.
    pub role: String,
    /// A name for operators.
    pub name: String,
}

/// Create an account
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = NewAccountRequest, responses(
    (status = 201, description = "Created", body = Account),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid role, name or organization", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/accounts")]
pub async fn create_account(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.admin()?.actor();
    let input: NewAccountRequest = parse(&body)?;
    let account = state
        .into_inner()
        .write(move |conn, _| {
            accounts::create_account(
                conn,
                Some(&actor),
                input.organization_id.as_deref(),
                &input.role,
                &input.name,
                store::now(),
            )
        })
        .await?;
    Ok(json(actix_web::http::StatusCode::CREATED, &account))
}

/// A change of an account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    /// False disables the account: its tokens are refused from the next request on.
    pub enabled: bool,
}

/// Enable or disable an account
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = AccountChange,
    params(("id" = String, Path, description = "Account id")),
    responses(
    (status = 200, description = "Changed", body = Account),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
))]
#[patch("/v1/admin/accounts/{id}")]
pub async fn change_account(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.admin()?.actor();
    let input: AccountChange = parse(&body)?;
    let id = path.into_inner();
    let account = state
        .into_inner()
        .write(move |conn, _| {
            accounts::set_account_enabled(conn, Some(&actor), &id, input.enabled, store::now())
        })
        .await?;
    Ok(json(actix_web::http::StatusCode::OK, &account))
}

/// A token to issue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The account it acts as.
    pub account_id: String,
    /// Lifetime: `90s`, `30m`, `12h`, `7d` (at most 90 days; default 12h).
    pub ttl: Option<String>,
}

/// Issue a token
///
/// The token is in this answer only: keep it secret. Revoke it by its `jti`.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = TokenRequest, responses(
    (status = 201, description = "Issued", body = IssuedToken),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "Unknown account", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Account disabled", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid lifetime", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/tokens")]
pub async fn issue_token(
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    caller: Authenticated,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.admin()?.actor();
    let input: TokenRequest = parse(&body)?;
    let ttl = accounts::parse_ttl(input.ttl.as_deref().unwrap_or("12h")).ok_or_else(|| {
        ApiError::Unprocessable {
            detail: "invalid ttl".to_owned(),
            errors: vec![crate::error::FieldError::new("ttl", "90s, 30m, 12h or 7d")],
        }
    })?;
    let issued = state
        .into_inner()
        .write(move |conn, _| {
            accounts::issue_token(
                conn,
                &auth.signer,
                Some(&actor),
                &input.account_id,
                ttl,
                store::now(),
            )
        })
        .await?;
    Ok(json(actix_web::http::StatusCode::CREATED, &issued))
}

/// Revoke a token
///
/// Takes effect on the token's next request.
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("jti" = String, Path, description = "The token's jti")),
    responses(
    (status = 204, description = "Revoked"),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "Unknown token", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/tokens/{jti}/revoke")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.admin()?.actor();
    let jti = path.into_inner();
    state
        .into_inner()
        .write(move |conn, _| accounts::revoke_token(conn, Some(&actor), &jti, store::now()))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Paging of the audit trail.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of the audit trail.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Events, oldest first.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The audit trail
///
/// Every change of a number, outage, organization, account or token, oldest first.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(AuditQuery), responses(
    (status = 200, description = "A page of events", body = AuditPage),
    (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/audit")]
pub async fn audit(
    _req: HttpRequest,
    state: web::Data<AppState>,
    caller: Authenticated,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let limit = crate::routes::numbers::parse_limit(query.limit.as_deref())?;
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
    let fetch = i64::try_from(limit + 1).unwrap_or(1001);
    let mut items = read(state, move |conn| {
        accounts::audit_page(conn, after.as_deref(), fetch)
    })
    .await?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(json(
        actix_web::http::StatusCode::OK,
        &AuditPage { items, next_cursor },
    ))
}

/// A webhook to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// An http(s) URL whose host resolves inside the allowed networks
    /// (`RELAI_WEBHOOK_ALLOWED_NETWORKS`; by default public addresses only).
    pub url: String,
    /// At least 16 characters: each delivery carries
    /// `X-Relai-Signature: sha256=<hex HMAC-SHA256 of the raw body under this secret>`.
    pub secret: String,
}

/// Register a webhook
///
/// From now on, each public change is POSTed to the URL as a JSON `ChangeEvent`, with
/// `X-Relai-Signature: sha256=<hex HMAC-SHA256 of the raw body under the secret>` and
/// `X-Relai-Event-Id` (the change's sequence: deliveries are at least once, so dedupe on it).
/// A failed delivery is retried with exponential backoff (1 s doubling, at most 5 minutes)
/// until the subscriber answers 2xx; each subscriber is served on its own, so a slow or
/// dead one delays nobody.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = WebhookRequest, responses(
    (status = 201, description = "Registered", body = Webhook),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "Not http(s), outside the allowed networks, or a short secret", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/admin/webhooks")]
pub async fn register_webhook(
    state: web::Data<AppState>,
    settings: web::Data<WebhookSettings>,
    caller: Authenticated,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.admin()?.actor();
    let input: WebhookRequest = parse(&body)?;
    let url =
        settings
            .policy
            .check(&input.url)
            .await
            .map_err(|reason| ApiError::Unprocessable {
                detail: format!("webhook URL refused: {reason}"),
                errors: vec![crate::error::FieldError::new("url", reason)],
            })?;
    let state = state.into_inner();
    let hook = state
        .clone()
        .write(move |conn, _| webhooks::register(conn, &actor, &url, &input.secret, store::now()))
        .await?;
    webhooks::start(
        state,
        settings.policy.clone(),
        settings.retry_base,
        hook.id.clone(),
    );
    Ok(json(actix_web::http::StatusCode::CREATED, &hook))
}

/// Webhooks.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    /// Every registered webhook (secrets are never shown).
    pub items: Vec<Webhook>,
}

/// List webhooks
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "The webhooks", body = WebhookList),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/webhooks")]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let items = read(state, webhooks::list).await?;
    Ok(json(
        actix_web::http::StatusCode::OK,
        &WebhookList { items },
    ))
}

/// A webhook's delivery log.
#[derive(Serialize, ToSchema)]
pub struct DeliveryLog {
    /// The latest 100 attempts, newest first.
    pub items: Vec<Delivery>,
}

/// Delivery log of a webhook
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses(
    (status = 200, description = "The latest attempts", body = DeliveryLog),
    (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "Unknown webhook", body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/admin/webhooks/{id}/deliveries")]
pub async fn webhook_deliveries(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.admin()?;
    let id = path.into_inner();
    let lookup = id.clone();
    let items = read(state, move |conn| webhooks::deliveries(conn, &lookup, 100))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown webhook {id}")))?;
    Ok(json(
        actix_web::http::StatusCode::OK,
        &DeliveryLog { items },
    ))
}
