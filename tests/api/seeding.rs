//! Seeding: all of France, not reloaded when unchanged, updated in place, and the demo.

use relai::seed::{self, Reference, SeedOutcome};

use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    reference_data_is_complete_and_seeded_once,
    |app: TestApp| async move {
        let atlas = app.state.atlas().clone();
        assert_eq!(atlas.departements().len(), 109);
        assert_eq!(atlas.communes().count(), 35_014);
        assert_eq!(atlas.postcode_count(), 6_310);
        assert_eq!(atlas.services().len(), 12);
        let url = relai::db::DatabaseUrl::parse(&app.database_url).unwrap();
        let mut conn = url.connect().unwrap();
        let reference = Reference::embedded().unwrap();
        assert_eq!(
            seed::seed_reference(&mut conn, &reference, false, relai::store::now()).unwrap(),
            SeedOutcome::Unchanged
        );
        assert_eq!(
            seed::seed_reference(&mut conn, &reference, true, relai::store::now()).unwrap(),
            SeedOutcome::Updated
        );
        assert_eq!(
            relai::atlas::Atlas::load(&mut conn)
                .unwrap()
                .communes()
                .count(),
            35_014
        );
    }
);

backend_tests!(the_demo_loads_once_and_clears, |app: TestApp| async move {
    app.load_demo().await;
    let (_, numbers) = app.get_json("/v1/numbers").await;
    assert_eq!(numbers["items"].as_array().unwrap().len(), 8);
    assert!(numbers["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["demo"] == true));
    let seq = app.change_count();
    app.load_demo().await;
    assert_eq!(
        app.change_count(),
        seq,
        "loading the demo twice adds nothing"
    );
    let (_, outages) = app.get_json("/v1/outages?status=active").await;
    assert_eq!(outages["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        outages["items"][0]["services"],
        serde_json::json!(["15", "17", "18", "112"])
    );
    assert_eq!(outages["items"][0]["declared_at"], "2021-06-02T16:45:00Z");

    let cleared = app
        .write(|conn, atlas| {
            seed::clear_demo(conn, atlas, relai::store::now())
                .map_err(|e| relai::store::StoreError::Conflict(e.to_string()))
        })
        .await
        .unwrap();
    assert_eq!((cleared.outages, cleared.numbers), (1, 8));
    let (_, numbers) = app.get_json("/v1/numbers").await;
    assert!(numbers["items"].as_array().unwrap().is_empty());
    let (_, lookup) = app.get_json("/v1/lookup?postcode=33000").await;
    assert_eq!(lookup["demo"], false);
});
