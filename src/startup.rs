//! Building the service: storage, reference data, snapshot, HTTP server on a listener.

use std::net::TcpListener;

use actix_cors::Cors;
use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{error, middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;
use crate::db::{self, DatabaseUrl, DbPool};
use crate::error::{problem_response, ApiError};
use crate::feeds::webhooks::{self, TargetPolicy};
use crate::openapi::ApiDoc;
use crate::ratelimit::{PublicLimiter, PublicRateLimit, RateLimiter};
use crate::routes::moderation::TipLimiter;
use crate::seed::{self, Reference, SeedOutcome};
use crate::shutdown::{Shutdown, SHUTDOWN_TIMEOUT};
use crate::state::AppState;
use crate::telemetry::{Metrics, Telemetry};

/// Opens storage, runs the migrations and seeds an empty database with the reference data.
pub fn prepare_database(config: &Config) -> anyhow::Result<DbPool> {
    let url = DatabaseUrl::parse(&config.database_url)?;
    if let Some(path) = url.sqlite_path() {
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let pool = db::pool(&url, config.pool_size)?;
    let mut conn = pool.get().context("connecting to the database")?;
    db::run_migrations(&mut conn)?;
    let missing = db::missing_sqlite_options(&mut conn)?;
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "SQLite was built without these options (build from the repository, whose \
             .cargo/config.toml sets them): it works, but writes are slower"
        );
    }
    if !seed::is_seeded(&mut conn)? {
        let started = std::time::Instant::now();
        let outcome = seed::seed_reference(
            &mut conn,
            &Reference::embedded()?,
            false,
            crate::store::now(),
        )?;
        tracing::info!(
            ?outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "reference data loaded"
        );
        debug_assert_eq!(outcome, SeedOutcome::Seeded);
    }
    Ok(pool)
}

/// What the webhook endpoints need: the target policy and the retry pace.
pub struct WebhookSettings {
    pub policy: Arc<TargetPolicy>,
    pub retry_base: std::time::Duration,
}

/// A running service.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    webhooks: Arc<TargetPolicy>,
    webhook_retry_base: std::time::Duration,
    database_url: DatabaseUrl,
    sync_interval: std::time::Duration,
    shutdown: Shutdown,
    public_limiter: Option<Arc<PublicLimiter>>,
}

impl Application {
    /// Prepares storage and binds `config.bind` (port 0 picks a free port).
    pub fn build(config: &Config) -> anyhow::Result<Application> {
        let pool = prepare_database(config)?;
        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        Self::build_with(config, pool, listener)
    }

    pub fn build_with(
        config: &Config,
        pool: DbPool,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        crate::domain::load_numbering_data();
        let state = AppState::load_with(pool, config.answer_cache_mb << 20)?;
        state.set_commit_delay(config.commit_delay);
        let state = web::Data::new(state);
        let mut auth = Auth::load(&config.jwt_private_key, config.jwt_previous_key.as_deref())?;
        auth.set_caller_memory(config.caller_memory);
        let auth = web::Data::new(auth);
        let tips = web::Data::new(TipLimiter(RateLimiter::new(
            config.tips_per_hour,
            std::time::Duration::from_secs(3600),
        )));
        let policy = Arc::new(TargetPolicy {
            allowed: config.webhook_allowed_networks.clone(),
        });
        let hooks = web::Data::new(WebhookSettings {
            policy: policy.clone(),
            retry_base: config.webhook_retry_base,
        });
        let proxies = Arc::new(config.trusted_proxies.clone());
        let proxies_data = web::Data::from(proxies.clone());
        let metrics = web::Data::new(Metrics::new());
        let public_limiter = (config.public_rate_limit > 0).then(|| {
            Arc::new(PublicLimiter::new(
                config.public_rate_limit,
                std::time::Duration::from_secs(60),
            ))
        });
        let shutdown = Shutdown::new();
        let shutdown_data = web::Data::new(shutdown.clone());
        let server_state = state.clone();
        let server_limiter = public_limiter.clone();
        // With the limit off, `Condition` hands each request straight to the next layer:
        // no address resolved, no hash, no lock. This limiter is then never used.
        let middleware_limiter = public_limiter
            .clone()
            .unwrap_or_else(|| Arc::new(PublicLimiter::new(0, std::time::Duration::from_secs(60))));
        let mut server = HttpServer::new(move || {
            let mut app = App::new();
            if let Some(limiter) = &server_limiter {
                app = app.app_data(web::Data::from(limiter.clone()));
            }
            let (app, api) = app
                .into_utoipa_app()
                .openapi(<ApiDoc as utoipa::OpenApi>::openapi())
                .app_data(server_state.clone())
                .app_data(auth.clone())
                .app_data(tips.clone())
                .app_data(hooks.clone())
                .app_data(proxies_data.clone())
                .app_data(metrics.clone())
                .app_data(shutdown_data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .app_data(
                    web::QueryConfig::default().error_handler(|e, _| bad_input(e.to_string())),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _| bad_input(e.to_string())))
                .app_data(
                    web::JsonConfig::default()
                        .limit(64 * 1024)
                        .error_handler(|e, _| bad_input(e.to_string())),
                )
                .configure(crate::routes::configure)
                .split_for_parts();
            let mut api = api;
            crate::openapi::document_public_rate_limit(&mut api);
            app.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", api))
                .route(
                    "/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect()
                            .insert_header((header::LOCATION, "/docs/"))
                            .finish()
                    }),
                )
                .default_service(web::to(not_found))
                .wrap(middleware::from_fn(input_guard))
                .wrap(middleware::ErrorHandlers::new().default_handler(as_problem))
                .wrap(middleware::from_fn(mark_stale))
                .wrap(middleware::Condition::new(
                    server_limiter.is_some(),
                    PublicRateLimit::new(middleware_limiter.clone(), proxies.clone()),
                ))
                .wrap(cors())
                .wrap(middleware::Compress::default())
                .wrap(security_headers())
                // Outermost: sees every answer, 429s and CORS preflights included.
                .wrap(Telemetry::new(
                    metrics.clone().into_inner(),
                    proxies.clone(),
                ))
        })
        .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
        .shutdown_signal({
            let mut listener = shutdown.subscribe();
            async move { listener.wait().await }
        })
        // Every write goes out at once: a large answer leaves in a few chunks, and an
        // event stream in small writes, and with Nagle's algorithm the last of them would
        // wait for the client's delayed acknowledgement (40 ms on Linux).
        .tcp_nodelay(true)
        .listen(listener)?;
        if config.workers > 0 {
            server = server.workers(config.workers);
        }
        Ok(Application {
            port,
            server: server.run(),
            state,
            webhooks: policy,
            webhook_retry_base: config.webhook_retry_base,
            database_url: DatabaseUrl::parse(&config.database_url)?,
            sync_interval: config.sync_interval,
            shutdown,
            public_limiter,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The shutdown signal of this service: [`Shutdown::trigger`] does what SIGTERM does
    /// to `relai serve`.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: no new connections,
    /// in-flight requests finish (within [`SHUTDOWN_TIMEOUT`]), event streams are told to
    /// reconnect and end.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            crate::shutdown::os_signal().await;
            shutdown.trigger();
        });
        self.into_server().await
    }

    /// Starts the webhook deliveries and the rate limiter's sweeper, and returns the
    /// server future (tests spawn it). Call from within the async runtime.
    pub fn into_server(self) -> Server {
        crate::follow::spawn(
            &self.state.clone().into_inner(),
            self.database_url.clone(),
            self.sync_interval,
        );
        webhooks::start_all(
            self.state.clone().into_inner(),
            self.webhooks.clone(),
            self.webhook_retry_base,
        );
        if let Some(limiter) = &self.public_limiter {
            limiter.start_sweeping();
        }
        self.server
    }
}

/// The largest request body: a CSV import of the largest allowed size fits.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Turns any error answer that is not yet a problem document (413 from the payload limit,
/// 405, errors of middleware) into one, so that every error a client sees is problem+json.
fn as_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || res.status().as_u16() < 400 {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = match status.as_u16() {
        413 => format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let problem = crate::error::Problem {
        kind: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
    };
    let (req, _) = res.into_parts();
    let response = problem_response(&problem);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

/// While storage is away, every answer says since when its data may be stale (public
/// reads keep coming from the last snapshot).
async fn mark_stale(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody>,
) -> actix_web::Result<ServiceResponse<impl actix_web::body::MessageBody>> {
    let stale = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.stale_since());
    let mut res = next.call(req).await?;
    if let Some(since) = stale {
        if let Ok(value) =
            header::HeaderValue::from_str(&since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        {
            res.headers_mut()
                .insert(header::HeaderName::from_static(STALE_HEADER), value);
        }
    }
    Ok(res)
}

/// A request body may pause at most this long between two reads, and take at most
/// [`BODY_TIMEOUT`] in all: a body that trickles is cut off with a 408, as a slow head is
/// by the HTTP layer's client request timeout (5 s). Without it a client could hold a
/// connection open forever by sending a byte now and then.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// The longest a request body may take (an 8 MiB import at about 70 KB/s).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Guards on the input before any handler: a path with a NUL character names nothing
/// (404; PostgreSQL cannot even compare such text), and the time a request body may take
/// is bounded (see [`BODY_IDLE_TIMEOUT`]); requests without a body are left as they are.
async fn input_guard(
    mut req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl actix_web::body::MessageBody>> {
    if req.path().contains("%00") {
        let err = ApiError::NotFound(format!("no resource at {}", req.path()));
        let (req, _) = req.into_parts();
        return Ok(
            ServiceResponse::new(req, problem_response(&err.problem())).map_into_right_body()
        );
    }
    let has_body = req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let timed_out = std::rc::Rc::new(std::cell::Cell::new(false));
    let payload = SlowBodyCutoff {
        inner: actix_web::HttpMessage::take_payload(&mut req),
        idle: Box::pin(tokio::time::sleep(BODY_IDLE_TIMEOUT)),
        total: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
        timed_out: timed_out.clone(),
    };
    let boxed: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>,
    > = Box::pin(payload);
    req.set_payload(actix_web::dev::Payload::from(boxed));
    let res = next.call(req).await?;
    if !timed_out.get() {
        return Ok(res.map_into_left_body());
    }
    let problem = crate::error::Problem {
        kind: "https://relai.example/problems/request-timeout".to_owned(),
        title: "Request Timeout".to_owned(),
        status: 408,
        detail: "the request body came too slowly".to_owned(),
        errors: Vec::new(),
    };
    let mut response = problem_response(&problem);
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, response).map_into_right_body())
}

/// A request body that fails once it pauses or lasts too long.
struct SlowBodyCutoff {
    inner: actix_web::dev::Payload,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
    total: std::pin::Pin<Box<tokio::time::Sleep>>,
    timed_out: std::rc::Rc<std::cell::Cell<bool>>,
}

impl futures_util::Stream for SlowBodyCutoff {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let next = tokio::time::Instant::now() + BODY_IDLE_TIMEOUT;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() || this.total.as_mut().poll(cx).is_ready()
                {
                    this.timed_out.set(true);
                    return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow"),
                    ))));
                }
                Poll::Pending
            }
            done => done,
        }
    }
}

/// The header that says since when the data of an answer may be stale.
pub const STALE_HEADER: &str = "relai-stale-since";

fn bad_input(detail: String) -> error::Error {
    ApiError::bad_request(detail).into()
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let err = if req.method() == Method::GET || req.method() == Method::HEAD {
        ApiError::NotFound(format!("no resource at {}", req.path()))
    } else {
        ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))
    };
    problem_response(&err.problem())
}

fn cors() -> Cors {
    Cors::default()
        .allow_any_origin()
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_any_header()
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            crate::telemetry::REQUEST_ID,
            crate::ratelimit::headers::LIMIT,
            crate::ratelimit::headers::REMAINING,
            crate::ratelimit::headers::RESET,
            crate::ratelimit::headers::POLICY,
        ])
        .max_age(3600)
}

fn security_headers() -> middleware::DefaultHeaders {
    middleware::DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "SAMEORIGIN"))
}
