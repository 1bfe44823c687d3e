//! Outages, corrections, retirements, idempotent retries and CSV import through the API.

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::TestApp;

/// How many numbers storage holds with this phone, whatever their status.
fn stored_with_phone(state: &relai::state::AppState, e164: &str) -> i64 {
    use diesel::prelude::*;
    let mut conn = state.pool().get().unwrap();
    relai::db::schema::numbers::table
        .filter(relai::db::schema::numbers::phone_e164.eq(e164))
        .count()
        .get_result(&mut *conn)
        .unwrap()
}

fn eighteen(lookup: &Value) -> Value {
    lookup["communes"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "18")
        .unwrap()
        .clone()
}

backend_tests!(
    an_outage_declared_then_resolved,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (status, outage) = app
        .post("/v1/outages", &token, json!({"services": ["18"], "territory": {"kind": "departement", "code": "33"}, "description": "Le 18 ne répond plus en Gironde."}))
        .await;
        assert_eq!(status, 201, "{outage}");
        let outage_id = outage["id"].as_str().unwrap().to_owned();
        assert_eq!(
            eighteen(&app.get_json("/v1/lookup?postcode=33000").await.1)["status"],
            "outage"
        );
        // An outage for a service outside the scope is refused.
        let (status, _) = app.post("/v1/outages", &token, json!({"services": ["18", "15"], "territory": {"kind": "departement", "code": "33"}, "description": "x"})).await;
        assert_eq!(status, 403);

        let (status, n) = app
        .post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "05 56 90 18 18", "label": "CTA-CODIS 33", "outage_id": outage_id}))
        .await;
        assert_eq!(status, 201, "{n}");
        let id = n["id"].as_str().unwrap().to_owned();
        assert_eq!(
            eighteen(&app.get_json("/v1/lookup?postcode=33000").await.1)["numbers"][0]["id"],
            id.as_str()
        );

        let (status, resolved) = app
            .post(
                &format!("/v1/outages/{outage_id}/resolve"),
                &token,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{resolved}");
        assert_eq!(resolved["retired"][0]["id"], id.as_str());
        let after = eighteen(&app.get_json("/v1/lookup?postcode=33000").await.1);
        assert_eq!(after["status"], "normal");
        assert!(after["numbers"].as_array().unwrap().is_empty());
        let (_, history) = app.get_json(&format!("/v1/numbers/{id}/history")).await;
        let events: Vec<(&str, &str)> = history["items"]
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
            events,
            [
                ("number.published", "SDIS 33"),
                ("number.retired", "SDIS 33")
            ]
        );
        let (status, _) = app
            .post(
                &format!("/v1/outages/{outage_id}/resolve"),
                &token,
                json!({}),
            )
            .await;
        assert_eq!(status, 409);
    }
);

backend_tests!(corrections_need_if_match, |app: TestApp| async move {
    let (_, _, token) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    let (_, n) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": "CTA"})).await;
    let path = format!("/v1/numbers/{}", n["id"].as_str().unwrap());
    let patch = |if_match: Option<&str>, body: Value| {
        let mut r = app
            .client
            .patch(app.url(&path))
            .bearer_auth(&token)
            .json(&body);
        if let Some(v) = if_match {
            r = r.header("If-Match", v.to_owned());
        }
        r.send()
    };
    assert_eq!(
        patch(None, json!({"label": "CTA-CODIS 33"}))
            .await
            .unwrap()
            .status(),
        428
    );
    assert_eq!(
        patch(Some("\"7\""), json!({"label": "CTA-CODIS 33"}))
            .await
            .unwrap()
            .status(),
        412
    );
    let etag = app.get(&path).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(etag, "\"1\"");
    let ok = patch(
        Some(&etag),
        json!({"phone": "05 56 12 34 99", "reason": "Erreur de saisie"}),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "\"2\"");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["phone"]["national"], "0556123499");
    assert_eq!(body["version"], 2);
    // The old ETag is now stale; changing the territory is refused.
    assert_eq!(
        patch(Some(&etag), json!({"label": "x"}))
            .await
            .unwrap()
            .status(),
        412
    );
    let refused = patch(
        Some("\"2\""),
        json!({"territory": {"kind": "departement", "code": "75"}}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 422);
    let (_, history) = app.get_json(&format!("{path}/history")).await;
    assert_eq!(history["items"][1]["action"], "number.corrected");
    assert_eq!(history["items"][1]["reason"], "Erreur de saisie");
});

backend_tests!(
    retirement_needs_scope_and_reason,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (_, _, other) = app
            .account_with("SDIS 89", "sdis", &["18:departement:89"], "authority")
            .await;
        let (_, n) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": "CTA"})).await;
        let retire = format!("/v1/numbers/{}/retire", n["id"].as_str().unwrap());
        assert_eq!(
            app.post(&retire, &other, json!({"reason": "x"})).await.0,
            403
        );
        assert_eq!(
            app.post(&retire, &token, json!({"reason": " "})).await.0,
            422
        );
        assert_eq!(app.post(&retire, &token, json!({})).await.0, 422);
        let (status, body) = app
            .post(&retire, &token, json!({"reason": "Numéro remplacé"}))
            .await;
        assert_eq!((status, body["status"].as_str()), (200, Some("retired")));
        assert_eq!(
            app.post(&retire, &token, json!({"reason": "encore"}))
                .await
                .0,
            409
        );
        let admin = app.admin_token().await;
        assert_eq!(
            app.post(
                "/v1/numbers/0190c5a3-0000-7000-8000-000000000000/retire",
                &admin,
                json!({"reason": "x"})
            )
            .await
            .0,
            404
        );
    }
);

backend_tests!(idempotent_retries_write_once, |app: TestApp| async move {
    let (_, _, token) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    let body = json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": "CTA"});
    let send = |key: &str, body: &Value| {
        app.client
            .post(app.url("/v1/numbers"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key.to_owned())
            .json(body)
            .send()
    };
    let first = send("retry-1", &body).await.unwrap();
    assert_eq!(first.status(), 201);
    let first_location = first.headers()["location"].clone();
    let first_body: Value = first.json().await.unwrap();
    let before = app.change_count();
    let again = send("retry-1", &body).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["location"], first_location);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.change_count(), before, "nothing written twice");
    let mut other = body.clone();
    other["phone"] = json!("0556000000");
    let reused = send("retry-1", &other).await.unwrap();
    assert_eq!(reused.status(), 422);
    assert_eq!(app.change_count(), before);
    let bad_key = send(&"k".repeat(300), &other).await.unwrap();
    assert_eq!(bad_key.status(), 400);
});

fn import_file(rows: usize, bad_line: Option<usize>) -> String {
    let mut file = String::from("service,territory_kind,territory_code,phone,label,valid_until\n");
    for i in 0..rows {
        let line = i + 2;
        let phone = if Some(line) == bad_line {
            "0899000000".to_owned()
        } else {
            format!(
                "05 5{} {:02} {:02} {:02}",
                i / 1_000_000,
                (i / 10_000) % 100,
                (i / 100) % 100,
                i % 100
            )
        };
        file.push_str(&format!("18,departement,33,{phone},Ligne {i},\n"));
    }
    file
}

async fn import(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/numbers/import"))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

backend_tests!(a_csv_import_is_all_or_nothing, |app: TestApp| async move {
    let (_, _, token) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    let before = app.change_count();
    // Line 7,001 of the file is row 7,000.
    let (status, problem) = import(
        &app,
        &token,
        "text/csv",
        import_file(10_000, Some(7_001)).into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1);
    assert_eq!(problem["errors"][0]["line"], 7_001);
    assert_eq!(problem["errors"][0]["field"], "phone");
    assert_eq!(app.change_count(), before);

    let header = "service,territory_kind,territory_code,phone,label,valid_until\n";
    for (content_type, body, status) in [
        (
            "text/csv",
            "service,territory,phone\n18,departement,0556\n"
                .as_bytes()
                .to_vec(),
            422,
        ),
        ("text/csv", header.as_bytes().to_vec(), 422),
        (
            "text/csv",
            [
                header.as_bytes(),
                b"18,departement,33,0556123456,Pr\xe9fecture,\n",
            ]
            .concat(),
            422,
        ),
        ("application/json", b"{}".to_vec(), 415),
    ] {
        assert_eq!(import(&app, &token, content_type, body).await.0, status);
    }
    // A row outside the scope: 403, nothing written.
    let outside =
        format!("{header}18,departement,33,0556123456,ok,\n17,departement,33,0556123457,no,\n");
    let (status, problem) = import(&app, &token, "text/csv", outside.into_bytes()).await;
    assert_eq!(status, 403);
    assert!(
        problem["detail"].as_str().unwrap().contains('3'),
        "{problem}"
    );
    // Unknown territories are named by line, before any scope question.
    let unknown =
        format!("{header}18,departement,33,0556123456,ok,\n18,commune,33999,0556123457,no,\n");
    let (status, problem) = import(&app, &token, "text/csv", unknown.into_bytes()).await;
    assert_eq!(
        (status, problem["errors"][0]["line"].as_u64()),
        (422, Some(3)),
        "{problem}"
    );
    // A duplicate inside the file is named too.
    let twice =
        format!("{header}18,departement,33,0556123456,a,\n18,departement,33,05 56 12 34 56,b,\n");
    let (status, problem) = import(&app, &token, "text/csv", twice.into_bytes()).await;
    assert_eq!(
        (status, problem["errors"][0]["line"].as_u64()),
        (422, Some(3))
    );
    assert_eq!(app.change_count(), before);

    let started = std::time::Instant::now();
    let (status, result) = import(
        &app,
        &token,
        "text/csv",
        import_file(10_000, None).into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["imported"], 10_000);
    eprintln!("10,000-row import: {:?}", started.elapsed());
    let (_, page) = app.get_json("/v1/numbers?limit=1000").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1000);
    let csv = app.get("/v1/numbers.csv").await.text().await.unwrap();
    assert_eq!(csv.lines().count(), 10_001);
});

backend_tests!(the_csv_export_defuses_formulas, |app: TestApp| async move {
    let (_, _, token) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    let (status, _) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": "0556123456", "label": "=HYPERLINK(\"http://evil\")"})).await;
    assert_eq!(status, 201);
    let response = app.send(Method::GET, "/v1/numbers.csv", None, None).await;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = response.text().await.unwrap();
    assert!(text.contains("'=HYPERLINK"), "{text}");
    assert!(text.contains(",0556123456,"), "{text}");
});

backend_tests!(
    overlapping_writes_wait_for_company_and_a_lone_writer_never_waits,
    |app: TestApp| async move {
        use crate::helpers::Publish;
        use relai::store;
        use std::time::Duration;
        let org = app.organization("SDIS 33", "sdis").await;
        let state = app.state.clone().into_inner();
        state.set_commit_delay(Duration::from_millis(400));
        let write = |phone: &'static str, hold: Duration| {
            let (state, org) = (state.clone(), org.clone());
            tokio::spawn(state.write(move |conn, atlas| {
                std::thread::sleep(hold);
                let new = Publish::new("18", "departement", "33", phone, &org);
                store::publish_number(conn, atlas, new.into_new_number(), store::now())
            }))
        };

        // One after another, as one client writes: nobody to wait for.
        let delayed_before = state.delayed_batches();
        for phone in ["0556000020", "0556000021", "0556000022"] {
            write(phone, Duration::ZERO)
                .await
                .unwrap()
                .expect("a lone write");
        }
        assert_eq!(
            state.delayed_batches(),
            delayed_before,
            "a lone writer's batches never wait"
        );

        // Side by side: the first write holds the writers' lock 30 ms; the second begins
        // meanwhile, so its batch waits for company (400 ms), and a third write that
        // begins during the wait joins it: one commit for the two.
        let (batches_before, writes_before) = state.write_batches();
        let first = write("0556000030", Duration::from_millis(30));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = write("0556000031", Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(190)).await;
        let third = write("0556000032", Duration::ZERO);
        for (name, task) in [("first", first), ("second", second), ("third", third)] {
            task.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        let (batches_after, writes_after) = state.write_batches();
        assert_eq!(
            (batches_after - batches_before, writes_after - writes_before),
            (2, 3),
            "the first alone, the second and third together"
        );
        assert_eq!(state.delayed_batches(), delayed_before + 1);

        // Each is public once its write answered.
        let (status, lookup) = app.get_json("/v1/lookup?insee=33063").await;
        assert_eq!(status, 200);
        let shown = eighteen(&lookup)["numbers"].to_string();
        for e164 in ["+33556000030", "+33556000031", "+33556000032"] {
            assert!(shown.contains(e164), "{e164} not in {shown}");
        }
    }
);

backend_tests!(
    a_write_that_panics_fails_alone_and_the_writes_queued_behind_it_go_on,
    |app: TestApp| async move {
        use crate::helpers::Publish;
        use relai::store::{self, StoreError};
        use std::time::Duration;
        let org = app.organization("SDIS 33", "sdis").await;
        let state = app.state.clone().into_inner();
        let publish = |phone: &'static str| {
            let (state, org) = (state.clone(), org.clone());
            tokio::spawn(state.write(move |conn, atlas| {
                let new = Publish::new("18", "departement", "33", phone, &org);
                store::publish_number(conn, atlas, new.into_new_number(), store::now())
            }))
        };

        // A bug: the first write writes, holds the writers' lock a while, then panics. A
        // second write queues meanwhile, behind the batch that is going to fail.
        let buggy = {
            let (state, org) = (state.clone(), org.clone());
            tokio::spawn(state.write(move |conn, atlas| -> Result<(), StoreError> {
                let new = Publish::new("18", "departement", "33", "0556000040", &org);
                store::publish_number(conn, atlas, new.into_new_number(), store::now())?;
                std::thread::sleep(Duration::from_millis(300));
                panic!("a bug in a write");
            }))
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = publish("0556000041");

        let failed = buggy.await.unwrap();
        assert!(
            matches!(&failed, Err(relai::error::ApiError::Internal(_))),
            "{failed:?}"
        );
        // The queued write runs without waiting for another write to come and lead.
        let queued = tokio::time::timeout(Duration::from_secs(10), queued)
            .await
            .expect("the write queued behind a panicking batch still runs")
            .unwrap()
            .expect("the queued write");
        assert_eq!(queued.phone.e164, "+33556000041");
        // And writing goes on as before.
        publish("0556000042")
            .await
            .unwrap()
            .expect("a write after the panic");

        // The panicking write left nothing, in storage or in the lookup.
        let (status, lookup) = app.get_json("/v1/lookup?insee=33063").await;
        assert_eq!(status, 200);
        let shown = eighteen(&lookup)["numbers"].to_string();
        assert!(shown.contains("+33556000041"), "{shown}");
        assert!(shown.contains("+33556000042"), "{shown}");
        assert!(!shown.contains("+33556000040"), "{shown}");
        let stored = stored_with_phone(&state, "+33556000040");
        assert_eq!(stored, 0, "the panicking write's row was kept");
    }
);

backend_tests!(
    writes_that_arrive_together_commit_together_and_fail_alone,
    |app: TestApp| async move {
        use crate::helpers::Publish;
        use relai::store::{self, StoreError};
        let org = app.organization("SDIS 33", "sdis").await;
        let state = app.state.clone().into_inner();
        let (batches_before, writes_before) = state.write_batches();

        // The first write holds the writers' lock a while; the others queue behind it and
        // must then run as one batch: five publications, one of which fails after having
        // written (its savepoint must undo it), one a duplicate of another (409).
        let blocker = {
            let (state, org) = (state.clone(), org.clone());
            tokio::spawn(state.write(move |conn, atlas| {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let new = Publish::new("18", "departement", "33", "0556000001", &org);
                store::publish_number(conn, atlas, new.into_new_number(), store::now())
            }))
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut queued = Vec::new();
        for (i, phone) in [
            "0556000010",
            "0556000011",
            "0556000012",
            "0556000011",
            "0556000013",
        ]
        .into_iter()
        .enumerate()
        {
            let (state, org) = (state.clone(), org.clone());
            queued.push(tokio::spawn(state.write(move |conn, atlas| {
                let new = Publish::new("18", "departement", "33", phone, &org);
                let n = store::publish_number(conn, atlas, new.into_new_number(), store::now())?;
                if i == 2 {
                    // Written, then failed: nothing of it may remain.
                    return Err(StoreError::Conflict(format!(
                        "changed my mind about {}",
                        n.id
                    )));
                }
                Ok(n)
            })));
            // In order, so that the duplicate comes second.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let first = blocker.await.unwrap().expect("the first write");
        let mut outcomes = Vec::new();
        for q in queued {
            outcomes.push(q.await.unwrap());
        }
        let (batches_after, writes_after) = state.write_batches();
        assert_eq!(
            (batches_after - batches_before, writes_after - writes_before),
            (2, 6),
            "the first write alone, then the five queued behind it in one transaction"
        );
        let published: Vec<_> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .cloned()
            .collect();
        assert_eq!(published.len(), 3, "{outcomes:?}");
        assert!(
            matches!(&outcomes[2], Err(relai::error::ApiError::Conflict(d)) if d.starts_with("changed my mind")),
            "{:?}",
            outcomes[2]
        );
        assert!(
            matches!(&outcomes[3], Err(relai::error::ApiError::Conflict(d)) if d.contains("already in force")),
            "{:?}",
            outcomes[3]
        );

        // The lookup shows exactly the four that succeeded, already (the batch caught up
        // before answering); the undone one is not in storage either.
        let (status, lookup) = app.get_json("/v1/lookup?insee=33063").await;
        assert_eq!(status, 200);
        let shown: Vec<String> = eighteen(&lookup)["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["phone"]["e164"].as_str().unwrap().to_owned())
            .collect();
        let mut expected: Vec<String> = std::iter::once(&first)
            .chain(&published)
            .map(|n| n.phone.e164.clone())
            .collect();
        expected.sort();
        let mut shown_sorted = shown.clone();
        shown_sorted.sort();
        assert_eq!(shown_sorted, expected);
        assert!(
            !shown.contains(&"+33556000012".to_owned()),
            "the undone write shows: {shown:?}"
        );
        let stored = stored_with_phone(&state, "+33556000012");
        assert_eq!(stored, 0, "the undone write is in storage");
    }
);

backend_tests!(
    a_write_that_fails_after_writing_leaves_nothing,
    |app: TestApp| async move {
        use crate::helpers::Publish;
        use relai::store::{self, StoreError};
        let org = app.organization("SDIS 33", "sdis").await;
        let seq = app.state.directory().seq();
        // Alone in its transaction: the store's write functions take no savepoint of their
        // own there, so it is the transaction's rollback that must undo the publication.
        let outcome = app
            .write(move |conn, atlas| {
                let new = Publish::new("18", "departement", "33", "0556000099", &org);
                store::publish_number(conn, atlas, new.into_new_number(), store::now())?;
                Err::<(), _>(StoreError::Conflict("after all, no".to_owned()))
            })
            .await;
        assert!(
            matches!(outcome, Err(relai::error::ApiError::Conflict(_))),
            "{outcome:?}"
        );
        let mut conn = app.state.pool().get().unwrap();
        use diesel::prelude::*;
        let numbers: i64 = relai::db::schema::numbers::table
            .count()
            .get_result(&mut *conn)
            .unwrap();
        let last_change = relai::store::last_change_seq(&mut conn).unwrap();
        assert_eq!(
            (numbers, last_change),
            (0, seq),
            "a number or a change remained"
        );
    }
);
