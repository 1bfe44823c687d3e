//! `/metrics`: the Prometheus text exposition of requests, the snapshot, storage and the
//! webhook backlog.

use std::fmt::Write as _;
use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use diesel::prelude::*;

use crate::db::{schema, DbConnection};
use crate::ratelimit::PublicLimiter;
use crate::state::AppState;
use crate::store;
use crate::telemetry::Metrics;

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for a database connection before reporting storage down.
const STORAGE_WAIT: Duration = Duration::from_secs(2);

/// What storage says at scrape time.
struct StorageFigures {
    last_seq: i64,
    webhooks: i64,
    webhook_backlog: i64,
}

fn storage_figures(conn: &mut DbConnection) -> QueryResult<StorageFigures> {
    let last_seq = store::last_change_seq(conn)?;
    let cursors: Vec<i64> = schema::webhooks::table
        .filter(schema::webhooks::enabled.eq(1))
        .select(schema::webhooks::delivered_seq)
        .load(conn)?;
    Ok(StorageFigures {
        last_seq,
        webhooks: cursors.len() as i64,
        webhook_backlog: cursors.iter().map(|c| (last_seq - c).max(0)).sum(),
    })
}

/// Metrics
///
/// Prometheus text format (0.0.4): `relai_http_requests_total` by route pattern, method
/// and status; `relai_http_request_duration_seconds` histograms by route pattern and
/// method; `relai_snapshot_seq` and `relai_snapshot_age_seconds` (the in-memory directory);
/// `relai_storage_up`; `relai_write_batches_total` and `relai_batched_writes_total` (the
/// transactions that committed requests' writes, and the writes they held: writes that
/// arrive together share one); when storage is up, `relai_changes_lag` (changes in storage not yet
/// in this instance's snapshot) and `relai_webhook_backlog` (changes the enabled webhooks'
/// cursors are behind, summed); with the public rate limit on,
/// `relai_public_rate_limited_total` and `relai_public_rate_limit_clients`. Unauthenticated,
/// like the probes.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4", body = String))
)]
#[get("/metrics")]
pub async fn metrics(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
    limiter: Option<web::Data<PublicLimiter>>,
) -> HttpResponse {
    let pool = state.pool().clone();
    let figures = web::block(move || {
        let mut conn = pool.get_timeout(STORAGE_WAIT).ok()?;
        storage_figures(&mut conn).ok()
    })
    .await
    .ok()
    .flatten();
    let mut out = String::with_capacity(16 * 1024);
    metrics.render(&mut out);
    let directory = state.directory();
    let age = (store::now() - directory.built_at())
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    let _ = write!(
        out,
        "# HELP relai_snapshot_seq The last changes-log sequence in this instance's directory snapshot.\n\
         # TYPE relai_snapshot_seq gauge\n\
         relai_snapshot_seq {}\n\
         # HELP relai_snapshot_age_seconds Time since the directory snapshot was built.\n\
         # TYPE relai_snapshot_age_seconds gauge\n\
         relai_snapshot_age_seconds {age:.3}\n\
         # HELP relai_storage_up Whether the database answered this scrape (1) or not (0).\n\
         # TYPE relai_storage_up gauge\n\
         relai_storage_up {}\n\
         # HELP relai_write_batches_total Transactions that committed requests' writes (group commit).\n\
         # TYPE relai_write_batches_total counter\n\
         relai_write_batches_total {}\n\
         # HELP relai_batched_writes_total Requests' writes committed in those transactions.\n\
         # TYPE relai_batched_writes_total counter\n\
         relai_batched_writes_total {}\n\
         # HELP relai_delayed_write_batches_total Batches that waited for overlapping writes to join them (commit delay).\n\
         # TYPE relai_delayed_write_batches_total counter\n\
         relai_delayed_write_batches_total {}\n",
        directory.seq(),
        u8::from(figures.is_some()),
        state.write_batches().0,
        state.write_batches().1,
        state.delayed_batches(),
    );
    if let Some(f) = &figures {
        let _ = write!(
            out,
            "# HELP relai_changes_lag Changes in storage that this instance's snapshot does not include yet.\n\
             # TYPE relai_changes_lag gauge\n\
             relai_changes_lag {}\n\
             # HELP relai_webhooks_enabled Enabled webhooks.\n\
             # TYPE relai_webhooks_enabled gauge\n\
             relai_webhooks_enabled {}\n\
             # HELP relai_webhook_backlog Changes not yet delivered, summed over the enabled webhooks.\n\
             # TYPE relai_webhook_backlog gauge\n\
             relai_webhook_backlog {}\n",
            (f.last_seq - directory.seq()).max(0),
            f.webhooks,
            f.webhook_backlog,
        );
    }
    if let Some(limiter) = limiter {
        let _ = write!(
            out,
            "# HELP relai_public_rate_limited_total Public reads refused with 429 by the per-address limit.\n\
             # TYPE relai_public_rate_limited_total counter\n\
             relai_public_rate_limited_total {}\n\
             # HELP relai_public_rate_limit_clients Client addresses counted in the current window.\n\
             # TYPE relai_public_rate_limit_clients gauge\n\
             relai_public_rate_limit_clients {}\n",
            limiter.refused(),
            limiter.tracked(),
        );
    }
    let _ = write!(
        out,
        "# HELP relai_build_info The running version.\n\
         # TYPE relai_build_info gauge\n\
         relai_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .content_type(CONTENT_TYPE)
        .body(out)
}
