//! The in-memory snapshot follows the changes log incrementally; these tests hold it to
//! what a snapshot rebuilt from storage says, and check that cached lookup answers are
//! dropped exactly when a change reaches them.

use std::sync::Arc;

use relai::answers::PostcodeIndex;
use relai::db::{self, DatabaseUrl};
use relai::domain::PhoneNumber;
use relai::store::{self, Actor, Correction};
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Publish, TestApp};

/// Ids and versions.
type Versions = Vec<(String, i32)>;

/// Every published number and every outage of a snapshot, by id and version.
fn contents(dir: &relai::directory::Directory) -> (Versions, Versions) {
    (
        dir.published()
            .map(|n| (n.id().to_owned(), n.version()))
            .collect(),
        dir.outages()
            .iter()
            .map(|o| (o.id.clone(), o.version))
            .collect(),
    )
}

/// The lookup answer of a postcode without its time, to compare snapshots. Also holds
/// the served bytes (the answer assembled from shared pieces) to what serde writes of the
/// typed answer, byte for byte.
fn answer_of(dir: &relai::directory::Directory, postcode: &str) -> Value {
    let now = store::now();
    let mut typed = relai::lookup::by_postcode(dir, postcode, now).expect("known postcode");
    typed.generated_at = dir.built_at();
    let served = dir
        .postcode_answer(postcode, now)
        .expect("known postcode")
        .json_bytes(dir.built_at_json());
    assert_eq!(
        String::from_utf8(served.to_vec()).unwrap(),
        serde_json::to_string(&typed).unwrap(),
        "{postcode}"
    );
    let mut v = serde_json::to_value(typed).expect("json");
    v["generated_at"] = Value::Null;
    v
}

backend_tests!(
    the_incremental_snapshot_equals_one_rebuilt_from_storage,
    |app: TestApp| async move {
        app.load_demo().await;
        let org = app.organization("SDIS 33", "sdis").await;
        let commune = app
            .publish(Publish::new("18", "commune", "33063", "0556000001", &org))
            .await
            .unwrap();
        let dep = app
            .publish(Publish::new("15", "departement", "33", "0556000002", &org))
            .await
            .unwrap();
        app.publish(Publish::new("17", "zone", "Sud-Ouest", "0556000003", &org))
            .await
            .unwrap();
        app.publish(Publish::new("112", "national", "FR", "0156000004", &org))
            .await
            .unwrap();
        app.declare(&["15", "18"], "departement", "33", &org).await;
        let actor = Actor::organization(&org);
        let (a, id) = (actor.clone(), commune.id.clone());
        app.write(move |conn, atlas| {
            store::correct_number(
                conn,
                atlas,
                &a,
                &id,
                1,
                Correction {
                    phone: Some(PhoneNumber::parse("0556000009").unwrap()),
                    label: Some("Corrigé".to_owned()),
                    valid_until: None,
                    reason: Some("typo".to_owned()),
                    source_url: None,
                },
                store::now(),
            )
        })
        .await
        .unwrap();
        let (a, id) = (actor.clone(), dep.id.clone());
        app.write(move |conn, atlas| {
            store::retire_number(conn, atlas, &a, &id, "fin", store::now())
        })
        .await
        .unwrap();
        // The demo outage resolved: its numbers retire in the same transaction.
        app.write(|conn, atlas| {
            relai::seed::clear_demo(conn, atlas, store::now())
                .map_err(|e| store::StoreError::Conflict(e.to_string()))
        })
        .await
        .unwrap();

        let live = app.state.directory();
        let url = DatabaseUrl::parse(&app.database_url).unwrap();
        let pool = db::pool(&url, 2).unwrap();
        let mut conn = pool.get().unwrap();
        let atlas = live.atlas_arc();
        let fresh = store::load_directory(
            &mut conn,
            atlas.clone(),
            Arc::new(PostcodeIndex::build(&atlas)),
        )
        .unwrap();
        assert_eq!(live.seq(), fresh.seq());
        assert_eq!(contents(&live), contents(&fresh));
        assert!(!contents(&live).0.is_empty());
        for postcode in [
            "33000", "89100", "89000", "75016", "13001", "97110", "20000",
        ] {
            assert_eq!(
                answer_of(&live, postcode),
                answer_of(&fresh, postcode),
                "{postcode}"
            );
        }
        // The INSEE answers are written by the same piecewise writer.
        for insee in ["33063", "75116", "89387", "2A004"] {
            let now = store::now();
            let mut typed = relai::lookup::by_insee(&live, insee, now).expect("known commune");
            typed.generated_at = live.built_at();
            let served = relai::lookup::render_insee(&live, insee, now)
                .expect("known commune")
                .json_bytes(live.built_at_json());
            assert_eq!(
                String::from_utf8(served.to_vec()).unwrap(),
                serde_json::to_string(&typed).unwrap(),
                "{insee}"
            );
        }
        for n in live.published() {
            assert_eq!(
                Some(n.json()),
                fresh.number(n.id()).map(|f| f.json()),
                "{}",
                n.id()
            );
        }
        // The retired number left the snapshot; it is still public, from storage.
        assert!(live.number(&dep.id).is_none());
        let retired: Value = app
            .get(&format!("/v1/numbers/{}", dep.id))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(retired["status"], "retired");
        assert_eq!(retired["retire_reason"], "fin");
    }
);

/// The JSON lookup of a postcode over HTTP, with its ETag.
async fn lookup(app: &TestApp, postcode: &str) -> (Value, String) {
    let response = app.get(&format!("/v1/lookup?postcode={postcode}")).await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    (response.json().await.unwrap(), etag)
}

/// The JSON lookup of an INSEE code over HTTP.
async fn lookup_insee(app: &TestApp, insee: &str) -> Value {
    let response = app.get(&format!("/v1/lookup?insee={insee}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn all_phones(answer: &Value) -> Vec<String> {
    answer["communes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["services"].as_array().unwrap().iter())
        .flat_map(|s| s["numbers"].as_array().unwrap().iter())
        .map(|n| n["phone"]["national"].as_str().unwrap().to_owned())
        .collect()
}

backend_tests!(
    a_cached_answer_is_dropped_when_a_change_reaches_it_and_kept_otherwise,
    |app: TestApp| async move {
        let org = app.organization("Préfecture", "prefecture").await;
        // Warm the cache of Bordeaux and of Brest (another zone).
        let (_, bordeaux_tag) = lookup(&app, "33000").await;
        let (brest, brest_tag) = lookup(&app, "29200").await;

        // One service per level: the most specific level with a number wins.
        for (i, (service, kind, code)) in [
            ("18", "commune", "33063"),
            ("15", "departement", "33"),
            ("17", "zone", "Sud-Ouest"),
        ]
        .into_iter()
        .enumerate()
        {
            let phone = format!("055600010{i}");
            app.publish(Publish::new(service, kind, code, &phone, &org))
                .await
                .unwrap();
            let (answer, tag) = lookup(&app, "33000").await;
            assert!(all_phones(&answer).contains(&phone), "{kind}: {answer}");
            assert_ne!(tag, bordeaux_tag);
            // Brest is in none of these territories: same answer, same validator, new time.
            let (again, tag) = lookup(&app, "29200").await;
            assert_eq!(tag, brest_tag);
            assert_eq!(again["communes"], brest["communes"]);
            assert_ne!(again["generated_at"], brest["generated_at"]);
            // Brest's cached answer still validates a conditional request.
            let response = app
                .client
                .get(app.url("/v1/lookup?postcode=29200"))
                .header("If-None-Match", &brest_tag)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 304);
        }
        // A national number reaches everyone, an outage its territory.
        app.publish(Publish::new("112", "national", "FR", "0156000200", &org))
            .await
            .unwrap();
        let (brest_now, _) = lookup(&app, "29200").await;
        assert!(all_phones(&brest_now).contains(&"0156000200".to_owned()));
        app.declare(&["17"], "departement", "29", &org).await;
        let (brest_now, _) = lookup(&app, "29200").await;
        let police = brest_now["communes"][0]["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == "17")
            .unwrap()
            .clone();
        assert_eq!(police["status"], "outage");
        // Text answers follow too.
        let text = app
            .client
            .get(app.url("/v1/lookup?postcode=29200"))
            .header("Accept", "text/plain")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("17 Police - Gendarmerie en panne"), "{text}");
    }
);

backend_tests!(
    a_change_in_one_commune_renders_that_communes_section_again_and_no_other,
    |app: TestApp| async move {
        let org = app.organization("SDIS 89", "sdis").await;
        // 89100 serves 18 communes, among them Sens (89387) and Collemiers (89113).
        let sections = |insee: &str| {
            let dir = app.state.directory();
            let place = dir.place(insee).expect("known commune");
            dir.section(place, store::now())
        };
        let before = answer_of(&app.state.directory(), "89100");
        let (sens, collemiers) = (sections("89387"), sections("89113"));
        assert!(
            Arc::ptr_eq(&sens, &sections("89387")),
            "kept between requests"
        );

        app.publish(Publish::new("18", "commune", "89387", "0386000001", &org))
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&sens, &sections("89387")));
        assert!(Arc::ptr_eq(&collemiers, &sections("89113")));
        // The postcode's answer, assembled again from its sections, shows the number, and
        // is byte for byte what serde writes of the typed answer (`answer_of` checks).
        let after = answer_of(&app.state.directory(), "89100");
        assert_ne!(before, after);
        assert!(all_phones(&after).contains(&"0386000001".to_owned()));
        assert!(!all_phones(&before).contains(&"0386000001".to_owned()));
        // The INSEE answer is assembled from the same section.
        let by_insee = lookup_insee(&app, "89387").await;
        let sens_json = after["communes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["insee"] == "89387")
            .unwrap();
        assert_eq!(&by_insee["communes"][0], sens_json);

        // A number of the département reaches every commune of it.
        let collemiers = sections("89113");
        app.publish(Publish::new("15", "departement", "89", "0386000002", &org))
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&collemiers, &sections("89113")));
        let after = answer_of(&app.state.directory(), "89100");
        let phones = all_phones(&after);
        assert_eq!(
            phones.iter().filter(|p| *p == "0386000002").count(),
            18,
            "every commune of 89100 lists the département's number"
        );
    }
);

backend_tests!(
    a_cached_answer_expires_with_the_validity_of_its_numbers,
    |app: TestApp| async move {
        let org = app.organization("SDIS 29", "sdis").await;
        let now = chrono::Utc::now();
        let mut ending = Publish::new("18", "commune", "29019", "0298000001", &org);
        ending.valid_until = Some(now + chrono::Duration::milliseconds(1500));
        app.publish(ending).await.unwrap();
        let mut starting = Publish::new("15", "commune", "29019", "0298000002", &org);
        starting.valid_from = Some(now + chrono::Duration::milliseconds(1500));
        app.publish(starting).await.unwrap();

        let (before, _) = lookup(&app, "29200").await;
        assert!(all_phones(&before).contains(&"0298000001".to_owned()));
        assert!(!all_phones(&before).contains(&"0298000002".to_owned()));
        tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
        // No write since: the cached answer itself knew when it stopped holding.
        let (after, _) = lookup(&app, "29200").await;
        assert!(
            !all_phones(&after).contains(&"0298000001".to_owned()),
            "{after}"
        );
        assert!(
            all_phones(&after).contains(&"0298000002".to_owned()),
            "{after}"
        );
    }
);
