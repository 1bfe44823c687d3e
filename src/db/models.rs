//! Rows as stored. Conversions to the public types live with those types.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = departements)]
#[diesel(treat_none_as_default_value = false)]
pub struct DepartementRow {
    pub code: String,
    pub name: String,
    pub region_code: String,
    pub region_name: String,
    pub zone: Option<String>,
    pub kind: String,
    pub chef_lieu: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = communes)]
#[diesel(treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct CommuneRow {
    pub insee: String,
    pub name: String,
    pub kind: String,
    pub parent_insee: Option<String>,
    pub departement_code: String,
    pub population: Option<i64>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Queryable,
    Selectable,
    Insertable,
    serde::Deserialize,
)]
#[diesel(table_name = postcodes)]
#[serde(rename_all = "snake_case")]
pub struct PostcodeRow {
    pub postcode: String,
    #[serde(rename = "insee_code")]
    pub insee: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = services)]
pub struct ServiceRow {
    pub code: String,
    pub name: String,
    pub description: String,
    pub position: i32,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub is_demo: i32,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outages)]
pub struct OutageRow {
    pub id: String,
    pub territory_kind: String,
    pub territory_code: String,
    pub description: String,
    pub status: String,
    pub declared_at: NaiveDateTime,
    pub resolved_at: Option<NaiveDateTime>,
    pub declared_by: String,
    pub is_demo: i32,
    pub version: i32,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outage_services)]
pub struct OutageServiceRow {
    pub outage_id: String,
    pub service_code: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = numbers)]
pub struct NumberRow {
    pub id: String,
    pub service_code: String,
    pub territory_kind: String,
    pub territory_code: String,
    pub phone_e164: String,
    pub label: String,
    pub status: String,
    pub provenance_kind: String,
    pub organization_id: Option<String>,
    pub source_url: Option<String>,
    pub verified_by: Option<String>,
    pub outage_id: Option<String>,
    pub valid_from: NaiveDateTime,
    pub valid_until: Option<NaiveDateTime>,
    pub published_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
    pub retire_reason: Option<String>,
    pub is_demo: i32,
    pub version: i32,
    pub submission_kind: Option<String>,
    pub submitted_by: Option<String>,
    pub supersedes: Option<String>,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<NaiveDateTime>,
    pub decision_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = changes)]
pub struct ChangeRow {
    pub seq: i64,
    pub at: NaiveDateTime,
    pub kind: String,
    pub entity_id: String,
    pub payload: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = changes)]
pub struct NewChange<'a> {
    pub at: NaiveDateTime,
    pub kind: &'a str,
    pub entity_id: &'a str,
    pub payload: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEventRow {
    pub id: String,
    pub at: NaiveDateTime,
    pub organization_id: Option<String>,
    pub account_id: Option<String>,
    pub action: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub reason: Option<String>,
    pub details: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
pub struct AccountRow {
    pub id: String,
    pub organization_id: Option<String>,
    pub role: String,
    pub name: String,
    pub enabled: i32,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tokens)]
pub struct TokenRow {
    pub jti: String,
    pub account_id: String,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyRow {
    pub account_id: String,
    pub idempotency_key: String,
    pub request_digest: String,
    pub status: i32,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub body: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhooks)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub enabled: i32,
    pub delivered_seq: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub seq: i64,
    pub attempt: i32,
    pub status: Option<i32>,
    pub error: Option<String>,
    pub at: NaiveDateTime,
}
