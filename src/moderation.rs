//! Moderation: numbers seen elsewhere (moderators' submissions, citizens' tips) and
//! moderators' corrections wait as `pending` until a second person decides. Only checked
//! numbers reach the public, with their provenance.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::atlas::Atlas;
use crate::db::models::NumberRow;
use crate::db::{schema, DbConnection};
use crate::domain::{PhoneNumber, ServiceCode, Territory};
use crate::error::FieldError;
use crate::model::{Number, NumberStatus};
use crate::store::{
    self, audit, change_kind, check_text, new_id, number_view, organization_names, to_db, Actor,
    Correction, StoreError, MAX_LABEL_CHARS, MAX_TEXT_CHARS,
};

/// How a pending number came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionKind {
    /// A moderator saw it published elsewhere.
    Submission,
    /// A citizen reported it.
    Tip,
    /// A moderator's correction of a published number.
    Correction,
}

impl SubmissionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionKind::Submission => "submission",
            SubmissionKind::Tip => "tip",
            SubmissionKind::Correction => "correction",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Submission, Self::Tip, Self::Correction]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The longest `source_url` and comment accepted.
pub const MAX_URL_CHARS: usize = 2000;

/// A number seen elsewhere, to review.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub kind: SubmissionKind,
    pub service: ServiceCode,
    pub territory: Territory,
    pub phone: PhoneNumber,
    pub label: String,
    pub source_url: String,
    pub comment: Option<String>,
    pub valid_until: Option<DateTime<Utc>>,
    /// The submitting account and its organization; none for a citizen's tip.
    pub submitted_by: Option<Actor>,
}

/// Checks a `source_url`: an absolute http(s) URL a reviewer can open.
pub fn check_source_url(url: &str, errors: &mut Vec<FieldError>) {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let has_host = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .is_some_and(|rest| {
            rest.split(['/', '?', '#'])
                .next()
                .is_some_and(|h| !h.is_empty())
        });
    if !has_host {
        errors.push(FieldError::new(
            "source_url",
            "the http(s) address of the post where the number was seen",
        ));
    } else if url.chars().count() > MAX_URL_CHARS
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        errors.push(FieldError::new(
            "source_url",
            format!("a URL of at most {MAX_URL_CHARS} characters, without spaces"),
        ));
    }
}

fn pending_count(
    conn: &mut DbConnection,
    service: &str,
    t: &Territory,
    e164: &str,
    except: Option<&str>,
) -> QueryResult<i64> {
    use schema::numbers::dsl as n;
    let mut q = n::numbers
        .filter(n::status.eq_any([
            NumberStatus::Published.as_str(),
            NumberStatus::Pending.as_str(),
        ]))
        .filter(n::service_code.eq(service))
        .filter(n::territory_kind.eq(t.kind().as_str()))
        .filter(n::territory_code.eq(t.code()))
        .filter(n::phone_e164.eq(e164))
        .into_boxed();
    if let Some(except) = except {
        q = q.filter(n::id.ne(except.to_owned()));
    }
    q.count().get_result(conn)
}

/// A pending number's public-safe change payload: no phone, nothing unchecked.
fn pending_payload(id: &str, kind: SubmissionKind) -> serde_json::Value {
    serde_json::json!({"id": id, "status": "pending", "submission": kind.as_str()})
}

/// Stores a submission or a tip as `pending`.
pub fn submit(
    conn: &mut DbConnection,
    atlas: &Atlas,
    new: NewSubmission,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    let mut errors = Vec::new();
    if atlas.service(new.service.as_str()).is_none() {
        errors.push(FieldError::new(
            "service",
            format!("unknown service {}; see /v1/services", new.service),
        ));
    }
    if atlas.describe(&new.territory).is_none() {
        errors.push(FieldError::new("territory", "not in the reference data"));
    }
    check_text("label", &new.label, MAX_LABEL_CHARS, &mut errors);
    check_source_url(&new.source_url, &mut errors);
    if let Some(comment) = &new.comment {
        if comment.chars().count() > MAX_TEXT_CHARS {
            errors.push(FieldError::new(
                "comment",
                format!("at most {MAX_TEXT_CHARS} characters"),
            ));
        }
    }
    if new.valid_until.is_some_and(|u| u <= now) {
        errors.push(FieldError::new("valid_until", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(StoreError::Invalid(errors));
    }
    conn.transaction(|conn| {
        if pending_count(
            conn,
            new.service.as_str(),
            &new.territory,
            new.phone.e164(),
            None,
        )? > 0
        {
            return Err(StoreError::Conflict(format!(
                "{} is already published or waiting for review for this service and territory",
                new.phone.display()
            )));
        }
        let row = pending_row(&new, None, now);
        diesel::insert_into(schema::numbers::table)
            .values(&row)
            .execute(conn)?;
        store::append_change(
            conn,
            now,
            change_kind::NUMBER_SUBMITTED,
            &row.id,
            &pending_payload(&row.id, new.kind),
        )?;
        audit(
            conn,
            now,
            new.submitted_by.as_ref(),
            change_kind::NUMBER_SUBMITTED,
            "number",
            &row.id,
            Some(new.kind.as_str()),
        )?;
        let orgs = organization_names(conn)?;
        number_view(&row, atlas, &orgs)
            .ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))
    })
}

fn pending_row(new: &NewSubmission, supersedes: Option<&str>, now: DateTime<Utc>) -> NumberRow {
    NumberRow {
        id: new_id(),
        service_code: new.service.as_str().to_owned(),
        territory_kind: new.territory.kind().as_str().to_owned(),
        territory_code: new.territory.code().to_owned(),
        phone_e164: new.phone.e164().to_owned(),
        label: new.label.trim().to_owned(),
        status: NumberStatus::Pending.as_str().to_owned(),
        provenance_kind: "relayed".to_owned(),
        organization_id: new
            .submitted_by
            .as_ref()
            .and_then(|a| a.organization_id.clone()),
        source_url: Some(new.source_url.trim().to_owned()),
        verified_by: None,
        outage_id: None,
        valid_from: to_db(now),
        valid_until: new.valid_until.map(to_db),
        published_at: None,
        updated_at: to_db(now),
        retired_at: None,
        retire_reason: None,
        is_demo: 0,
        version: 1,
        submission_kind: Some(new.kind.as_str().to_owned()),
        submitted_by: new.submitted_by.as_ref().and_then(|a| a.account_id.clone()),
        supersedes: supersedes.map(str::to_owned),
        comment: new
            .comment
            .as_ref()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty()),
        decided_by: None,
        decided_at: None,
        decision_reason: None,
    }
}

/// A moderator's correction of a published number: a pending copy with the changes, that
/// supersedes the number when approved. Until then the published number stays as it is.
pub fn submit_correction(
    conn: &mut DbConnection,
    atlas: &Atlas,
    by: &Actor,
    id: &str,
    expected_version: i32,
    correction: Correction,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    let mut errors = Vec::new();
    let source_url = correction.source_url.clone().unwrap_or_default();
    check_source_url(&source_url, &mut errors);
    if let Some(label) = &correction.label {
        check_text("label", label, MAX_LABEL_CHARS, &mut errors);
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
    conn.transaction(|conn| {
        let original = store::load_number_row(conn, id)?;
        if original.status != NumberStatus::Published.as_str() {
            return Err(StoreError::Conflict(format!(
                "number {id} is {}, not published",
                original.status
            )));
        }
        if original.version != expected_version {
            return Err(StoreError::Stale {
                current: original.version,
            });
        }
        let service = ServiceCode::parse(&original.service_code)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let territory = Territory::parse(&original.territory_kind, &original.territory_code)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let phone = match correction.phone {
            Some(p) => p,
            None => PhoneNumber::parse(&original.phone_e164)
                .map_err(|e| StoreError::Conflict(e.to_string()))?,
        };
        let new = NewSubmission {
            kind: SubmissionKind::Correction,
            service,
            territory,
            phone,
            label: correction.label.unwrap_or_else(|| original.label.clone()),
            source_url,
            comment: correction.reason,
            valid_until: correction
                .valid_until
                .unwrap_or(original.valid_until.map(store::from_db)),
            submitted_by: Some(by.clone()),
        };
        let row = pending_row(&new, Some(id), now);
        diesel::insert_into(schema::numbers::table)
            .values(&row)
            .execute(conn)?;
        store::append_change(
            conn,
            now,
            change_kind::NUMBER_SUBMITTED,
            &row.id,
            &pending_payload(&row.id, new.kind),
        )?;
        audit(
            conn,
            now,
            Some(by),
            change_kind::NUMBER_SUBMITTED,
            "number",
            &row.id,
            Some("correction"),
        )?;
        let orgs = organization_names(conn)?;
        number_view(&row, atlas, &orgs)
            .ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))
    })
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve { reason: Option<String> },
    Reject { reason: String },
}

/// Who decides: the account, its organization (which vouches for an approved number).
#[derive(Debug, Clone)]
pub struct Reviewer {
    pub account_id: String,
    pub organization_id: Option<String>,
}

/// Decides on a pending number. A reviewer never decides on its own submission; an
/// approved number is published with `provenance.kind = relayed` and `verified_by` the
/// reviewer's organization; an approved correction supersedes the number it corrects.
pub fn decide(
    conn: &mut DbConnection,
    atlas: &Atlas,
    reviewer: &Reviewer,
    id: &str,
    decision: Decision,
    now: DateTime<Utc>,
) -> Result<Number, StoreError> {
    if let Decision::Reject { reason } = &decision {
        let mut errors = Vec::new();
        check_text("reason", reason, MAX_TEXT_CHARS, &mut errors);
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
    }
    let actor = Actor {
        organization_id: reviewer.organization_id.clone(),
        account_id: Some(reviewer.account_id.clone()),
    };
    conn.transaction(|conn| {
        let mut row = store::load_number_row(conn, id)?;
        if row.submission_kind.is_none() {
            return Err(StoreError::NotFound { what: "submission", id: id.to_owned() });
        }
        if row.status != NumberStatus::Pending.as_str() {
            return Err(StoreError::Conflict(format!("submission {id} was already decided: it is {}", row.status)));
        }
        if row.submitted_by.as_deref() == Some(reviewer.account_id.as_str()) {
            return Err(StoreError::Forbidden("four eyes: nobody decides on their own submission".to_owned()));
        }
        row.decided_by = Some(reviewer.account_id.clone());
        row.decided_at = Some(to_db(now));
        row.updated_at = to_db(now);
        row.version += 1;
        match decision {
            Decision::Reject { reason } => {
                row.status = NumberStatus::Rejected.as_str().to_owned();
                row.decision_reason = Some(reason.trim().to_owned());
                save_decision(conn, &row)?;
                store::append_change(conn, now, change_kind::NUMBER_REJECTED, id, &serde_json::json!({"id": id, "status": "rejected"}))?;
                audit(conn, now, Some(&actor), change_kind::NUMBER_REJECTED, "number", id, Some(reason.trim()))?;
            }
            Decision::Approve { reason } => {
                let Some(verifier) = reviewer.organization_id.clone() else {
                    return Err(StoreError::Forbidden("an account without organization cannot vouch for a number".to_owned()));
                };
                let official_in_force: i64 = {
                    use schema::numbers::dsl as n;
                    n::numbers
                        .filter(n::status.eq(NumberStatus::Published.as_str()))
                        .filter(n::provenance_kind.eq("official"))
                        .filter(n::service_code.eq(&row.service_code))
                        .filter(n::territory_kind.eq(&row.territory_kind))
                        .filter(n::territory_code.eq(&row.territory_code))
                        .count()
                        .get_result(conn)?
                };
                if official_in_force > 0 && row.supersedes.is_none() {
                    return Err(StoreError::Conflict(
                        "an official number is in force for this service and territory: the official word wins".to_owned(),
                    ));
                }
                if let Some(original) = row.supersedes.clone() {
                    let old = store::load_number_row(conn, &original)?;
                    if old.status != NumberStatus::Published.as_str() {
                        return Err(StoreError::Conflict(format!("the corrected number {original} is no longer published")));
                    }
                    // A relayed correction never replaces an official number: the authority
                    // in scope corrects its own numbers.
                    if old.provenance_kind == "official" {
                        return Err(StoreError::Conflict(format!(
                            "the corrected number {original} is official: the official word wins; its authority corrects it"
                        )));
                    }
                    store::retire_row_as(
                        conn,
                        atlas,
                        &actor,
                        old,
                        &format!("Remplacé par une correction vérifiée ({id})."),
                        change_kind::NUMBER_SUPERSEDED,
                        now,
                    )?;
                }
                let territory = Territory::parse(&row.territory_kind, &row.territory_code)
                    .map_err(|e| StoreError::Conflict(e.to_string()))?;
                if pending_count(conn, &row.service_code, &territory, &row.phone_e164, Some(id))? > 0 && row.supersedes.is_none() {
                    return Err(StoreError::Conflict("the same number is already published here".to_owned()));
                }
                row.status = NumberStatus::Published.as_str().to_owned();
                row.verified_by = Some(verifier);
                row.published_at = Some(to_db(now));
                if row.valid_from < to_db(now) {
                    row.valid_from = to_db(now);
                }
                row.decision_reason = reason.as_ref().map(|r| r.trim().to_owned());
                save_decision(conn, &row)?;
                let orgs = organization_names(conn)?;
                let number = number_view(&row, atlas, &orgs).ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))?;
                store::append_change(conn, now, change_kind::NUMBER_PUBLISHED, id, &number)?;
                audit(conn, now, Some(&actor), change_kind::NUMBER_APPROVED, "number", id, reason.as_deref())?;
            }
        }
        let orgs = organization_names(conn)?;
        number_view(&row, atlas, &orgs).ok_or_else(|| StoreError::invalid("phone", "cannot be read back"))
    })
}

fn save_decision(conn: &mut DbConnection, row: &NumberRow) -> Result<(), StoreError> {
    use schema::numbers::dsl as n;
    let updated = diesel::update(
        n::numbers
            .filter(n::id.eq(&row.id))
            .filter(n::status.eq(NumberStatus::Pending.as_str())),
    )
    .set((
        n::status.eq(&row.status),
        n::verified_by.eq(&row.verified_by),
        n::published_at.eq(row.published_at),
        n::valid_from.eq(row.valid_from),
        n::updated_at.eq(row.updated_at),
        n::version.eq(row.version),
        n::decided_by.eq(&row.decided_by),
        n::decided_at.eq(row.decided_at),
        n::decision_reason.eq(&row.decision_reason),
    ))
    .execute(conn)?;
    if updated == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "submission {} was decided meanwhile",
            row.id
        )))
    }
}

/// A pending item of the moderation queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueItem {
    /// The number as it would be published (status `pending`).
    pub number: Number,
    /// How it came in.
    pub kind: SubmissionKind,
    /// When it came in.
    pub submitted_at: DateTime<Utc>,
    /// Whether the caller submitted it (then it cannot decide on it).
    pub own: bool,
    /// What the submitter or tipper said.
    pub comment: Option<String>,
    /// For a correction, the number it would replace.
    pub supersedes: Option<String>,
    /// The numbers already in force for the same service and territory.
    pub in_force: Vec<Number>,
}

/// Pending items, oldest first, after `after` (an id), at most `limit`.
pub fn pending(
    conn: &mut DbConnection,
    atlas: &Atlas,
    after: Option<&str>,
    service: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<(NumberRow, Number)>> {
    use schema::numbers::dsl as n;
    let mut q = n::numbers
        .filter(n::status.eq(NumberStatus::Pending.as_str()))
        .select(NumberRow::as_select())
        .order(n::id)
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(n::id.gt(after.to_owned()));
    }
    if let Some(service) = service {
        q = q.filter(n::service_code.eq(service.to_owned()));
    }
    let rows: Vec<NumberRow> = q.limit(limit).load(conn)?;
    let orgs: HashMap<String, String> = organization_names(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let view = number_view(&r, atlas, &orgs)?;
            Some((r, view))
        })
        .collect())
}

impl QueueItem {
    pub fn new(
        row: &NumberRow,
        number: Number,
        caller_account: &str,
        in_force: Vec<Number>,
    ) -> QueueItem {
        QueueItem {
            kind: row
                .submission_kind
                .as_deref()
                .and_then(SubmissionKind::parse)
                .unwrap_or(SubmissionKind::Submission),
            submitted_at: store::from_db(row.updated_at.min(row.valid_from)),
            own: row.submitted_by.as_deref() == Some(caller_account),
            comment: row.comment.clone(),
            supersedes: row.supersedes.clone(),
            number,
            in_force,
        }
    }
}
