//! Authorities publish, only inside their scopes; tokens are checked strictly; every
//! write is audited. Acceptance of the authorities issue.

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::TestApp;

fn number(service: &str, kind: &str, code: &str, phone: &str) -> Value {
    json!({"service": service, "territory": {"kind": kind, "code": code}, "phone": phone, "label": "CTA-CODIS Gironde"})
}

async fn numbers_in_force(app: &TestApp) -> usize {
    app.get_json("/v1/numbers").await.1["items"]
        .as_array()
        .unwrap()
        .len()
}

backend_tests!(
    an_sdis_publishes_only_inside_its_scope,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (status, body) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "05 56 12 34 56"),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["provenance"],
            json!({"kind": "official", "organization": {"id": body["provenance"]["organization"]["id"], "name": "SDIS 33"}})
        );
        assert_eq!(body["status"], "published");
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "commune", "33063", "05 56 12 34 57"),
            )
            .await;
        assert_eq!(status, 201);
        let before = app.change_count();
        for (service, kind, code) in [
            ("17", "departement", "33"),
            ("18", "departement", "75"),
            ("18", "commune", "75056"),
            ("18", "national", "FR"),
            ("18", "zone", "Sud-Ouest"),
        ] {
            let (status, body) = app
                .post(
                    "/v1/numbers",
                    &token,
                    number(service, kind, code, "05 56 99 99 99"),
                )
                .await;
            assert_eq!(status, 403, "{service} {kind}:{code}: {body}");
            assert_eq!(body["status"], 403);
        }
        assert_eq!(app.change_count(), before, "nothing written");
        assert_eq!(numbers_in_force(&app).await, 2);
        // The Location and the lookup show it at once.
        let (_, lookup) = app.get_json("/v1/lookup?insee=33281").await;
        let eighteen = lookup["communes"][0]["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == "18")
            .unwrap()
            .clone();
        assert_eq!(eighteen["numbers"][0]["phone"]["national"], "0556123456");
    }
);

backend_tests!(
    bad_numbers_are_422_and_duplicates_409,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with(
                "Préfecture de la Gironde",
                "prefecture",
                &["*:departement:33"],
                "authority",
            )
            .await;
        for phone in [
            "08 99 12 34 56",
            "0820123456",
            "3949",
            "15",
            "112",
            "+44 20 7946 0000",
            "05 56 12 34",
            "pas un numéro",
            "0937123456",
        ] {
            let (status, body) = app
                .post(
                    "/v1/numbers",
                    &token,
                    number("18", "departement", "33", phone),
                )
                .await;
            assert_eq!(status, 422, "{phone}: {body}");
            assert_eq!(body["errors"][0]["field"], "phone", "{phone}: {body}");
        }
        let (status, body) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "commune", "33999", "0556123456"),
            )
            .await;
        assert_eq!(
            (status, body["errors"][0]["field"].as_str()),
            (422, Some("territory"))
        );
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "0556123456"),
            )
            .await;
        assert_eq!(status, 201);
        let (status, body) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "+33 5 56 12 34 56"),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        // Fields a caller may not set are refused, named, and nothing is written.
        for field in [
            "status",
            "provenance",
            "version",
            "id",
            "published_at",
            "updated_at",
            "demo",
        ] {
            let mut body = number("18", "departement", "33", "0556000001");
            body[field] = json!("published");
            let (status, problem) = app.post("/v1/numbers", &token, body).await;
            assert_eq!(status, 422, "{field}");
            assert_eq!(problem["errors"][0]["field"], field);
        }
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                json!({"service": "18", "nonsense": 1}),
            )
            .await;
        assert_eq!(status, 422);
        assert_eq!(numbers_in_force(&app).await, 1);
        // Not JSON: 415; malformed JSON: 400; too large: 413; all problem+json.
        let response = app
            .client
            .post(app.url("/v1/numbers"))
            .bearer_auth(&token)
            .header("Content-Type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415);
        let response = app
            .client
            .post(app.url("/v1/numbers"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let huge = format!("{{\"label\": \"{}\"}}", "x".repeat(9 * 1024 * 1024));
        let response = app
            .client
            .post(app.url("/v1/numbers"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
);

backend_tests!(
    moderators_cannot_retire_import_or_declare,
    |app: TestApp| async move {
        let (_, _, authority) = app
            .account_with("SDIS 33", "sdis", &["*:departement:33"], "authority")
            .await;
        let (_, body) = app
            .post(
                "/v1/numbers",
                &authority,
                number("18", "departement", "33", "0556123456"),
            )
            .await;
        let id = body["id"].as_str().unwrap().to_owned();
        let (_, _, moderator) = app
            .account_with("VISOV", "volunteers", &["*:national:FR"], "moderator")
            .await;
        let before = app.change_count();
        let (status, _) = app
            .post(
                &format!("/v1/numbers/{id}/retire"),
                &moderator,
                json!({"reason": "faux"}),
            )
            .await;
        assert_eq!(status, 403);
        let (status, _) = app.post("/v1/outages", &moderator, json!({"services": ["18"], "territory": {"kind": "departement", "code": "33"}, "description": "x"})).await;
        assert_eq!(status, 403);
        let response = app.client.post(app.url("/v1/numbers/import")).bearer_auth(&moderator).header("Content-Type", "text/csv")
        .body("service,territory_kind,territory_code,phone,label,valid_until\n18,departement,33,0556000000,x,\n").send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(app.change_count(), before);
    }
);

backend_tests!(
    admin_endpoints_are_for_admins_only,
    |app: TestApp| async move {
        let (_, account, authority) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (_, _, moderator) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let calls: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/v1/admin/organizations".into(), None),
            (
                Method::POST,
                "/v1/admin/organizations".into(),
                Some(json!({"name": "X", "kind": "sdis"})),
            ),
            (Method::GET, "/v1/admin/accounts".into(), None),
            (
                Method::POST,
                "/v1/admin/accounts".into(),
                Some(json!({"role": "admin", "name": "X"})),
            ),
            (
                Method::PATCH,
                format!("/v1/admin/accounts/{account}"),
                Some(json!({"enabled": false})),
            ),
            (
                Method::POST,
                "/v1/admin/tokens".into(),
                Some(json!({"account_id": account})),
            ),
            (
                Method::POST,
                "/v1/admin/tokens/0190c5a3-0000-7000-8000-000000000000/revoke".into(),
                None,
            ),
            (Method::GET, "/v1/admin/audit".into(), None),
        ];
        for (method, path, body) in &calls {
            for token in [&authority, &moderator] {
                let response = app
                    .send(method.clone(), path, Some(token), body.clone())
                    .await;
                assert_eq!(response.status(), 403, "{method} {path}");
            }
            let response = app.send(method.clone(), path, None, body.clone()).await;
            assert_eq!(response.status(), 401, "{method} {path}");
            assert!(response.headers().contains_key("www-authenticate"));
        }
        // The authority was not disabled by its own attempt.
        let (status, _) = app
            .post(
                "/v1/numbers",
                &authority,
                number("18", "departement", "33", "0556123456"),
            )
            .await;
        assert_eq!(status, 201);
    }
);

backend_tests!(
    an_admin_runs_everything_through_the_api,
    |app: TestApp| async move {
        let admin = app.admin_token().await;
        let (status, org) = app
            .post(
                "/v1/admin/organizations",
                &admin,
                json!({"name": "SAMU 33", "kind": "samu", "scopes": ["15:departement:33"]}),
            )
            .await;
        assert_eq!(status, 201, "{org}");
        assert_eq!(org["scopes"], json!(["15:departement:33"]));
        let (status, bad) = app
            .post(
                "/v1/admin/organizations",
                &admin,
                json!({"name": "X", "kind": "army", "scopes": ["15:departement:20"]}),
            )
            .await;
        assert_eq!(status, 422);
        assert_eq!(bad["errors"].as_array().unwrap().len(), 2, "{bad}");
        let (status, account) = app
            .post(
                "/v1/admin/accounts",
                &admin,
                json!({"organization_id": org["id"], "role": "authority", "name": "Régulation 33"}),
            )
            .await;
        assert_eq!(status, 201);
        let (status, issued) = app
            .post(
                "/v1/admin/tokens",
                &admin,
                json!({"account_id": account["id"], "ttl": "1h"}),
            )
            .await;
        assert_eq!(status, 201);
        let token = issued["token"].as_str().unwrap().to_owned();
        let (status, n) = app
            .post(
                "/v1/numbers",
                &token,
                number("15", "departement", "33", "0556000015"),
            )
            .await;
        assert_eq!(status, 201);
        // Revocation takes effect on the next request.
        let response = app
            .send(
                Method::POST,
                &format!(
                    "/v1/admin/tokens/{}/revoke",
                    issued["jti"].as_str().unwrap()
                ),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(response.status(), 204);
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("15", "departement", "33", "0556000016"),
            )
            .await;
        assert_eq!(status, 401);
        // The audit trail names accounts for admins; the public history names the organization only.
        let (status, _) = app.get_json("/v1/admin/audit").await;
        assert_eq!(status, 401);
        let response = app
            .send(
                Method::GET,
                "/v1/admin/audit?limit=1000",
                Some(&admin),
                None,
            )
            .await;
        let audit: Value = response.json().await.unwrap();
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for expected in [
            "organization.created",
            "account.created",
            "token.issued",
            "number.published",
            "token.revoked",
        ] {
            assert!(actions.contains(&expected), "{expected} in {actions:?}");
        }
        let published = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "number.published")
            .unwrap();
        assert_eq!(published["account_id"], account["id"]);
        let (_, history) = app
            .get_json(&format!(
                "/v1/numbers/{}/history",
                n["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(history["items"][0]["organization"]["name"], "SAMU 33");
        assert!(
            !history.to_string().contains("Régulation 33"),
            "no account details in public history"
        );
    }
);

backend_tests!(
    a_write_reads_its_caller_again_inside_its_transaction,
    // Remembered for an hour here, so that the test never depends on the machine's speed.
    config = |c: &mut relai::config::Config| c.caller_memory = std::time::Duration::from_secs(3600),
    |app: TestApp| async move {
        // A writer's checks may use the caller remembered from its last write (see
        // `auth::WriteCaller`); the write's own transaction reads it again and writes
        // nothing unless it is the same.
        let (org, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "0556000118"),
            )
            .await;
        assert_eq!(status, 201);
        let before = numbers_in_force(&app).await;
        // Its scope is taken away in storage behind this process (an operator, or another
        // instance of a cluster): nothing here is told.
        app.write(move |conn, _| {
            use diesel::prelude::*;
            use relai::db::schema::organization_scopes as s;
            diesel::delete(s::table.filter(s::organization_id.eq(&org)))
                .execute(conn)
                .map_err(relai::store::StoreError::Db)
        })
        .await
        .expect("scopes removed");
        // The next write passes its handler's checks on the remembered caller, and is
        // refused inside its transaction: 409, send it again; nothing written.
        let phone = "0556000119";
        let (status, problem) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", phone),
            )
            .await;
        assert_eq!(status, 409, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("send it again"),
            "{problem}"
        );
        assert_eq!(numbers_in_force(&app).await, before);
        // Sent again, it is checked against the caller as storage has it now: out of scope.
        let (status, problem) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", phone),
            )
            .await;
        assert_eq!(status, 403, "{problem}");
        assert_eq!(numbers_in_force(&app).await, before);
    }
);

backend_tests!(
    disabling_an_account_takes_effect_at_once,
    |app: TestApp| async move {
        let admin = app.admin_token().await;
        let (_, account, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "0556000001"),
            )
            .await;
        assert_eq!(status, 201);
        let response = app
            .send(
                Method::PATCH,
                &format!("/v1/admin/accounts/{account}"),
                Some(&admin),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(response.status(), 200);
        let before = app.change_count();
        let response = app
            .send(
                Method::POST,
                "/v1/numbers",
                Some(&token),
                Some(number("18", "departement", "33", "0556000002")),
            )
            .await;
        assert_eq!(response.status(), 401);
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(app.change_count(), before);
    }
);

backend_tests!(
    the_command_line_manages_authorities,
    |app: TestApp| async move {
        let relai = |args: &[&str]| {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_relai"))
                .args([
                    "--database-url",
                    &app.database_url,
                    "--jwt-private-key",
                    app.jwt_key.to_str().unwrap(),
                ])
                .args(args)
                .env("RELAI_LOG", "error")
                .output()
                .expect("relai runs");
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        };
        let (ok, out, err) = relai(&[
            "org",
            "create",
            "--name",
            "SDIS 33",
            "--kind",
            "sdis",
            "--scope",
            "18:departement:33",
        ]);
        assert!(ok, "{err}");
        let org: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(org["scopes"], json!(["18:departement:33"]));
        let org_id = org["id"].as_str().unwrap();
        let (ok, _, err) = relai(&[
            "org",
            "create",
            "--name",
            "X",
            "--kind",
            "sdis",
            "--scope",
            "18:departement:20",
        ]);
        assert!(!ok && err.contains("scopes[0]"), "{err}");
        let (ok, out, err) = relai(&[
            "account",
            "create",
            "--org",
            org_id,
            "--role",
            "authority",
            "--name",
            "CTA-CODIS 33",
        ]);
        assert!(ok, "{err}");
        let account: Value = serde_json::from_str(&out).unwrap();
        let (ok, token, err) = relai(&[
            "token",
            "issue",
            "--account",
            account["id"].as_str().unwrap(),
            "--ttl",
            "1h",
        ]);
        assert!(ok, "{err}");
        let token = token.trim().to_owned();
        assert_eq!(token.split('.').count(), 3, "the token alone");
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "0556123456"),
            )
            .await;
        assert_eq!(status, 201);

        let dir = std::env::temp_dir().join(format!("relai-import-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("numbers.csv");
        std::fs::write(&file, "service,territory_kind,territory_code,phone,label,valid_until\n18,commune,33063,0556000001,Bordeaux,\nx,commune,33063,0899000000,,\n").unwrap();
        let (ok, _, err) = relai(&["import", file.to_str().unwrap(), "--org", org_id]);
        assert!(
            !ok && err.contains("line 3, service") && err.contains("line 3, phone"),
            "{err}"
        );
        std::fs::write(&file, "service,territory_kind,territory_code,phone,label,valid_until\n18,commune,33063,0556000001,Bordeaux,\n").unwrap();
        let (ok, out, err) = relai(&["import", file.to_str().unwrap(), "--org", org_id]);
        assert!(ok && out.starts_with("imported 1 numbers"), "{out} {err}");
        let _ = std::fs::remove_dir_all(&dir);

        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        let (ok, _, err) = relai(&["token", "revoke", "--jti", claims["jti"].as_str().unwrap()]);
        assert!(ok, "{err}");
        let (status, _) = app
            .post(
                "/v1/numbers",
                &token,
                number("18", "departement", "33", "0556123457"),
            )
            .await;
        assert_eq!(status, 401);
    }
);
