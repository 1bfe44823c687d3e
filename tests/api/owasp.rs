//! The OWASP API Security Top 10 (2023), risk by risk, against the running service on
//! both backends. Each section names its risk; where another file already proves a
//! point, the section says where instead of repeating it.
//!
//! A refusal must change nothing: the tests compare what storage holds before and
//! after ([`Stored`]), not only the status code.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use diesel::prelude::*;
use relai::db::{schema, DatabaseUrl};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{Publish, TestApp};

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// What storage holds, in enough detail that any write would show.
#[derive(Debug, PartialEq)]
struct Stored {
    changes: i64,
    audit_events: i64,
    /// (id, status, version) of every number.
    numbers: Vec<(String, String, i32)>,
    /// (id, status, version) of every outage.
    outages: Vec<(String, String, i32)>,
    organizations: i64,
    scopes: i64,
    /// (id, role, enabled) of every account.
    accounts: Vec<(String, String, i32)>,
    /// Tokens, and those not revoked.
    tokens: i64,
    live_tokens: Vec<String>,
    webhooks: i64,
}

fn stored(app: &TestApp) -> Stored {
    let mut conn = DatabaseUrl::parse(&app.database_url)
        .unwrap()
        .connect()
        .unwrap();
    let count = |n: QueryResult<i64>| n.unwrap();
    Stored {
        changes: relai::store::last_change_seq(&mut conn).unwrap(),
        audit_events: count(schema::audit_events::table.count().get_result(&mut conn)),
        numbers: schema::numbers::table
            .select((
                schema::numbers::id,
                schema::numbers::status,
                schema::numbers::version,
            ))
            .order(schema::numbers::id)
            .load(&mut conn)
            .unwrap(),
        outages: schema::outages::table
            .select((
                schema::outages::id,
                schema::outages::status,
                schema::outages::version,
            ))
            .order(schema::outages::id)
            .load(&mut conn)
            .unwrap(),
        organizations: count(schema::organizations::table.count().get_result(&mut conn)),
        scopes: count(
            schema::organization_scopes::table
                .count()
                .get_result(&mut conn),
        ),
        accounts: schema::accounts::table
            .select((
                schema::accounts::id,
                schema::accounts::role,
                schema::accounts::enabled,
            ))
            .order(schema::accounts::id)
            .load(&mut conn)
            .unwrap(),
        tokens: count(schema::tokens::table.count().get_result(&mut conn)),
        live_tokens: schema::tokens::table
            .filter(schema::tokens::revoked_at.is_null())
            .select(schema::tokens::jti)
            .order(schema::tokens::jti)
            .load(&mut conn)
            .unwrap(),
        webhooks: count(schema::webhooks::table.count().get_result(&mut conn)),
    }
}

/// A request body.
#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    Csv(String),
}

/// A request of a table.
#[derive(Clone, Debug)]
struct Req {
    method: Method,
    path: String,
    body: Body,
    if_match: Option<String>,
}

impl Req {
    fn new(method: Method, path: impl Into<String>, body: Body) -> Req {
        Req {
            method,
            path: path.into(),
            body,
            if_match: None,
        }
    }
    fn get(path: impl Into<String>) -> Req {
        Req::new(Method::GET, path, Body::None)
    }
    fn post(path: impl Into<String>, body: Value) -> Req {
        Req::new(Method::POST, path, Body::Json(body))
    }
    fn patch(path: impl Into<String>, version: i32, body: Value) -> Req {
        Req {
            if_match: Some(format!("\"{version}\"")),
            ..Req::new(Method::PATCH, path, Body::Json(body))
        }
    }
    fn csv(path: impl Into<String>, body: String) -> Req {
        Req::new(Method::POST, path, Body::Csv(body))
    }
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Sends a request with the given `Authorization` header value, if any.
async fn send(app: &TestApp, req: &Req, authorization: Option<HeaderValue>) -> reqwest::Response {
    let mut request = app.client.request(req.method.clone(), app.url(&req.path));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    if let Some(version) = &req.if_match {
        request = request.header("If-Match", version);
    }
    request = match &req.body {
        Body::None => request,
        Body::Json(v) => request.json(v),
        Body::Csv(s) => request.header("Content-Type", "text/csv").body(s.clone()),
    };
    request.send().await.expect("request")
}

fn bearer(token: &str) -> Option<HeaderValue> {
    Some(HeaderValue::from_str(&format!("Bearer {token}")).unwrap())
}

/// Asserts an RFC 9457 problem with this status, and returns it.
async fn problem(response: reqwest::Response, status: u16, what: &str) -> Value {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    assert_eq!(content_type, "application/problem+json", "{what}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_eq!(body["status"], status, "{what}: {text}");
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "{what}: no {member} in {text}");
    }
    body
}

fn phone(prefix: &str, n: u32) -> String {
    format!("{prefix}{n:06}")
}

fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn number_body(service: &str, kind: &str, code: &str, phone: &str) -> Value {
    json!({"service": service, "territory": {"kind": kind, "code": code}, "phone": phone, "label": "Numéro de test"})
}

fn submission_body(service: &str, kind: &str, code: &str, phone: &str) -> Value {
    json!({"service": service, "territory": {"kind": kind, "code": code}, "phone": phone,
           "label": "Relayé", "source_url": "https://social.example/post/1"})
}

const CSV_HEADER: &str = "service,territory_kind,territory_code,phone,label,valid_until\n";

/// A pending submission by `moderator`, through the API.
async fn submit(
    app: &TestApp,
    moderator: &str,
    service: &str,
    kind: &str,
    code: &str,
    phone: &str,
) -> String {
    let (status, body) = app
        .post(
            "/v1/numbers",
            moderator,
            submission_body(service, kind, code, phone),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// An account of `role` in the organization `org` (through the library), with a token.
async fn account_in(app: &TestApp, org: &str, role: &str) -> (String, String) {
    let (org, role) = (org.to_owned(), role.to_owned());
    let account = app
        .write(move |conn, _| {
            relai::accounts::create_account(
                conn,
                None,
                Some(&org),
                &role,
                "Compte de test",
                relai::store::now(),
            )
        })
        .await
        .unwrap();
    let token = app.token_for(&account.id).await;
    (account.id, token)
}

/// The address of the app without scheme, for raw sockets.
fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// What came back on a raw connection: the bytes read, whether the server closed it, and
/// after how long.
struct RawAnswer {
    text: String,
    closed: bool,
    elapsed: Duration,
}

impl RawAnswer {
    fn status(&self) -> Option<u16> {
        self.text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
    }
}

/// Writes `bytes` on a new connection, then reads until the server closes it or `wait`
/// has passed.
async fn raw_exchange(address: String, bytes: Vec<u8>, wait: Duration) -> RawAnswer {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(&bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        let mut closed = false;
        loop {
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            stream.set_read_timeout(Some(left)).unwrap();
            match stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break
                }
                Err(e) => {
                    // Reset by the server.
                    out.extend_from_slice(format!("<{e}>").as_bytes());
                    closed = true;
                    break;
                }
            }
        }
        RawAnswer {
            text: String::from_utf8_lossy(&out).into_owned(),
            closed,
            elapsed: started.elapsed(),
        }
    })
    .await
    .unwrap()
}

/// The cast of most sections: an admin without organization, an authority of the
/// SDIS 33 (every service of the Gironde), a moderator and a second moderator.
struct Cast {
    admin: String,
    sdis33_org: String,
    sdis33: String,
    moderator: String,
    submitter: String,
}

async fn cast(app: &TestApp) -> Cast {
    let admin = app.admin_token().await;
    let (sdis33_org, _, sdis33) = app
        .account_with("SDIS 33", "sdis", &["*:departement:33"], "authority")
        .await;
    let (_, _, moderator) = app
        .account_with("VISOV", "volunteers", &[], "moderator")
        .await;
    let (_, _, submitter) = app
        .account_with("VISOV Gironde", "volunteers", &[], "moderator")
        .await;
    Cast {
        admin,
        sdis33_org,
        sdis33,
        moderator,
        submitter,
    }
}

/// Every route that needs a token, with a plausible request (ids need not exist: the
/// token is checked first).
fn protected_routes() -> Vec<Req> {
    let id = "0190c5a3-0000-7000-8000-000000000000";
    vec![
        Req::post(
            "/v1/numbers",
            number_body("18", "departement", "33", "0556000001"),
        ),
        Req::patch(format!("/v1/numbers/{id}"), 1, json!({"label": "x"})),
        Req::post(format!("/v1/numbers/{id}/retire"), json!({"reason": "x"})),
        Req::csv(
            "/v1/numbers/import",
            format!("{CSV_HEADER}18,departement,33,0556000002,x,\n"),
        ),
        Req::post(format!("/v1/numbers/{id}/approve"), json!({})),
        Req::post(format!("/v1/numbers/{id}/reject"), json!({"reason": "x"})),
        Req::get("/v1/moderation/queue"),
        Req::post(
            "/v1/moderation/decisions",
            json!({"decisions": [{"id": id, "decision": "approve"}]}),
        ),
        Req::post(
            "/v1/outages",
            json!({"services": ["18"], "territory": {"kind": "departement", "code": "33"}, "description": "x"}),
        ),
        Req::post(format!("/v1/outages/{id}/resolve"), json!({})),
        Req::get("/v1/admin/organizations"),
        Req::post(
            "/v1/admin/organizations",
            json!({"name": "X", "kind": "sdis"}),
        ),
        Req::get("/v1/admin/accounts"),
        Req::post("/v1/admin/accounts", json!({"role": "admin", "name": "X"})),
        Req::new(
            Method::PATCH,
            format!("/v1/admin/accounts/{id}"),
            Body::Json(json!({"enabled": false})),
        ),
        Req::post("/v1/admin/tokens", json!({"account_id": id})),
        Req::post(format!("/v1/admin/tokens/{id}/revoke"), json!({})),
        Req::get("/v1/admin/audit"),
        Req::post(
            "/v1/admin/webhooks",
            json!({"url": "http://127.0.0.1:9/", "secret": "0123456789abcdef"}),
        ),
        Req::get("/v1/admin/webhooks"),
        Req::get(format!("/v1/admin/webhooks/{id}/deliveries")),
    ]
}

/// API1:2023 Broken Object Level Authorization.
///
/// An authority acts on objects (numbers, outages, submissions) only inside its
/// organization's scopes, on every write route, whoever owns the object; a refusal is a
/// 403 problem and changes nothing. Idempotency keys are per account: another account
/// reusing a key never gets the first account's answer.
mod api1_object_level_authorization {
    use super::*;

    backend_tests!(
        an_authority_acts_only_inside_its_scopes_on_every_write_route,
        |app: TestApp| async move {
            let (_, _, sdis18) = app
                .account_with("SDIS 33 (18)", "sdis", &["18:departement:33"], "authority")
                .await;
            let (_, _, moderator) = app
                .account_with("VISOV", "volunteers", &[], "moderator")
                .await;
            struct Target {
                name: &'static str,
                service: &'static str,
                kind: &'static str,
                code: &'static str,
                number: String,
                outage: String,
                pending: String,
                prefix: &'static str,
            }
            let mut targets = Vec::new();
            for (name, service, kind, code, owner, prefix) in [
                (
                    "another département",
                    "18",
                    "departement",
                    "43",
                    "SDIS 43",
                    "0471",
                ),
                (
                    "another service",
                    "17",
                    "departement",
                    "33",
                    "Police 33",
                    "0557",
                ),
                (
                    "a wider territory",
                    "18",
                    "national",
                    "FR",
                    "Ministère",
                    "0145",
                ),
                (
                    "the zone around its département",
                    "18",
                    "zone",
                    "Sud-Ouest",
                    "EMIZ Sud-Ouest",
                    "0558",
                ),
            ] {
                let org = app.organization(owner, "sdis").await;
                let number = app
                    .publish(Publish::new(service, kind, code, &phone(prefix, 1), &org))
                    .await
                    .unwrap()
                    .id;
                let outage = app.declare(&[service], kind, code, &org).await.id;
                let pending =
                    submit(&app, &moderator, service, kind, code, &phone(prefix, 2)).await;
                targets.push(Target {
                    name,
                    service,
                    kind,
                    code,
                    number,
                    outage,
                    pending,
                    prefix,
                });
            }
            let before = stored(&app);
            for t in &targets {
                let territory = json!({"kind": t.kind, "code": t.code});
                let calls = vec![
                    Req::post(
                        "/v1/numbers",
                        json!({"service": t.service, "territory": territory, "phone": phone(t.prefix, 3), "label": "Hors périmètre"}),
                    ),
                    Req::patch(
                        format!("/v1/numbers/{}", t.number),
                        1,
                        json!({"label": "Détourné", "phone": phone(t.prefix, 4)}),
                    ),
                    Req::post(
                        format!("/v1/numbers/{}/retire", t.number),
                        json!({"reason": "Retiré hors périmètre"}),
                    ),
                    Req::csv(
                        "/v1/numbers/import",
                        format!(
                            "{CSV_HEADER}18,departement,33,0556000009,Dans le périmètre,\n{},{},{},{},Hors périmètre,\n",
                            t.service,
                            t.kind,
                            t.code,
                            phone(t.prefix, 5)
                        ),
                    ),
                    Req::post(
                        "/v1/outages",
                        json!({"services": [t.service], "territory": territory, "description": "Fausse panne"}),
                    ),
                    Req::post(format!("/v1/outages/{}/resolve", t.outage), json!({})),
                    Req::post(format!("/v1/numbers/{}/approve", t.pending), json!({})),
                    Req::post(
                        format!("/v1/numbers/{}/reject", t.pending),
                        json!({"reason": "Refusé hors périmètre"}),
                    ),
                ];
                for req in &calls {
                    let what = format!("{} on {}", req.label(), t.name);
                    let response = send(&app, req, bearer(&sdis18)).await;
                    problem(response, 403, &what).await;
                    assert_eq!(stored(&app), before, "{what} changed nothing");
                }
                // The batch form answers for each decision on its own.
                let (status, results) = app
                    .post(
                        "/v1/moderation/decisions",
                        &sdis18,
                        json!({"decisions": [{"id": t.pending, "decision": "approve"}, {"id": t.pending, "decision": "reject", "reason": "non"}]}),
                    )
                    .await;
                assert_eq!(status, 200, "{results}");
                assert_eq!(results["applied"], 0, "{}: {results}", t.name);
                for r in results["results"].as_array().unwrap() {
                    assert_eq!(r["status"], 403, "{}: {r}", t.name);
                    assert_eq!(r["problem"]["status"], 403);
                }
                assert_eq!(
                    stored(&app),
                    before,
                    "decisions on {} changed nothing",
                    t.name
                );
            }
            // Nor does the authority see those submissions in its queue.
            let queue: Value = send(
                &app,
                &Req::get("/v1/moderation/queue?limit=1000"),
                bearer(&sdis18),
            )
            .await
            .json()
            .await
            .unwrap();
            for t in &targets {
                assert!(
                    !queue.to_string().contains(&t.pending),
                    "{} is outside the queue of the SDIS 33",
                    t.name
                );
                // Everything is as it was, publicly too.
                let (status, n) = app.get_json(&format!("/v1/numbers/{}", t.number)).await;
                assert_eq!(
                    (status, n["status"].as_str(), n["version"].as_i64()),
                    (200, Some("published"), Some(1))
                );
            }
            let (_, outages) = app.get_json("/v1/outages?status=active").await;
            assert_eq!(outages["items"].as_array().unwrap().len(), targets.len());
            // The same token works inside its scope: the refusals were about scope.
            let (status, body) = app
                .post(
                    "/v1/numbers",
                    &sdis18,
                    number_body("18", "commune", "33063", "0556000010"),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    );

    backend_tests!(
        idempotency_keys_belong_to_their_account,
        |app: TestApp| async move {
            let (_, _, sdis33) = app
                .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
                .await;
            let (_, _, sdis43) = app
                .account_with("SDIS 43", "sdis", &["18:departement:43"], "authority")
                .await;
            let body = number_body("18", "departement", "33", "0556123456");
            let first = app
                .client
                .post(app.url("/v1/numbers"))
                .bearer_auth(&sdis33)
                .header("Idempotency-Key", "cle-partagee")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(first.status(), 201);
            let before = stored(&app);
            // Another account with the same key and the same request: its own answer (403,
            // out of its scopes), not a replay of the SDIS 33's number.
            let other = app
                .client
                .post(app.url("/v1/numbers"))
                .bearer_auth(&sdis43)
                .header("Idempotency-Key", "cle-partagee")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(other.headers().get("idempotency-replayed").is_none());
            problem(other, 403, "another account's idempotency key").await;
            assert_eq!(stored(&app), before);
        }
    );
}

/// API2:2023 Broken Authentication.
///
/// The token attacks (alg `none`, HS256 with the public key, expired, not yet valid, wrong
/// `aud` and `iss`, never issued, revoked, `Basic`) are in `tokens.rs`, on one route;
/// disabled accounts in `authorities.rs`. Here: every route that needs a token answers
/// 401 problem+json with `WWW-Authenticate: Bearer` to every kind of bad credential,
/// and writes nothing.
mod api2_authentication {
    use super::*;

    backend_tests!(
        every_protected_route_refuses_every_bad_credential,
        |app: TestApp| async move {
            let admin_account = app
                .write(|conn, _| {
                    relai::accounts::create_account(
                        conn,
                        None,
                        None,
                        "admin",
                        "Admin",
                        relai::store::now(),
                    )
                })
                .await
                .unwrap()
                .id;
            let other_key = relai::auth::jwt::Signer::from_pem(
                &relai::auth::jwt::generate_private_key_pem().unwrap(),
            )
            .unwrap();
            let (forged, _) = other_key
                .issue(
                    &admin_account,
                    Duration::from_secs(600),
                    relai::auth::jwt::unix_now(),
                )
                .unwrap();
            let credentials: Vec<(&str, Option<HeaderValue>)> = vec![
                ("no Authorization header", None),
                ("an empty header", Some(HeaderValue::from_static(""))),
                (
                    "another scheme",
                    Some(HeaderValue::from_static("Token abcdef")),
                ),
                ("Bearer alone", Some(HeaderValue::from_static("Bearer"))),
                (
                    "Bearer and spaces",
                    Some(HeaderValue::from_static("Bearer    ")),
                ),
                (
                    "Bearer garbage",
                    Some(HeaderValue::from_static("Bearer !!garbage!!")),
                ),
                (
                    "three empty parts",
                    Some(HeaderValue::from_static("Bearer ..")),
                ),
                (
                    "base64 that is not JSON",
                    Some(HeaderValue::from_static("Bearer YWJj.ZGVm.Z2hp")),
                ),
                (
                    "an oversized token",
                    Some(HeaderValue::from_str(&format!("Bearer {}", "a".repeat(10_000))).unwrap()),
                ),
                (
                    "bytes that are not UTF-8",
                    Some(HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").unwrap()),
                ),
                ("a token signed by another key", bearer(&forged)),
            ];
            let before = stored(&app);
            for req in protected_routes() {
                for (name, credential) in &credentials {
                    let what = format!("{} with {name}", req.label());
                    let response = send(&app, &req, credential.clone()).await;
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    problem(response, 401, &what).await;
                    assert!(
                        challenge.starts_with("Bearer realm=\"relai\""),
                        "{what}: {challenge}"
                    );
                }
                // A token in the query string is not a credential.
                let mut in_query = req.clone();
                in_query.path = format!(
                    "{}{}access_token={forged}",
                    req.path,
                    if req.path.contains('?') { '&' } else { '?' }
                );
                problem(send(&app, &in_query, None).await, 401, &in_query.label()).await;
            }
            assert_eq!(stored(&app), before, "nothing written");
        }
    );
}

/// API3:2023 Broken Object Property Level Authorization.
///
/// Fields the service sets are refused with 422 naming them (the contract: refused, not
/// ignored) on every write body, and nothing changes; `authorities.rs` covers the
/// publication body's `status`, `provenance`, `version`, `id`, `published_at`,
/// `updated_at` and `demo`. Public answers never expose accounts, reviewers' identities
/// or what a tipper wrote.
mod api3_object_property_level_authorization {
    use super::*;

    backend_tests!(
        fields_a_caller_may_not_set_are_refused_and_change_nothing,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let other_org = app.organization("Autre SDIS", "sdis").await;
            let (status, n) = app
                .post(
                    "/v1/numbers",
                    &cast.sdis33,
                    number_body("18", "departement", "33", "0556123456"),
                )
                .await;
            assert_eq!(status, 201, "{n}");
            let id = n["id"].as_str().unwrap().to_owned();
            let pending = submit(
                &app,
                &cast.submitter,
                "18",
                "commune",
                "33063",
                "0556654321",
            )
            .await;
            let outage = app
                .declare(&["18"], "departement", "33", &cast.sdis33_org)
                .await
                .id;
            let (victim, _) = account_in(&app, &cast.sdis33_org, "moderator").await;

            let with = |base: Value, field: &str, value: Value| {
                let mut body = base;
                body[field] = value;
                body
            };
            let publish = number_body("18", "departement", "33", "0556000001");
            let official = json!({"kind": "official", "organization": {"id": other_org, "name": "Autre SDIS"}});
            // (who, request, the field the 422 names)
            let cases: Vec<(&str, Req, &str)> = vec![
                (
                    "authority",
                    Req::post(
                        "/v1/numbers",
                        with(publish.clone(), "organization", json!({"id": other_org})),
                    ),
                    "organization",
                ),
                (
                    "authority",
                    Req::post(
                        "/v1/numbers",
                        with(publish.clone(), "verified_by", json!({"id": other_org})),
                    ),
                    "verified_by",
                ),
                (
                    "authority",
                    Req::post(
                        "/v1/numbers",
                        with(publish.clone(), "retired_at", json!("2021-06-02T18:00:00Z")),
                    ),
                    "retired_at",
                ),
                (
                    "authority",
                    Req::post(
                        "/v1/numbers",
                        with(publish.clone(), "declared_by", json!(other_org)),
                    ),
                    "declared_by",
                ),
                (
                    "moderator",
                    Req::post(
                        "/v1/numbers",
                        with(
                            submission_body("18", "departement", "33", "0556000002"),
                            "provenance",
                            official.clone(),
                        ),
                    ),
                    "provenance",
                ),
                (
                    "moderator",
                    Req::post(
                        "/v1/numbers",
                        with(
                            submission_body("18", "departement", "33", "0556000002"),
                            "status",
                            json!("published"),
                        ),
                    ),
                    "status",
                ),
                (
                    "moderator",
                    Req::post(
                        "/v1/numbers",
                        with(
                            submission_body("18", "departement", "33", "0556000002"),
                            "verified_by",
                            json!({"id": other_org}),
                        ),
                    ),
                    "verified_by",
                ),
                (
                    "authority",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"label": "x", "status": "retired"}),
                    ),
                    "status",
                ),
                (
                    "authority",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"label": "x", "version": 99}),
                    ),
                    "version",
                ),
                (
                    "authority",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"label": "x", "provenance": official}),
                    ),
                    "provenance",
                ),
                (
                    "authority",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"label": "x", "demo": true}),
                    ),
                    "demo",
                ),
                (
                    "authority",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"label": "x", "id": "0190c5a3-0000-7000-8000-000000000000"}),
                    ),
                    "id",
                ),
                (
                    "authority",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"territory": {"kind": "departement", "code": "75"}}),
                    ),
                    "territory",
                ),
                (
                    "authority",
                    Req::patch(format!("/v1/numbers/{id}"), 1, json!({"service": "15"})),
                    "service",
                ),
                (
                    "moderator",
                    Req::patch(
                        format!("/v1/numbers/{id}"),
                        1,
                        json!({"label": "x", "source_url": "https://social.example/1", "provenance": official}),
                    ),
                    "provenance",
                ),
                (
                    "authority",
                    Req::post(
                        format!("/v1/numbers/{id}/retire"),
                        json!({"reason": "x", "status": "published"}),
                    ),
                    "status",
                ),
                (
                    "authority",
                    Req::post(
                        "/v1/outages",
                        json!({"services": ["18"], "territory": {"kind": "departement", "code": "33"}, "description": "x", "declared_by": other_org}),
                    ),
                    "declared_by",
                ),
                (
                    "authority",
                    Req::post(
                        "/v1/outages",
                        json!({"services": ["18"], "territory": {"kind": "departement", "code": "33"}, "description": "x", "status": "resolved"}),
                    ),
                    "status",
                ),
                (
                    "authority",
                    Req::post(
                        "/v1/outages",
                        json!({"services": ["18"], "territory": {"kind": "departement", "code": "33"}, "description": "x", "demo": true}),
                    ),
                    "demo",
                ),
                (
                    "moderator",
                    Req::post(
                        format!("/v1/numbers/{pending}/approve"),
                        json!({"verified_by": {"id": other_org}}),
                    ),
                    "body",
                ),
                (
                    "moderator",
                    Req::post(
                        format!("/v1/numbers/{pending}/approve"),
                        json!({"provenance": official}),
                    ),
                    "body",
                ),
                (
                    "moderator",
                    Req::post(
                        "/v1/moderation/decisions",
                        json!({"decisions": [{"id": pending, "decision": "approve", "verified_by": other_org}]}),
                    ),
                    "decisions",
                ),
                (
                    "admin",
                    Req::new(
                        Method::PATCH,
                        format!("/v1/admin/accounts/{victim}"),
                        Body::Json(json!({"enabled": true, "role": "admin"})),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::new(
                        Method::PATCH,
                        format!("/v1/admin/accounts/{victim}"),
                        Body::Json(json!({"enabled": true, "organization_id": other_org})),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::post(
                        "/v1/admin/accounts",
                        json!({"role": "moderator", "name": "X", "organization_id": other_org, "enabled": false}),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::post(
                        "/v1/admin/accounts",
                        json!({"role": "moderator", "name": "X", "organization_id": other_org, "id": "choisi"}),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::post(
                        "/v1/admin/organizations",
                        json!({"name": "X", "kind": "sdis", "id": "choisi"}),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::post(
                        "/v1/admin/tokens",
                        json!({"account_id": victim, "jti": "choisi"}),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::post(
                        "/v1/admin/tokens",
                        json!({"account_id": victim, "exp": 4102444800_i64}),
                    ),
                    "body",
                ),
                (
                    "admin",
                    Req::post(
                        "/v1/admin/webhooks",
                        json!({"url": "http://127.0.0.1:9/", "secret": "0123456789abcdef", "enabled": true, "delivered_seq": 0}),
                    ),
                    "body",
                ),
            ];
            let before = stored(&app);
            for (who, req, field) in &cases {
                let token = match *who {
                    "authority" => &cast.sdis33,
                    "moderator" => &cast.moderator,
                    _ => &cast.admin,
                };
                let what = format!("{who}: {} {:?}", req.label(), req.body);
                let body = problem(send(&app, req, bearer(token)).await, 422, &what).await;
                let fields: Vec<&str> = body["errors"]
                    .as_array()
                    .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
                    .unwrap_or_default();
                assert!(fields.contains(field), "{what}: {body}");
                assert_eq!(stored(&app), before, "{what} changed nothing");
            }
            // A tip cannot choose its status or provenance either (nothing of the sender is kept).
            for (field, value) in [
                ("status", json!("published")),
                ("provenance", official),
                ("id", json!("x")),
            ] {
                let mut tip = json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556000003", "source_url": "https://social.example/2"});
                tip[field] = value;
                let response = app
                    .client
                    .post(app.url("/v1/tips"))
                    .json(&tip)
                    .send()
                    .await
                    .unwrap();
                problem(response, 422, &format!("tip with {field}")).await;
            }
            assert_eq!(stored(&app), before);
            // Resolving takes no body: what one sends is ignored, the outage ends now.
            let (status, resolved) = app
                .post(
                    &format!("/v1/outages/{outage}/resolve"),
                    &cast.sdis33,
                    json!({"resolved_at": "2020-01-01T00:00:00Z", "status": "active"}),
                )
                .await;
            assert_eq!(status, 200, "{resolved}");
            assert_eq!(resolved["outage"]["status"], "resolved");
            assert!(
                resolved["outage"]["resolved_at"].as_str().unwrap() > "2025",
                "{resolved}"
            );
        }
    );

    backend_tests!(
        public_answers_expose_no_account_and_no_tipper,
        |app: TestApp| async move {
            let (_, submitter_account, submitter) = app
                .account_with("VISOV", "volunteers", &[], "moderator")
                .await;
            let (_, reviewer_account, reviewer) = app
                .account_with("VISOV Haute-Loire", "volunteers", &[], "moderator")
                .await;
            let (_, authority_account, sdis) = app
                .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
                .await;
            let secret_comment = "vu par Jeanne Dupont, 06 12 34 56 78, jeanne@example.org";
            let response = app
                .client
                .post(app.url("/v1/tips"))
                .json(&json!({"service": "18", "territory": {"kind": "departement", "code": "43"}, "phone": "04 71 00 00 01", "source_url": "https://social.example/tip", "comment": secret_comment}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            let tip_id = response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let submission = app
                .post(
                    "/v1/numbers",
                    &submitter,
                    json!({"service": "18", "territory": {"kind": "departement", "code": "15"}, "phone": "04 71 00 00 02", "label": "Relayé", "source_url": "https://social.example/s", "comment": secret_comment}),
                )
                .await
                .1["id"]
                .as_str()
                .unwrap()
                .to_owned();
            for id in [&tip_id, &submission] {
                let (status, body) = app
                    .post(
                        &format!("/v1/numbers/{id}/approve"),
                        &reviewer,
                        json!({"reason": "vérifié"}),
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
            }
            let (status, _) = app
                .post(
                    "/v1/numbers",
                    &sdis,
                    number_body("18", "departement", "33", "0556123456"),
                )
                .await;
            assert_eq!(status, 201);
            let mut public = Vec::new();
            for path in [
                format!("/v1/numbers/{tip_id}"),
                format!("/v1/numbers/{tip_id}/history"),
                format!("/v1/numbers/{submission}"),
                format!("/v1/numbers/{submission}/history"),
                "/v1/numbers".to_owned(),
                "/v1/numbers.csv".to_owned(),
                "/v1/numbers.geojson".to_owned(),
                "/v1/departements.geojson?service=18".to_owned(),
                "/v1/lookup?postcode=43000".to_owned(),
                "/v1/lookup?postcode=33000".to_owned(),
                "/v1/feed.atom".to_owned(),
                "/v1/cap/feed.atom".to_owned(),
            ] {
                let response = app.get(&path).await;
                assert_eq!(response.status(), 200, "{path}");
                public.push((path, response.text().await.unwrap()));
            }
            for (path, text) in &public {
                for (what, secret) in [
                    ("the submitter's account", submitter_account.as_str()),
                    ("the reviewer's account", reviewer_account.as_str()),
                    ("the authority's account", authority_account.as_str()),
                    ("the tipper's comment", "Jeanne"),
                    ("the tipper's comment", "0612345678"),
                    ("the tipper's comment", "06 12 34 56 78"),
                    ("an account field", "account"),
                    ("a submitter field", "submitted_by"),
                    ("a reviewer field", "decided_by"),
                ] {
                    assert!(!text.contains(secret), "{path} shows {what}");
                }
            }
        }
    );
}

/// API4:2023 Unrestricted Resource Consumption.
///
/// Bodies are bounded (8 MiB, 4 KiB for a tip: 413 problem+json, announced sizes refused
/// before reading; `authorities.rs` sends a 9 MiB publication), page sizes are refused
/// above 1000 (400, not clamped), deep JSON is a 400/422, oversized heads are refused by
/// the HTTP layer (431 or 400, never a 5xx), and a slow client neither blocks others nor
/// keeps its connection past the client timeout. The tip rate limit (429 with
/// `Retry-After`) is `moderation.rs`'s `a_tip_flood_is_cut_off_for_its_address_only`.
mod api4_resource_consumption {
    use super::*;

    backend_tests!(
        bodies_over_the_limit_are_413_problems,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let big = "x".repeat(relai::startup::MAX_BODY_BYTES + 1024);
            let before = stored(&app);
            for (path, method, content_type) in [
                ("/v1/numbers/import", Method::POST, "text/csv"),
                (
                    "/v1/numbers/0190c5a3-0000-7000-8000-000000000000",
                    Method::PATCH,
                    "application/json",
                ),
                ("/v1/outages", Method::POST, "application/json"),
                ("/v1/moderation/decisions", Method::POST, "application/json"),
                ("/v1/admin/organizations", Method::POST, "application/json"),
            ] {
                let response = app
                    .client
                    .request(method.clone(), app.url(path))
                    .bearer_auth(&cast.admin)
                    .header("Content-Type", content_type)
                    .header("If-Match", "\"1\"")
                    .body(big.clone())
                    .send()
                    .await
                    .unwrap();
                problem(response, 413, &format!("{method} {path}")).await;
            }
            // A size announced over the limit is refused at once, before any byte of the body.
            let address = socket_address(&app);
            let head = format!(
                "POST /v1/numbers/import HTTP/1.1\r\nHost: relai\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
                cast.sdis33,
                relai::startup::MAX_BODY_BYTES + 1
            );
            let answer =
                raw_exchange(address.clone(), head.into_bytes(), Duration::from_secs(5)).await;
            assert_eq!(answer.status(), Some(413), "{}", answer.text);
            assert!(
                answer.elapsed < Duration::from_secs(3),
                "{:?}",
                answer.elapsed
            );
            // Without a token, a large body is not even read: 401 at once.
            let head = "POST /v1/numbers HTTP/1.1\r\nHost: relai\r\nContent-Type: application/json\r\nContent-Length: 7000000\r\n\r\n";
            let answer = raw_exchange(
                address.clone(),
                head.as_bytes().to_vec(),
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(answer.status(), Some(401), "{}", answer.text);
            assert!(
                answer.elapsed < Duration::from_secs(3),
                "{:?}",
                answer.elapsed
            );
            // A tip is at most 4 KiB: announcing more is refused before reading it.
            let head = "POST /v1/tips HTTP/1.1\r\nHost: relai\r\nContent-Type: application/json\r\nContent-Length: 7000000\r\n\r\n";
            let answer = raw_exchange(
                address.clone(),
                head.as_bytes().to_vec(),
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(answer.status(), Some(413), "{}", answer.text);
            assert!(
                answer.elapsed < Duration::from_secs(3),
                "{:?}",
                answer.elapsed
            );
            assert!(
                answer.text.contains("application/problem+json"),
                "{}",
                answer.text
            );
            // Sent in chunks without a length, a large tip is cut off as well.
            let mut chunked = b"POST /v1/tips HTTP/1.1\r\nHost: relai\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..16 {
                chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
                chunked.extend_from_slice(&[b' '; 64 * 1024]);
                chunked.extend_from_slice(b"\r\n");
            }
            let answer = raw_exchange(address.clone(), chunked, Duration::from_secs(5)).await;
            assert_eq!(answer.status(), Some(413), "{}", answer.text);
            assert_eq!(stored(&app), before, "nothing written");
        }
    );

    backend_tests!(
        page_sizes_are_bounded_and_deep_json_is_refused,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            for path in ["/v1/numbers", "/v1/moderation/queue", "/v1/admin/audit"] {
                for limit in [
                    "0",
                    "1001",
                    "-1",
                    "1e3",
                    "99999999999999999999999",
                    "1000.0",
                    "%20",
                ] {
                    let req = Req::get(format!("{path}?limit={limit}"));
                    let body = problem(
                        send(&app, &req, bearer(&cast.admin)).await,
                        400,
                        &req.label(),
                    )
                    .await;
                    assert_eq!(body["errors"][0]["field"], "limit", "{}", req.label());
                }
                let req = Req::get(format!("{path}?limit=1000"));
                assert_eq!(
                    send(&app, &req, bearer(&cast.admin)).await.status(),
                    200,
                    "{}",
                    req.label()
                );
            }
            // JSON nested far deeper than any parser stack should go (a tip is at most
            // 4 KiB: 500 levels and more).
            let nested = |depth: usize| {
                [
                    format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
                    format!("{}1{}", "{\"a\":".repeat(depth / 2), "}".repeat(depth / 2)),
                ]
            };
            for path in [
                "/v1/numbers",
                "/v1/outages",
                "/v1/moderation/decisions",
                "/v1/admin/organizations",
                "/v1/admin/webhooks",
                "/v1/tips",
            ] {
                for body in nested(if path == "/v1/tips" { 1_000 } else { 100_000 }) {
                    let response = app
                        .client
                        .post(app.url(path))
                        .bearer_auth(if path == "/v1/numbers" {
                            &cast.sdis33
                        } else {
                            &cast.admin
                        })
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    assert!(status == 400 || status == 422, "{path}: {status}");
                    problem(response, status, path).await;
                }
            }
            assert_eq!(app.get("/healthz").await.status(), 200, "still alive");
        }
    );

    backend_tests!(
        oversized_heads_are_refused_by_the_http_layer,
        |app: TestApp| async move {
            let address = socket_address(&app);
            let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
                (
                    "a 1 MiB header",
                    format!(
                        "GET /v1/services HTTP/1.1\r\nHost: relai\r\nX-Big: {}\r\n\r\n",
                        "a".repeat(1 << 20)
                    )
                    .into_bytes(),
                    &[431],
                ),
                (
                    "200 headers",
                    format!(
                        "GET /v1/services HTTP/1.1\r\nHost: relai\r\n{}\r\n",
                        (0..200)
                            .map(|i| format!("X-H{i}: a\r\n"))
                            .collect::<String>()
                    )
                    .into_bytes(),
                    &[431],
                ),
                (
                    "a 300 KiB request target",
                    format!(
                        "GET /v1/lookup?postcode={} HTTP/1.1\r\nHost: relai\r\n\r\n",
                        "1".repeat(300 * 1024)
                    )
                    .into_bytes(),
                    &[400, 414, 431],
                ),
                (
                    "a request line that is not HTTP",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
                    &[400],
                ),
            ];
            for (name, bytes, expected) in cases {
                let answer = raw_exchange(address.clone(), bytes, Duration::from_secs(10)).await;
                let status = answer.status();
                assert!(
                    status.is_some_and(|s| expected.contains(&s)),
                    "{name}: {}",
                    answer.text.lines().next().unwrap_or("")
                );
                assert!(answer.closed, "{name}: the connection is closed");
                // And the server still answers others.
                assert_eq!(app.get("/v1/services").await.status(), 200, "after {name}");
            }
            // A large but acceptable header is fine: 64 KiB.
            let response = app
                .client
                .get(app.url("/v1/services"))
                .header("X-Big", "a".repeat(64 * 1024))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    );

    backend_tests!(
        slow_clients_block_nobody_and_are_cut_off,
        |app: TestApp| async move {
            let address = socket_address(&app);
            // Twenty clients send half a request and wait.
            let slow: Vec<_> = (0..20)
                .map(|_| {
                    tokio::spawn(raw_exchange(
                        address.clone(),
                        b"GET /v1/services HTTP/1.1\r\nHost: relai\r\nX-Slow: ".to_vec(),
                        Duration::from_secs(30),
                    ))
                })
                .collect();
            // And one sends a body slowly: the head, then a few bytes of a 100-byte tip.
            let slow_body = tokio::spawn(raw_exchange(
                address.clone(),
                b"POST /v1/tips HTTP/1.1\r\nHost: relai\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"service\":".to_vec(),
                Duration::from_secs(60),
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Others are answered meanwhile, at once.
            for _ in 0..5 {
                let started = Instant::now();
                assert_eq!(app.get("/v1/lookup?postcode=33000").await.status(), 200);
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{:?}",
                    started.elapsed()
                );
            }
            // The slow heads are cut off after the client request timeout (5 s): 408, closed.
            for handle in slow {
                let answer = handle.await.unwrap();
                assert!(
                    answer.closed,
                    "a slow head is cut off: {:?}",
                    answer.elapsed
                );
                assert_eq!(answer.status(), Some(408), "{}", answer.text);
                assert!(
                    answer.elapsed >= Duration::from_secs(4)
                        && answer.elapsed < Duration::from_secs(15),
                    "{:?}",
                    answer.elapsed
                );
            }
            // A body that trickles is cut off too.
            let answer = slow_body.await.unwrap();
            assert!(
                answer.closed,
                "a slow body is cut off: {:?} {}",
                answer.elapsed, answer.text
            );
            assert_eq!(answer.status(), Some(408), "{}", answer.text);
            assert!(
                answer.text.contains("application/problem+json"),
                "{}",
                answer.text
            );
            assert!(
                answer.elapsed >= relai::startup::BODY_IDLE_TIMEOUT
                    && answer.elapsed < relai::startup::BODY_IDLE_TIMEOUT + Duration::from_secs(15),
                "{:?}",
                answer.elapsed
            );
            assert_eq!(app.get("/v1/services").await.status(), 200);
        }
    );
}

/// API5:2023 Broken Function Level Authorization.
///
/// Every route that needs a token, for each role (admin without organization, authority
/// of the SDIS 33, moderator, no token): the exact answer. A role without the right gets
/// 401 or 403 and changes nothing; the roles with it get their 2xx (or the 4xx of the
/// request, never a 401/403), so the refusals are about the role. `authorities.rs` has
/// the admin routes for authorities and moderators; this table has every route.
mod api5_function_level_authorization {
    use super::*;

    backend_tests!(
        every_protected_route_for_every_role,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let roles: [(&str, Option<&str>); 4] = [
                ("admin", Some(cast.admin.as_str())),
                ("authority", Some(cast.sdis33.as_str())),
                ("moderator", Some(cast.moderator.as_str())),
                ("no token", None),
            ];
            // Fresh objects for each role, so that one role's call never changes another's.
            struct Objects {
                number: String,
                to_retire: String,
                pending: [String; 3],
                outage: String,
                victim: String,
                holder: String,
                token_jti: String,
            }
            let mut objects = Vec::new();
            for r in 0..4u32 {
                let number = app
                    .publish(Publish::new(
                        "18",
                        "departement",
                        "33",
                        &phone("0556", 100 + r),
                        &cast.sdis33_org,
                    ))
                    .await
                    .unwrap()
                    .id;
                let to_retire = app
                    .publish(Publish::new(
                        "18",
                        "departement",
                        "33",
                        &phone("0556", 200 + r),
                        &cast.sdis33_org,
                    ))
                    .await
                    .unwrap()
                    .id;
                let mut pending = Vec::new();
                for k in 0..3 {
                    pending.push(
                        submit(
                            &app,
                            &cast.submitter,
                            "18",
                            "commune",
                            "33063",
                            &phone("0557", 10 * r + k),
                        )
                        .await,
                    );
                }
                let outage = app
                    .declare(&["18"], "commune", "33063", &cast.sdis33_org)
                    .await
                    .id;
                let (victim, _) = account_in(&app, &cast.sdis33_org, "moderator").await;
                let (holder, holder_token) = account_in(&app, &cast.sdis33_org, "moderator").await;
                objects.push(Objects {
                    number,
                    to_retire,
                    pending: pending.try_into().unwrap(),
                    outage,
                    victim,
                    holder,
                    token_jti: jti_of(&holder_token),
                });
            }
            let (_, hook) = app
                .post(
                    "/v1/admin/webhooks",
                    &cast.admin,
                    json!({"url": "http://127.0.0.1:9/fixture", "secret": "0123456789abcdef"}),
                )
                .await;
            let hook = hook["id"].as_str().unwrap().to_owned();

            type Build = Box<dyn Fn(&Objects, u32) -> Req>;
            // (route, request for role r, [admin, authority, moderator, no token])
            let table: Vec<(&str, Build, [u16; 4])> = vec![
                (
                    "moderation queue",
                    Box::new(|_, _| Req::get("/v1/moderation/queue")),
                    [200, 200, 200, 401],
                ),
                // An admin acts for no organization; a moderator submits with a source_url (moderation.rs).
                (
                    "publish",
                    Box::new(|_, r| {
                        Req::post(
                            "/v1/numbers",
                            number_body("18", "departement", "33", &phone("0556", 300 + r)),
                        )
                    }),
                    [403, 201, 422, 401],
                ),
                // A moderator's correction needs a source_url and waits for review (moderation.rs).
                (
                    "correct",
                    Box::new(|o, _| {
                        Req::patch(
                            format!("/v1/numbers/{}", o.number),
                            1,
                            json!({"label": "Corrigé"}),
                        )
                    }),
                    [200, 200, 422, 401],
                ),
                (
                    "retire",
                    Box::new(|o, _| {
                        Req::post(
                            format!("/v1/numbers/{}/retire", o.to_retire),
                            json!({"reason": "Fin"}),
                        )
                    }),
                    [200, 200, 403, 401],
                ),
                (
                    "import",
                    Box::new(|_, r| {
                        Req::csv(
                            "/v1/numbers/import",
                            format!(
                                "{CSV_HEADER}18,commune,33281,{},Import,\n",
                                phone("0556", 400 + r)
                            ),
                        )
                    }),
                    [403, 201, 403, 401],
                ),
                // An admin without organization cannot vouch for a number.
                (
                    "approve",
                    Box::new(|o, _| {
                        Req::post(format!("/v1/numbers/{}/approve", o.pending[0]), json!({}))
                    }),
                    [403, 200, 200, 401],
                ),
                (
                    "reject",
                    Box::new(|o, _| {
                        Req::post(
                            format!("/v1/numbers/{}/reject", o.pending[1]),
                            json!({"reason": "Faux"}),
                        )
                    }),
                    [200, 200, 200, 401],
                ),
                (
                    "decisions",
                    Box::new(|o, _| {
                        Req::post(
                            "/v1/moderation/decisions",
                            json!({"decisions": [{"id": o.pending[2], "decision": "reject", "reason": "Faux"}]}),
                        )
                    }),
                    [200, 200, 200, 401],
                ),
                (
                    "declare",
                    Box::new(|_, _| {
                        Req::post(
                            "/v1/outages",
                            json!({"services": ["18"], "territory": {"kind": "commune", "code": "33281"}, "description": "Panne"}),
                        )
                    }),
                    [403, 201, 403, 401],
                ),
                (
                    "resolve",
                    Box::new(|o, _| {
                        Req::post(format!("/v1/outages/{}/resolve", o.outage), json!({}))
                    }),
                    [200, 200, 403, 401],
                ),
                (
                    "list organizations",
                    Box::new(|_, _| Req::get("/v1/admin/organizations")),
                    [200, 403, 403, 401],
                ),
                (
                    "create organization",
                    Box::new(|_, r| {
                        Req::post(
                            "/v1/admin/organizations",
                            json!({"name": format!("Org {r}"), "kind": "sdis", "scopes": ["*:national:FR"]}),
                        )
                    }),
                    [201, 403, 403, 401],
                ),
                (
                    "list accounts",
                    Box::new(|_, _| Req::get("/v1/admin/accounts")),
                    [200, 403, 403, 401],
                ),
                (
                    "create account",
                    Box::new(|_, _| {
                        Req::post(
                            "/v1/admin/accounts",
                            json!({"role": "admin", "name": "Nouvel admin"}),
                        )
                    }),
                    [201, 403, 403, 401],
                ),
                (
                    "disable account",
                    Box::new(|o, _| {
                        Req::new(
                            Method::PATCH,
                            format!("/v1/admin/accounts/{}", o.victim),
                            Body::Json(json!({"enabled": false})),
                        )
                    }),
                    [200, 403, 403, 401],
                ),
                (
                    "issue token",
                    Box::new(|o, _| {
                        Req::post(
                            "/v1/admin/tokens",
                            json!({"account_id": o.holder, "ttl": "1h"}),
                        )
                    }),
                    [201, 403, 403, 401],
                ),
                (
                    "revoke token",
                    Box::new(|o, _| {
                        Req::post(
                            format!("/v1/admin/tokens/{}/revoke", o.token_jti),
                            json!({}),
                        )
                    }),
                    [204, 403, 403, 401],
                ),
                (
                    "audit",
                    Box::new(|_, _| Req::get("/v1/admin/audit")),
                    [200, 403, 403, 401],
                ),
                (
                    "list webhooks",
                    Box::new(|_, _| Req::get("/v1/admin/webhooks")),
                    [200, 403, 403, 401],
                ),
                (
                    "webhook deliveries",
                    {
                        let hook = hook.clone();
                        Box::new(move |_, _| {
                            Req::get(format!("/v1/admin/webhooks/{hook}/deliveries"))
                        })
                    },
                    [200, 403, 403, 401],
                ),
                (
                    "register webhook",
                    Box::new(|_, r| {
                        Req::post(
                            "/v1/admin/webhooks",
                            json!({"url": format!("http://127.0.0.1:9/{r}"), "secret": "0123456789abcdef"}),
                        )
                    }),
                    [201, 403, 403, 401],
                ),
            ];
            // Every protected route is in the table.
            assert_eq!(table.len(), protected_routes().len());
            // The denied roles first, then the allowed ones, so that every refusal is checked
            // against untouched objects.
            for denied_pass in [true, false] {
                for (route, build, expected) in &table {
                    for (r, (role, token)) in roles.iter().enumerate() {
                        let denied = matches!(expected[r], 401 | 403);
                        if denied != denied_pass {
                            continue;
                        }
                        let req = build(&objects[r], r as u32);
                        let what = format!("{route} as {role}: {}", req.label());
                        let before = stored(&app);
                        let response = send(&app, &req, token.and_then(bearer)).await;
                        if denied {
                            problem(response, expected[r], &what).await;
                            assert_eq!(stored(&app), before, "{what} changed nothing");
                        } else {
                            let status = response.status().as_u16();
                            let text = response.text().await.unwrap_or_default();
                            assert_eq!(status, expected[r], "{what}: {text}");
                        }
                    }
                }
            }
        }
    );

    backend_tests!(
        methods_a_route_does_not_serve_are_refused,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let n = app
                .publish(Publish::new(
                    "18",
                    "departement",
                    "33",
                    "0556123456",
                    &cast.sdis33_org,
                ))
                .await
                .unwrap();
            let before = stored(&app);
            for (method, path) in [
                (Method::DELETE, format!("/v1/numbers/{}", n.id)),
                (Method::PUT, format!("/v1/numbers/{}", n.id)),
                (Method::GET, format!("/v1/numbers/{}/retire", n.id)),
                (Method::DELETE, "/v1/outages".to_owned()),
                (Method::PUT, "/v1/admin/accounts".to_owned()),
                (Method::DELETE, "/v1/admin/webhooks".to_owned()),
                (Method::GET, "/v1/admin/tokens".to_owned()),
                (Method::POST, "/v1/numbers.csv".to_owned()),
                (Method::POST, "/v1/services".to_owned()),
            ] {
                for token in [Some(cast.admin.as_str()), None] {
                    let req = Req::new(method.clone(), path.clone(), Body::None);
                    let response = send(&app, &req, token.and_then(bearer)).await;
                    let status = response.status().as_u16();
                    assert!(status == 404 || status == 405, "{}: {status}", req.label());
                    problem(response, status, &req.label()).await;
                }
            }
            assert_eq!(stored(&app), before);
        }
    );
}

/// API6:2023 Unrestricted Access to Sensitive Business Flows.
///
/// Four eyes: nobody decides on their own submission (`moderation.rs` has the single
/// approval and the own correction; here the batch form and rejection). The official word
/// wins: a relayed number is never approved over an official one, as a new submission
/// (`moderation.rs`, and here in a batch) or as a correction that would supersede the
/// official number. Tip floods are rate limited (`moderation.rs`).
mod api6_sensitive_business_flows {
    use super::*;

    backend_tests!(
        four_eyes_hold_on_every_decision_route,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let own = submit(
                &app,
                &cast.moderator,
                "18",
                "departement",
                "43",
                "0471000001",
            )
            .await;
            let before = stored(&app);
            let response = send(
                &app,
                &Req::post(
                    format!("/v1/numbers/{own}/reject"),
                    json!({"reason": "je me ravise"}),
                ),
                bearer(&cast.moderator),
            )
            .await;
            problem(response, 403, "rejecting one's own submission").await;
            let (status, results) = app
                .post(
                    "/v1/moderation/decisions",
                    &cast.moderator,
                    json!({"decisions": [{"id": own, "decision": "approve"}]}),
                )
                .await;
            assert_eq!(
                (status, results["applied"].as_i64()),
                (200, Some(0)),
                "{results}"
            );
            assert_eq!(results["results"][0]["status"], 403, "{results}");
            assert_eq!(stored(&app), before);
            // The queue says which items are one's own.
            let queue: Value = send(
                &app,
                &Req::get("/v1/moderation/queue"),
                bearer(&cast.moderator),
            )
            .await
            .json()
            .await
            .unwrap();
            let item = queue["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["number"]["id"] == own.as_str())
                .unwrap();
            assert_eq!(item["own"], true);
        }
    );

    backend_tests!(
        a_relayed_number_never_wins_over_an_official_one,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let (status, official) = app
                .post(
                    "/v1/numbers",
                    &cast.sdis33,
                    number_body("18", "departement", "33", "05 56 12 34 56"),
                )
                .await;
            assert_eq!(status, 201, "{official}");
            let id = official["id"].as_str().unwrap().to_owned();
            // A new submission for the same service and territory, approved in a batch: 409.
            let late = submit(
                &app,
                &cast.submitter,
                "18",
                "departement",
                "33",
                "0556999999",
            )
            .await;
            let before = stored(&app);
            let (status, results) = app
                .post(
                    "/v1/moderation/decisions",
                    &cast.moderator,
                    json!({"decisions": [{"id": late, "decision": "approve"}]}),
                )
                .await;
            assert_eq!(status, 200);
            assert_eq!(results["results"][0]["status"], 409, "{results}");
            assert_eq!(stored(&app), before);
            // A moderator's correction of the official number: two volunteers must not replace
            // what the SDIS published.
            let response = app
                .client
                .patch(app.url(&format!("/v1/numbers/{id}")))
                .bearer_auth(&cast.submitter)
                .header("If-Match", "\"1\"")
                .json(&json!({"phone": "05 56 99 99 98", "source_url": "https://social.example/faux", "reason": "Le SDIS a changé de numéro"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            let correction = response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let before = stored(&app);
            let response = send(
                &app,
                &Req::post(format!("/v1/numbers/{correction}/approve"), json!({})),
                bearer(&cast.moderator),
            )
            .await;
            problem(
                response,
                409,
                "a relayed correction over an official number",
            )
            .await;
            assert_eq!(stored(&app), before, "nothing changed");
            let (_, n) = app.get_json(&format!("/v1/numbers/{id}")).await;
            assert_eq!(
                (n["status"].as_str(), n["version"].as_i64()),
                (Some("published"), Some(1))
            );
            let (_, lookup) = app.get_json("/v1/lookup?insee=33063").await;
            let eighteen = lookup["communes"][0]["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["service"] == "18")
                .unwrap()
                .clone();
            assert_eq!(eighteen["numbers"].as_array().unwrap().len(), 1);
            assert_eq!(eighteen["numbers"][0]["phone"]["national"], "0556123456");
            assert_eq!(eighteen["numbers"][0]["provenance"]["kind"], "official");
            // The authority in scope corrects its own number directly.
            let response = app
                .client
                .patch(app.url(&format!("/v1/numbers/{id}")))
                .bearer_auth(&cast.sdis33)
                .header("If-Match", "\"1\"")
                .json(&json!({"phone": "05 56 99 99 98", "reason": "Signalé par VISOV"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    );
}

/// API7:2023 Server Side Request Forgery.
///
/// Webhook URLs must resolve inside `RELAI_WEBHOOK_ALLOWED_NETWORKS`, by default public
/// addresses only. `webhooks.rs` refuses private, link-local, `file:`, `ftp:` and
/// credentials on the test instance (which allows loopback). Here an instance with the
/// production default refuses every spelling of loopback and other internal addresses,
/// and accepts a public one (no case needs DNS beyond `localhost`). Moderators' and
/// tippers' `source_url` is never fetched.
mod api7_server_side_request_forgery {
    use super::*;

    backend_tests!(
        webhook_targets_inside_the_network_are_refused,
        |app: TestApp| async move {
            // A second instance on the same storage, with the production default policy.
            let data_dir =
                std::env::temp_dir().join(format!("relai-owasp-{}", uuid::Uuid::now_v7()));
            let mut config = relai::config::Config::for_database(&app.database_url, &data_dir);
            config.jwt_private_key = app.jwt_key.clone();
            assert!(
                config.webhook_allowed_networks.is_empty(),
                "the default: public only"
            );
            let pool = relai::startup::prepare_database(&config).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let production =
                relai::startup::Application::build_with(&config, pool, listener).unwrap();
            let base = format!("http://127.0.0.1:{}", production.port());
            tokio::spawn(production.into_server());
            let admin = app.admin_token().await;
            let register = |url: &str| {
                app.client
                    .post(format!("{base}/v1/admin/webhooks"))
                    .bearer_auth(&admin)
                    .json(&json!({"url": url, "secret": "0123456789abcdef"}))
                    .send()
            };
            let before = stored(&app);
            for url in [
                "http://127.0.0.1/hook",
                "http://127.0.0.1:8080/v1/admin/tokens",
                "http://localhost/hook",
                "http://LocalHost/hook",
                "http://[::1]/hook",
                "http://[0:0:0:0:0:0:0:1]/hook",
                "http://[::ffff:127.0.0.1]/hook",
                "http://[::ffff:7f00:1]/hook",
                "http://2130706433/hook",
                "http://0x7f000001/hook",
                "http://0177.0.0.1/hook",
                "http://127.1/hook",
                "http://0.0.0.0/hook",
                "http://0/hook",
                "http://169.254.169.254/latest/meta-data/",
                "http://[fe80::1]/hook",
                "http://[fd00::1]/hook",
                "http://10.0.0.1/hook",
                "http://172.16.0.1/hook",
                "http://192.168.0.1/hook",
                "http://100.64.0.1/hook",
                "http://198.18.0.1/hook",
                "http://224.0.0.1/hook",
                "http://255.255.255.255/hook",
                "http://evil.example@127.0.0.1/hook",
                "https://127.0.0.1:443@public.example/hook",
                "file:///etc/passwd",
                "gopher://127.0.0.1:6379/_FLUSHALL",
                "dict://127.0.0.1:11211/stat",
                "ftp://example.org/",
                "javascript:alert(1)",
                "//127.0.0.1/hook",
            ] {
                let response = register(url).await.unwrap();
                let body = problem(response, 422, url).await;
                assert_eq!(body["errors"][0]["field"], "url", "{url}: {body}");
            }
            assert_eq!(stored(&app), before, "nothing registered");
            // A public address is accepted (nothing is sent until a change happens).
            let response = register("http://192.0.43.10/hook").await.unwrap();
            assert_eq!(response.status(), 201);
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    );

    backend_tests!(source_urls_are_never_fetched, |app: TestApp| async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://127.0.0.1:{}/post",
            listener.local_addr().unwrap().port()
        );
        let response = app
                .client
                .post(app.url("/v1/tips"))
                .json(&json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556000001", "source_url": url}))
                .send()
                .await
                .unwrap();
        assert_eq!(response.status(), 202);
        let cast = cast(&app).await;
        let id = submit(
            &app,
            &cast.submitter,
            "18",
            "departement",
            "43",
            "0471000001",
        )
        .await;
        let (status, _) = app
            .post(
                &format!("/v1/numbers/{id}/approve"),
                &cast.moderator,
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "nobody connected to the source URL"
        );
    });
}

/// API8:2023 Security Misconfiguration.
///
/// Security headers on every kind of answer (success, 304, problem, preflight, the page
/// with its CSP), no server banner, CORS as designed (any origin, no credentials, only the
/// methods served), and no stack trace, SQL or storage detail in any error, whatever the
/// input. `conventions.rs` checks CORS on a public read and the page's `connect-src`.
mod api8_security_misconfiguration {
    use super::*;

    fn assert_security_headers(headers: &HeaderMap, what: &str) {
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "SAMEORIGIN"),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{what}: {name}"
            );
        }
        for banner in ["server", "x-powered-by"] {
            assert!(headers.get(banner).is_none(), "{what}: {banner}");
        }
        assert!(
            headers.get("access-control-allow-credentials").is_none(),
            "{what}: no credentials"
        );
    }

    backend_tests!(
        security_headers_on_every_kind_of_answer,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            let etag = app.get("/v1/services").await.headers()["etag"].clone();
            let huge = "x".repeat(relai::startup::MAX_BODY_BYTES + 1);
            let answers: Vec<(&str, reqwest::RequestBuilder)> = vec![
                ("a public read", app.client.get(app.url("/v1/services"))),
                (
                    "a 304",
                    app.client
                        .get(app.url("/v1/services"))
                        .header("If-None-Match", etag),
                ),
                ("the page", app.client.get(app.url("/"))),
                ("the spec", app.client.get(app.url("/openapi.json"))),
                ("the docs", app.client.get(app.url("/docs/"))),
                ("a CSV export", app.client.get(app.url("/v1/numbers.csv"))),
                ("a 404 problem", app.client.get(app.url("/v1/nothing"))),
                (
                    "a 400 problem",
                    app.client.get(app.url("/v1/lookup?postcode=abc")),
                ),
                (
                    "a 401 problem",
                    app.client.post(app.url("/v1/numbers")).json(&json!({})),
                ),
                (
                    "a 403 problem",
                    app.client
                        .get(app.url("/v1/admin/audit"))
                        .bearer_auth(&cast.moderator),
                ),
                (
                    "a 413 problem",
                    app.client
                        .post(app.url("/v1/numbers"))
                        .bearer_auth(&cast.sdis33)
                        .header("Content-Type", "application/json")
                        .body(huge),
                ),
                (
                    "a 415 problem",
                    app.client
                        .post(app.url("/v1/numbers"))
                        .bearer_auth(&cast.sdis33)
                        .header("Content-Type", "text/plain")
                        .body("{}"),
                ),
                (
                    "a 422 problem",
                    app.client
                        .post(app.url("/v1/numbers"))
                        .bearer_auth(&cast.sdis33)
                        .json(&json!({"service": "18"})),
                ),
                (
                    "a 201",
                    app.client
                        .post(app.url("/v1/numbers"))
                        .bearer_auth(&cast.sdis33)
                        .json(&number_body("18", "departement", "33", "0556123456")),
                ),
                (
                    "a preflight",
                    app.client
                        .request(Method::OPTIONS, app.url("/v1/numbers"))
                        .header("Origin", "https://carte.example.org")
                        .header("Access-Control-Request-Method", "POST")
                        .header(
                            "Access-Control-Request-Headers",
                            "authorization, content-type",
                        ),
                ),
            ];
            for (what, request) in answers {
                let response = request
                    .header("Origin", "https://carte.example.org")
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().as_u16() < 500, "{what}");
                assert_security_headers(response.headers(), what);
                if what.ends_with("problem") {
                    assert_eq!(
                        response.headers()["content-type"],
                        "application/problem+json",
                        "{what}"
                    );
                    assert_eq!(response.headers()["cache-control"], "no-store", "{what}");
                }
            }
            let page = app.get("/").await;
            let csp = page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            for directive in [
                "default-src 'self'",
                "connect-src 'self'",
                "base-uri 'none'",
                "form-action 'self'",
            ] {
                assert!(csp.contains(directive), "{csp}");
            }
            assert!(
                !csp.contains("script-src *") && !csp.contains("'unsafe-eval'"),
                "{csp}"
            );
        }
    );

    backend_tests!(cors_is_as_designed, |app: TestApp| async move {
        let origin = "https://carte.example.org";
        // A write from another origin may be preflighted (a bearer token is never sent by a
        // browser on its own), with no credentials.
        let preflight = app
            .client
            .request(Method::OPTIONS, app.url("/v1/numbers"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{}", preflight.status());
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], origin);
        assert!(h.get("access-control-allow-credentials").is_none());
        let methods = h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_ascii_uppercase();
        for m in ["DELETE", "PUT", "TRACE", "CONNECT"] {
            assert!(!methods.contains(m), "{methods}");
        }
        // Methods the API does not serve are not allowed.
        for method in ["DELETE", "PUT", "TRACE"] {
            let preflight = app
                .client
                .request(Method::OPTIONS, app.url("/v1/numbers"))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", method)
                .send()
                .await
                .unwrap();
            assert!(
                !preflight.status().is_success()
                    || preflight
                        .headers()
                        .get("access-control-allow-origin")
                        .is_none(),
                "{method}: {}",
                preflight.status()
            );
            assert!(preflight.status().as_u16() < 500);
        }
        // Cookies grant nothing, and the answer does not allow credentials.
        let response = app
            .client
            .post(app.url("/v1/numbers"))
            .header("Origin", origin)
            .header("Cookie", "session=admin")
            .json(&number_body("18", "departement", "33", "0556123456"))
            .send()
            .await
            .unwrap();
        assert!(response
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
        problem(response, 401, "a cookie is not a credential").await;
        // Answers vary by origin, so that a cache never serves one origin's answer to another.
        let response = app
            .client
            .get(app.url("/v1/services"))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert!(response.headers()["vary"]
            .to_str()
            .unwrap()
            .contains("Origin"));
    });

    /// A client whose requests come from its own loopback address.
    fn from_address(i: usize) -> reqwest::Client {
        let ip = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1);
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::V4(ip))
            .build()
            .unwrap()
    }

    /// Words that would betray the internals in an error detail.
    const LEAKS: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE ",
        "DELETE FROM",
        "SQLSTATE",
        "sqlite",
        "postgres",
        "diesel",
        "panicked",
        "backtrace",
        "stack",
        ".rs:",
        "src/",
        "thread '",
        "syntax error",
        "relation \"",
        "r2d2",
        "tokio",
        "actix",
    ];

    backend_tests!(errors_never_show_internals, |app: TestApp| async move {
        let cast = cast(&app).await;
        let n = app
            .publish(Publish::new(
                "18",
                "departement",
                "33",
                "0556123456",
                &cast.sdis33_org,
            ))
            .await
            .unwrap();
        let pending = submit(
            &app,
            &cast.submitter,
            "18",
            "commune",
            "33063",
            "0556000002",
        )
        .await;
        let malformed = [
            "{",
            "{\"service\": \"18\",",
            "[1,2",
            "\"\\ud800\"",
            "{\"a\": 1e999999}",
            "nul\u{0}l",
            "\u{feff}{}",
            "{\"service\": \"18\", \"service\": \"15\"}",
            "",
        ];
        let mut requests: Vec<(Req, Option<&str>)> = Vec::new();
        for body in malformed {
            for path in [
                "/v1/numbers".to_owned(),
                "/v1/outages".to_owned(),
                "/v1/tips".to_owned(),
                "/v1/moderation/decisions".to_owned(),
                format!("/v1/numbers/{pending}/approve"),
                format!("/v1/numbers/{}/retire", n.id),
                "/v1/admin/organizations".to_owned(),
                "/v1/admin/webhooks".to_owned(),
                "/v1/admin/tokens".to_owned(),
            ] {
                let mut req = Req::new(Method::POST, path, Body::Csv(String::new()));
                req.body = Body::Csv(body.to_owned());
                requests.push((req, Some(cast.admin.as_str())));
            }
            let mut patch = Req::patch(format!("/v1/numbers/{}", n.id), 1, json!({}));
            patch.body = Body::Csv(body.to_owned());
            requests.push((patch, Some(cast.sdis33.as_str())));
        }
        // SQL-looking, NUL and oversized values in every kind of field, path and parameter.
        let long = "9".repeat(5000);
        for evil in [
            "' OR 1=1 --",
            "1; DROP TABLE numbers",
            "\" OR \"\"=\"",
            "\u{0}",
            "a\u{0}b",
            "\\",
            "%",
            "_",
            long.as_str(),
        ] {
            let enc: String =
                percent_encoding::utf8_percent_encode(evil, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            for path in [
                format!("/v1/numbers/{enc}"),
                format!("/v1/numbers/{enc}/history"),
                format!("/v1/postcodes/{enc}"),
                format!("/v1/cap/alerts/{enc}.xml"),
                format!("/v1/lookup?postcode={enc}"),
                format!("/v1/lookup?insee={enc}"),
                format!("/v1/numbers?service={enc}&departement={enc}"),
                format!("/v1/numbers?territory_kind={enc}&territory_code={enc}"),
                format!("/v1/numbers?cursor={enc}"),
                format!("/v1/numbers.csv?service={enc}"),
                format!("/v1/numbers.geojson?departement={enc}"),
                format!("/v1/departements.geojson?service={enc}"),
                format!("/v1/communes?q={enc}"),
                format!("/v1/outages?status={enc}"),
                format!("/v1/feed.atom?before={enc}"),
                format!("/v1/moderation/queue?service={enc}&cursor={enc}"),
                format!("/v1/admin/audit?cursor={enc}"),
                format!("/v1/admin/webhooks/{enc}/deliveries"),
            ] {
                requests.push((Req::get(path), Some(cast.admin.as_str())));
            }
            for (path, body) in [
                (format!("/v1/numbers/{enc}/approve"), json!({})),
                (format!("/v1/numbers/{enc}/reject"), json!({"reason": "x"})),
                (format!("/v1/numbers/{enc}/retire"), json!({"reason": "x"})),
                (format!("/v1/outages/{enc}/resolve"), json!({})),
                (format!("/v1/admin/tokens/{enc}/revoke"), json!({})),
                ("/v1/admin/tokens".to_owned(), json!({"account_id": evil})),
                (
                    "/v1/moderation/decisions".to_owned(),
                    json!({"decisions": [{"id": evil, "decision": "approve"}]}),
                ),
                (
                    "/v1/numbers".to_owned(),
                    json!({"service": evil, "territory": {"kind": evil, "code": evil}, "phone": evil, "label": evil}),
                ),
                (
                    "/v1/numbers".to_owned(),
                    json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556000009", "label": evil, "outage_id": evil, "valid_until": evil}),
                ),
                (
                    "/v1/outages".to_owned(),
                    json!({"services": [evil], "territory": {"kind": "departement", "code": "33"}, "description": evil}),
                ),
                (
                    format!("/v1/numbers/{}/retire", n.id),
                    json!({"reason": evil}),
                ),
                (
                    "/v1/admin/organizations".to_owned(),
                    json!({"name": evil, "kind": evil, "scopes": [evil]}),
                ),
                (
                    "/v1/admin/accounts".to_owned(),
                    json!({"name": evil, "role": "moderator", "organization_id": evil}),
                ),
                (
                    "/v1/admin/webhooks".to_owned(),
                    json!({"url": format!("http://127.0.0.1:9/{enc}"), "secret": format!("0123456789abcdef{evil}")}),
                ),
                (
                    "/v1/tips".to_owned(),
                    json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556000008", "source_url": format!("https://social.example/{evil}"), "comment": evil}),
                ),
            ] {
                let token = if path == "/v1/numbers" || path == "/v1/outages" {
                    cast.sdis33.as_str()
                } else {
                    cast.admin.as_str()
                };
                requests.push((Req::post(path, body), Some(token)));
            }
            requests.push((
                Req::new(
                    Method::PATCH,
                    format!("/v1/admin/accounts/{enc}"),
                    Body::Json(json!({"enabled": true})),
                ),
                Some(cast.admin.as_str()),
            ));
            requests.push((
                Req::patch(format!("/v1/numbers/{enc}"), 1, json!({"label": "x"})),
                Some(cast.sdis33.as_str()),
            ));
            requests.push((
                Req::patch(
                    format!("/v1/numbers/{}", n.id),
                    1,
                    json!({"label": evil, "reason": evil}),
                ),
                Some(cast.sdis33.as_str()),
            ));
            requests.push((Req::patch(format!("/v1/numbers/{}", n.id), 1, json!({"label": "x", "source_url": format!("https://social.example/{evil}"), "reason": evil})), Some(cast.moderator.as_str())));
        }
        let mut failures = Vec::new();
        for (i, (req, token)) in requests.iter().enumerate() {
            // Tips are limited per address: each comes from an address of its own.
            let client = if req.path == "/v1/tips" {
                from_address(i)
            } else {
                app.client.clone()
            };
            let mut request = client.request(req.method.clone(), app.url(&req.path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(v) = &req.if_match {
                request = request.header("If-Match", v);
            }
            request = match &req.body {
                Body::None => request,
                Body::Json(v) => request.json(v),
                Body::Csv(s) => request
                    .header("Content-Type", "application/json")
                    .body(s.clone()),
            };
            // Some of these are accepted (a tip with an odd comment): only errors matter.
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            // A batch answers 200 with a status per decision: those count too.
            let inner_error = serde_json::from_str::<Value>(&text).ok().is_some_and(|v| {
                v["results"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["status"].as_u64() >= Some(500)))
            });
            if status >= 500 || inner_error {
                failures.push(format!("{} -> {status} {text}", req.label()));
                continue;
            }
            if status >= 400 {
                let detail: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let shown = format!("{} {}", detail["detail"], detail["errors"]);
                for leak in LEAKS {
                    if shown.to_lowercase().contains(&leak.to_lowercase()) {
                        failures.push(format!(
                            "{} -> {status} shows {leak:?}: {text}",
                            req.label()
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(app.get("/healthz").await.status(), 200);
    });

    backend_tests!(
        injection_leaves_the_data_intact,
        |app: TestApp| async move {
            let cast = cast(&app).await;
            // Stored verbatim, as data.
            let label = "Robert'); DROP TABLE numbers;-- \" OR 1=1";
            let (status, n) = app
                .post(
                    "/v1/numbers",
                    &cast.sdis33,
                    json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": label}),
                )
                .await;
            assert_eq!(status, 201, "{n}");
            let id = n["id"].as_str().unwrap().to_owned();
            let before = stored(&app);
            let (_, page) = app.get_json("/v1/numbers").await;
            for (path, expected) in [
                ("/v1/numbers?service=18'%20OR%201=1%20--", 400),
                ("/v1/numbers?departement=33'%20OR%20'1'='1", 400),
                (
                    "/v1/numbers?territory_kind=departement;DROP%20TABLE%20numbers",
                    400,
                ),
                ("/v1/numbers/1;%20DROP%20TABLE%20numbers", 404),
                ("/v1/numbers/'%20OR%201=1%20--", 404),
                ("/v1/numbers/'%20OR%201=1%20--/history", 404),
                ("/v1/numbers/1%20OR%201=1/history", 404),
                ("/v1/postcodes/33000'%20OR%201=1--", 400),
                ("/v1/lookup?insee=33063'--", 400),
                ("/v1/outages?status=active'%20OR%201=1--", 400),
                ("/v1/cap/alerts/1'%20OR%201=1--.xml", 404),
            ] {
                let response = app.get(path).await;
                problem(response, expected, path).await;
            }
            let (status, found) = app.get_json("/v1/communes?q=%27%20OR%201%3D1%20--").await;
            assert_eq!(status, 200);
            assert_eq!(found["items"], json!([]));
            let (status, found) = app
                .get_json("/v1/numbers?territory_code=33'%20OR%201=1--")
                .await;
            assert_eq!((status, found["items"].clone()), (200, json!([])));
            let response = send(
                &app,
                &Req::get("/v1/admin/audit?cursor=1'%20OR%201=1--"),
                bearer(&cast.admin),
            )
            .await;
            problem(response, 400, "audit cursor").await;
            assert_eq!(stored(&app), before, "the data is intact");
            assert_eq!(app.get_json("/v1/numbers").await.1, page);
            let (_, n) = app.get_json(&format!("/v1/numbers/{id}")).await;
            assert_eq!(n["label"], label);
        }
    );

    backend_tests!(
        the_csv_export_defuses_every_formula_prefix,
        |app: TestApp| async move {
            let admin = app.admin_token().await;
            // An organization whose name is a formula, created through the API.
            let (status, org) = app
                .post(
                    "/v1/admin/organizations",
                    &admin,
                    json!({"name": "@SUM(1+1)*cmd|' /C calc'!A0", "kind": "sdis", "scopes": ["18:departement:33"]}),
                )
                .await;
            assert_eq!(status, 201, "{org}");
            let (_, token) = account_in(&app, org["id"].as_str().unwrap(), "authority").await;
            let labels = [
                "=HYPERLINK(\"http://evil.example\")",
                "+33 SUM(A1:A9)",
                "-2+3+cmd|' /C calc'!A0",
                "@SUM(1+1)",
                "CTA-CODIS = Gironde",
            ];
            for (i, label) in labels.iter().enumerate() {
                let (status, body) = app
                    .post(
                        "/v1/numbers",
                        &token,
                        json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": phone("0556", i as u32), "label": label}),
                    )
                    .await;
                assert_eq!(status, 201, "{label}: {body}");
            }
            let text = app.get("/v1/numbers.csv").await.text().await.unwrap();
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader.headers().unwrap().clone();
            let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
            let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
            assert_eq!(rows.len(), labels.len());
            for (i, label) in labels.iter().enumerate() {
                let row = rows
                    .iter()
                    .find(|r| r[column("phone")] == phone("0556", i as u32))
                    .unwrap();
                let expected = if label.starts_with(['=', '+', '-', '@']) {
                    format!("'{label}")
                } else {
                    label.to_string()
                };
                assert_eq!(&row[column("label")], expected, "{label}");
                assert_eq!(&row[column("organization")], "'@SUM(1+1)*cmd|' /C calc'!A0");
                for cell in row.iter() {
                    assert!(
                        !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                        "{cell}"
                    );
                }
            }
        }
    );
}

/// API9:2023 Improper Inventory Management.
///
/// The OpenAPI document lists exactly the routes below (a new route must be added here
/// and documented); every documented operation is served; anything else, including
/// paths that other servers expose, is a 404 problem. Only the documentation itself
/// (`/openapi.json`, `/docs`) is served without being in the document.
mod api9_inventory_management {
    use super::*;

    /// The inventory: every operation the service exposes.
    const INVENTORY: &[(&str, &str)] = &[
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("GET", "/v1/admin/accounts"),
        ("POST", "/v1/admin/accounts"),
        ("PATCH", "/v1/admin/accounts/{id}"),
        ("GET", "/v1/admin/audit"),
        ("GET", "/v1/admin/organizations"),
        ("POST", "/v1/admin/organizations"),
        ("POST", "/v1/admin/tokens"),
        ("POST", "/v1/admin/tokens/{jti}/revoke"),
        ("GET", "/v1/admin/webhooks"),
        ("POST", "/v1/admin/webhooks"),
        ("GET", "/v1/admin/webhooks/{id}/deliveries"),
        ("GET", "/v1/cap/alerts/{identifier}.xml"),
        ("GET", "/v1/cap/feed.atom"),
        ("GET", "/v1/communes"),
        ("GET", "/v1/departements"),
        ("GET", "/v1/departements.geojson"),
        ("GET", "/v1/events"),
        ("GET", "/v1/feed.atom"),
        ("GET", "/v1/lookup"),
        ("POST", "/v1/moderation/decisions"),
        ("GET", "/v1/moderation/queue"),
        ("GET", "/v1/numbers"),
        ("POST", "/v1/numbers"),
        ("GET", "/v1/numbers.csv"),
        ("GET", "/v1/numbers.geojson"),
        ("POST", "/v1/numbers/import"),
        ("GET", "/v1/numbers/{id}"),
        ("PATCH", "/v1/numbers/{id}"),
        ("POST", "/v1/numbers/{id}/approve"),
        ("GET", "/v1/numbers/{id}/history"),
        ("POST", "/v1/numbers/{id}/reject"),
        ("POST", "/v1/numbers/{id}/retire"),
        ("GET", "/v1/outages"),
        ("POST", "/v1/outages"),
        ("POST", "/v1/outages/{id}/resolve"),
        ("GET", "/v1/postcodes/{postcode}"),
        ("GET", "/v1/services"),
        ("POST", "/v1/tips"),
    ];

    #[test]
    fn the_document_lists_exactly_the_inventory() {
        let spec: Value = serde_json::from_str(&relai::openapi::spec_json()).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut inventory: Vec<(String, String)> = INVENTORY
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        inventory.sort();
        assert_eq!(documented, inventory);
        // Every operation that needs a token says so, and documents its 401.
        for (method, path) in INVENTORY {
            let op = &spec["paths"][path][method.to_ascii_lowercase()];
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let protected = protected_routes()
                .iter()
                .any(|r| r.method.as_str() == *method && same_template(&r.path, path));
            assert_eq!(secured, protected, "{method} {path}: security");
            if protected {
                assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
            }
        }
    }

    /// Whether a concrete path matches an OpenAPI path template.
    fn same_template(concrete: &str, template: &str) -> bool {
        let concrete = concrete.split('?').next().unwrap();
        let (a, b): (Vec<&str>, Vec<&str>) =
            (concrete.split('/').collect(), template.split('/').collect());
        a.len() == b.len()
            && a.iter().zip(&b).all(|(c, t)| {
                if let Some(start) = t.find('{') {
                    let end = t.find('}').unwrap();
                    c.starts_with(&t[..start]) && c.ends_with(&t[end + 1..])
                } else {
                    c == t
                }
            })
    }

    backend_tests!(
        every_documented_operation_is_served_and_nothing_else,
        |app: TestApp| async move {
            let id = "0190c5a3-0000-7000-8000-000000000000";
            // Anonymous calls: a route that is not served answers the catch-all 404, whose
            // detail names no resource ("no resource at", "no route for").
            for (method, template) in INVENTORY {
                let path = template
                    .replace("{id}", id)
                    .replace("{jti}", id)
                    .replace("{identifier}", id)
                    .replace("{postcode}", "33000");
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let response = app
                    .client
                    .request(method.clone(), app.url(&path))
                    .header("Content-Type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                if path == "/v1/events" {
                    assert_eq!(status, 200);
                    continue;
                }
                let text = response.text().await.unwrap_or_default();
                assert!(
                    !text.contains("no resource at")
                        && !text.contains("no route for")
                        && status != 405,
                    "{method} {path} is documented but not served: {status} {text}"
                );
            }
            for path in [
                "/admin",
                "/v1/admin",
                "/v1/admin/",
                "/v1/numbers/",
                "/v2/numbers",
                "/v0/numbers",
                "/api/v1/numbers",
                "/.env",
                "/.git/config",
                "/debug",
                "/debug/vars",
                "/debug/pprof/",
                "/actuator/health",
                "/server-status",
                "/swagger.json",
                "/openapi.yaml",
                "/v1/openapi.json",
                "/v1/admin/tokens",
                "/v1/admin/keys",
                "/jwks.json",
                "/.well-known/jwks.json",
                "/v1/internal",
                "/data/relai.db",
                "/jwt-ed25519.pem",
                "/../../etc/passwd",
                "/%2e%2e/%2e%2e/etc/passwd",
                "/docs/../jwt-ed25519.pem",
            ] {
                let response = app.get(path).await;
                let status = response.status().as_u16();
                assert!(status == 404 || status == 400, "{path}: {status}");
                let body = problem(response, status, path).await;
                assert!(!body.to_string().contains("BEGIN"), "{path}");
            }
            // Traversal past the embedded documentation, sent as is (a client would normalize it).
            for target in [
                "/docs/../jwt-ed25519.pem",
                "/docs/../../../../etc/passwd",
                "/docs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                "/docs/..%2f..%2f..%2fetc%2fpasswd",
                "/docs/%252e%252e/etc/passwd",
            ] {
                let answer = raw_exchange(
                    socket_address(&app),
                    format!("GET {target} HTTP/1.1\r\nHost: relai\r\nConnection: close\r\n\r\n")
                        .into_bytes(),
                    Duration::from_secs(5),
                )
                .await;
                assert!(
                    matches!(answer.status(), Some(400 | 404)),
                    "{target}: {}",
                    answer.text
                );
                assert!(
                    !answer.text.contains("PRIVATE KEY") && !answer.text.contains("root:"),
                    "{target}"
                );
            }
            // The documentation is served but is not an API operation.
            assert_eq!(app.get("/openapi.json").await.status(), 200);
            assert_eq!(app.get("/docs/").await.status(), 200);
        }
    );
}

/// API10:2023 Unsafe Consumption of APIs.
///
/// What Relai consumes from others is webhook receivers' answers: it never follows their
/// redirects (a receiver could otherwise bounce deliveries to an internal address),
/// records their status without trusting their body, and a slow or dead receiver slows
/// nobody (`webhooks.rs`). The target is checked again before every attempt.
mod api10_unsafe_consumption_of_apis {
    use super::*;

    backend_tests!(
        webhook_deliveries_do_not_follow_redirects,
        |app: TestApp| async move {
            use std::sync::atomic::{AtomicUsize, Ordering};
            use std::sync::Arc;
            // The internal service a redirect points to, counting visits.
            let visits = Arc::new(AtomicUsize::new(0));
            let internal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let internal_url = format!(
                "http://127.0.0.1:{}/admin",
                internal.local_addr().unwrap().port()
            );
            let v = visits.clone();
            tokio::spawn(
                actix_web::HttpServer::new(move || {
                    let v = v.clone();
                    actix_web::App::new().default_service(actix_web::web::to(move || {
                        let v = v.clone();
                        async move {
                            v.fetch_add(1, Ordering::SeqCst);
                            actix_web::HttpResponse::Ok().finish()
                        }
                    }))
                })
                .workers(1)
                .listen(internal)
                .unwrap()
                .run(),
            );
            // The receiver answers every delivery with a redirect to it, and a large body.
            let redirects = Arc::new(AtomicUsize::new(0));
            let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let receiver_url = format!(
                "http://127.0.0.1:{}/hook",
                receiver.local_addr().unwrap().port()
            );
            let (r, target) = (redirects.clone(), internal_url.clone());
            tokio::spawn(
                actix_web::HttpServer::new(move || {
                    let (r, target) = (r.clone(), target.clone());
                    actix_web::App::new().default_service(actix_web::web::to(move || {
                        let (r, target) = (r.clone(), target.clone());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            actix_web::HttpResponse::TemporaryRedirect()
                                .insert_header(("Location", target))
                                .body("x".repeat(1 << 20))
                        }
                    }))
                })
                .workers(1)
                .listen(receiver)
                .unwrap()
                .run(),
            );
            let admin = app.admin_token().await;
            let (status, hook) = app
                .post(
                    "/v1/admin/webhooks",
                    &admin,
                    json!({"url": receiver_url, "secret": "0123456789abcdef"}),
                )
                .await;
            assert_eq!(status, 201, "{hook}");
            let (_, _, sdis) = app
                .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
                .await;
            let (status, _) = app
                .post(
                    "/v1/numbers",
                    &sdis,
                    number_body("18", "departement", "33", "0556123456"),
                )
                .await;
            assert_eq!(status, 201);
            let deadline = Instant::now() + Duration::from_secs(10);
            while redirects.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                redirects.load(Ordering::SeqCst) >= 2,
                "the delivery was attempted and retried"
            );
            assert_eq!(
                visits.load(Ordering::SeqCst),
                0,
                "the redirect was not followed"
            );
            let response = send(
                &app,
                &Req::get(format!(
                    "/v1/admin/webhooks/{}/deliveries",
                    hook["id"].as_str().unwrap()
                )),
                bearer(&admin),
            )
            .await;
            let log: Value = response.json().await.unwrap();
            let first = log["items"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(first["status"], 307, "{log}");
            assert!(
                !first.to_string().contains("xxxx"),
                "the receiver's body is not kept"
            );
        }
    );
}
