//! What operators see: a request id on every request and answer, one log line per
//! request, and the counters behind `/metrics`.
//!
//! The [`Telemetry`] middleware is the outermost layer of the app. Per request it reads
//! a clock twice, finds the route's counters in a map of its own worker (no lock shared
//! between workers), adds to a few atomics and writes the log line. Counters are kept per
//! route *pattern* (`/v1/numbers/{id}`), never per raw path, so their number is bounded by
//! the routes of the app.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;

use crate::net::TrustedProxies;

/// The request id header, read from the request when sane and always sent back.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client or a proxy.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether an incoming `X-Request-Id` is kept: 1 to 128 visible ASCII characters (no
/// spaces, no control characters, nothing that could forge a log line).
pub fn is_sane_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A fresh request id: a UUIDv7 (unique across instances, sortable by time), made without
/// a lock or a system call: the time in milliseconds, then a random number drawn once per
/// process xor a counter (`Uuid::now_v7` would take a process-wide lock and read the
/// system's random source on every request).
pub fn new_request_id() -> HeaderValue {
    use rand_core::RngCore;
    static SEED: OnceLock<u128> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        u128::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let tail = (seed ^ u128::from(n)).to_be_bytes();
    let mut random = [0u8; 10];
    random.copy_from_slice(&tail[6..]);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = [0u8; 36];
    let text = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Upper bounds of the latency histogram buckets, in microseconds.
const BUCKETS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The methods counted apart; any other is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The counters of one route and method.
pub struct RouteStats {
    /// Answers by status, 100 to 599.
    statuses: [AtomicU64; 500],
    /// Requests per latency bucket (not cumulative; the last is above every bound).
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl RouteStats {
    fn new() -> RouteStats {
        RouteStats {
            statuses: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, status: u16, micros: u64) {
        let status = usize::from(status.clamp(100, 599) - 100);
        self.statuses[status].fetch_add(1, Ordering::Relaxed);
        let bucket = BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKETS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Every route's counters, shared by the workers of one app. Locked only when a worker
/// meets a route for the first time, and when `/metrics` is read.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<Vec<(usize, String, Arc<RouteStats>)>>,
}

/// The label of requests no route matched (404s of unknown paths).
pub const UNMATCHED: &str = "unmatched";
/// The label of requests that failed with an error no layer answered.
pub const ERRORED: &str = "error";

impl Metrics {
    /// No counters yet: a route's appear with its first request.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn stats(&self, method: usize, route: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, stats)) = routes.iter().find(|(m, r, _)| *m == method && r == route) {
            return stats.clone();
        }
        let stats = Arc::new(RouteStats::new());
        routes.push((method, route.to_owned(), stats.clone()));
        stats
    }

    /// Appends the request counters and latency histograms in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut routes: Vec<(usize, String, Arc<RouteStats>)> = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        routes.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
        out.push_str(
            "# HELP relai_http_requests_total HTTP requests answered, by route pattern, method and status.\n\
             # TYPE relai_http_requests_total counter\n",
        );
        for (method, route, stats) in &routes {
            for (i, count) in stats.statuses.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "relai_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {count}",
                        escape(route),
                        METHODS[*method],
                        i + 100
                    );
                }
            }
        }
        out.push_str(
            "# HELP relai_http_request_duration_seconds Time to answer (until the response head), by route pattern and method.\n\
             # TYPE relai_http_request_duration_seconds histogram\n",
        );
        for (method, route, stats) in &routes {
            let labels = format!(
                "route=\"{}\",method=\"{}\"",
                escape(route),
                METHODS[*method]
            );
            let mut cumulative = 0;
            for (i, bucket) in stats.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = match BUCKETS_MICROS.get(i) {
                    Some(micros) => Cow::Owned(seconds(*micros)),
                    None => Cow::Borrowed("+Inf"),
                };
                let _ = writeln!(
                    out,
                    "relai_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "relai_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 relai_http_request_duration_seconds_count{{{labels}}} {cumulative}",
                seconds(stats.sum_micros.load(Ordering::Relaxed))
            );
        }
    }
}

/// Microseconds as decimal seconds, exactly (`2500` is `0.0025`).
fn seconds(micros: u64) -> String {
    let (whole, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A label value in the exposition format.
fn escape(value: &str) -> Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        Cow::Owned(
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
        )
    } else {
        Cow::Borrowed(value)
    }
}

/// The outermost middleware: request id, counters, access log.
#[derive(Clone)]
pub struct Telemetry {
    metrics: Arc<Metrics>,
    proxies: Arc<TrustedProxies>,
}

impl Telemetry {
    /// The middleware adding to `metrics`, clients found through `proxies`.
    pub fn new(metrics: Arc<Metrics>, proxies: Arc<TrustedProxies>) -> Telemetry {
        Telemetry { metrics, proxies }
    }
}

/// A worker's routes, by pattern (a fast hash: the keys are the app's own patterns).
type RouteCache = HashMap<String, Arc<RouteStats>, foldhash::fast::RandomState>;

/// One worker's view of the counters: each route's `Arc` looked up without a shared lock.
struct Worker {
    metrics: Arc<Metrics>,
    proxies: Arc<TrustedProxies>,
    cache: RefCell<[RouteCache; METHODS.len()]>,
}

impl Worker {
    fn record(&self, method: usize, route: &str, status: u16, micros: u64) {
        let cached = self.cache.borrow()[method].get(route).cloned();
        let stats = match cached {
            Some(stats) => stats,
            None => {
                let stats = self.metrics.stats(method, route);
                self.cache.borrow_mut()[method].insert(route.to_owned(), stats.clone());
                stats
            }
        };
        stats.record(status, micros);
    }
}

impl<S, B> Transform<S, ServiceRequest> for Telemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = TelemetryService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(TelemetryService {
            service,
            worker: Rc::new(Worker {
                metrics: self.metrics.clone(),
                proxies: self.proxies.clone(),
                cache: RefCell::new(std::array::from_fn(|_| RouteCache::default())),
            }),
        }))
    }
}

/// The [`Telemetry`] middleware of one worker.
pub struct TelemetryService<S> {
    service: S,
    worker: Rc<Worker>,
}

impl<S, B> Service<ServiceRequest> for TelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = TelemetryFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = match req.headers().get(REQUEST_ID) {
            Some(v) if is_sane_request_id(v.as_bytes()) => v.clone(),
            _ => new_request_id(),
        };
        // Nothing of the request is kept across the call but these: routing needs the
        // request unshared, and the answer carries it back.
        let method = method_index(req.method());
        TelemetryFuture {
            inner: self.service.call(req),
            started,
            method,
            id: Some(id),
            worker: self.worker.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`TelemetryService`], counted and logged when it is ready.
    pub struct TelemetryFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: usize,
        id: Option<HeaderValue>,
        worker: Rc<Worker>,
    }
}

impl<F, B> Future for TelemetryFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = Result<ServiceResponse<B>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(outcome) => outcome,
        };
        let Some(id) = this.id.take() else {
            return Poll::Pending;
        };
        let micros = u64::try_from(this.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let method = *this.method;
        let mut response = match outcome {
            Ok(response) => response,
            Err(e) => {
                // An error no inner layer turned into an answer (actix answers it): counted
                // and logged, without a route.
                let status = e.as_response_error().status_code().as_u16();
                this.worker.record(method, ERRORED, status, micros);
                log(method, ERRORED, status, micros, &id, None);
                return Poll::Ready(Err(e));
            }
        };
        let status = response.status().as_u16();
        let request = response.request();
        let pattern = request.match_pattern();
        let route = pattern.as_deref().unwrap_or(UNMATCHED);
        this.worker.record(method, route, status, micros);
        let client = this
            .worker
            .proxies
            .resolve(request.peer_addr().map(|a| a.ip()), request.headers());
        log(method, route, status, micros, &id, client);
        response.headers_mut().insert(REQUEST_ID, id);
        Poll::Ready(Ok(response))
    }
}

/// The access log line of one request. Nothing of the request but these fields: no path
/// or query (the route pattern instead), no header, so no token.
fn log(
    method: usize,
    route: &str,
    status: u16,
    micros: u64,
    id: &HeaderValue,
    client: Option<std::net::IpAddr>,
) {
    tracing::info!(
        target: "relai::access",
        method = METHODS[method],
        route,
        status,
        duration_ms = micros as f64 / 1000.0,
        request_id = id.to_str().unwrap_or("-"),
        client = client.map(tracing::field::display),
        "request"
    );
}

/// How log lines are written: `RELAI_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for a log collector).
    Json,
    /// Human-readable lines (for a terminal).
    Text,
}

impl LogFormat {
    /// `json` or `text`.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("log format {other:?}: use json or text")),
        }
    }

    /// The default: text when standard error is a terminal (a person is reading), JSON
    /// otherwise (a service manager or a container runtime is collecting).
    pub fn default_for_stderr() -> LogFormat {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

/// The log subscriber of the service, writing to `writer` (standard error in `main`, a
/// buffer in tests) with the filter `filter` (`RELAI_LOG` syntax).
pub fn subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.with_ansi(false).finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(is_sane_request_id(b"abc-123_XYZ.~"));
        assert!(is_sane_request_id(&[b'a'; 128]));
        assert!(!is_sane_request_id(&[b'a'; 129]));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"two words"));
        assert!(!is_sane_request_id(b"line\nbreak"));
        assert!(!is_sane_request_id("é".as_bytes()));
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert!(is_sane_request_id(id.as_bytes()));
        let uuid = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, _) = uuid.get_timestamp().unwrap().to_unix();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(seconds) <= 1);
        let many: std::collections::HashSet<_> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(many.len(), 10_000, "no two alike");
    }

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = Metrics::new();
        let stats = metrics.stats(0, "/v1/numbers/{id}");
        stats.record(200, 800);
        stats.record(200, 3_000);
        stats.record(404, 20_000_000);
        assert!(Arc::ptr_eq(&stats, &metrics.stats(0, "/v1/numbers/{id}")));
        metrics.stats(2, "/v1/numbers").record(201, 100);
        let mut out = String::new();
        metrics.render(&mut out);
        for line in [
            "relai_http_requests_total{route=\"/v1/numbers/{id}\",method=\"GET\",status=\"200\"} 2",
            "relai_http_requests_total{route=\"/v1/numbers/{id}\",method=\"GET\",status=\"404\"} 1",
            "relai_http_requests_total{route=\"/v1/numbers\",method=\"POST\",status=\"201\"} 1",
            "relai_http_request_duration_seconds_bucket{route=\"/v1/numbers/{id}\",method=\"GET\",le=\"0.001\"} 1",
            "relai_http_request_duration_seconds_bucket{route=\"/v1/numbers/{id}\",method=\"GET\",le=\"0.005\"} 2",
            "relai_http_request_duration_seconds_bucket{route=\"/v1/numbers/{id}\",method=\"GET\",le=\"10\"} 2",
            "relai_http_request_duration_seconds_bucket{route=\"/v1/numbers/{id}\",method=\"GET\",le=\"+Inf\"} 3",
            "relai_http_request_duration_seconds_sum{route=\"/v1/numbers/{id}\",method=\"GET\"} 20.0038",
            "relai_http_request_duration_seconds_count{route=\"/v1/numbers/{id}\",method=\"GET\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
        assert!(!out.contains("status=\"500\""));
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }

    #[test]
    fn log_formats() {
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert!(LogFormat::parse("xml").is_err());
    }
}
