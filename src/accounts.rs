//! Organizations with their scopes, accounts and tokens: who may act, and where.
//! Every change here is on the audit trail too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::atlas::Atlas;
use crate::auth::jwt::Signer;
use crate::db::models::*;
use crate::db::{schema, DbConnection};
use crate::domain::{Geography, OrganizationKind, Role, Scope, ServiceCode, Territory};
use crate::error::FieldError;
use crate::model::OrganizationRef;
use crate::store::{self, audit, from_db, new_id, to_db, Actor, StoreError};

/// An organization, with what it may act on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    /// Opaque identifier.
    pub id: String,
    /// Public name, e.g. "SDIS 33".
    pub name: String,
    /// What kind of body it is.
    pub kind: OrganizationKind,
    /// `SERVICE:KIND:CODE` scopes: the services and territories it may publish for.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An account: a person or a system acting for an organization.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Opaque identifier; the `sub` of its tokens.
    pub id: String,
    /// The organization it acts for (admins may have none).
    pub organization_id: Option<String>,
    /// What it may do.
    pub role: Role,
    /// A name for operators, e.g. "CTA-CODIS 33". Never shown publicly.
    pub name: String,
    /// A disabled account's tokens are refused at once.
    pub enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A token as issued (the token itself is only returned once, at issue).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// The JWT to send as `Authorization: Bearer ...`. Keep it secret.
    pub token: String,
    /// Its id, to revoke it.
    pub jti: String,
    /// The account it acts as.
    pub account_id: String,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// The authenticated caller of a request, read from storage on every request so that a
/// revocation, a disabled account or a scope change takes effect at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub account_id: String,
    pub role: Role,
    pub organization: Option<OrganizationRef>,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Who the audit trail names for this caller's changes.
    pub fn actor(&self) -> Actor {
        Actor {
            organization_id: self.organization.as_ref().map(|o| o.id.clone()),
            account_id: Some(self.account_id.clone()),
        }
    }

    /// Whether this caller may publish, correct or retire numbers and declare or resolve
    /// outages of `service` in `territory`: admins anywhere, authorities inside a scope of
    /// their organization, moderators never (they submit for review).
    pub fn may_act(
        &self,
        service: &ServiceCode,
        territory: &Territory,
        geo: &impl Geography,
    ) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Authority => self
                .scopes
                .iter()
                .any(|s| s.covers(service, territory, geo)),
            Role::Moderator => false,
        }
    }
}

/// Why a caller could not be authenticated (all answered 401).
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("unknown account")]
    UnknownAccount,
    #[error("account disabled")]
    Disabled,
    #[error("token unknown or revoked")]
    Revoked,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

fn organization_scopes(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<String>> {
    crate::with_backend!(conn, |c| schema::organization_scopes::table
        .filter(schema::organization_scopes::organization_id.eq(org_id))
        .select(schema::organization_scopes::scope)
        .order(schema::organization_scopes::scope)
        .load(c))
}

/// Reads the caller of a verified token: the token must have been issued here and not
/// revoked, and the account must exist and be enabled.
pub fn load_caller(
    conn: &mut DbConnection,
    account_id: &str,
    jti: &str,
) -> Result<Caller, CallerError> {
    // One statement for the token, its account and the account's organization, then one
    // for the scopes: every authenticated request runs them (on the concrete connection,
    // see `with_backend!`). A token's account exists (foreign key), so the inner join
    // loses nothing.
    use schema::{accounts, organizations, tokens};
    let found: Option<(TokenRow, AccountRow, Option<String>)> =
        crate::with_backend!(conn, |c| tokens::table
            .inner_join(accounts::table.on(accounts::id.eq(tokens::account_id)))
            .left_join(
                organizations::table.on(accounts::organization_id.eq(organizations::id.nullable())),
            )
            .filter(tokens::jti.eq(jti))
            .select((
                TokenRow::as_select(),
                AccountRow::as_select(),
                organizations::name.nullable(),
            ))
            .first(c)
            .optional())?;
    let (account, organization_name) = match found {
        Some((t, account, name)) if t.revoked_at.is_none() && t.account_id == account_id => {
            (account, name)
        }
        _ => return Err(CallerError::Revoked),
    };
    if account.enabled == 0 {
        return Err(CallerError::Disabled);
    }
    let role = Role::parse(&account.role).ok_or(CallerError::UnknownAccount)?;
    let (organization, scopes) = match &account.organization_id {
        Some(org_id) => {
            // The foreign key keeps it; a row missing anyway is a storage fault.
            let name = organization_name.ok_or(CallerError::Db(diesel::result::Error::NotFound))?;
            let scopes = organization_scopes(conn, org_id)?
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect();
            (
                Some(OrganizationRef {
                    id: org_id.clone(),
                    name,
                }),
                scopes,
            )
        }
        None => (None, Vec::new()),
    };
    Ok(Caller {
        account_id: account.id,
        role,
        organization,
        scopes,
    })
}

fn organization_view(conn: &mut DbConnection, row: OrganizationRow) -> QueryResult<Organization> {
    let scopes = organization_scopes(conn, &row.id)?;
    Ok(Organization {
        kind: OrganizationKind::parse(&row.kind).unwrap_or(OrganizationKind::Ministry),
        id: row.id,
        name: row.name,
        scopes,
        created_at: from_db(row.created_at),
    })
}

/// Creates an organization with its scopes, checked against the reference data.
pub fn create_organization(
    conn: &mut DbConnection,
    atlas: &Atlas,
    by: Option<&Actor>,
    name: &str,
    kind: &str,
    scopes: &[String],
    now: DateTime<Utc>,
) -> Result<Organization, StoreError> {
    let mut errors = Vec::new();
    let kind = OrganizationKind::parse(kind.trim());
    if kind.is_none() {
        errors.push(FieldError::new(
            "kind",
            "one of sdis, police, gendarmerie, samu, prefecture, ministry, volunteers",
        ));
    }
    let mut parsed = Vec::new();
    for (i, s) in scopes.iter().enumerate() {
        match Scope::parse(s) {
            Ok(scope) => {
                if scope
                    .service()
                    .is_some_and(|c| atlas.service(c.as_str()).is_none())
                {
                    errors.push(FieldError::new(&format!("scopes[{i}]"), "unknown service"));
                } else if atlas.describe(scope.territory()).is_none() {
                    errors.push(FieldError::new(
                        &format!("scopes[{i}]"),
                        "unknown territory",
                    ));
                } else {
                    parsed.push(scope.to_string());
                }
            }
            Err(e) => errors.push(FieldError::new(&format!("scopes[{i}]"), e.to_string())),
        }
    }
    store::check_text("name", name, store::MAX_LABEL_CHARS, &mut errors);
    let Some(kind) = kind.filter(|_| errors.is_empty()) else {
        return Err(StoreError::Invalid(errors));
    };
    parsed.sort();
    parsed.dedup();
    conn.transaction(|conn| {
        let row = store::create_organization(conn, name, kind.as_str(), false, now)?;
        for scope in &parsed {
            diesel::insert_into(schema::organization_scopes::table)
                .values((
                    schema::organization_scopes::organization_id.eq(&row.id),
                    schema::organization_scopes::scope.eq(scope),
                ))
                .execute(conn)?;
        }
        if !parsed.is_empty() {
            audit(
                conn,
                now,
                by,
                "organization.scopes_set",
                "organization",
                &row.id,
                Some(&parsed.join(" ")),
            )?;
        }
        Ok(organization_view(conn, row)?)
    })
}

/// All organizations, by name.
pub fn list_organizations(conn: &mut DbConnection) -> QueryResult<Vec<Organization>> {
    let rows: Vec<OrganizationRow> = schema::organizations::table
        .order((schema::organizations::name, schema::organizations::id))
        .select(OrganizationRow::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|r| organization_view(conn, r))
        .collect()
}

fn account_view(row: AccountRow) -> Account {
    Account {
        id: row.id,
        organization_id: row.organization_id,
        role: Role::parse(&row.role).unwrap_or(Role::Moderator),
        name: row.name,
        enabled: row.enabled != 0,
        created_at: from_db(row.created_at),
    }
}

/// Creates an account. Authorities and moderators belong to an organization.
pub fn create_account(
    conn: &mut DbConnection,
    by: Option<&Actor>,
    organization_id: Option<&str>,
    role: &str,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Account, StoreError> {
    let mut errors = Vec::new();
    let role = Role::parse(role.trim());
    match role {
        None => errors.push(FieldError::new(
            "role",
            "one of admin, authority, moderator",
        )),
        Some(Role::Authority | Role::Moderator) if organization_id.is_none() => {
            errors.push(FieldError::new(
                "organization_id",
                "authorities and moderators act for an organization",
            ))
        }
        _ => {}
    }
    store::check_text("name", name, store::MAX_LABEL_CHARS, &mut errors);
    let Some(role) = role.filter(|_| errors.is_empty()) else {
        return Err(StoreError::Invalid(errors));
    };
    conn.transaction(|conn| {
        if let Some(org) = organization_id {
            let exists: i64 = schema::organizations::table
                .find(org)
                .count()
                .get_result(conn)?;
            if exists == 0 {
                return Err(StoreError::invalid(
                    "organization_id",
                    "no such organization",
                ));
            }
        }
        let row = AccountRow {
            id: new_id(),
            organization_id: organization_id.map(str::to_owned),
            role: role.as_str().to_owned(),
            name: name.trim().to_owned(),
            enabled: 1,
            created_at: to_db(now),
        };
        diesel::insert_into(schema::accounts::table)
            .values(&row)
            .execute(conn)?;
        audit(
            conn,
            now,
            by,
            "account.created",
            "account",
            &row.id,
            Some(role.as_str()),
        )?;
        Ok(account_view(row))
    })
}

/// Enables or disables an account; disabling takes effect on its next request.
pub fn set_account_enabled(
    conn: &mut DbConnection,
    by: Option<&Actor>,
    id: &str,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<Account, StoreError> {
    conn.transaction(|conn| {
        let updated = diesel::update(schema::accounts::table.find(id))
            .set(schema::accounts::enabled.eq(i32::from(enabled)))
            .execute(conn)?;
        if updated == 0 {
            return Err(StoreError::NotFound {
                what: "account",
                id: id.to_owned(),
            });
        }
        let action = if enabled {
            "account.enabled"
        } else {
            "account.disabled"
        };
        audit(conn, now, by, action, "account", id, None)?;
        let row = schema::accounts::table
            .find(id)
            .select(AccountRow::as_select())
            .first(conn)?;
        Ok(account_view(row))
    })
}

/// All accounts.
pub fn list_accounts(conn: &mut DbConnection) -> QueryResult<Vec<Account>> {
    let rows: Vec<AccountRow> = schema::accounts::table
        .order(schema::accounts::id)
        .select(AccountRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(account_view).collect())
}

/// The longest a token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// Issues a token for an enabled account and records its `jti`.
pub fn issue_token(
    conn: &mut DbConnection,
    signer: &Signer,
    by: Option<&Actor>,
    account_id: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<IssuedToken, StoreError> {
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(StoreError::invalid("ttl", "between 1 second and 90 days"));
    }
    conn.transaction(|conn| {
        let account: AccountRow = schema::accounts::table
            .find(account_id)
            .select(AccountRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                what: "account",
                id: account_id.to_owned(),
            })?;
        if account.enabled == 0 {
            return Err(StoreError::Conflict(format!(
                "account {account_id} is disabled"
            )));
        }
        let (token, claims) = signer
            .issue(account_id, ttl, now.timestamp())
            .map_err(|e| StoreError::Conflict(format!("cannot sign: {e}")))?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
        diesel::insert_into(schema::tokens::table)
            .values(TokenRow {
                jti: claims.jti.clone(),
                account_id: account_id.to_owned(),
                issued_at: to_db(now),
                expires_at: to_db(expires_at),
                revoked_at: None,
            })
            .execute(conn)?;
        audit(
            conn,
            now,
            by,
            "token.issued",
            "token",
            &claims.jti,
            Some(account_id),
        )?;
        Ok(IssuedToken {
            token,
            jti: claims.jti,
            account_id: account_id.to_owned(),
            expires_at,
        })
    })
}

/// Revokes a token by its `jti`; it is refused from the next request on.
pub fn revoke_token(
    conn: &mut DbConnection,
    by: Option<&Actor>,
    jti: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        let updated = diesel::update(
            schema::tokens::table
                .find(jti)
                .filter(schema::tokens::revoked_at.is_null()),
        )
        .set(schema::tokens::revoked_at.eq(Some(to_db(now))))
        .execute(conn)?;
        if updated == 0 {
            let exists: i64 = schema::tokens::table.find(jti).count().get_result(conn)?;
            return Err(if exists == 0 {
                StoreError::NotFound {
                    what: "token",
                    id: jti.to_owned(),
                }
            } else {
                StoreError::Conflict(format!("token {jti} is already revoked"))
            });
        }
        audit(conn, now, by, "token.revoked", "token", jti, None)?;
        Ok(())
    })
}

/// One event of the full audit trail (admins only: it names accounts).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Opaque identifier (UUIDv7, so in time order).
    pub id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The acting organization, if any.
    pub organization_id: Option<String>,
    /// The acting account, if any (none for the command line).
    pub account_id: Option<String>,
    /// What happened, e.g. `number.published`, `token.revoked`.
    pub action: String,
    /// `number`, `outage`, `organization`, `account` or `token`.
    pub entity_kind: String,
    /// The id of what changed.
    pub entity_id: String,
    /// Why, when given.
    pub reason: Option<String>,
}

/// The audit trail after the event `after` (exclusive), oldest first.
pub fn audit_page(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    let mut query = schema::audit_events::table
        .select(AuditEventRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(schema::audit_events::id.gt(after.to_owned()));
    }
    let rows: Vec<AuditEventRow> = query
        .order(schema::audit_events::id)
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEvent {
            id: r.id,
            at: from_db(r.at),
            organization_id: r.organization_id,
            account_id: r.account_id,
            action: r.action,
            entity_kind: r.entity_kind,
            entity_id: r.entity_id,
            reason: r.reason,
        })
        .collect())
}

/// Parses a token lifetime: `90s`, `30m`, `12h`, `7d` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits.parse().ok()?;
    let seconds = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_spellings() {
        assert_eq!(parse_ttl("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_ttl("30m"), Some(Duration::from_secs(1_800)));
        assert_eq!(parse_ttl("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("90"), Some(Duration::from_secs(90)));
        for bad in ["", "h", "12y", "-1h", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }
}
