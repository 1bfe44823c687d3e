//! The write path, as a library: each operation is one transaction that writes the change
//! and appends it to the ordered `changes` log. Callers refresh the directory snapshot
//! after the commit (see `state.rs`). Also loads what the snapshot is built from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::atlas::Atlas;
use crate::db::models::*;
use crate::db::{schema, DbConnection};
use crate::directory::Directory;
use crate::domain::{Geography, PhoneNumber, ServiceCode, Territory};
use crate::error::FieldError;
use crate::model::{
    Number, NumberStatus, OrganizationRef, Outage, OutageStatus, Phone, Provenance,
};

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(String),
    /// The request's token no longer has a caller (revoked, account disabled): 401.
    #[error("{0}")]
    Unauthorized(String),
    #[error("the number changed meanwhile: it is at version {current}")]
    Stale { current: i32 },
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl StoreError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        StoreError::Invalid(vec![FieldError::new(field, message)])
    }
}

/// The change kinds of the `changes` log.
pub mod change_kind {
    pub const NUMBER_PUBLISHED: &str = "number.published";
    pub const NUMBER_CORRECTED: &str = "number.corrected";
    pub const NUMBER_RETIRED: &str = "number.retired";
    pub const OUTAGE_DECLARED: &str = "outage.declared";
    pub const OUTAGE_RESOLVED: &str = "outage.resolved";
    /// A submission or tip waits for review (its payload carries no unchecked number).
    pub const NUMBER_SUBMITTED: &str = "number.submitted";
    pub const NUMBER_REJECTED: &str = "number.rejected";
    /// Retired because an approved correction replaces it.
    pub const NUMBER_SUPERSEDED: &str = "number.superseded";
    /// On the audit trail only: a reviewer approved a submission (the changes log says
    /// `number.published`).
    pub const NUMBER_APPROVED: &str = "number.approved";
}

/// The longest label and description accepted.
pub const MAX_LABEL_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 2000;

/// Timestamps are kept to the microsecond, the precision both backends store.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub(crate) fn to_db(t: DateTime<Utc>) -> NaiveDateTime {
    t.trunc_subsecs(6).naive_utc()
}

pub(crate) fn from_db(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Who a number comes from.
#[derive(Debug, Clone)]
pub enum NewProvenance {
    /// Published by an authority: the organization's id.
    Official { organization_id: String },
}

/// A number to publish.
#[derive(Debug, Clone)]
pub struct NewNumber {
    pub service: ServiceCode,
    pub territory: Territory,
    pub phone: PhoneNumber,
    pub label: String,
    pub provenance: NewProvenance,
    pub outage_id: Option<String>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub demo: bool,
    /// The account publishing it, for the audit trail (none from the command line).
    pub by_account: Option<String>,
}

/// An outage to declare.
#[derive(Debug, Clone)]
pub struct NewOutage {
    pub services: Vec<ServiceCode>,
    pub territory: Territory,
    pub description: String,
    pub declared_by: String,
    /// When it began, if declared afterwards; now by default.
    pub declared_at: Option<DateTime<Utc>>,
    pub demo: bool,
    /// The account declaring it, for the audit trail.
    pub by_account: Option<String>,
}

pub(crate) fn check_text(field: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if trimmed.chars().count() > max {
        errors.push(FieldError::new(field, format!("at most {max} characters")));
    } else if trimmed.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn check_service(atlas: &Atlas, service: &ServiceCode, field: &str, errors: &mut Vec<FieldError>) {
    if atlas.service(service.as_str()).is_none() {
        errors.push(FieldError::new(
            field,
            format!("unknown service {service}; see /v1/services"),
        ));
    }
}

fn check_territory(atlas: &Atlas, t: &Territory, errors: &mut Vec<FieldError>) {
    if atlas.describe(t).is_none() {
        errors.push(FieldError::new(
            "territory",
            format!(
                "no {} with code {:?} in the reference data",
                t.kind(),
                t.code()
            ),
        ));
    }
}

fn organization(conn: &mut DbConnection, id: &str) -> Result<OrganizationRow, StoreError> {
    crate::with_backend!(conn, |c| schema::organizations::table
        .find(id)
        .select(OrganizationRow::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| StoreError::NotFound {
        what: "organization",
        id: id.to_owned(),
    })
}

/// The channel on which PostgreSQL tells every instance that the changes log grew.
pub const CHANGES_CHANNEL: &str = "relai_changes";

/// Runs `f` in one write transaction: the store's own transactions nest inside it as
/// savepoints. On SQLite it begins IMMEDIATE, taking the write lock first, so that it
/// waits its turn (busy_timeout) behind another process's writer instead of failing
/// when a read would turn into a write. On PostgreSQL writers run concurrently until they
/// append to the changes log, where they take the writers' lock (see
/// [`serialize_writers`]) until commit; should two of them deadlock on a row meanwhile,
/// PostgreSQL aborts one, answered 503 (retry).
pub fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    ANNOUNCED.with(|a| a.set(false));
    let _clear = AnnouncedUntilEnd;
    if let DbConnection::Sqlite(c) = conn {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
        let result = f(conn);
        let DbConnection::Sqlite(c) = conn else {
            unreachable!("the connection does not change backend");
        };
        return match result {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(c)?;
                Ok(value)
            }
            Err(e) => {
                AnsiTransactionManager::rollback_transaction(c)?;
                Err(e)
            }
        };
    }
    conn.transaction(f)
}

/// Takes the cluster-wide writers' lock for the rest of the transaction (PostgreSQL; a
/// SQLite database has one writer at a time anyway), just before a change is numbered.
/// Without it two writers could commit their changes out of sequence order, and a
/// follower reading the log after sequence N would miss a change numbered below N that
/// committed after it.
pub fn serialize_writers(conn: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7340203)").execute(pg)?;
    }
    Ok(())
}

thread_local! {
    /// Whether the transaction this thread runs (see [`write_transaction`]) took the
    /// writers' lock and queued the notification for all of its changes up front.
    static ANNOUNCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// For a transaction that will append changes (a batch of writes): takes the writers'
/// lock and queues the notification once, outside any savepoint (a savepoint rolled back
/// would release a lock taken inside it), so that its writes need not each do it.
/// The mark lasts until [`write_transaction`] ends.
pub fn announce_for_transaction(conn: &mut DbConnection) -> QueryResult<()> {
    announce(conn)?;
    ANNOUNCED.with(|a| a.set(true));
    Ok(())
}

/// Before appending to the changes log: takes the writers' lock (a no-op when the write
/// path took it already; the command line's writes take it here) and, on PostgreSQL,
/// queues the notification that the listening instances receive on commit.
fn announce_changes(conn: &mut DbConnection) -> QueryResult<()> {
    if ANNOUNCED.with(|a| a.get()) {
        return Ok(());
    }
    announce(conn)
}

fn announce(conn: &mut DbConnection) -> QueryResult<()> {
    serialize_writers(conn)?;
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query(format!("NOTIFY {CHANGES_CHANNEL}")).execute(pg)?;
    }
    Ok(())
}

thread_local! {
    /// Whether the write this thread runs has a rollback boundary of its own (its own
    /// transaction, or its own savepoint in a batch) that any error it returns triggers.
    static WRITE_BOUNDARY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as one write's own step, marking that an error it returns rolls back
/// everything that write did: the write functions below then need no savepoint of their
/// own (two statements, on PostgreSQL two round trips, saved per write). Used by the
/// write path around each write (see `AppState`).
pub fn with_write_boundary<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            WRITE_BOUNDARY.with(|b| b.set(self.0));
        }
    }
    let _reset = Reset(WRITE_BOUNDARY.with(|b| b.replace(true)));
    f()
}

/// All of `f` or none of it. Inside a write with its own boundary (see
/// [`with_write_boundary`]) that is already so, as long as the error goes back up: every
/// caller of the write functions returns their errors (`?`). A caller that handled an
/// error of one of them and went on would have to wrap the call in a transaction itself.
fn atomically<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if WRITE_BOUNDARY.with(|b| b.get()) {
        f(conn)
    } else {
        conn.transaction(f)
    }
}

/// Clears the mark of [`announce_for_transaction`] when the transaction ends, however.
struct AnnouncedUntilEnd;

impl Drop for AnnouncedUntilEnd {
    fn drop(&mut self) {
        ANNOUNCED.with(|a| a.set(false));
    }
}

pub(crate) fn append_change(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    kind: &str,
    entity_id: &str,
    payload: &impl Serialize,
) -> Result<(), StoreError> {
    announce_changes(conn)?;
    let payload = serde_json::to_string(payload)
        .map_err(|e| StoreError::Conflict(format!("cannot record the change: {e}")))?;
    let change = NewChange {
        at: to_db(at),
        kind,
        entity_id,
        payload: &payload,
    };
    // The write path's statements run on the concrete connection: see `with_backend!`.
    crate::with_backend!(conn, |c| diesel::insert_into(schema::changes::table)
        .values(&change)
        .execute(c))?;
    Ok(())
}

/// Who makes a change: an organization, and the account acting for it once accounts exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub organization_id: Option<String>,
    pub account_id: Option<String>,
}

impl Actor {
    pub fn organization(id: &str) -> Actor {
        Actor {
            organization_id: Some(id.to_owned()),
            account_id: None,
        }
    }
}

/// Appends an event to the audit trail (append-only: nothing ever updates or deletes one).
pub(crate) fn audit(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    actor: Option<&Actor>,
    action: &str,
    entity_kind: &str,
    entity_id: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let event = AuditEventRow {
        id: new_id(),
        at: to_db(at),
        organization_id: actor.and_then(|a| a.organization_id.clone()),
        account_id: actor.and_then(|a| a.account_id.clone()),
        action: action.to_owned(),
        entity_kind: entity_kind.to_owned(),
        entity_id: entity_id.to_owned(),
        reason: reason.map(str::to_owned),
        details: None,
    };
    crate::with_backend!(conn, |c| diesel::insert_into(schema::audit_events::table)
        .values(&event)
        .execute(c))?;
    Ok(())
}

/// Creates an organization (the authorities issue adds scopes and accounts).
pub fn create_organization(
    conn: &mut DbConnection,
    name: &str,
    kind: &str,
    demo: bool,
    now: DateTime<Utc>,
) -> Result<OrganizationRow, StoreError> {
    let mut errors = Vec::new();
    check_text("name", name, MAX_LABEL_CHARS, &mut errors);
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    let row = OrganizationRow {
        id: new_id(),
        name: name.trim().to_owned(),
        kind: kind.to_owned(),
        is_demo: demo.into(),
        created_at: to_db(now),
    };
    diesel::insert_into(schema::organizations::table)
        .values(&row)
        .execute(conn)?;
    audit(
        conn,
        now,
        None,
        "organization.created",
        "organization",
        &row.id,
        None,
    )?;
    Ok(row)
}

/// The checks of a new number that need no storage.
fn check_new_number(atlas: &Atlas, new: &NewNumber, now: DateTime<Utc>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_service(atlas, &new.service, "service", &mut errors);
    check_territory(atlas, &new.territory, &mut errors);
    check_text("label", &new.label, MAX_LABEL_CHARS, &mut errors);
    let valid_from = new.valid_from.map(|t| t.trunc_subsecs(6)).unwrap_or(now);
    if let Some(until) = new.valid_until {
        if until <= valid_from || until <= now {
            errors.push(FieldError::new(
                "valid_until",
                "must be in the future and after valid_from",
            ));
        }
    }
    errors
}

/// The stored row of an official number.
fn official_row(
    new: &NewNumber,
    organization_id: &str,
    valid_from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> NumberRow {
    NumberRow {
        id: new_id(),
        service_code: new.service.as_str().to_owned(),
        territory_kind: new.territory.kind().as_str().to_owned(),
        territory_code: new.territory.code().to_owned(),
        phone_e164: new.phone.e164().to_owned(),
        label: new.label.trim().to_owned(),
        status: NumberStatus::Published.as_str().to_owned(),
        provenance_kind: "official".to_owned(),
        organization_id: Some(organization_id.to_owned()),
        source_url: None,
        verified_by: None,
        outage_id: new.outage_id.clone(),
        valid_from: to_db(valid_from),
        valid_until: new.valid_until.map(to_db),
        published_at: Some(to_db(now)),
        updated_at: to_db(now),
        retired_at: None,
        retire_reason: None,
        is_demo: new.demo.into(),
        version: 1,
        submission_kind: None,
        submitted_by: None,
        supersedes: None,
        comment: None,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
    }
}

/// The official word wins: when an official number is published, the relayed numbers for
/// the same service and territory are retired, saying why.
fn retire_relayed(
    conn: &mut DbConnection,
    atlas: &Atlas,
    actor: &Actor,
    new: &NewNumber,
    org_name: &str,
    display: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let relayed: Vec<NumberRow> = crate::with_backend!(conn, |c| schema::numbers::table
        .filter(schema::numbers::status.eq(NumberStatus::Published.as_str()))
        .filter(schema::numbers::provenance_kind.eq("relayed"))
        .filter(schema::numbers::service_code.eq(new.service.as_str()))
        .filter(schema::numbers::territory_kind.eq(new.territory.kind().as_str()))
        .filter(schema::numbers::territory_code.eq(new.territory.code()))
        .select(NumberRow::as_select())
        .load(c))?;
    let reason =
        format!("Numéro officiel publié par {org_name} ({display}) : le numéro relayé est retiré.");
    for row in relayed {
        retire_row(conn, atlas, actor, row, &reason, now)?;
    }
    Ok(())
}

/// Publishes a number: checks it against the reference data and the numbers in force,
/// stores it and appends `number.published`, in one transaction.
pub fn publish_number(
    conn: &mut DbConnection,
    atlas: &Atlas,
    new: NewNumber,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    let errors = check_new_number(atlas, &new, now);
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    let valid_from = new.valid_from.map(|t| t.trunc_subsecs(6)).unwrap_or(now);
    atomically(conn, |conn| {
        let NewProvenance::Official { organization_id } = &new.provenance;
        let org = organization(conn, organization_id)?;
        if let Some(outage_id) = &new.outage_id {
            let outage = load_outage(conn, outage_id)
                .map_err(|_| StoreError::invalid("outage_id", "no such outage"))?;
            let outage_territory =
                Territory::from_parts(outage.0.territory_kind_parsed(), &outage.0.territory_code)
                    .map_err(|_| StoreError::invalid("outage_id", "no such outage"))?;
            let covered = outage_territory == new.territory
                || atlas.ancestors(&new.territory).contains(&outage_territory);
            if outage.0.status != OutageStatus::Active.as_str()
                || !outage.1.iter().any(|s| s == new.service.as_str())
                || !covered
            {
                return Err(StoreError::invalid(
                    "outage_id",
                    "the outage must be active and cover this service and territory",
                ));
            }
        }
        let e164 = new.phone.e164();
        let duplicate: i64 = crate::with_backend!(conn, |c| schema::numbers::table
            .filter(schema::numbers::status.eq(NumberStatus::Published.as_str()))
            .filter(schema::numbers::service_code.eq(new.service.as_str()))
            .filter(schema::numbers::territory_kind.eq(new.territory.kind().as_str()))
            .filter(schema::numbers::territory_code.eq(new.territory.code()))
            .filter(schema::numbers::phone_e164.eq(e164))
            .filter(
                schema::numbers::valid_until
                    .is_null()
                    .or(schema::numbers::valid_until.gt(to_db(now))),
            )
            .count()
            .get_result(c))?;
        if duplicate > 0 {
            return Err(StoreError::Conflict(format!(
                "{} is already in force for service {} in {}",
                new.phone.display(),
                new.service,
                new.territory
            )));
        }
        let row = official_row(&new, &org.id, valid_from, now);
        crate::with_backend!(conn, |c| diesel::insert_into(schema::numbers::table)
            .values(&row)
            .execute(c))?;
        let orgs = HashMap::from([(org.id.clone(), org.name.clone())]);
        let number = number_view(&row, atlas, &orgs)
            .ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))?;
        append_change(
            conn,
            now,
            change_kind::NUMBER_PUBLISHED,
            &number.id,
            &number,
        )?;
        let actor = Actor {
            organization_id: Some(org.id.clone()),
            account_id: new.by_account.clone(),
        };
        audit(
            conn,
            now,
            Some(&actor),
            change_kind::NUMBER_PUBLISHED,
            "number",
            &number.id,
            None,
        )?;
        retire_relayed(
            conn,
            atlas,
            &actor,
            &new,
            &org.name,
            &number.phone.display,
            now,
        )?;
        Ok(number)
    })
}

/// Retires a published number, with the reason, and appends `number.retired`.
pub fn retire_number(
    conn: &mut DbConnection,
    atlas: &Atlas,
    actor: &Actor,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    let mut errors = Vec::new();
    check_text("reason", reason, MAX_TEXT_CHARS, &mut errors);
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    atomically(conn, |conn| {
        let row = load_number_row(conn, id)?;
        if row.status != NumberStatus::Published.as_str() {
            return Err(StoreError::Conflict(format!(
                "number {id} is {}, not published",
                row.status
            )));
        }
        let number = retire_row(conn, atlas, actor, row, reason, now)?;
        Ok(number)
    })
}

fn retire_row(
    conn: &mut DbConnection,
    atlas: &Atlas,
    actor: &Actor,
    row: NumberRow,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    retire_row_as(
        conn,
        atlas,
        actor,
        row,
        reason,
        change_kind::NUMBER_RETIRED,
        now,
    )
}

/// The update that retires a number at its version: `UPDATE numbers SET status =
/// 'retired', ... WHERE id = ? AND version = ?`, written out so that each connection
/// prepares it once. diesel never keeps an `UPDATE` it builds prepared (a changeset may
/// leave out its `None` fields, so the text can vary), and compiling this one again on
/// every retirement was a third of its storage time.
struct RetireRow<'a> {
    id: &'a str,
    /// The version the caller read; the row gets the next one.
    version: i32,
    at: NaiveDateTime,
    reason: &'a str,
}

impl diesel::query_builder::QueryId for RetireRow<'_> {
    type QueryId = RetireRow<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> diesel::query_builder::QueryFragment<DB> for RetireRow<'_>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Timestamp>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Integer>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    NaiveDateTime: diesel::serialize::ToSql<diesel::sql_types::Timestamp, DB>,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Integer, Text, Timestamp};
        out.push_sql("UPDATE numbers SET status = ");
        out.push_bind_param::<Text, str>(NumberStatus::Retired.as_str())?;
        out.push_sql(", retired_at = ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(", retire_reason = ");
        out.push_bind_param::<Text, str>(self.reason)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(", version = version + 1 WHERE id = ");
        out.push_bind_param::<Text, str>(self.id)?;
        out.push_sql(" AND version = ");
        out.push_bind_param::<Integer, _>(&self.version)?;
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for RetireRow<'_> {}

/// Retires a published number and logs it under `kind` (retired, or superseded).
pub(crate) fn retire_row_as(
    conn: &mut DbConnection,
    atlas: &Atlas,
    actor: &Actor,
    mut row: NumberRow,
    reason: &str,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    let updated = crate::with_backend!(conn, |c| RetireRow {
        id: &row.id,
        version: row.version,
        at: to_db(now),
        reason: reason.trim(),
    }
    .execute(c))?;
    if updated != 1 {
        return Err(StoreError::Conflict(format!(
            "number {} changed meanwhile",
            row.id
        )));
    }
    row.status = NumberStatus::Retired.as_str().to_owned();
    row.retired_at = Some(to_db(now));
    row.retire_reason = Some(reason.trim().to_owned());
    row.updated_at = to_db(now);
    row.version += 1;
    let orgs = organization_names_of(conn, &row)?;
    let number = number_view(&row, atlas, &orgs)
        .ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))?;
    append_change(conn, now, kind, &number.id, &number)?;
    audit(
        conn,
        now,
        Some(actor),
        kind,
        "number",
        &number.id,
        Some(reason.trim()),
    )?;
    Ok(number)
}

/// Declares an outage and appends `outage.declared`.
pub fn declare_outage(
    conn: &mut DbConnection,
    atlas: &Atlas,
    new: NewOutage,
    now: DateTime<Utc>,
) -> Result<Outage, StoreError> {
    let mut errors = Vec::new();
    if new.services.is_empty() {
        errors.push(FieldError::new("services", "name at least one service"));
    }
    for (i, s) in new.services.iter().enumerate() {
        check_service(atlas, s, &format!("services[{i}]"), &mut errors);
    }
    check_territory(atlas, &new.territory, &mut errors);
    check_text("description", &new.description, MAX_TEXT_CHARS, &mut errors);
    let declared_at = new.declared_at.map(|t| t.trunc_subsecs(6)).unwrap_or(now);
    if declared_at > now {
        errors.push(FieldError::new("declared_at", "must not be in the future"));
    }
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    let mut services: Vec<String> = new.services.iter().map(|s| s.as_str().to_owned()).collect();
    services.sort_by_key(|s| atlas.services().iter().position(|c| c.code == *s));
    services.dedup();
    atomically(conn, |conn| {
        let org = organization(conn, &new.declared_by)?;
        let row = OutageRow {
            id: new_id(),
            territory_kind: new.territory.kind().as_str().to_owned(),
            territory_code: new.territory.code().to_owned(),
            description: new.description.trim().to_owned(),
            status: OutageStatus::Active.as_str().to_owned(),
            declared_at: to_db(declared_at),
            resolved_at: None,
            declared_by: org.id.clone(),
            is_demo: new.demo.into(),
            version: 1,
        };
        diesel::insert_into(schema::outages::table)
            .values(&row)
            .execute(conn)?;
        let links: Vec<OutageServiceRow> = services
            .iter()
            .map(|s| OutageServiceRow {
                outage_id: row.id.clone(),
                service_code: s.clone(),
            })
            .collect();
        for link in &links {
            diesel::insert_into(schema::outage_services::table)
                .values(link)
                .execute(conn)?;
        }
        let orgs = HashMap::from([(org.id.clone(), org.name.clone())]);
        let outage = outage_view(&row, services, atlas, &orgs);
        append_change(conn, now, change_kind::OUTAGE_DECLARED, &outage.id, &outage)?;
        let actor = Actor {
            organization_id: Some(org.id.clone()),
            account_id: new.by_account.clone(),
        };
        audit(
            conn,
            now,
            Some(&actor),
            change_kind::OUTAGE_DECLARED,
            "outage",
            &outage.id,
            None,
        )?;
        Ok(outage)
    })
}

/// Resolves an active outage: retires the numbers published for it, then appends
/// `number.retired` for each and `outage.resolved`.
pub fn resolve_outage(
    conn: &mut DbConnection,
    atlas: &Atlas,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(Outage, Vec<Number>), StoreError> {
    atomically(conn, |conn| {
        let (row, services) = load_outage(conn, id)?;
        if row.status != OutageStatus::Active.as_str() {
            return Err(StoreError::Conflict(format!(
                "outage {id} is already resolved"
            )));
        }
        let linked: Vec<NumberRow> = schema::numbers::table
            .filter(schema::numbers::outage_id.eq(id))
            .filter(schema::numbers::status.eq(NumberStatus::Published.as_str()))
            .select(NumberRow::as_select())
            .order(schema::numbers::id)
            .load(conn)?;
        let mut retired = Vec::with_capacity(linked.len());
        for number in linked {
            retired.push(retire_row(
                conn,
                atlas,
                actor,
                number,
                "Fin de la panne : le numéro habituel fonctionne de nouveau.",
                now,
            )?);
        }
        use schema::outages::dsl as o;
        diesel::update(o::outages.filter(o::id.eq(id)))
            .set((
                o::status.eq(OutageStatus::Resolved.as_str()),
                o::resolved_at.eq(Some(to_db(now))),
                o::version.eq(row.version + 1),
            ))
            .execute(conn)?;
        let mut row = row;
        row.status = OutageStatus::Resolved.as_str().to_owned();
        row.resolved_at = Some(to_db(now));
        row.version += 1;
        let orgs = organization_names(conn)?;
        let outage = outage_view(&row, services, atlas, &orgs);
        append_change(conn, now, change_kind::OUTAGE_RESOLVED, &outage.id, &outage)?;
        audit(
            conn,
            now,
            Some(actor),
            change_kind::OUTAGE_RESOLVED,
            "outage",
            &outage.id,
            None,
        )?;
        Ok((outage, retired))
    })
}

pub(crate) fn load_number_row(conn: &mut DbConnection, id: &str) -> Result<NumberRow, StoreError> {
    crate::with_backend!(conn, |c| schema::numbers::table
        .find(id)
        .select(NumberRow::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| StoreError::NotFound {
        what: "number",
        id: id.to_owned(),
    })
}

fn load_outage(conn: &mut DbConnection, id: &str) -> Result<(OutageRow, Vec<String>), StoreError> {
    let row = schema::outages::table
        .find(id)
        .select(OutageRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "outage",
            id: id.to_owned(),
        })?;
    let services = schema::outage_services::table
        .filter(schema::outage_services::outage_id.eq(id))
        .select(schema::outage_services::service_code)
        .load(conn)?;
    Ok((row, services))
}

impl OutageRow {
    fn territory_kind_parsed(&self) -> crate::domain::TerritoryKind {
        crate::domain::TerritoryKind::parse(&self.territory_kind)
            .unwrap_or(crate::domain::TerritoryKind::National)
    }
}

pub(crate) fn organization_names(conn: &mut DbConnection) -> QueryResult<HashMap<String, String>> {
    let rows: Vec<(String, String)> = schema::organizations::table
        .select((schema::organizations::id, schema::organizations::name))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// The names of the organizations one stored number names (its publisher, the one that
/// verified it): what its public view needs, not every organization's.
fn organization_names_of(
    conn: &mut DbConnection,
    row: &NumberRow,
) -> QueryResult<HashMap<String, String>> {
    let mut names = HashMap::new();
    // One lookup by key each (a statement prepared once), rather than an `IN` list.
    for id in [row.organization_id.as_deref(), row.verified_by.as_deref()]
        .into_iter()
        .flatten()
    {
        if names.contains_key(id) {
            continue;
        }
        let name: Option<String> = crate::with_backend!(conn, |c| schema::organizations::table
            .find(id)
            .select(schema::organizations::name)
            .first(c)
            .optional())?;
        if let Some(name) = name {
            names.insert(id.to_owned(), name);
        }
    }
    Ok(names)
}

pub(crate) fn org_ref(id: &str, orgs: &HashMap<String, String>) -> OrganizationRef {
    OrganizationRef {
        id: id.to_owned(),
        name: orgs.get(id).cloned().unwrap_or_default(),
    }
}

/// The public view of a stored number; `None` if its stored fields no longer parse.
pub fn number_view(
    row: &NumberRow,
    atlas: &Atlas,
    orgs: &HashMap<String, String>,
) -> Option<Number> {
    let territory = Territory::parse(&row.territory_kind, &row.territory_code).ok()?;
    let phone = PhoneNumber::from_stored(&row.phone_e164).ok()?;
    let provenance = match (
        row.provenance_kind.as_str(),
        &row.source_url,
        &row.verified_by,
    ) {
        ("relayed", Some(url), by) => Provenance::Relayed {
            source_url: url.clone(),
            verified_by: by.as_deref().map(|b| org_ref(b, orgs)),
        },
        _ => Provenance::Official {
            organization: org_ref(row.organization_id.as_deref().unwrap_or_default(), orgs),
        },
    };
    Some(Number {
        id: row.id.clone(),
        service: row.service_code.clone(),
        territory: atlas.describe_stored(&territory),
        phone: Phone::from(&phone),
        label: row.label.clone(),
        status: NumberStatus::parse(&row.status)?,
        provenance,
        outage_id: row.outage_id.clone(),
        valid_from: from_db(row.valid_from),
        valid_until: row.valid_until.map(from_db),
        published_at: row.published_at.map(from_db),
        updated_at: from_db(row.updated_at),
        retired_at: row.retired_at.map(from_db),
        retire_reason: row.retire_reason.clone(),
        version: row.version,
        demo: row.is_demo != 0,
    })
}

fn outage_view(
    row: &OutageRow,
    services: Vec<String>,
    atlas: &Atlas,
    orgs: &HashMap<String, String>,
) -> Outage {
    let territory = Territory::from_parts(row.territory_kind_parsed(), &row.territory_code)
        .map(|t| atlas.describe_stored(&t))
        .unwrap_or_else(|_| crate::model::TerritoryRef {
            kind: row.territory_kind_parsed(),
            code: row.territory_code.clone(),
            name: row.territory_code.clone(),
        });
    Outage {
        id: row.id.clone(),
        services,
        territory,
        description: row.description.clone(),
        status: if row.status == OutageStatus::Active.as_str() {
            OutageStatus::Active
        } else {
            OutageStatus::Resolved
        },
        declared_at: from_db(row.declared_at),
        resolved_at: row.resolved_at.map(from_db),
        declared_by: org_ref(&row.declared_by, orgs),
        version: row.version,
        demo: row.is_demo != 0,
    }
}

/// The last sequence number of the changes log (0 when empty).
pub fn last_change_seq(conn: &mut DbConnection) -> QueryResult<i64> {
    use diesel::dsl::max;
    Ok(schema::changes::table
        .select(max(schema::changes::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// Numbers read at a time when loading the directory.
const LOAD_PAGE: i64 = 5000;

/// Reads everything the public snapshot holds and builds it.
pub fn load_directory(
    conn: &mut DbConnection,
    atlas: Arc<Atlas>,
    postcodes: Arc<crate::answers::PostcodeIndex>,
) -> QueryResult<Directory> {
    conn.transaction(|conn| {
        let seq = last_change_seq(conn)?;
        let orgs = organization_names(conn)?;
        // In pages, so that a large directory is never held twice in memory.
        let mut builder = crate::directory::DirectoryBuilder::new(atlas.clone(), postcodes);
        let mut after = String::new();
        loop {
            let rows: Vec<NumberRow> = schema::numbers::table
                .filter(schema::numbers::status.eq(NumberStatus::Published.as_str()))
                .filter(schema::numbers::id.gt(&after))
                .order(schema::numbers::id)
                .limit(LOAD_PAGE)
                .select(NumberRow::as_select())
                .load(conn)?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.id.clone();
            for row in &rows {
                match number_view(row, &atlas, &orgs) {
                    Some(view) => builder.add_number(view),
                    None => tracing::error!(id = %row.id, "stored number no longer parses; left out of the directory"),
                }
            }
        }
        let outage_rows: Vec<OutageRow> =
            schema::outages::table.select(OutageRow::as_select()).load(conn)?;
        let links: Vec<OutageServiceRow> =
            schema::outage_services::table.select(OutageServiceRow::as_select()).load(conn)?;
        let mut services_of: HashMap<String, Vec<String>> = HashMap::new();
        for link in links {
            services_of.entry(link.outage_id).or_default().push(link.service_code);
        }
        let outages = outage_rows
            .iter()
            .map(|row| {
                let mut services = services_of.remove(&row.id).unwrap_or_default();
                services.sort_by_key(|s| atlas.services().iter().position(|c| c.code == *s));
                outage_view(row, services, &atlas, &orgs)
            })
            .collect();
        Ok(builder.finish(outages, seq, now()))
    })
}

/// One event of a number's public history.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HistoryEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened: `number.published`, `number.retired`...
    pub action: String,
    /// The organization that did it (never the account's personal details).
    pub organization: Option<OrganizationRef>,
    /// Why, when a reason was given (a retirement always has one).
    pub reason: Option<String>,
}

/// A public number (published or retired) as stored; `None` for an unknown id and for
/// submissions (pending, rejected), which are never public. The snapshot holds the
/// published ones; retired numbers are read here.
pub fn public_number(
    conn: &mut DbConnection,
    atlas: &Atlas,
    id: &str,
) -> Result<Option<Number>, StoreError> {
    let row: Option<NumberRow> = schema::numbers::table
        .find(id)
        .filter(schema::numbers::status.eq_any([
            NumberStatus::Published.as_str(),
            NumberStatus::Retired.as_str(),
        ]))
        .select(NumberRow::as_select())
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let orgs = organization_names_of(conn, &row)?;
    Ok(number_view(&row, atlas, &orgs))
}

/// The audit trail of a number, oldest first; `None` if no such number is public.
pub fn number_history(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<Vec<HistoryEvent>>, StoreError> {
    let status: Option<String> = schema::numbers::table
        .find(id)
        .select(schema::numbers::status)
        .first(conn)
        .optional()?;
    let public = status.is_some_and(|s| {
        s == NumberStatus::Published.as_str() || s == NumberStatus::Retired.as_str()
    });
    if !public {
        return Ok(None);
    }
    let rows: Vec<AuditEventRow> = schema::audit_events::table
        .filter(schema::audit_events::entity_kind.eq("number"))
        .filter(schema::audit_events::entity_id.eq(id))
        .order((schema::audit_events::at, schema::audit_events::id))
        .select(AuditEventRow::as_select())
        .load(conn)?;
    let orgs = organization_names(conn)?;
    Ok(Some(
        rows.into_iter()
            .map(|r| HistoryEvent {
                at: from_db(r.at),
                action: r.action,
                organization: r.organization_id.as_deref().map(|o| org_ref(o, &orgs)),
                reason: r.reason,
            })
            .collect(),
    ))
}

/// A correction of a published number: only what is given changes.
#[derive(Debug, Clone, Default)]
pub struct Correction {
    pub phone: Option<PhoneNumber>,
    pub label: Option<String>,
    /// `Some(None)` removes the end of validity.
    pub valid_until: Option<Option<DateTime<Utc>>>,
    pub reason: Option<String>,
    /// For a moderator's correction: where the corrected number was seen.
    pub source_url: Option<String>,
}

/// Corrects a published number in place if it is still at `expected_version`; appends
/// `number.corrected`.
pub fn correct_number(
    conn: &mut DbConnection,
    atlas: &Atlas,
    actor: &Actor,
    id: &str,
    expected_version: i32,
    correction: Correction,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    let mut errors = Vec::new();
    if let Some(label) = &correction.label {
        check_text("label", label, MAX_LABEL_CHARS, &mut errors);
    }
    if let Some(reason) = &correction.reason {
        check_text("reason", reason, MAX_TEXT_CHARS, &mut errors);
    }
    if let Some(Some(until)) = correction.valid_until {
        if until <= now {
            errors.push(FieldError::new("valid_until", "must be in the future"));
        }
    }
    if correction.phone.is_none() && correction.label.is_none() && correction.valid_until.is_none()
    {
        errors.push(FieldError::new(
            "body",
            "give at least one of phone, label, valid_until",
        ));
    }
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    atomically(conn, |conn| {
        let mut row = load_number_row(conn, id)?;
        if row.status != NumberStatus::Published.as_str() {
            return Err(StoreError::Conflict(format!(
                "number {id} is {}, not published",
                row.status
            )));
        }
        if row.version != expected_version {
            return Err(StoreError::Stale {
                current: row.version,
            });
        }
        if let Some(phone) = &correction.phone {
            use schema::numbers::dsl as n;
            let duplicate: i64 = n::numbers
                .filter(n::status.eq(NumberStatus::Published.as_str()))
                .filter(n::service_code.eq(&row.service_code))
                .filter(n::territory_kind.eq(&row.territory_kind))
                .filter(n::territory_code.eq(&row.territory_code))
                .filter(n::phone_e164.eq(phone.e164()))
                .filter(n::id.ne(id))
                .count()
                .get_result(conn)?;
            if duplicate > 0 {
                return Err(StoreError::Conflict(format!(
                    "{} is already in force for this service and territory",
                    phone.display()
                )));
            }
            row.phone_e164 = phone.e164().to_owned();
        }
        if let Some(label) = &correction.label {
            row.label = label.trim().to_owned();
        }
        if let Some(until) = correction.valid_until {
            row.valid_until = until.map(to_db);
        }
        row.updated_at = to_db(now);
        row.version += 1;
        use schema::numbers::dsl as n;
        let updated = diesel::update(
            n::numbers
                .filter(n::id.eq(id))
                .filter(n::version.eq(expected_version)),
        )
        .set((
            n::phone_e164.eq(&row.phone_e164),
            n::label.eq(&row.label),
            n::valid_until.eq(row.valid_until),
            n::updated_at.eq(row.updated_at),
            n::version.eq(row.version),
        ))
        .execute(conn)?;
        if updated != 1 {
            return Err(StoreError::Stale {
                current: row.version,
            });
        }
        let orgs = organization_names_of(conn, &row)?;
        let number = number_view(&row, atlas, &orgs)
            .ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))?;
        append_change(
            conn,
            now,
            change_kind::NUMBER_CORRECTED,
            &number.id,
            &number,
        )?;
        audit(
            conn,
            now,
            Some(actor),
            change_kind::NUMBER_CORRECTED,
            "number",
            &number.id,
            correction.reason.as_deref(),
        )?;
        Ok(number)
    })
}

/// Publishes every row or none, in one transaction. Each row comes with its line in the
/// source file; every failing row is reported with its line. Rows are checked against the
/// numbers in force in a few queries and written in batches, so a large file costs a
/// handful of round trips rather than several per row.
pub fn import_numbers(
    conn: &mut DbConnection,
    atlas: &Atlas,
    rows: Vec<(u64, NewNumber)>,
    now: DateTime<Utc>,
) -> Result<Vec<Number>, StoreError> {
    let mut errors = Vec::new();
    for (line, row) in &rows {
        if row.outage_id.is_some() {
            errors.push(FieldError::new("outage_id", "not taken by imports"));
        }
        errors.extend(check_new_number(atlas, row, now).into_iter().map(|mut f| {
            f.line = Some(*line);
            f
        }));
    }
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    atomically(conn, |conn| {
        let mut org_names = HashMap::new();
        for (_, row) in &rows {
            let NewProvenance::Official { organization_id } = &row.provenance;
            if !org_names.contains_key(organization_id) {
                let org = organization(conn, organization_id)?;
                org_names.insert(org.id, org.name);
            }
        }
        // The phones in force for every service and territory of the file, one query each.
        let mut places: Vec<(&str, &Territory)> = rows
            .iter()
            .map(|(_, r)| (r.service.as_str(), &r.territory))
            .collect();
        places.sort();
        places.dedup();
        let mut taken: HashSet<(String, Territory, String)> = HashSet::new();
        for (service, territory) in &places {
            use schema::numbers::dsl as n;
            let phones: Vec<String> = n::numbers
                .filter(n::status.eq(NumberStatus::Published.as_str()))
                .filter(n::service_code.eq(*service))
                .filter(n::territory_kind.eq(territory.kind().as_str()))
                .filter(n::territory_code.eq(territory.code()))
                .filter(n::valid_until.is_null().or(n::valid_until.gt(to_db(now))))
                .select(n::phone_e164)
                .load(conn)?;
            taken.extend(
                phones
                    .into_iter()
                    .map(|p| (service.to_string(), (*territory).clone(), p)),
            );
        }
        let mut stored = Vec::with_capacity(rows.len());
        let mut views = Vec::with_capacity(rows.len());
        for (line, row) in &rows {
            let key = (
                row.service.as_str().to_owned(),
                row.territory.clone(),
                row.phone.e164().to_owned(),
            );
            if !taken.insert(key) {
                let mut f = FieldError::new(
                    "phone",
                    format!("{} is already in force (or earlier in the file) for this service and territory", row.phone.display()),
                );
                f.line = Some(*line);
                errors.push(f);
                continue;
            }
            let NewProvenance::Official { organization_id } = &row.provenance;
            let valid_from = row.valid_from.map(|t| t.trunc_subsecs(6)).unwrap_or(now);
            let stored_row = official_row(row, organization_id, valid_from, now);
            let view = Number {
                id: stored_row.id.clone(),
                service: stored_row.service_code.clone(),
                territory: atlas.describe_stored(&row.territory),
                phone: Phone::from(&row.phone),
                label: stored_row.label.clone(),
                status: NumberStatus::Published,
                provenance: Provenance::Official {
                    organization: org_ref(organization_id, &org_names),
                },
                outage_id: None,
                valid_from,
                valid_until: row.valid_until,
                published_at: Some(now),
                updated_at: now,
                retired_at: None,
                retire_reason: None,
                version: 1,
                demo: row.demo,
            };
            stored.push(stored_row);
            views.push(view);
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        let payloads: Vec<String> = views
            .iter()
            .map(|v| serde_json::to_string(v).map_err(|e| StoreError::Conflict(e.to_string())))
            .collect::<Result<_, _>>()?;
        announce_changes(conn)?;
        let changes: Vec<NewChange> = views
            .iter()
            .zip(&payloads)
            .map(|(v, p)| NewChange {
                at: to_db(now),
                kind: change_kind::NUMBER_PUBLISHED,
                entity_id: &v.id,
                payload: p,
            })
            .collect();
        let audits: Vec<AuditEventRow> = rows
            .iter()
            .zip(&views)
            .map(|((_, row), v)| {
                let NewProvenance::Official { organization_id } = &row.provenance;
                AuditEventRow {
                    id: new_id(),
                    at: to_db(now),
                    organization_id: Some(organization_id.clone()),
                    account_id: row.by_account.clone(),
                    action: change_kind::NUMBER_PUBLISHED.to_owned(),
                    entity_kind: "number".to_owned(),
                    entity_id: v.id.clone(),
                    reason: Some("import".to_owned()),
                    details: None,
                }
            })
            .collect();
        // Batch inserts are backend-specific in diesel: run them on the concrete connection.
        crate::with_backend!(conn, |c| {
            for chunk in stored.chunks(IMPORT_BATCH) {
                diesel::insert_into(schema::numbers::table)
                    .values(chunk)
                    .execute(c)?;
            }
            for chunk in changes.chunks(IMPORT_BATCH) {
                diesel::insert_into(schema::changes::table)
                    .values(chunk)
                    .execute(c)?;
            }
            for chunk in audits.chunks(IMPORT_BATCH) {
                diesel::insert_into(schema::audit_events::table)
                    .values(chunk)
                    .execute(c)?;
            }
        });
        for (service, territory) in &places {
            let sample = rows
                .iter()
                .find(|(_, r)| r.service.as_str() == *service && r.territory == **territory);
            if let Some((_, row)) = sample {
                let NewProvenance::Official { organization_id } = &row.provenance;
                let actor = Actor {
                    organization_id: Some(organization_id.clone()),
                    account_id: row.by_account.clone(),
                };
                let name = org_names.get(organization_id).cloned().unwrap_or_default();
                retire_relayed(conn, atlas, &actor, row, &name, "import", now)?;
            }
        }
        Ok(views)
    })
}

/// Rows per INSERT of an import: under both backends' limits on bound parameters.
const IMPORT_BATCH: usize = 500;

/// Changes after `seq` (exclusive), oldest first, at most `limit`.
pub fn changes_after(conn: &mut DbConnection, seq: i64, limit: i64) -> QueryResult<Vec<ChangeRow>> {
    crate::with_backend!(conn, |c| schema::changes::table
        .filter(schema::changes::seq.gt(seq))
        .order(schema::changes::seq)
        .limit(limit)
        .select(ChangeRow::as_select())
        .load(c))
}

/// Changes before `seq` (exclusive), newest first, at most `limit`.
pub fn changes_before(
    conn: &mut DbConnection,
    seq: i64,
    limit: i64,
) -> QueryResult<Vec<ChangeRow>> {
    schema::changes::table
        .filter(schema::changes::seq.lt(seq))
        .order(schema::changes::seq.desc())
        .limit(limit)
        .select(ChangeRow::as_select())
        .load(conn)
}

/// One change of the log.
pub fn change(conn: &mut DbConnection, seq: i64) -> QueryResult<Option<ChangeRow>> {
    schema::changes::table
        .find(seq)
        .select(ChangeRow::as_select())
        .first(conn)
        .optional()
}

/// The changes of one entity before `seq`, oldest first.
pub fn entity_changes_before(
    conn: &mut DbConnection,
    entity_id: &str,
    seq: i64,
) -> QueryResult<Vec<ChangeRow>> {
    schema::changes::table
        .filter(schema::changes::entity_id.eq(entity_id))
        .filter(schema::changes::seq.lt(seq))
        .order(schema::changes::seq)
        .select(ChangeRow::as_select())
        .load(conn)
}

/// Changes of the given kinds before `seq` (exclusive), newest first, at most `limit`.
pub fn changes_of_kinds_before(
    conn: &mut DbConnection,
    kinds: &[&str],
    seq: i64,
    limit: i64,
) -> QueryResult<Vec<ChangeRow>> {
    schema::changes::table
        .filter(schema::changes::seq.lt(seq))
        .filter(
            schema::changes::kind.eq_any(kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>()),
        )
        .order(schema::changes::seq.desc())
        .limit(limit)
        .select(ChangeRow::as_select())
        .load(conn)
}
