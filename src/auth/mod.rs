//! Authentication: Ed25519-signed tokens, and the extractors that put the verified caller
//! (account, role, organization, scopes, read from storage on every request: before the
//! handler runs, or for a write inside the write's own transaction) in a handler's
//! signature.

pub mod jwt;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use crate::accounts::{self, Caller, CallerError};
use crate::error::ApiError;
use crate::state::AppState;
use jwt::{JwtError, Signer, Verifier};

/// The keys of this instance: the current signing key, and the keys trusted to verify.
pub struct Auth {
    pub signer: Signer,
    pub verifier: Verifier,
    /// The caller last read for each token that wrote, by token id (with its account id
    /// and when storage last confirmed it): what [`WriteCaller`] checks a write against
    /// before its transaction reads it again.
    callers: Mutex<HashMap<String, Remembered>>,
    /// How long a remembered caller serves (see [`DEFAULT_CALLER_MEMORY`]).
    caller_memory: Duration,
}

impl Auth {
    /// Loads the private key (making it on first start) and, during a rotation, the
    /// previous key (private or public PEM) that stays trusted for verification.
    pub fn load(private_key: &Path, previous_key: Option<&Path>) -> anyhow::Result<Auth> {
        let pem = jwt::load_or_create_private_key(private_key)
            .map_err(|e| anyhow::anyhow!("JWT key {}: {e}", private_key.display()))?;
        let signer = Signer::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("JWT key {}: {e}", private_key.display()))?;
        let mut verifier = Verifier::new(&signer);
        if let Some(previous) = previous_key {
            let old = std::fs::read_to_string(previous)
                .map_err(|e| anyhow::anyhow!("previous JWT key {}: {e}", previous.display()))?;
            verifier
                .trust_pem(&old)
                .map_err(|e| anyhow::anyhow!("previous JWT key {}: {e}", previous.display()))?;
        }
        Ok(Auth {
            signer,
            verifier,
            callers: Mutex::new(HashMap::new()),
            caller_memory: DEFAULT_CALLER_MEMORY,
        })
    }
}

fn describe(e: &JwtError) -> &'static str {
    match e {
        JwtError::Expired => "the token has expired",
        JwtError::NotYetValid => "the token is not valid yet",
        JwtError::WrongAudience | JwtError::WrongIssuer => "the token is not for this API",
        JwtError::UnknownKey | JwtError::BadSignature | JwtError::BadAlgorithm => {
            "the token is not signed by this service"
        }
        _ => "the token is malformed",
    }
}

/// The caller of an authenticated request. As a handler argument it answers 401 when
/// there is no valid token, before the handler runs.
pub struct Authenticated(pub Caller);

/// The verified claims of a request's bearer token, with the keys and the state, or the
/// 401 that tells why there are none.
fn bearer(
    req: &HttpRequest,
) -> Result<(web::Data<Auth>, web::Data<AppState>, jwt::Claims), ApiError> {
    let (Some(auth), Some(state)) = (
        req.app_data::<web::Data<Auth>>().cloned(),
        req.app_data::<web::Data<AppState>>().cloned(),
    ) else {
        return Err(ApiError::Internal(
            "authentication is not configured".to_owned(),
        ));
    };
    let token = match req.headers().get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => {
            return Err(ApiError::Unauthorized(
                "a bearer token is required".to_owned(),
            ))
        }
        Some(Err(_)) => {
            return Err(ApiError::Unauthorized(
                "the Authorization header is malformed".to_owned(),
            ))
        }
        Some(Ok(value)) => {
            let mut parts = value.splitn(2, ' ');
            match (parts.next(), parts.next()) {
                (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    token.trim()
                }
                _ => {
                    return Err(ApiError::Unauthorized(
                        "use Authorization: Bearer <token>".to_owned(),
                    ))
                }
            }
        }
    };
    let claims = auth
        .verifier
        .verify(token, jwt::unix_now())
        .map_err(|e| ApiError::Unauthorized(describe(&e).to_owned()))?;
    Ok((auth, state, claims))
}

/// Why a verified token has no caller (anything but a storage error), as the client
/// hears it.
pub fn refusal(e: &CallerError) -> &'static str {
    match e {
        CallerError::Disabled => "the account is disabled",
        CallerError::Revoked | CallerError::Db(_) => "the token is revoked or unknown",
        CallerError::UnknownAccount => "unknown account",
    }
}

fn caller_refused(e: CallerError) -> ApiError {
    match e {
        CallerError::Db(db) => ApiError::from(crate::store::StoreError::Db(db)),
        other => ApiError::Unauthorized(refusal(&other).to_owned()),
    }
}

/// Reads the caller of verified claims from storage (on a blocking thread).
async fn load(state: web::Data<AppState>, claims: &jwt::Claims) -> Result<Caller, ApiError> {
    let (sub, jti) = (claims.sub.clone(), claims.jti.clone());
    state
        .into_inner()
        .read(move |conn| accounts::load_caller(conn, &sub, &jti).map_err(caller_refused))
        .await
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = bearer(req);
        Box::pin(async move {
            let (_, state, claims) = verified?;
            Ok(Authenticated(load(state, &claims).await?))
        })
    }
}

/// The caller of a request that writes through `routes::writes::run_write`, which reads
/// the caller again inside the write's own transaction and refuses the write unless it
/// is exactly the caller the handler checked (role, organization, scopes; the token
/// still valid, the account still enabled). So the handler's checks may use the caller
/// storage confirmed for this token in the last second (`Config::caller_memory`), and a steady
/// writer's request costs no storage read and no thread hand-off before it joins its
/// batch; a revocation, a disabled account or narrower rights still stop the very next
/// write. Only for handlers that write through `run_write`.
pub struct WriteCaller {
    pub caller: Caller,
    claims: jwt::Claims,
    auth: web::Data<Auth>,
}

impl WriteCaller {
    /// The token's account and token ids, to read the caller again.
    pub fn ids(&self) -> (&str, &str) {
        (&self.claims.sub, &self.claims.jti)
    }

    /// This instance's keys and remembered callers.
    pub fn auth(&self) -> &web::Data<Auth> {
        &self.auth
    }
}

impl FromRequest for WriteCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = bearer(req);
        Box::pin(async move {
            let (auth, state, claims) = verified?;
            let caller = match auth.remembered(&claims.jti, &claims.sub) {
                Some(caller) => caller,
                None => {
                    let caller = load(state, &claims).await?;
                    auth.remember(&claims.jti, &claims.sub, &caller);
                    caller
                }
            };
            Ok(WriteCaller {
                caller,
                claims,
                auth,
            })
        })
    }
}

/// How many writers' callers [`Auth`] keeps in memory (see [`WriteCaller`]).
const REMEMBERED_CALLERS: usize = 4096;

/// How long a caller confirmed by storage serves the checks of the next writes, by
/// default (`Config::caller_memory`). Each write's transaction still reads the caller
/// again, so a revocation or a narrower scope stops the next write whatever this is; it
/// only bounds how long rights just granted (a wider scope) may still be refused by a
/// handler's checks made on the older copy.
pub const DEFAULT_CALLER_MEMORY: Duration = Duration::from_secs(1);

/// A caller as storage last confirmed it, for one token.
struct Remembered {
    account_id: String,
    caller: Caller,
    confirmed: Instant,
}

impl Auth {
    /// How long a caller storage confirmed serves the checks of the next writes (zero:
    /// every write reads its caller before its handler runs, as well as inside).
    pub fn set_caller_memory(&mut self, memory: Duration) {
        self.caller_memory = memory;
    }

    /// The caller storage confirmed for token `jti` of account `sub` within the caller
    /// memory, if any.
    fn remembered(&self, jti: &str, sub: &str) -> Option<Caller> {
        let callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        callers
            .get(jti)
            .filter(|r| r.account_id == sub && r.confirmed.elapsed() < self.caller_memory)
            .map(|r| r.caller.clone())
    }

    /// The caller of token `jti` was read again and is no longer the one remembered (or
    /// has none): the next request reads it from storage.
    pub fn forget(&self, jti: &str) {
        self.callers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(jti);
    }

    /// Storage just confirmed this caller for token `jti` of account `sub`.
    pub fn remember(&self, jti: &str, sub: &str, caller: &Caller) {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = callers
            .get_mut(jti)
            .filter(|r| r.account_id == sub && r.caller == *caller)
        {
            // The usual case, once per write: the same caller again, no copy.
            known.confirmed = Instant::now();
            return;
        }
        if callers.len() >= REMEMBERED_CALLERS && !callers.contains_key(jti) {
            // Bounded: tokens come and go; start over rather than track age.
            callers.clear();
        }
        callers.insert(
            jti.to_owned(),
            Remembered {
                account_id: sub.to_owned(),
                caller: caller.clone(),
                confirmed: Instant::now(),
            },
        );
    }
}

impl Authenticated {
    /// Only admins pass.
    pub fn admin(self) -> Result<Caller, ApiError> {
        if self.0.role == crate::domain::Role::Admin {
            Ok(self.0)
        } else {
            Err(ApiError::Forbidden(
                "this needs an admin account".to_owned(),
            ))
        }
    }
}
