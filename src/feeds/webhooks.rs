//! Webhooks: each public change is POSTed as JSON to every registered URL, signed with
//! HMAC-SHA256 over the body, retried with exponential backoff. Every subscriber has its
//! own delivery task and cursor, so a slow or dead one never delays a write or another
//! subscriber. Target addresses must fall in the allowed networks (SSRF).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use super::ChangeEvent;
use crate::db::models::{DeliveryRow, WebhookRow};
use crate::db::{schema, DbConnection};
use crate::error::FieldError;
use crate::state::AppState;
use crate::store::{self, audit, from_db, new_id, to_db, Actor, StoreError};

/// The signature header: `sha256=<hex HMAC-SHA256 of the raw body under the secret>`.
pub const SIGNATURE_HEADER: &str = "X-Relai-Signature";
/// The event id header: the change's sequence in the changes log.
pub const EVENT_ID_HEADER: &str = "X-Relai-Event-Id";
/// How long a subscriber may take to answer one delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(s: &str) -> Option<Network> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses `RELAI_WEBHOOK_ALLOWED_NETWORKS`: comma-separated CIDR networks.
pub fn parse_networks(s: &str) -> Result<Vec<Network>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| Network::parse(p).ok_or_else(|| format!("not a CIDR network: {p:?}")))
        .collect()
}

/// Whether an address is publicly routable: not loopback, private, link-local, shared
/// (CGNAT), documentation, multicast, unspecified or otherwise special.
pub fn is_public(ip: IpAddr) -> bool {
    let special: &[&str] = &[
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ];
    !special
        .iter()
        .filter_map(|n| Network::parse(n))
        .any(|n| n.contains(ip))
}

/// Who may be called: the configured networks, or else public addresses only.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allowed: Vec<Network>,
}

impl TargetPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allowed.is_empty() {
            is_public(ip)
        } else {
            self.allowed.iter().any(|n| n.contains(ip))
        }
    }

    /// Checks a URL and every address its host resolves to.
    pub async fn check(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw.trim()).map_err(|_| "not a URL".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("only http and https URLs".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("no credentials in the URL; sign with the secret".to_owned());
        }
        let host = url
            .host_str()
            .ok_or("the URL has no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|_| format!("cannot resolve {host}"))?
                .map(|a| a.ip())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        if let Some(bad) = addrs.iter().find(|ip| !self.allows(**ip)) {
            return Err(format!(
                "{host} resolves to {bad}, outside the allowed networks"
            ));
        }
        Ok(url)
    }
}

/// A registered webhook (its secret is never shown again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Opaque identifier.
    pub id: String,
    /// Where changes are POSTed.
    pub url: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The last change delivered (sequence in the changes log).
    pub delivered_seq: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl From<WebhookRow> for Webhook {
    fn from(r: WebhookRow) -> Self {
        Webhook {
            id: r.id,
            url: r.url,
            enabled: r.enabled != 0,
            delivered_seq: r.delivered_seq,
            created_at: from_db(r.created_at),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// The change delivered.
    pub seq: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// The subscriber's HTTP status; none when it did not answer.
    pub status: Option<i32>,
    /// What went wrong, when it did.
    pub error: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The shortest secret accepted.
pub const MIN_SECRET: usize = 16;

/// Registers a webhook (the URL already checked); it receives the changes from now on.
pub fn register(
    conn: &mut DbConnection,
    by: &Actor,
    url: &url::Url,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Webhook, StoreError> {
    if secret.chars().count() < MIN_SECRET || secret.len() > 256 {
        return Err(StoreError::Invalid(vec![FieldError::new(
            "secret",
            format!("{MIN_SECRET} to 256 characters"),
        )]));
    }
    conn.transaction(|conn| {
        let row = WebhookRow {
            id: new_id(),
            url: url.to_string(),
            secret: secret.to_owned(),
            enabled: 1,
            delivered_seq: store::last_change_seq(conn)?,
            created_at: to_db(now),
        };
        diesel::insert_into(schema::webhooks::table)
            .values(&row)
            .execute(conn)?;
        audit(
            conn,
            now,
            Some(by),
            "webhook.registered",
            "webhook",
            &row.id,
            Some(&row.url),
        )?;
        Ok(Webhook::from(row))
    })
}

pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<Webhook>> {
    let rows: Vec<WebhookRow> = schema::webhooks::table
        .order(schema::webhooks::id)
        .select(WebhookRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(Webhook::from).collect())
}

/// The latest deliveries of a webhook, newest first; `None` if there is no such webhook.
pub fn deliveries(
    conn: &mut DbConnection,
    webhook_id: &str,
    limit: i64,
) -> QueryResult<Option<Vec<Delivery>>> {
    let exists: i64 = schema::webhooks::table
        .find(webhook_id)
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Ok(None);
    }
    let rows: Vec<DeliveryRow> = schema::webhook_deliveries::table
        .filter(schema::webhook_deliveries::webhook_id.eq(webhook_id))
        .order(schema::webhook_deliveries::id.desc())
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(conn)?;
    Ok(Some(
        rows.into_iter()
            .map(|r| Delivery {
                seq: r.seq,
                attempt: r.attempt,
                status: r.status,
                error: r.error,
                at: from_db(r.at),
            })
            .collect(),
    ))
}

/// `sha256=<hex>` of the body under the secret.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before attempt `attempt + 1`: doubling from `base`, at most [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// How long a delivery lease lasts without renewal: an instance that dies hands its
/// webhooks to another one after this.
const LEASE: Duration = Duration::from_secs(30);
/// How often every instance looks for webhooks registered elsewhere.
const DISCOVERY: Duration = Duration::from_secs(5);

/// Starts a delivery task for every enabled webhook, now and whenever one is registered
/// (by any instance). Every instance runs a task per webhook; the one holding the
/// webhook's lease delivers, so each change reaches a subscriber once across the cluster.
pub fn start_all(state: Arc<AppState>, policy: Arc<TargetPolicy>, base: Duration) {
    let weak = Arc::downgrade(&state);
    drop(state);
    tokio::spawn(async move {
        loop {
            let Some(state) = weak.upgrade() else {
                return;
            };
            let hooks = blocking(&state, |c| {
                schema::webhooks::table
                    .filter(schema::webhooks::enabled.eq(1))
                    .select(schema::webhooks::id)
                    .load::<String>(c)
            })
            .await
            .unwrap_or_default();
            for id in hooks {
                start(state.clone(), policy.clone(), base, id);
            }
            drop(state);
            tokio::time::sleep(DISCOVERY).await;
        }
    });
}

/// Starts the delivery task of one webhook, unless this process runs it already.
pub fn start(state: Arc<AppState>, policy: Arc<TargetPolicy>, base: Duration, webhook_id: String) {
    if state.claim_webhook_task(&webhook_id) {
        tokio::spawn(async move { deliver_forever(state, policy, base, webhook_id).await });
    }
}

/// [`take_lease`] for this instance; false too when storage does not answer.
async fn hold_lease(state: &Arc<AppState>, hook_id: &str) -> bool {
    let (hook_id, me) = (hook_id.to_owned(), state.instance_id().to_owned());
    state
        .clone()
        .write_log(move |c| take_lease(c, &hook_id, &me))
        .await
        .unwrap_or(false)
}

/// Takes or renews the delivery lease of a webhook; true when this instance holds it.
fn take_lease(c: &mut DbConnection, id: &str, me: &str) -> QueryResult<bool> {
    use schema::webhooks::dsl as w;
    let now = store::now();
    let until = to_db(now + chrono::Duration::from_std(LEASE).unwrap_or_default());
    let taken = diesel::update(
        w::webhooks.filter(w::id.eq(id)).filter(
            w::lease_owner
                .is_null()
                .or(w::lease_owner.eq(me))
                .or(w::lease_until.lt(to_db(now))),
        ),
    )
    .set((w::lease_owner.eq(me), w::lease_until.eq(until)))
    .execute(c)?;
    Ok(taken == 1)
}

async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
) -> Option<T> {
    state.clone().read(f).await.ok()
}

async fn deliver_forever(
    state: Arc<AppState>,
    policy: Arc<TargetPolicy>,
    base: Duration,
    id: String,
) {
    let client = match reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Relai-Webhooks/1")
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client");
            return;
        }
    };
    let mut live = state.subscribe();
    loop {
        let hook_id = id.clone();
        let Some(hook) = blocking(&state, move |c| {
            schema::webhooks::table
                .find(hook_id)
                .select(WebhookRow::as_select())
                .first(c)
                .optional()
        })
        .await
        else {
            tokio::time::sleep(base).await;
            continue;
        };
        let Some(hook) = hook.filter(|h| h.enabled != 0) else {
            return;
        };
        if !hold_lease(&state, &hook.id).await {
            // Another instance delivers; take over if its lease runs out.
            let _ = tokio::time::timeout(LEASE / 3, live.recv()).await;
            continue;
        }
        let after = hook.delivered_seq;
        let pending = blocking(&state, move |c| store::changes_after(c, after, 100))
            .await
            .unwrap_or_default();
        if pending.is_empty() {
            // Wait for the next change, or look again after a while (a change committed by
            // another process does not come through this channel).
            let _ = tokio::time::timeout(Duration::from_secs(5), live.recv()).await;
            continue;
        }
        for change in pending {
            let seq = change.seq;
            if let Some(event) = ChangeEvent::public(change) {
                if !deliver_one(&state, &policy, &client, &hook, &event, base).await {
                    break; // the lease went to another instance, which carries on
                }
            }
            let (hook_id, me) = (hook.id.clone(), state.instance_id().to_owned());
            // Only the lease holder moves the cursor; the lease is renewed with it.
            let _ = state
                .clone()
                .write_log(move |c| {
                    use schema::webhooks::dsl as w;
                    let until =
                        to_db(store::now() + chrono::Duration::from_std(LEASE).unwrap_or_default());
                    diesel::update(
                        w::webhooks
                            .filter(w::id.eq(hook_id))
                            .filter(w::lease_owner.eq(me)),
                    )
                    .set((w::delivered_seq.eq(seq), w::lease_until.eq(until)))
                    .execute(c)
                })
                .await;
        }
    }
}

/// Delivers one change until the subscriber accepts it (2xx), logging every attempt;
/// false if this instance lost the webhook's lease meanwhile.
async fn deliver_one(
    state: &Arc<AppState>,
    policy: &TargetPolicy,
    client: &reqwest::Client,
    hook: &WebhookRow,
    event: &ChangeEvent,
    base: Duration,
) -> bool {
    let body = serde_json::to_vec(event).unwrap_or_default();
    let signature = sign(&hook.secret, &body);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            // Retries can outlast a lease: renew it, or leave the webhook to its holder.
            if !hold_lease(state, &hook.id).await {
                return false;
            }
        }
        // Checked again at every attempt: the name may now resolve elsewhere.
        let outcome = match policy.check(&hook.url).await {
            Err(e) => Err((None, e)),
            Ok(url) => match client
                .post(url)
                .header("Content-Type", "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header(EVENT_ID_HEADER, event.seq.to_string())
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
                Ok(r) => Err((
                    Some(r.status().as_u16()),
                    format!("answered {}", r.status()),
                )),
                Err(e) => Err((None, format!("no answer: {e}"))),
            },
        };
        let (status, error) = match &outcome {
            Ok(s) => (Some(i32::from(*s)), None),
            Err((s, e)) => (s.map(i32::from), Some(e.clone())),
        };
        let row = DeliveryRow {
            id: new_id(),
            webhook_id: hook.id.clone(),
            seq: event.seq,
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            status,
            error,
            at: to_db(store::now()),
        };
        let _ = state
            .clone()
            .write_log(move |c| {
                diesel::insert_into(schema::webhook_deliveries::table)
                    .values(&row)
                    .execute(c)
            })
            .await;
        if outcome.is_ok() {
            return true;
        }
        tokio::time::sleep(backoff(base, attempt - 1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_the_public_default() {
        let loopback = Network::parse("127.0.0.0/8").unwrap();
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("128.0.0.1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("nonsense").is_none());
        assert_eq!(parse_networks("127.0.0.0/8, ::1/128").unwrap().len(), 2);
        assert!(parse_networks("127.0.0.0/8,x").is_err());
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "193.51.24.1", "2a01:e0a::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        let default = TargetPolicy::default();
        assert!(!default.allows("127.0.0.1".parse().unwrap()));
        let tests = TargetPolicy {
            allowed: vec![loopback],
        };
        assert!(tests.allows("127.0.0.1".parse().unwrap()));
        assert!(!tests.allows("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn signatures_and_backoff() {
        // RFC 4231 test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 0), Duration::from_secs(1));
        assert_eq!(backoff(base, 3), Duration::from_secs(8));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let tests = TargetPolicy {
            allowed: vec![Network::parse("127.0.0.0/8").unwrap()],
        };
        assert!(tests.check("http://127.0.0.1:9/hook").await.is_ok());
        for bad in [
            "file:///etc/passwd",
            "ftp://127.0.0.1/",
            "http://user:pw@127.0.0.1/",
            "http://10.0.0.1/",
            "not a url",
            "http://[::1]/",
        ] {
            assert!(tests.check(bad).await.is_err(), "{bad}");
        }
        assert!(TargetPolicy::default()
            .check("http://127.0.0.1/")
            .await
            .is_err());
        assert!(TargetPolicy::default()
            .check("http://169.254.169.254/latest/meta-data")
            .await
            .is_err());
    }
}
