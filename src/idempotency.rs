//! `Idempotency-Key`: a retried write with the same key and the same request gets the
//! first answer and writes nothing twice; the same key with another request is refused.
//! The answer is stored in the same transaction as the write it answers.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::models::IdempotencyRow;
use crate::db::{schema, DbConnection};
use crate::store::{to_db, StoreError};

/// A write's answer, as sent and as kept for retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
}

/// Identifies a request: method, path and body.
pub fn request_digest(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(h.finalize())
}

/// Whether a header value can be an idempotency key: 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Runs `op` once per (account, key): returns its answer and whether it was replayed.
pub fn run_once(
    conn: &mut DbConnection,
    account_id: &str,
    key: &str,
    digest: &str,
    now: DateTime<Utc>,
    op: impl FnOnce(&mut DbConnection) -> Result<StoredAnswer, StoreError>,
) -> Result<(StoredAnswer, bool), StoreError> {
    conn.transaction(|conn| {
        let previous: Option<IdempotencyRow> = schema::idempotency_keys::table
            .find((account_id, key))
            .select(IdempotencyRow::as_select())
            .first(conn)
            .optional()?;
        if let Some(previous) = previous {
            if previous.request_digest != digest {
                return Err(StoreError::invalid(
                    "Idempotency-Key",
                    "this key was already used for another request; use a new key",
                ));
            }
            let answer = StoredAnswer {
                status: u16::try_from(previous.status).unwrap_or(200),
                body: previous.body,
                location: previous.location,
                etag: previous.etag,
            };
            return Ok((answer, true));
        }
        let answer = op(conn)?;
        diesel::insert_into(schema::idempotency_keys::table)
            .values(IdempotencyRow {
                account_id: account_id.to_owned(),
                idempotency_key: key.to_owned(),
                request_digest: digest.to_owned(),
                status: i32::from(answer.status),
                location: answer.location.clone(),
                etag: answer.etag.clone(),
                body: answer.body.clone(),
                created_at: to_db(now),
            })
            .execute(conn)?;
        Ok((answer, false))
    })
}
