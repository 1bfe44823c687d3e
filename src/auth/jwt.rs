//! EdDSA (Ed25519) JSON Web Tokens for the authorities' accounts.
//!
//! A forged or mis-verified token would let someone publish a fake emergency number, so the
//! verifier follows the JWT Best Current Practices (RFC 8725) strictly:
//!
//! * the algorithm is pinned: the header `alg` must be exactly `EdDSA`; `none`, `HS256` (the
//!   "public key used as an HMAC secret" attack), RSA and ECDSA are refused with
//!   [`JwtError::BadAlgorithm`] before any key is touched;
//! * the keys are pinned: the header `kid` is required and selects the key among the trusted
//!   keys only (the current signing key and, during a rotation, older ones). An unknown `kid`
//!   is [`JwtError::UnknownKey`]; the verifier never falls back to trying every key, and it
//!   ignores keys or key URLs carried by the token itself (`jwk`, `jku`, `x5u`, `x5c`);
//! * a header naming critical extensions (`crit`) is refused, since none is understood;
//! * the claims `iss` (= [`ISSUER`]), `aud` (= [`AUDIENCE`], a single string), `sub`, `jti`,
//!   `iat` and `exp` are required; `nbf` is checked when present. Time checks use the `now`
//!   passed in by the caller (unix seconds) and a leeway of [`LEEWAY_SECS`] seconds;
//! * tokens longer than [`MAX_TOKEN_LEN`] bytes, or holding any byte outside the base64url
//!   alphabet and the two dots, are refused as [`JwtError::Malformed`] before any decoding;
//! * a header or claim set with a duplicated member name is refused as malformed, so that two
//!   JSON parsers can never read two different values out of one signed token.
//!
//! The signing key is an Ed25519 private key in a PKCS#8 PEM file, created on first start by
//! [`load_or_create_private_key`] (mode 0600 on unix) and never overwritten. Key ids are
//! RFC 7638 JWK thumbprints of the public key (see [`kid_for_public_key`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Value of the `iss` claim of every token Relai issues, and the only one it accepts.
pub const ISSUER: &str = "relai";

/// Value of the `aud` claim of every token Relai issues, and the only one it accepts.
pub const AUDIENCE: &str = "relai-api";

/// Clock-skew allowance, in seconds, applied to the time claims.
///
/// A token is accepted until `exp + LEEWAY_SECS` (excluded), and `nbf`/`iat` may lie at most
/// `LEEWAY_SECS` in the future. Thirty seconds covers the skew between NTP-synchronised
/// instances while adding at most half a minute to a token's life.
pub const LEEWAY_SECS: i64 = 30;
const _: () = assert!(
    LEEWAY_SECS >= 0 && LEEWAY_SECS <= 30,
    "RFC 8725 leeway: keep it small"
);

/// Largest token, in bytes, that [`Verifier::verify`] will look at.
///
/// Relai's own tokens are under 500 bytes; anything above this bound is refused as
/// [`JwtError::Malformed`] before any base64 or JSON decoding, so oversized input costs nothing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The only JOSE algorithm name Relai signs with and accepts.
const ALG_EDDSA: &str = "EdDSA";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The claims of a Relai access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer; always [`ISSUER`].
    pub iss: String,
    /// Audience; always [`AUDIENCE`].
    pub aud: String,
    /// Subject: the id of the authority account the token was issued to.
    pub sub: String,
    /// Issued-at time, unix seconds.
    pub iat: i64,
    /// Expiry time, unix seconds.
    pub exp: i64,
    /// Not-before time, unix seconds. Relai does not set it, but honours it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id (a UUIDv7), usable for revocation and audit.
    pub jti: String,
}

/// Why a token could not be issued or verified, or why a key could not be loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// The token is not a well-formed compact JWS (wrong shape, size, encoding or JSON), or
    /// carries a critical header extension; also returned by [`Signer::issue`] when `now + ttl`
    /// does not fit in an `i64`.
    #[error("malformed token")]
    Malformed,
    /// The header `kid` names no trusted key.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The header `alg` is anything but `EdDSA` (including `none` and HMAC algorithms).
    #[error("token algorithm not allowed")]
    BadAlgorithm,
    /// The signature does not match the key named by `kid`.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not [`ISSUER`].
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` is not the single string [`AUDIENCE`].
    #[error("wrong token audience")]
    WrongAudience,
    /// A required claim is absent or empty (`kid` is reported here too, although it is a
    /// header parameter).
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// A key could not be parsed, generated or used.
    #[error("key error: {0}")]
    Key(String),
    /// The key file could not be read or written.
    #[error("key file error: {0}")]
    Io(String),
}

/// Current time as unix seconds, for passing to [`Signer::issue`] and [`Verifier::verify`].
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Key id of an Ed25519 public key: its RFC 7638 JWK thumbprint.
///
/// The thumbprint is the unpadded base64url SHA-256 of
/// `{"crv":"Ed25519","kty":"OKP","x":"<base64url key>"}` (RFC 8037 §2), 43 characters long. It
/// depends only on the public key, so it is stable across restarts and distinct between keys.
///
/// `public_key_der_or_raw` is either the raw 32-byte public key or its DER
/// SubjectPublicKeyInfo (44 bytes). Any other input is hashed as if it were the raw key; such
/// a kid matches no trusted key.
pub fn kid_for_public_key(public_key_der_or_raw: &[u8]) -> String {
    let raw = match public_key_der_or_raw.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(rest) if rest.len() == 32 => rest,
        _ => public_key_der_or_raw,
    };
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(raw)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// Generates a new Ed25519 private key from the operating system's RNG, as PKCS#8 v1 PEM
/// (RFC 8410), readable by OpenSSL (`openssl pkey -in key.pem -pubout` gives its public key).
pub fn generate_private_key_pem() -> Result<String, JwtError> {
    let signing = SigningKey::generate(&mut rand_core::OsRng);
    // PKCS#8 v1 (no embedded public key): OpenSSL 3.0 cannot read the v2 form.
    let keypair = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    };
    let pem = keypair
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| JwtError::Key(format!("encoding the new private key: {e}")))?;
    Ok(pem.to_string())
}

/// Returns the PEM in the private key file at `path`, creating the file first if it is missing.
///
/// A missing file is created with a fresh Ed25519 key (PKCS#8 PEM), after creating its parent
/// directories. On unix the file is created with mode 0600. The key is written to a private
/// temporary file beside `path` and then hard-linked into place, so the key file never appears
/// half-written and an existing file is never overwritten, even when two processes start at
/// once (the loser reads the winner's key). An existing file is returned as it is, whatever its
/// contents; [`Signer::from_pem`] checks them.
pub fn load_or_create_private_key(path: &Path) -> Result<String, JwtError> {
    if let Some(pem) = read_if_exists(path)? {
        return Ok(pem);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, &e))?;
    }
    let pem = generate_private_key_pem()?;
    match publish_new_file(path, pem.as_bytes()) {
        Ok(()) => Ok(pem),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_if_exists(path)?
            .ok_or_else(|| JwtError::Io(format!("{} vanished while created", path.display()))),
        Err(e) => Err(io_error("creating", path, &e)),
    }
}

fn io_error(action: &str, path: &Path, e: &io::Error) -> JwtError {
    JwtError::Io(format!("{action} {}: {e}", path.display()))
}

fn read_if_exists(path: &Path) -> Result<Option<String>, JwtError> {
    match fs::read_to_string(path) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", path, &e)),
    }
}

/// Creates `path` exclusively (never replacing a file) with mode 0600 on unix.
fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = create_private_file(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Writes `contents` to the new file `path`; fails with `AlreadyExists` if `path` exists.
fn publish_new_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name in key path"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
    let tmp = path.with_file_name(tmp_name);

    let linked = write_private_file(&tmp, contents).and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // The file system may not do hard links: fall back to an exclusive create.
        Err(_) => write_private_file(path, contents)?,
    }
    #[cfg(unix)]
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the new directory entry durable; failing to is not worth refusing to start.
        let _ = File::open(parent).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

/// Reads the public key out of a PKCS#8 private key PEM or a SubjectPublicKeyInfo public key
/// PEM, refusing anything but a sound Ed25519 key.
fn public_key_from_pem(pem: &str) -> Result<VerifyingKey, JwtError> {
    let pem = pem.trim();
    let public = if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| JwtError::Key(format!("not an Ed25519 PKCS#8 private key: {e}")))?
            .verifying_key()
    } else if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| JwtError::Key(format!("not an Ed25519 public key: {e}")))?
    } else {
        return Err(JwtError::Key(
            "expected a PEM `PRIVATE KEY` (PKCS#8) or `PUBLIC KEY` (SPKI) block".to_owned(),
        ));
    };
    // A small-order public key would make signatures trivially forgeable.
    if public.is_weak() {
        return Err(JwtError::Key(
            "weak (small-order) Ed25519 public key".to_owned(),
        ));
    }
    Ok(public)
}

/// Issues tokens with the current Ed25519 private key.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    kid: String,
    public: VerifyingKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Builds a signer from an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`),
    /// as written by [`load_or_create_private_key`] or `openssl genpkey -algorithm ed25519`.
    pub fn from_pem(private_pem: &str) -> Result<Signer, JwtError> {
        let signing = SigningKey::from_pkcs8_pem(private_pem.trim())
            .map_err(|e| JwtError::Key(format!("not an Ed25519 PKCS#8 private key: {e}")))?;
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| JwtError::Key(format!("re-encoding the private key: {e}")))?;
        let public = signing.verifying_key();
        Ok(Signer {
            key: EncodingKey::from_ed_der(der.as_bytes()),
            kid: kid_for_public_key(public.as_bytes()),
            public,
        })
    }

    /// The key id put in the `kid` header of every token this signer issues.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half of the signing key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), to keep
    /// trusting this key with [`Verifier::trust_pem`] after it has been rotated out.
    pub fn public_key_pem(&self) -> Result<String, JwtError> {
        self.public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| JwtError::Key(format!("encoding the public key: {e}")))
    }

    /// Issues a token for the account `sub`, valid from `now` (unix seconds) for `ttl`.
    ///
    /// The token carries `iss` = [`ISSUER`], `aud` = [`AUDIENCE`], `iat` = `now`,
    /// `exp` = `now + ttl` (whole seconds) and a UUIDv7 `jti`, and its header carries
    /// `alg` = `EdDSA`, `typ` = `JWT` and this signer's `kid`. Returns the compact token and its
    /// claims. Fails with [`JwtError::MissingClaim`] for an empty `sub`, and with
    /// [`JwtError::Malformed`] if `now + ttl` overflows.
    pub fn issue(&self, sub: &str, ttl: Duration, now: i64) -> Result<(String, Claims), JwtError> {
        if sub.is_empty() {
            return Err(JwtError::MissingClaim("sub"));
        }
        let exp = i64::try_from(ttl.as_secs())
            .ok()
            .and_then(|ttl| now.checked_add(ttl))
            .ok_or(JwtError::Malformed)?;
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: sub.to_owned(),
            iat: now,
            exp,
            nbf: None,
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| JwtError::Key(format!("signing the token: {e}")))?;
        Ok((token, claims))
    }
}

/// The JOSE header members the verifier looks at. Derived deserialisation refuses duplicated
/// members; other members are ignored (keys carried by the token are never used).
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The claims as found in the token, before the checks. Duplicated members are refused.
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    sub: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// Verifies tokens against a fixed set of trusted Ed25519 keys, indexed by key id.
///
/// Pinned to `EdDSA`; see the module documentation for every check.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    /// Tokens whose signature was found good: checking an Ed25519 signature costs more than
    /// the rest of a write's checks together, and a client sends the same token with every
    /// request. Trusted keys are only ever added, so a signature found good stays good;
    /// the claims (expiry above all) are still checked on every request.
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Box<str>>>>,
}

/// How many verified tokens [`Verifier`] remembers before it starts over.
const VERIFIED_TOKENS: usize = 4096;

impl Verifier {
    /// A verifier trusting only the public half of `current`.
    pub fn new(current: &Signer) -> Verifier {
        // jsonwebtoken only checks the algorithm and the signature here: its time checks read
        // the system clock, so all claim checks are done in `verify` against the given `now`.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let mut verifier = Verifier {
            keys: HashMap::new(),
            validation,
            verified: Default::default(),
        };
        verifier.trust_key(&current.public);
        verifier
    }

    fn trust_key(&mut self, public: &VerifyingKey) {
        self.keys.insert(
            kid_for_public_key(public.as_bytes()),
            DecodingKey::from_ed_der(public.as_bytes()),
        );
    }

    /// Also trusts an older key, e.g. during a rotation. `pem` is either its public key
    /// (`-----BEGIN PUBLIC KEY-----`, SPKI) or its PKCS#8 private key, of which only the public
    /// half is kept. Fails with [`JwtError::Key`] on anything but a sound Ed25519 key.
    /// Trusting a key twice is harmless.
    pub fn trust_pem(&mut self, pem: &str) -> Result<(), JwtError> {
        let public = public_key_from_pem(pem)?;
        self.trust_key(&public);
        Ok(())
    }

    /// The key ids of the trusted keys, sorted (for logs and diagnostics).
    pub fn trusted_kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Verifies `token` at time `now` (unix seconds) and returns its claims.
    ///
    /// Checks, in order: size and alphabet, shape (three non-empty parts), header (`alg` must
    /// be `EdDSA`, no `crit`, `typ` if present must be `JWT`, `kid` required), key lookup by
    /// `kid` among the trusted keys only, the Ed25519 signature, then the claims: `iss`, `aud`,
    /// `sub`, `jti`, `iat`, `exp` present (non-empty strings), `iss` and `aud` exact,
    /// `nbf` and `iat` at most [`LEEWAY_SECS`] in the future, `now < exp + LEEWAY_SECS`.
    /// Time claims must be JSON integers.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (encoded_header, encoded_claims) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(h), Some(c), Some(s), None)
                    if !h.is_empty() && !c.is_empty() && !s.is_empty() =>
                {
                    (h, c)
                }
                _ => return Err(JwtError::Malformed),
            };
        let header_json = URL_SAFE_NO_PAD
            .decode(encoded_header)
            .map_err(|_| JwtError::Malformed)?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
        if header.alg != ALG_EDDSA {
            return Err(JwtError::BadAlgorithm);
        }
        if header.crit.is_some() {
            return Err(JwtError::Malformed);
        }
        if header
            .typ
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(JwtError::Malformed);
        }
        let kid = header.kid.ok_or(JwtError::MissingClaim("kid"))?;
        let key = self.keys.get(&kid).ok_or(JwtError::UnknownKey)?;

        // Algorithm (again) and signature, unless these very bytes passed before. The claims
        // are parsed below, by this module only.
        if !self.signature_known_good(token) {
            jsonwebtoken::decode::<serde::de::IgnoredAny>(token, key, &self.validation)
                .map_err(map_decode_error)?;
            self.remember_good_signature(token);
        }

        let claims_json = URL_SAFE_NO_PAD
            .decode(encoded_claims)
            .map_err(|_| JwtError::Malformed)?;
        // serde would also read a struct out of a JSON array: only an object is a claim set.
        if claims_json.trim_ascii_start().first() != Some(&b'{') {
            return Err(JwtError::Malformed);
        }
        let raw: RawClaims =
            serde_json::from_slice(&claims_json).map_err(|_| JwtError::Malformed)?;
        check_claims(raw, now)
    }
}

impl Verifier {
    fn signature_known_good(&self, token: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(token)
    }

    fn remember_good_signature(&self, token: &str) {
        let mut known = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= VERIFIED_TOKENS {
            // Rarely reached (one entry per token in use): starting over is simplest.
            known.clear();
        }
        known.insert(token.into());
    }
}

fn map_decode_error(e: jsonwebtoken::errors::Error) -> JwtError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => JwtError::BadSignature,
        K::InvalidAlgorithm
        | K::InvalidAlgorithmName
        | K::UnsupportedAlgorithm
        | K::MissingAlgorithm => JwtError::BadAlgorithm,
        K::InvalidEddsaKey | K::InvalidKeyFormat => JwtError::Key(e.to_string()),
        _ => JwtError::Malformed,
    }
}

fn required(value: Option<String>, name: &'static str) -> Result<String, JwtError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(JwtError::MissingClaim(name))
}

fn check_claims(raw: RawClaims, now: i64) -> Result<Claims, JwtError> {
    let iss = required(raw.iss, "iss")?;
    let aud = raw.aud.ok_or(JwtError::MissingClaim("aud"))?;
    let sub = required(raw.sub, "sub")?;
    let jti = required(raw.jti, "jti")?;
    let iat = raw.iat.ok_or(JwtError::MissingClaim("iat"))?;
    let exp = raw.exp.ok_or(JwtError::MissingClaim("exp"))?;

    if iss != ISSUER {
        return Err(JwtError::WrongIssuer);
    }
    if aud.as_str() != Some(AUDIENCE) {
        return Err(JwtError::WrongAudience);
    }
    let latest_acceptable_start = now.saturating_add(LEEWAY_SECS);
    if iat > latest_acceptable_start || raw.nbf.is_some_and(|nbf| nbf > latest_acceptable_start) {
        return Err(JwtError::NotYetValid);
    }
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    Ok(Claims {
        iss,
        aud: AUDIENCE.to_owned(),
        sub,
        iat,
        exp,
        nbf: raw.nbf,
        jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::PathBuf;
    use std::time::Instant;

    const NOW: i64 = 1_750_000_000;
    const TTL: Duration = Duration::from_secs(900);

    struct TestKey {
        pem: String,
        signing: SigningKey,
        signer: Signer,
    }

    fn new_key() -> TestKey {
        let pem = generate_private_key_pem().unwrap();
        let signing = SigningKey::from_pkcs8_pem(&pem).unwrap();
        let signer = Signer::from_pem(&pem).unwrap();
        TestKey {
            pem,
            signing,
            signer,
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs arbitrary header and claims JSON text with `signing`, bypassing `Signer`.
    fn sign_raw_text(signing: &SigningKey, header: &str, claims: &str) -> String {
        use ed25519_dalek::Signer as _;
        let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature = signing.sign(message.as_bytes());
        format!("{message}.{}", b64(&signature.to_bytes()))
    }

    fn sign_raw(signing: &SigningKey, header: &Value, claims: &Value) -> String {
        sign_raw_text(signing, &header.to_string(), &claims.to_string())
    }

    fn header_for(kid: &str) -> Value {
        json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})
    }

    fn good_claims() -> Value {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "acct-42",
            "iat": NOW, "exp": NOW + 600, "jti": "0190a000-0000-7000-8000-000000000001"
        })
    }

    /// Our key signs `claims` with a correct header.
    fn signed(key: &TestKey, claims: &Value) -> String {
        sign_raw(&key.signing, &header_for(key.signer.kid()), claims)
    }

    /// HMAC-SHA256 (RFC 2104) built on `sha2`, so the HS256 attack token is made by hand.
    fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        if secret.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize()
            .into()
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("relai-jwt-test-{}", uuid::Uuid::now_v7().simple()))
    }

    #[test]
    fn round_trip() {
        let key = new_key();
        let (token, claims) = key.signer.issue("acct-42", TTL, NOW).unwrap();
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.aud, AUDIENCE);
        assert_eq!(claims.sub, "acct-42");
        assert_eq!(claims.iat, NOW);
        assert_eq!(claims.exp, NOW + 900);
        assert_eq!(claims.nbf, None);
        let jti = uuid::Uuid::parse_str(&claims.jti).unwrap();
        assert_eq!(jti.get_version_num(), 7);

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(key.signer.kid()));

        let verifier = Verifier::new(&key.signer);
        assert_eq!(verifier.verify(&token, NOW).unwrap(), claims);
        assert_eq!(verifier.verify(&token, NOW + 899).unwrap(), claims);

        // Two tokens never share a jti.
        let (_, other) = key.signer.issue("acct-42", TTL, NOW).unwrap();
        assert_ne!(other.jti, claims.jti);
    }

    #[test]
    fn hand_built_token_verifies_so_the_negative_tests_are_meaningful() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let mut claims = good_claims();
        claims["nbf"] = json!(NOW);
        let got = verifier.verify(&signed(&key, &claims), NOW).unwrap();
        assert_eq!(got.sub, "acct-42");
        assert_eq!(got.nbf, Some(NOW));
    }

    #[test]
    fn issue_refuses_empty_sub_and_overflowing_ttl() {
        let key = new_key();
        assert_eq!(
            key.signer.issue("", TTL, NOW).unwrap_err(),
            JwtError::MissingClaim("sub")
        );
        assert_eq!(
            key.signer
                .issue("a", Duration::from_secs(u64::MAX), NOW)
                .unwrap_err(),
            JwtError::Malformed
        );
        assert_eq!(
            key.signer
                .issue("a", Duration::from_secs(10), i64::MAX)
                .unwrap_err(),
            JwtError::Malformed
        );
    }

    #[test]
    fn key_file_created_once_with_mode_0600_and_reused() {
        let dir = temp_dir();
        let path = dir.join("nested").join("jwt-ed25519.pem");
        let first = load_or_create_private_key(&path).unwrap();
        assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"));
        Signer::from_pem(&first).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let second = load_or_create_private_key(&path).unwrap();
        assert_eq!(second, first);
        // No temporary file is left behind.
        let entries = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1);

        // An existing file is returned untouched, whatever it holds.
        let other = dir.join("other.pem");
        fs::write(&other, "not a key").unwrap();
        assert_eq!(load_or_create_private_key(&other).unwrap(), "not a key");
        assert_eq!(fs::read_to_string(&other).unwrap(), "not a key");
        assert!(matches!(
            Signer::from_pem("not a key").unwrap_err(),
            JwtError::Key(_)
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = temp_dir();
        let path = dir.join("jwt-ed25519.pem");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || load_or_create_private_key(&path).unwrap())
            })
            .collect();
        let pems: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let on_disk = fs::read_to_string(&path).unwrap();
        assert!(pems.iter().all(|p| *p == on_disk));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kid_is_stable_for_a_key_and_differs_between_keys() {
        let key = new_key();
        let again = Signer::from_pem(&key.pem).unwrap();
        assert_eq!(key.signer.kid(), again.kid());
        let raw = key.signing.verifying_key().to_bytes();
        assert_eq!(kid_for_public_key(&raw), key.signer.kid());
        let der = key.signing.verifying_key().to_public_key_der().unwrap();
        assert_eq!(kid_for_public_key(der.as_bytes()), key.signer.kid());
        assert_eq!(key.signer.kid().len(), 43);

        let other = new_key();
        assert_ne!(other.signer.kid(), key.signer.kid());
    }

    #[test]
    fn generated_key_is_pkcs8_v1_and_rfc8410_keys_are_read() {
        let pem = generate_private_key_pem().unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        // SEQUENCE { INTEGER 0 (v1), AlgorithmIdentifier { id-Ed25519 }, OCTET STRING }
        assert_eq!(der.len(), 48);
        assert_eq!(&der[2..5], &[0x02, 0x01, 0x00]);
        assert_eq!(&der[7..12], &[0x06, 0x03, 0x2b, 0x65, 0x70]);

        // RFC 8410, sections 10.1 and 10.3: a key pair made by other tools.
        let private = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
            -----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\n\
            MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
            -----END PUBLIC KEY-----\n";
        let signer = Signer::from_pem(private).unwrap();
        assert_eq!(signer.public_key_pem().unwrap(), public);
        let (token, _) = signer.issue("acct-42", TTL, NOW).unwrap();
        let mut verifier = Verifier::new(&new_key().signer);
        verifier.trust_pem(public).unwrap();
        assert_eq!(verifier.verify(&token, NOW).unwrap().sub, "acct-42");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_of_rfc8037_example() {
        // RFC 8037, appendix A.2 (public key) and A.3 (its JWK thumbprint).
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            kid_for_public_key(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn token_from_another_key_is_an_unknown_key() {
        let ours = new_key();
        let theirs = new_key();
        let (token, _) = theirs.signer.issue("acct-42", TTL, NOW).unwrap();
        let verifier = Verifier::new(&ours.signer);
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::UnknownKey));
    }

    #[test]
    fn another_key_with_our_kid_is_a_bad_signature() {
        let ours = new_key();
        let theirs = new_key();
        let forged = sign_raw(
            &theirs.signing,
            &header_for(ours.signer.kid()),
            &good_claims(),
        );
        let verifier = Verifier::new(&ours.signer);
        assert_eq!(verifier.verify(&forged, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn tampered_claims_are_a_bad_signature() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let (token, _) = key.signer.issue("acct-42", TTL, NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = good_claims();
        claims["sub"] = json!("acct-1");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(verifier.verify(&tampered, NOW), Err(JwtError::BadSignature));
        // A signature of the wrong length is refused too.
        let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
        assert_eq!(
            verifier.verify(&truncated, NOW),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let payload = b64(good_claims().to_string().as_bytes());
        for alg in ["none", "None", "NONE", "nOnE", ""] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": key.signer.kid()});
            let unsigned = format!("{}.{payload}.", b64(header.to_string().as_bytes()));
            assert_eq!(verifier.verify(&unsigned, NOW), Err(JwtError::Malformed));
            // Even with a valid Ed25519 signature over it, the header `alg` decides.
            let token = sign_raw(&key.signing, &header, &good_claims());
            assert_eq!(
                verifier.verify(&token, NOW),
                Err(JwtError::BadAlgorithm),
                "{alg}"
            );
        }
        for alg in [
            "HS256", "HS512", "RS256", "PS256", "ES256", "Ed25519", "eddsa", "EdDSA ",
        ] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": key.signer.kid()});
            let token = sign_raw(&key.signing, &header, &good_claims());
            assert_eq!(
                verifier.verify(&token, NOW),
                Err(JwtError::BadAlgorithm),
                "{alg}"
            );
        }
        // No `alg` at all, or not a string.
        let token = sign_raw(
            &key.signing,
            &json!({"kid": key.signer.kid()}),
            &good_claims(),
        );
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        let header = json!({"alg": ["EdDSA"], "kid": key.signer.kid()});
        let token = sign_raw(&key.signing, &header, &good_claims());
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn manual_hmac_matches_rfc4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let public_pem = key.signer.public_key_pem().unwrap();
        let public_raw = key.signing.verifying_key().to_bytes();
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.signer.kid()});
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(good_claims().to_string().as_bytes())
        );
        for secret in [public_pem.as_bytes(), &public_raw[..]] {
            let token = format!(
                "{message}.{}",
                b64(&hmac_sha256(secret, message.as_bytes()))
            );

            // The forgery is a genuine HS256 token: a verifier that let the token pick its
            // algorithm and fed it the public key would accept it.
            let mut naive = Validation::new(Algorithm::HS256);
            naive.validate_exp = false;
            naive.set_audience(&[AUDIENCE]);
            jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(secret), &naive)
                .unwrap();

            assert_eq!(verifier.verify(&token, NOW), Err(JwtError::BadAlgorithm));
        }
    }

    #[test]
    fn expired_tokens_are_refused_after_the_leeway() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let (token, claims) = key.signer.issue("acct-42", TTL, NOW).unwrap();
        assert!(verifier
            .verify(&token, claims.exp + LEEWAY_SECS - 1)
            .is_ok());
        assert_eq!(
            verifier.verify(&token, claims.exp + LEEWAY_SECS),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verifier.verify(&token, NOW + 86_400),
            Err(JwtError::Expired)
        );
    }

    /// The verifier remembers good signatures only: a token it verified passes again
    /// (its claims checked again, see above), a forged one fails every time.
    #[test]
    fn only_good_signatures_are_remembered() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let (token, _) = key.signer.issue("acct-42", TTL, NOW).unwrap();
        let (head, signature) = token.rsplit_once('.').unwrap();
        let mut forged_signature = signature.as_bytes().to_vec();
        forged_signature[3] = if forged_signature[3] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let forged = format!("{head}.{}", String::from_utf8(forged_signature).unwrap());
        for _ in 0..2 {
            assert_eq!(verifier.verify(&forged, NOW), Err(JwtError::BadSignature));
        }
        assert!(verifier.verify(&token, NOW).is_ok());
        assert!(verifier.verify(&token, NOW).is_ok());
        assert_eq!(verifier.verify(&forged, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn tokens_from_the_future_are_not_yet_valid() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);

        let mut claims = good_claims();
        claims["nbf"] = json!(NOW + LEEWAY_SECS);
        assert!(verifier.verify(&signed(&key, &claims), NOW).is_ok());
        claims["nbf"] = json!(NOW + LEEWAY_SECS + 1);
        assert_eq!(
            verifier.verify(&signed(&key, &claims), NOW),
            Err(JwtError::NotYetValid)
        );

        let (token, _) = key.signer.issue("acct-42", TTL, NOW + 3600).unwrap();
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::NotYetValid));
        let (token, _) = key.signer.issue("acct-42", TTL, NOW + LEEWAY_SECS).unwrap();
        assert!(verifier.verify(&token, NOW).is_ok());
        let (token, _) = key
            .signer
            .issue("acct-42", TTL, NOW + LEEWAY_SECS + 1)
            .unwrap();
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::NotYetValid));
    }

    #[test]
    fn wrong_audience_is_refused() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        for aud in [
            json!("relai-admin"),
            json!("RELAI-API"),
            json!(""),
            json!(["relai-api", "other"]),
            json!(["relai-api"]),
            json!(7),
        ] {
            let mut claims = good_claims();
            claims["aud"] = aud.clone();
            assert_eq!(
                verifier.verify(&signed(&key, &claims), NOW),
                Err(JwtError::WrongAudience),
                "{aud}"
            );
        }
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            verifier.verify(&signed(&key, &claims), NOW),
            Err(JwtError::MissingClaim("aud"))
        );
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        for iss in ["relai-staging", "Relai", "relai "] {
            let mut claims = good_claims();
            claims["iss"] = json!(iss);
            assert_eq!(
                verifier.verify(&signed(&key, &claims), NOW),
                Err(JwtError::WrongIssuer),
                "{iss}"
            );
        }
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            verifier.verify(&signed(&key, &claims), NOW),
            Err(JwtError::MissingClaim("iss"))
        );
    }

    #[test]
    fn missing_or_empty_required_claims_are_refused() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        for name in ["jti", "sub", "exp", "iat"] {
            let mut claims = good_claims();
            claims.as_object_mut().unwrap().remove(name);
            assert_eq!(
                verifier.verify(&signed(&key, &claims), NOW),
                Err(JwtError::MissingClaim(name)),
                "{name}"
            );
        }
        for name in ["jti", "sub"] {
            let mut claims = good_claims();
            claims[name] = json!("");
            assert_eq!(
                verifier.verify(&signed(&key, &claims), NOW),
                Err(JwtError::MissingClaim(name)),
                "{name}"
            );
            claims[name] = Value::Null;
            assert_eq!(
                verifier.verify(&signed(&key, &claims), NOW),
                Err(JwtError::MissingClaim(name)),
                "{name}"
            );
        }
        // Missing kid.
        let token = sign_raw(&key.signing, &json!({"alg": "EdDSA"}), &good_claims());
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(JwtError::MissingClaim("kid"))
        );
    }

    #[test]
    fn ill_typed_claims_and_ambiguous_json_are_malformed() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        for (name, value) in [
            ("exp", json!("1750000600")),
            ("exp", json!(1_750_000_600.5)),
            ("iat", json!(-1.0)),
            ("sub", json!(42)),
            ("jti", json!({"id": 1})),
        ] {
            let mut claims = good_claims();
            claims[name] = value;
            assert_eq!(
                verifier.verify(&signed(&key, &claims), NOW),
                Err(JwtError::Malformed),
                "{name}"
            );
        }
        let kid = key.signer.kid();
        // Duplicated claim: parsers disagree on which `sub` wins.
        let claims = format!(
            r#"{{"iss":"relai","aud":"relai-api","sub":"acct-42","sub":"acct-1","iat":{NOW},"exp":{},"jti":"x"}}"#,
            NOW + 600
        );
        let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#);
        let token = sign_raw_text(&key.signing, &header, &claims);
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        // Duplicated header member.
        let header = format!(r#"{{"alg":"EdDSA","alg":"none","kid":"{kid}"}}"#);
        let token = sign_raw_text(&key.signing, &header, &good_claims().to_string());
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        // Critical extensions and foreign types.
        let header = json!({"alg": "EdDSA", "kid": kid, "crit": ["b64"], "b64": false});
        let token = sign_raw(&key.signing, &header, &good_claims());
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JWE"});
        let token = sign_raw(&key.signing, &header, &good_claims());
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        // Claims that are not a JSON object.
        let token = sign_raw(&key.signing, &header_for(kid), &json!(["relai"]));
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        let as_array = json!([ISSUER, AUDIENCE, "acct-42", NOW, NOW + 600, null, "x"]);
        let token = sign_raw(&key.signing, &header_for(kid), &as_array);
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn garbage_is_malformed() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let (token, _) = key.signer.issue("acct-42", TTL, NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let inputs = [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            "garbage".to_owned(),
            "a.b.c".to_owned(),
            "a.b.c.d".to_owned(),
            "Bearer x.y.z".to_owned(),
            "\u{0}\u{1}.é.☃".to_owned(),
            format!("{token}."),
            format!("{token}.{}", parts[2]),
            format!(".{token}"),
            format!(" {token}"),
            format!("{token}\n"),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}..{}", parts[0], parts[2]),
            format!("{}.{}.", parts[0], parts[1]),
        ];
        for input in &inputs {
            assert_eq!(
                verifier.verify(input, NOW),
                Err(JwtError::Malformed),
                "{input:?}"
            );
        }
    }

    #[test]
    fn huge_token_is_malformed_quickly() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let mut claims = good_claims();
        claims["pad"] = json!("x".repeat(100 * 1024));
        let token = signed(&key, &claims);
        assert!(token.len() > 100 * 1024);
        // The token is otherwise genuine: only the size bound refuses it.
        let key_only = &verifier.keys[key.signer.kid()];
        jsonwebtoken::decode::<Value>(&token, key_only, &verifier.validation).unwrap();

        let started = Instant::now();
        assert_eq!(verifier.verify(&token, NOW), Err(JwtError::Malformed));
        let garbage = "A".repeat(100 * 1024);
        assert_eq!(verifier.verify(&garbage, NOW), Err(JwtError::Malformed));
        let dots = ".".repeat(100 * 1024);
        assert_eq!(verifier.verify(&dots, NOW), Err(JwtError::Malformed));
        assert!(started.elapsed() < Duration::from_millis(250));
    }

    #[test]
    fn rotation_trusts_the_old_key_only_once_told() {
        let old = new_key();
        let new = new_key();
        let (old_token, old_claims) = old.signer.issue("acct-42", TTL, NOW).unwrap();
        let (new_token, _) = new.signer.issue("acct-42", TTL, NOW).unwrap();

        let mut verifier = Verifier::new(&new.signer);
        assert_eq!(verifier.verify(&old_token, NOW), Err(JwtError::UnknownKey));
        verifier.trust_pem(&old.pem).unwrap();
        assert_eq!(verifier.verify(&old_token, NOW).unwrap(), old_claims);
        assert!(verifier.verify(&new_token, NOW).is_ok());
        let mut kids = vec![old.signer.kid(), new.signer.kid()];
        kids.sort_unstable();
        assert_eq!(verifier.trusted_kids(), kids);

        // The public key PEM works the same, and the private half is not needed.
        let mut by_public = Verifier::new(&new.signer);
        assert_eq!(by_public.verify(&old_token, NOW), Err(JwtError::UnknownKey));
        let old_public = old.signer.public_key_pem().unwrap();
        assert!(old_public.starts_with("-----BEGIN PUBLIC KEY-----"));
        by_public.trust_pem(&old_public).unwrap();
        assert_eq!(by_public.verify(&old_token, NOW).unwrap(), old_claims);
    }

    #[test]
    fn trust_pem_refuses_anything_but_a_sound_ed25519_key() {
        let key = new_key();
        let mut verifier = Verifier::new(&key.signer);
        let body = key.pem.lines().nth(1).unwrap();
        let half = &body[..body.len() / 2];
        for pem in [
            String::new(),
            "garbage".to_owned(),
            format!("-----BEGIN PRIVATE KEY-----\n{half}\n-----END PRIVATE KEY-----\n"),
            format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"),
            key.pem.replace("-----END PRIVATE KEY-----", ""),
            key.pem.replace("PRIVATE KEY", "EC PRIVATE KEY"),
        ] {
            assert!(
                matches!(verifier.trust_pem(&pem), Err(JwtError::Key(_))),
                "{pem}"
            );
        }
        // The identity point has small order: with it, forging signatures is trivial.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(weak.is_weak());
        let weak_pem = weak.to_public_key_pem(LineEnding::LF).unwrap();
        assert!(matches!(
            verifier.trust_pem(&weak_pem),
            Err(JwtError::Key(_))
        ));
        assert_eq!(verifier.trusted_kids(), vec![key.signer.kid()]);
    }

    #[test]
    fn errors_and_debug_output_do_not_leak_the_key() {
        let key = new_key();
        let verifier = Verifier::new(&key.signer);
        let body = key.pem.lines().nth(1).unwrap();
        let debug = format!("{:?} {:?}", key.signer, verifier);
        assert!(!debug.contains(body));
        assert!(debug.contains(key.signer.kid()));
        assert_eq!(JwtError::Expired.to_string(), "token expired");
        assert_eq!(
            JwtError::MissingClaim("jti").to_string(),
            "missing claim `jti`"
        );
    }
}
