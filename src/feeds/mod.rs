//! Feeds for maps and bots: views of the directory snapshot or of the ordered changes log.

pub mod atom;
pub mod cap;
pub mod events;
pub mod geojson;
pub mod webhooks;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::models::ChangeRow;
use crate::store::change_kind;

/// The change kinds the public sees. Submissions and rejections are moderation's business.
pub const PUBLIC_KINDS: &[&str] = &[
    change_kind::NUMBER_PUBLISHED,
    change_kind::NUMBER_CORRECTED,
    change_kind::NUMBER_RETIRED,
    change_kind::NUMBER_SUPERSEDED,
    change_kind::OUTAGE_DECLARED,
    change_kind::OUTAGE_RESOLVED,
];

/// One public change of the changes log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeEvent {
    /// Position in the changes log: increasing, the SSE `id`.
    pub seq: i64,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// `number.published`, `number.corrected`, `number.retired`, `number.superseded`,
    /// `outage.declared` or `outage.resolved`.
    pub kind: String,
    /// The number or outage after the change.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl ChangeEvent {
    /// The public view of a logged change, or `None` for a change the public does not see.
    pub fn public(row: ChangeRow) -> Option<ChangeEvent> {
        if !PUBLIC_KINDS.contains(&row.kind.as_str()) {
            return None;
        }
        Some(ChangeEvent {
            seq: row.seq,
            at: row.at.and_utc(),
            kind: row.kind,
            data: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
        })
    }
}
