//! Authentication: Ed25519-signed tokens, and the extractor that puts the verified caller
//! (account, role, organization, scopes, read from storage on every request) in a
//! handler's signature.

pub mod jwt;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

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
        Ok(Auth { signer, verifier })
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

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        let auth = req.app_data::<web::Data<Auth>>().cloned();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let (Some(auth), Some(state)) = (auth, state) else {
                return Err(ApiError::Internal(
                    "authentication is not configured".to_owned(),
                ));
            };
            let token = match header {
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
                            token.trim().to_owned()
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
                .verify(&token, jwt::unix_now())
                .map_err(|e| ApiError::Unauthorized(describe(&e).to_owned()))?;
            let caller = state
                .into_inner()
                .read(move |conn| {
                    accounts::load_caller(conn, &claims.sub, &claims.jti).map_err(|e| match e {
                        CallerError::Db(db) => ApiError::from(crate::store::StoreError::Db(db)),
                        CallerError::Disabled => {
                            ApiError::Unauthorized("the account is disabled".to_owned())
                        }
                        CallerError::Revoked => {
                            ApiError::Unauthorized("the token is revoked or unknown".to_owned())
                        }
                        CallerError::UnknownAccount => {
                            ApiError::Unauthorized("unknown account".to_owned())
                        }
                    })
                })
                .await?;
            Ok(Authenticated(caller))
        })
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
