//! Moderation: only checked numbers reach the public, with their provenance.

use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::TestApp;

fn submission(service: &str, kind: &str, code: &str, phone: &str) -> Value {
    json!({"service": service, "territory": {"kind": kind, "code": code}, "phone": phone,
           "label": "SDIS 43 (relayé)", "source_url": "https://social.example/sdis43/status/1"})
}

fn phones_of(lookup: &Value, service: &str) -> Vec<String> {
    lookup["communes"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == service)
        .unwrap()["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone"]["national"].as_str().unwrap().to_owned())
        .collect()
}

backend_tests!(
    a_submission_is_public_only_after_a_second_moderator_approves,
    |app: TestApp| async move {
        let (_, _, alice) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let (_, _, bob) = app
            .account_with("VISOV Auvergne", "volunteers", &[], "moderator")
            .await;
        let (status, pending) = app
            .post(
                "/v1/numbers",
                &alice,
                submission("18", "departement", "43", "04 71 04 51 12"),
            )
            .await;
        assert_eq!(status, 202, "{pending}");
        assert_eq!(pending["status"], "pending");
        let id = pending["id"].as_str().unwrap().to_owned();
        // Invisible to the public.
        assert!(phones_of(&app.get_json("/v1/lookup?insee=43157").await.1, "18").is_empty());
        assert!(app.get_json("/v1/numbers").await.1["items"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(app.get(&format!("/v1/numbers/{id}")).await.status(), 404);
        assert!(!app
            .get("/v1/numbers.csv")
            .await
            .text()
            .await
            .unwrap()
            .contains("0471045112"));
        // A source is required.
        let mut no_source = submission("18", "departement", "43", "0471045113");
        no_source.as_object_mut().unwrap().remove("source_url");
        let (status, problem) = app.post("/v1/numbers", &alice, no_source).await;
        assert_eq!(
            (status, problem["errors"][0]["field"].as_str()),
            (422, Some("source_url"))
        );

        // Four eyes.
        let (status, _) = app
            .post(&format!("/v1/numbers/{id}/approve"), &alice, json!({}))
            .await;
        assert_eq!(status, 403);
        let (status, problem) = app
            .post(&format!("/v1/numbers/{id}/reject"), &bob, json!({}))
            .await;
        assert_eq!(status, 422, "{problem}");
        let (status, published) = app
            .post(
                &format!("/v1/numbers/{id}/approve"),
                &bob,
                json!({"reason": "Vu sur le compte officiel du SDIS 43"}),
            )
            .await;
        assert_eq!(status, 200, "{published}");
        assert_eq!(published["status"], "published");
        assert_eq!(published["provenance"]["kind"], "relayed");
        assert_eq!(
            published["provenance"]["source_url"],
            "https://social.example/sdis43/status/1"
        );
        assert_eq!(
            published["provenance"]["verified_by"]["name"],
            "VISOV Auvergne"
        );
        assert_eq!(
            phones_of(&app.get_json("/v1/lookup?insee=43157").await.1, "18"),
            ["0471045112"]
        );
        // Already decided.
        let (status, _) = app
            .post(
                &format!("/v1/numbers/{id}/reject"),
                &bob,
                json!({"reason": "trop tard"}),
            )
            .await;
        assert_eq!(status, 409);
        let (status, _) = app
            .post(&format!("/v1/numbers/{id}/approve"), &alice, json!({}))
            .await;
        assert!(status == 409 || status == 403, "{status}");
        // The history tells the whole story, by organization.
        let (_, history) = app.get_json(&format!("/v1/numbers/{id}/history")).await;
        let steps: Vec<(&str, &str)> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["organization"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("number.submitted", "VISOV"),
                ("number.approved", "VISOV Auvergne")
            ]
        );

        // A rejected submission never shows.
        let (_, other) = app
            .post(
                "/v1/numbers",
                &alice,
                submission("15", "departement", "43", "04 71 00 00 15"),
            )
            .await;
        let other_id = other["id"].as_str().unwrap();
        let (status, rejected) = app
            .post(
                &format!("/v1/numbers/{other_id}/reject"),
                &bob,
                json!({"reason": "Numéro non confirmé"}),
            )
            .await;
        assert_eq!(
            (status, rejected["status"].as_str()),
            (200, Some("rejected"))
        );
        assert!(phones_of(&app.get_json("/v1/lookup?insee=43157").await.1, "15").is_empty());
        assert_eq!(
            app.get(&format!("/v1/numbers/{other_id}")).await.status(),
            404
        );
    }
);

backend_tests!(
    the_queue_shows_conflicts_and_respects_scopes,
    |app: TestApp| async move {
        let (_, _, moderator) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let (_, _, sdis43) = app
            .account_with("SDIS 43", "sdis", &["18:departement:43"], "authority")
            .await;
        let (_, _, sdis89) = app
            .account_with("SDIS 89", "sdis", &["18:departement:89"], "authority")
            .await;
        let (status, _) = app.post("/v1/numbers", &sdis89, json!({"service": "18", "territory": {"kind": "departement", "code": "89"}, "phone": "03 86 48 27 78", "label": "CTA 89"})).await;
        assert_eq!(status, 201);
        let first = app
            .post(
                "/v1/numbers",
                &moderator,
                submission("18", "departement", "43", "04 71 04 51 12"),
            )
            .await
            .1;
        let second = app
            .post(
                "/v1/numbers",
                &moderator,
                submission("18", "departement", "89", "03 86 00 00 18"),
            )
            .await
            .1;
        let tip = app.client.post(app.url("/v1/tips"))
        .json(&json!({"service": "15", "territory": {"kind": "commune", "code": "43157"}, "phone": "04 71 02 02 02", "source_url": "https://social.example/samu43", "comment": "vu sur le compte de la préfecture"}))
        .send().await.unwrap();
        assert_eq!(tip.status(), 202);

        let queue = |token: String, query: &'static str| {
            let app = &app;
            async move {
                app.client
                    .get(app.url(&format!("/v1/moderation/queue{query}")))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let all = queue(moderator.clone(), "").await;
        let items = all["items"].as_array().unwrap();
        assert_eq!(items.len(), 3, "{all}");
        assert_eq!(items[0]["number"]["id"], first["id"], "oldest first");
        assert_eq!(items[1]["number"]["id"], second["id"]);
        assert_eq!(items[2]["kind"], "tip");
        assert_eq!(items[2]["comment"], "vu sur le compte de la préfecture");
        assert_eq!(items[0]["own"], true);
        // The official 18 of the Yonne shows beside the submission for the Yonne.
        assert_eq!(items[1]["in_force"][0]["phone"]["national"], "0386482778");
        assert!(items[0]["in_force"].as_array().unwrap().is_empty());
        // Filters, paging and scopes.
        assert_eq!(
            queue(moderator.clone(), "?service=15").await["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            queue(moderator.clone(), "?departement=43").await["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let page = queue(moderator.clone(), "?limit=2").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert!(page["next_cursor"].is_string());
        let scoped = queue(sdis43.clone(), "").await;
        assert_eq!(scoped["items"].as_array().unwrap().len(), 1, "{scoped}");
        assert_eq!(scoped["items"][0]["number"]["id"], first["id"]);
        // An authority in scope may decide; out of scope it may not.
        let second_id = second["id"].as_str().unwrap();
        assert_eq!(
            app.post(
                &format!("/v1/numbers/{second_id}/approve"),
                &sdis43,
                json!({})
            )
            .await
            .0,
            403
        );
        let first_id = first["id"].as_str().unwrap();
        assert_eq!(
            app.post(
                &format!("/v1/numbers/{first_id}/approve"),
                &sdis43,
                json!({})
            )
            .await
            .0,
            200
        );
        // Anonymous callers see nothing.
        assert_eq!(app.get("/v1/moderation/queue").await.status(), 401);
    }
);

backend_tests!(
    an_official_number_retires_the_relayed_ones,
    |app: TestApp| async move {
        let (_, _, alice) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let (_, _, bob) = app
            .account_with("VISOV 2", "volunteers", &[], "moderator")
            .await;
        let (_, _, sdis) = app
            .account_with("SDIS 43", "sdis", &["18:departement:43"], "authority")
            .await;
        let id = app
            .post(
                "/v1/numbers",
                &alice,
                submission("18", "departement", "43", "04 71 99 99 99"),
            )
            .await
            .1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            app.post(&format!("/v1/numbers/{id}/approve"), &bob, json!({}))
                .await
                .0,
            200
        );
        assert_eq!(
            phones_of(&app.get_json("/v1/lookup?insee=43157").await.1, "18"),
            ["0471999999"]
        );

        let (status, _) = app.post("/v1/numbers", &sdis, json!({"service": "18", "territory": {"kind": "departement", "code": "43"}, "phone": "04 71 04 51 12", "label": "CTA-CODIS 43"})).await;
        assert_eq!(status, 201);
        let lookup = app.get_json("/v1/lookup?insee=43157").await.1;
        assert_eq!(
            phones_of(&lookup, "18"),
            ["0471045112"],
            "only the official one"
        );
        let relayed = app.get_json(&format!("/v1/numbers/{id}")).await.1;
        assert_eq!(relayed["status"], "retired");
        assert!(
            relayed["retire_reason"]
                .as_str()
                .unwrap()
                .contains("Numéro officiel publié par SDIS 43"),
            "{relayed}"
        );
        let (_, history) = app.get_json(&format!("/v1/numbers/{id}/history")).await;
        let last = history["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (
                last["action"].as_str(),
                last["organization"]["name"].as_str()
            ),
            (Some("number.retired"), Some("SDIS 43"))
        );
        // And a relayed submission cannot be approved over an official number.
        let late = app
            .post(
                "/v1/numbers",
                &alice,
                submission("18", "departement", "43", "04 71 88 88 88"),
            )
            .await
            .1;
        assert_eq!(
            app.post(
                &format!("/v1/numbers/{}/approve", late["id"].as_str().unwrap()),
                &bob,
                json!({})
            )
            .await
            .0,
            409
        );
    }
);

backend_tests!(
    a_moderators_correction_waits_for_review,
    |app: TestApp| async move {
        let (_, _, alice) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let (_, _, bob) = app
            .account_with("VISOV 2", "volunteers", &[], "moderator")
            .await;
        let id = app
            .post(
                "/v1/numbers",
                &alice,
                submission("18", "departement", "43", "04 71 04 51 12"),
            )
            .await
            .1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.post(&format!("/v1/numbers/{id}/approve"), &bob, json!({}))
            .await;
        let path = format!("/v1/numbers/{id}");
        let response = app.client.patch(app.url(&path)).bearer_auth(&alice).header("If-Match", "\"2\"")
        .json(&json!({"phone": "04 71 04 51 13", "source_url": "https://social.example/sdis43/status/2", "reason": "Le SDIS a corrigé son message"}))
        .send().await.unwrap();
        assert_eq!(response.status(), 202);
        let correction: Value = response.json().await.unwrap();
        assert_eq!(correction["status"], "pending");
        // Until approved, the published number stays as it is.
        assert_eq!(
            phones_of(&app.get_json("/v1/lookup?insee=43157").await.1, "18"),
            ["0471045112"]
        );
        let queue: Value = app
            .client
            .get(app.url("/v1/moderation/queue"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(queue["items"][0]["kind"], "correction");
        assert_eq!(queue["items"][0]["supersedes"], id.as_str());
        let cid = correction["id"].as_str().unwrap();
        assert_eq!(
            app.post(&format!("/v1/numbers/{cid}/approve"), &alice, json!({}))
                .await
                .0,
            403,
            "four eyes"
        );
        assert_eq!(
            app.post(&format!("/v1/numbers/{cid}/approve"), &bob, json!({}))
                .await
                .0,
            200
        );
        assert_eq!(
            phones_of(&app.get_json("/v1/lookup?insee=43157").await.1, "18"),
            ["0471045113"]
        );
        let old = app.get_json(&path).await.1;
        assert_eq!(old["status"], "retired");
        let (_, history) = app.get_json(&format!("{path}/history")).await;
        assert_eq!(
            history["items"].as_array().unwrap().last().unwrap()["action"],
            "number.superseded"
        );
    }
);

backend_tests!(
    a_batch_applies_the_valid_decisions_and_reports_the_others,
    |app: TestApp| async move {
        let (org, account, _) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let (_, _, reviewer) = app
            .account_with("VISOV 2", "volunteers", &[], "moderator")
            .await;
        let ids: Vec<String> = app
            .write(move |conn, atlas| {
                (0..500)
                    .map(|i| {
                        relai::moderation::submit(
                            conn,
                            atlas,
                            relai::moderation::NewSubmission {
                                kind: relai::moderation::SubmissionKind::Submission,
                                service: relai::domain::ServiceCode::parse("18").unwrap(),
                                territory: relai::domain::Territory::parse("departement", "43")
                                    .unwrap(),
                                phone: relai::domain::PhoneNumber::parse(&format!(
                                    "04 71 {:02} {:02} {:02}",
                                    i / 10_000,
                                    (i / 100) % 100,
                                    i % 100
                                ))
                                .unwrap(),
                                label: format!("Relayé {i}"),
                                source_url: "https://social.example/x".to_owned(),
                                comment: None,
                                valid_until: None,
                                submitted_by: Some(relai::store::Actor {
                                    organization_id: Some(org.clone()),
                                    account_id: Some(account.clone()),
                                }),
                            },
                            relai::store::now(),
                        )
                        .map(|n| n.id)
                    })
                    .collect()
            })
            .await
            .unwrap();
        let mut decisions: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "decision": "approve"}))
            .collect();
        decisions[10] = json!({"id": ids[10], "decision": "reject"}); // no reason
        decisions[20] =
            json!({"id": "0190c5a3-0000-7000-8000-000000000000", "decision": "approve"}); // unknown
        decisions[30] = json!({"id": ids[30], "decision": "maybe"});
        let (status, body) = app
            .post(
                "/v1/moderation/decisions",
                &reviewer,
                json!({"decisions": decisions}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["applied"], 497);
        let failed: Vec<(u64, u64)> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, r)| r["status"] != 200)
            .map(|(i, r)| (i as u64, r["status"].as_u64().unwrap()))
            .collect();
        assert_eq!(failed, [(10, 422), (20, 404), (30, 422)]);
        assert_eq!(
            app.get_json("/v1/numbers?limit=1000").await.1["items"]
                .as_array()
                .unwrap()
                .len(),
            497
        );
        let (status, _) = app
            .post(
                "/v1/moderation/decisions",
                &reviewer,
                json!({"decisions": []}),
            )
            .await;
        assert_eq!(status, 422);
    }
);

backend_tests!(
    a_tip_flood_is_cut_off_for_its_address_only,
    |app: TestApp| async move {
        let tip = |i: u32| json!({"service": "18", "territory": {"kind": "departement", "code": "43"}, "phone": format!("04 71 00 10 {:02}", i), "source_url": "https://social.example/x"});
        let mut statuses = Vec::new();
        for i in 0..15 {
            let response = app
                .client
                .post(app.url("/v1/tips"))
                .json(&tip(i))
                .send()
                .await
                .unwrap();
            if response.status() == 429 {
                assert!(
                    response.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        > 0
                );
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
            }
            statuses.push(response.status().as_u16());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 202).count(),
            relai::config::DEFAULT_TIPS_PER_HOUR as usize
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 429).count(),
            15 - relai::config::DEFAULT_TIPS_PER_HOUR as usize
        );
        // Another address is not affected.
        let other = reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            other
                .post(app.url("/v1/tips"))
                .json(&tip(50))
                .send()
                .await
                .unwrap()
                .status(),
            202
        );
        // Nor is authenticated or public traffic from the flooding address.
        let (_, _, moderator) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let queue = app
            .client
            .get(app.url("/v1/moderation/queue"))
            .bearer_auth(&moderator)
            .send()
            .await
            .unwrap();
        assert_eq!(queue.status(), 200);
        assert_eq!(app.get("/v1/lookup?postcode=43000").await.status(), 200);
        // A tip is bounded and checked.
        let big = json!({"service": "18", "territory": {"kind": "departement", "code": "43"}, "phone": "0471001099", "source_url": "https://x.example", "comment": "x".repeat(5000)});
        assert_eq!(
            other
                .post(app.url("/v1/tips"))
                .json(&big)
                .send()
                .await
                .unwrap()
                .status(),
            413
        );
        let bad = json!({"service": "18", "territory": {"kind": "departement", "code": "43"}, "phone": "0899000000", "source_url": "javascript:alert(1)"});
        assert_eq!(
            other
                .post(app.url("/v1/tips"))
                .json(&bad)
                .send()
                .await
                .unwrap()
                .status(),
            422
        );
    }
);
