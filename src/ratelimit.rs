//! Per-address rate limits, in memory (each instance counts its own).
//!
//! - [`RateLimiter`]: a strict window per address, for `POST /v1/tips` (a few an hour).
//! - [`PublicLimiter`] and the [`PublicRateLimit`] middleware: a generous limit on public
//!   reads (`RELAI_PUBLIC_RATE_LIMIT` per minute), on the hot path of every lookup, so
//!   built to cost a hash and an uncontended lock: the addresses are spread over
//!   independently locked shards, a window's counts are dropped when the next window
//!   starts, and the answer headers come from a table made once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use actix_web::http::Method;
use actix_web::ResponseError;

use crate::error::ApiError;
use crate::net::TrustedProxies;

/// Allows `max` requests per `window` per address.
pub struct RateLimiter {
    max: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses tracked before expired windows are swept, bounding memory under a flood of
/// distinct addresses.
const SWEEP_AT: usize = 100_000;

impl RateLimiter {
    /// Allows `max` requests per `window` per address.
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            max,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `addr`: `Ok` if allowed, else how long to wait.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SWEEP_AT {
            let window = self.window;
            windows.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = windows.entry(addr).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.max {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The default of `RELAI_PUBLIC_RATE_LIMIT`, requests per minute per address: ten a
/// second sustained. A person on the map page makes a handful of requests per search, so
/// this leaves room for dozens of people behind one shared address (a company, a school,
/// a mobile operator's carrier-grade NAT) searching at the same moment, while one scraper
/// or runaway bot is held to a small fraction of what one core serves.
pub const DEFAULT_PUBLIC_PER_MINUTE: u32 = 600;

/// Independently locked parts of the table (a power of two).
const SHARDS: usize = 64;
/// Addresses counted per shard and window; past this (a flood of distinct addresses),
/// new addresses are let through uncounted rather than growing memory without bound.
/// 64 shards × 16,384 = about a million addresses, some 40 MB at worst.
const MAX_PER_SHARD: usize = 16_384;

/// One part of the table: the counts of the current window.
#[derive(Default)]
struct Shard {
    /// The window these counts belong to.
    window: u64,
    counts: HashMap<u128, u32, foldhash::fast::RandomState>,
}

impl Shard {
    /// Forgets the counts of a past window, and gives back the memory a flood took.
    fn roll(&mut self, window: u64) {
        if self.window == window {
            return;
        }
        let used = self.counts.len();
        self.counts.clear();
        if self.counts.capacity() > 2 * used.max(1024) {
            self.counts.shrink_to(used);
        }
        self.window = window;
    }
}

/// A lock on its own cache line, so that two cores taking two shards do not contend.
#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served; `remaining` more in this window, which ends in `reset` seconds.
    Allowed {
        /// Requests left in this window.
        remaining: u32,
        /// Seconds until the window ends.
        reset: u64,
    },
    /// Refused until the window ends in `reset` seconds.
    Refused {
        /// Seconds until the window ends.
        reset: u64,
    },
}

/// `limit` requests per fixed window of `window` per client, windows aligned on the
/// limiter's start. IPv4 addresses count one by one; IPv6 addresses by /64, the block a
/// single subscriber usually holds (otherwise one line could use 2^64 addresses).
pub struct PublicLimiter {
    limit: u32,
    window_secs: u64,
    origin: Instant,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Padded]>,
    max_per_shard: usize,
    refused: AtomicU64,
}

impl PublicLimiter {
    /// A limiter of `limit` requests per `window` (at least one second) per client.
    pub fn new(limit: u32, window: Duration) -> PublicLimiter {
        PublicLimiter {
            limit,
            window_secs: window.as_secs().max(1),
            origin: Instant::now(),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            max_per_shard: MAX_PER_SHARD,
            refused: AtomicU64::new(0),
        }
    }

    /// The allowed requests per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window, in seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// The key an address counts under.
    fn key(ip: IpAddr) -> u128 {
        match crate::net::canonical(ip) {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
        }
    }

    fn window_at(&self, now: Instant) -> (u64, u64) {
        let elapsed = now.saturating_duration_since(self.origin).as_secs();
        let window = elapsed / self.window_secs;
        let reset = self.window_secs - elapsed % self.window_secs;
        (window, reset)
    }

    /// Counts a request from `ip` at `now`.
    pub fn hit(&self, ip: IpAddr, now: Instant) -> Verdict {
        let key = Self::key(ip);
        let (window, reset) = self.window_at(now);
        // Fibonacci hashing: the top bits of the product depend on every bit of the hash.
        let mixed = self
            .hasher
            .hash_one(key)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let shard = (mixed >> (64 - SHARDS.trailing_zeros())) as usize;
        let mut shard = self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shard.roll(window);
        let verdict = match shard.counts.get_mut(&key) {
            Some(count) if *count >= self.limit => Verdict::Refused { reset },
            Some(count) => {
                *count += 1;
                Verdict::Allowed {
                    remaining: self.limit - *count,
                    reset,
                }
            }
            None if self.limit == 0 => Verdict::Refused { reset },
            None => {
                if shard.counts.len() < self.max_per_shard {
                    shard.counts.insert(key, 1);
                }
                Verdict::Allowed {
                    remaining: self.limit - 1,
                    reset,
                }
            }
        };
        drop(shard);
        if matches!(verdict, Verdict::Refused { .. }) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// Drops the counts of past windows in every shard (shards roll over on their own
    /// when next used; this returns the memory of those that are not).
    pub fn sweep(&self, now: Instant) {
        let (window, _) = self.window_at(now);
        for shard in self.shards.iter() {
            shard
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .roll(window);
        }
    }

    /// Clients counted in the current windows (for the metrics).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).counts.len())
            .sum()
    }

    /// Requests refused since start (for the metrics).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Sweeps every window from now on, on the current async runtime.
    pub fn start_sweeping(self: &Arc<Self>) {
        let limiter = Arc::downgrade(self);
        let every = Duration::from_secs(self.window_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.sweep(Instant::now());
            }
        });
    }
}

/// Whether a request is a public read the public limit applies to: GET and HEAD, except
/// the probes and metrics (an orchestrator must always reach them) and the authenticated
/// reads (admin, moderation), whose callers are known.
pub fn is_public_read(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && !matches!(path, "/healthz" | "/readyz" | "/metrics")
        && !path.starts_with("/v1/admin/")
        && !path.starts_with("/v1/moderation/")
}

/// Small numbers as header values made once, so that a response's RateLimit headers
/// are copied, not formatted (a static `HeaderValue` clones without allocating or
/// touching a shared counter).
fn number_header(n: u64) -> HeaderValue {
    const TABLE: usize = 4096;
    static VALUES: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let values = VALUES.get_or_init(|| {
        let text: &'static str = Box::leak(
            (0..TABLE)
                .map(|i| i.to_string())
                .collect::<String>()
                .into_boxed_str(),
        );
        let mut at = 0;
        (0..TABLE)
            .map(|i| {
                let len = i.to_string().len();
                let value = HeaderValue::from_static(&text[at..at + len]);
                at += len;
                value
            })
            .collect()
    });
    usize::try_from(n)
        .ok()
        .and_then(|i| values.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// The IETF draft RateLimit header names (draft-ietf-httpapi-ratelimit-headers).
pub mod headers {
    use actix_web::http::header::HeaderName;
    /// The requests allowed per window.
    pub const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    /// The requests left in the current window.
    pub const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    /// Seconds until the current window ends.
    pub const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
    /// The policy: `LIMIT;w=WINDOW_SECONDS`.
    pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
}

/// The limit on public reads, as middleware. The app wraps it in `Condition`: when
/// `RELAI_PUBLIC_RATE_LIMIT` is 0, requests are handed straight on and pay nothing.
#[derive(Clone)]
pub struct PublicRateLimit {
    shared: Rc<Shared>,
}

struct Shared {
    limiter: Arc<PublicLimiter>,
    proxies: Arc<TrustedProxies>,
    limit: HeaderValue,
    policy: HeaderValue,
}

impl PublicRateLimit {
    /// The middleware counting with `limiter`, clients found through `proxies`.
    pub fn new(limiter: Arc<PublicLimiter>, proxies: Arc<TrustedProxies>) -> PublicRateLimit {
        let limit = number_header(u64::from(limiter.limit()));
        let policy =
            HeaderValue::from_str(&format!("{};w={}", limiter.limit(), limiter.window_secs()))
                .unwrap_or_else(|_| HeaderValue::from_static("0"));
        PublicRateLimit {
            shared: Rc::new(Shared {
                limiter,
                proxies,
                limit,
                policy,
            }),
        }
    }
}

impl Shared {
    fn decorate(&self, headers: &mut HeaderMap, remaining: u32, reset: u64) {
        headers.insert(headers::LIMIT, self.limit.clone());
        headers.insert(headers::REMAINING, number_header(u64::from(remaining)));
        headers.insert(headers::RESET, number_header(reset));
        headers.insert(headers::POLICY, self.policy.clone());
    }
}

impl<S, B> Transform<S, ServiceRequest> for PublicRateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = PublicRateLimitService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(PublicRateLimitService {
            service,
            shared: self.shared.clone(),
        }))
    }
}

/// The [`PublicRateLimit`] middleware of one worker.
pub struct PublicRateLimitService<S> {
    service: S,
    shared: Rc<Shared>,
}

impl<S, B> Service<ServiceRequest> for PublicRateLimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LimitFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if !is_public_read(req.method(), req.path()) {
            return LimitFuture::Pass {
                inner: self.service.call(req),
                counted: None,
            };
        }
        let peer = req.peer_addr().map(|a| a.ip());
        let Some(ip) = self.shared.proxies.resolve(peer, req.headers()) else {
            return LimitFuture::Pass {
                inner: self.service.call(req),
                counted: None,
            };
        };
        match self.shared.limiter.hit(ip, Instant::now()) {
            Verdict::Allowed { remaining, reset } => LimitFuture::Pass {
                inner: self.service.call(req),
                counted: Some((self.shared.clone(), remaining, reset)),
            },
            Verdict::Refused { reset } => {
                let error = ApiError::TooManyRequests {
                    detail: format!(
                        "more than {} requests in {} s from this address; retry in {reset} s",
                        self.shared.limiter.limit(),
                        self.shared.limiter.window_secs()
                    ),
                    retry_after: reset,
                };
                let mut response = error.error_response();
                self.shared.decorate(response.headers_mut(), 0, reset);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, number_header(reset));
                LimitFuture::Refused {
                    response: Some(req.into_response(response)),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`PublicRateLimitService`]: the inner service's, with the RateLimit
    /// headers, or a 429.
    #[project = LimitProj]
    pub enum LimitFuture<F> {
        /// Served by the next layer (counted when `counted` is set).
        Pass { #[pin] inner: F, counted: Option<(Rc<Shared>, u32, u64)> },
        /// Refused with this 429.
        Refused { response: Option<ServiceResponse> },
    }
}

impl<F, B> Future for LimitFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitProj::Pass { inner, counted } => {
                let mut response = match inner.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(r)) => r,
                };
                if let Some((shared, remaining, reset)) = counted.take() {
                    shared.decorate(response.headers_mut(), remaining, reset);
                }
                Poll::Ready(Ok(response.map_into_left_body()))
            }
            LimitProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r.map_into_right_body())),
                // Polled again after completion: a caller's bug, never ours to answer.
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_address_in_its_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            limiter.check(b, t0).is_ok(),
            "another address is not affected"
        );
        assert!(
            limiter.check(a, t0 + Duration::from_secs(60)).is_ok(),
            "a new window"
        );
    }

    fn v4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + i))
    }

    #[test]
    fn the_public_limit_counts_per_address_per_window() {
        let limiter = PublicLimiter::new(3, Duration::from_secs(60));
        let t0 = limiter.origin + Duration::from_secs(15);
        assert_eq!(
            limiter.hit(v4(1), t0),
            Verdict::Allowed {
                remaining: 2,
                reset: 45
            }
        );
        limiter.hit(v4(1), t0);
        assert_eq!(
            limiter.hit(v4(1), t0),
            Verdict::Allowed {
                remaining: 0,
                reset: 45
            }
        );
        assert_eq!(
            limiter.hit(v4(1), t0 + Duration::from_secs(40)),
            Verdict::Refused { reset: 5 }
        );
        assert_eq!(limiter.refused(), 1);
        // Another address has its own count.
        assert!(matches!(
            limiter.hit(v4(2), t0),
            Verdict::Allowed { remaining: 2, .. }
        ));
        // The same address as IPv4-mapped IPv6 is the same client.
        assert!(matches!(
            limiter.hit("::ffff:192.0.2.1".parse().unwrap(), t0),
            Verdict::Refused { .. }
        ));
        // The next window starts afresh.
        assert_eq!(
            limiter.hit(v4(1), limiter.origin + Duration::from_secs(60)),
            Verdict::Allowed {
                remaining: 2,
                reset: 60
            }
        );
        // The other address's shard rolls over when next used, or when swept.
        limiter.sweep(limiter.origin + Duration::from_secs(61));
        assert_eq!(limiter.tracked(), 1, "the past window's counts are gone");
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let limiter = PublicLimiter::new(2, Duration::from_secs(60));
        let now = Instant::now();
        limiter.hit("2001:db8:1:2::1".parse().unwrap(), now);
        limiter.hit("2001:db8:1:2:ffff::9".parse().unwrap(), now);
        assert!(matches!(
            limiter.hit("2001:db8:1:2:abcd::1".parse().unwrap(), now),
            Verdict::Refused { .. }
        ));
        assert!(matches!(
            limiter.hit("2001:db8:1:3::1".parse().unwrap(), now),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn memory_is_bounded_and_swept() {
        let mut limiter = PublicLimiter::new(1, Duration::from_secs(60));
        limiter.max_per_shard = 4;
        let now = limiter.origin;
        for i in 0..10_000 {
            // A flood of distinct addresses is served, not stored past the bound.
            assert!(matches!(limiter.hit(v4(i), now), Verdict::Allowed { .. }));
        }
        assert_eq!(limiter.tracked(), 4 * SHARDS);
        limiter.sweep(now + Duration::from_secs(61));
        assert_eq!(limiter.tracked(), 0);
        for shard in limiter.shards.iter() {
            assert!(shard.0.lock().unwrap().counts.capacity() <= 2 * 1024);
        }
    }

    #[test]
    fn public_reads_are_gets_outside_probes_and_authenticated_areas() {
        assert!(is_public_read(&Method::GET, "/v1/lookup"));
        assert!(is_public_read(&Method::HEAD, "/v1/numbers/abc"));
        assert!(is_public_read(&Method::GET, "/"));
        assert!(is_public_read(&Method::GET, "/v1/events"));
        assert!(!is_public_read(&Method::POST, "/v1/numbers"));
        assert!(!is_public_read(&Method::GET, "/healthz"));
        assert!(!is_public_read(&Method::GET, "/readyz"));
        assert!(!is_public_read(&Method::GET, "/metrics"));
        assert!(!is_public_read(&Method::GET, "/v1/admin/audit"));
        assert!(!is_public_read(&Method::GET, "/v1/moderation/queue"));
    }

    #[test]
    fn header_numbers_come_from_the_table() {
        assert_eq!(number_header(0), "0");
        assert_eq!(number_header(599), "599");
        assert_eq!(number_header(4095), "4095");
        assert_eq!(number_header(123_456), "123456");
    }
}
