//! Every kind of bad token is a 401 problem with `WWW-Authenticate: Bearer`, and writes nothing.

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use relai::auth::jwt::{self, Signer};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

backend_tests!(token_attacks_are_refused, |app: TestApp| async move {
    let (_, account, good) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    let pem = std::fs::read_to_string(&app.jwt_key).unwrap();
    let signer = Signer::from_pem(&pem).unwrap();
    let now = jwt::unix_now();
    let claims = |iss: &str, aud: &str, iat: i64, exp: i64| json!({"iss": iss, "aud": aud, "sub": account, "iat": iat, "exp": exp, "jti": uuid::Uuid::now_v7().to_string()});
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(signer.kid().to_owned());
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    let sign = |c: serde_json::Value| encode(&header, &c, &key).unwrap();

    let other = Signer::from_pem(&jwt::generate_private_key_pem().unwrap()).unwrap();
    let (other_key, _) = other
        .issue(&account, std::time::Duration::from_secs(600), now)
        .unwrap();
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": signer.kid()})
            .to_string()
            .as_bytes()),
        b64(claims("relai", "relai-api", now, now + 600)
            .to_string()
            .as_bytes())
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(signer.kid().to_owned());
    let public_pem = signer.public_key_pem().unwrap();
    let hs256 = encode(
        &hs_header,
        &claims("relai", "relai-api", now, now + 600),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    let (expired, _) = signer
        .issue(&account, std::time::Duration::from_secs(60), now - 3600)
        .unwrap();
    let (future, _) = signer
        .issue(&account, std::time::Duration::from_secs(600), now + 3600)
        .unwrap();
    let wrong_aud = sign(claims("relai", "another-api", now, now + 600));
    let wrong_iss = sign(claims("someone", "relai-api", now, now + 600));
    // Well signed, valid claims, but never issued here (its jti is unknown).
    let unissued = sign(claims("relai", "relai-api", now, now + 600));

    let cases: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("malformed", Some("not-a-jwt".to_owned())),
        ("other key", Some(other_key)),
        ("alg none", Some(none)),
        ("HS256 with the public key", Some(hs256)),
        ("expired", Some(expired)),
        ("not yet valid", Some(future)),
        ("wrong aud", Some(wrong_aud)),
        ("wrong iss", Some(wrong_iss)),
        ("never issued", Some(unissued)),
    ];
    let before = app.change_count();
    for (name, token) in &cases {
        let mut request = app
            .client
            .post(app.url("/v1/numbers"))
            .json(&json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": "x"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{name}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{name}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    let response = app
        .client
        .post(app.url("/v1/numbers"))
        .header("Authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(app.change_count(), before, "nothing written");

    // The good token works, until revoked from the command line's library call.
    let (status, _) = app.post("/v1/numbers", &good, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": "x"})).await;
    assert_eq!(status, 201);
    let payload = good.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let jti = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    app.write(move |conn, _| relai::accounts::revoke_token(conn, None, &jti, relai::store::now()))
        .await
        .unwrap();
    let (status, _) = app.post("/v1/numbers", &good, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123457", "label": "x"})).await;
    assert_eq!(status, 401);
});
