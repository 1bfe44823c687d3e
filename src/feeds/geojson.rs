//! GeoJSON (RFC 7946) views of the directory: a Feature per published number, and the
//! départements' outlines with, per service, the status and the numbers in force.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::directory::{Directory, NumberFilter};
use crate::domain::{Geography, Territory};
use crate::public_number::PublicNumber;

const DEPARTEMENT_OUTLINES: &str = include_str!("../../seed-data/departements.geojson");

/// Where a number is drawn: the commune's centroid, or the département's chef-lieu; none
/// for zones, the national territory and the few communes without centroid.
fn point(dir: &Directory, n: &PublicNumber) -> Value {
    let atlas = dir.atlas();
    let territory = n.territory();
    let insee = match territory.kind() {
        crate::domain::TerritoryKind::Commune => Some(territory.code()),
        crate::domain::TerritoryKind::Departement => atlas
            .departement(territory.code())
            .map(|d| d.chef_lieu.as_str()),
        _ => None,
    };
    match insee
        .and_then(|c| atlas.commune(c))
        .and_then(|c| c.centroid)
    {
        // RFC 7946: longitude first.
        Some((lon, lat)) => json!({"type": "Point", "coordinates": [lon, lat]}),
        None => Value::Null,
    }
}

/// `GET /v1/numbers.geojson`.
pub fn numbers(dir: &Directory, filter: &NumberFilter, now: DateTime<Utc>) -> Value {
    let features: Vec<Value> = dir
        .filter_in_force(filter, now)
        .map(|n| {
            json!({
                "type": "Feature",
                "id": n.id(),
                "geometry": point(dir, n),
                "properties": n,
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

fn outlines() -> &'static Value {
    static OUTLINES: OnceLock<Value> = OnceLock::new();
    OUTLINES.get_or_init(|| {
        serde_json::from_str(DEPARTEMENT_OUTLINES).unwrap_or_else(|_| json!({"features": []}))
    })
}

/// `GET /v1/departements.geojson`: for each département and service, `status` (`outage`
/// when an active outage covers the whole département, `partial` when one covers some of
/// its communes only, else `normal`) and the numbers in force at département level or above.
pub fn departements(
    dir: &Directory,
    service: Option<&str>,
    departement: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let atlas = dir.atlas();
    let features: Vec<Value> = outlines()["features"]
        .as_array()
        .map(|features| {
            features
                .iter()
                .filter_map(|feature| {
                    let code = feature["properties"]["code"]
                        .as_str()
                        .filter(|c| departement.is_none_or(|d| d == *c))?;
                    let territory = Territory::parse("departement", code).ok()?;
                    let mut chain = atlas.ancestors(&territory);
                    chain.insert(0, territory);
                    let view = dir.place_view(&chain);
                    let mut services = Map::new();
                    for s in atlas
                        .services()
                        .iter()
                        .filter(|s| service.is_none_or(|f| f == s.code))
                    {
                        let whole = view.outages_covering(&s.code).next().is_some();
                        let partial = !whole
                            && dir.outages().iter().any(|o| {
                                o.status == crate::model::OutageStatus::Active
                                    && o.services.contains(&s.code)
                                    && o.territory.kind == crate::domain::TerritoryKind::Commune
                                    && atlas
                                        .commune(&o.territory.code)
                                        .is_some_and(|c| c.departement == code)
                            });
                        let status = if whole {
                            "outage"
                        } else if partial {
                            "partial"
                        } else {
                            "normal"
                        };
                        let numbers = view.numbers_for(&s.code, now);
                        services.insert(
                            s.code.clone(),
                            json!({"name": s.name, "status": status, "numbers": numbers}),
                        );
                    }
                    Some(json!({
                        "type": "Feature",
                        "id": code,
                        "geometry": feature["geometry"],
                        "properties": {
                            "code": code,
                            "name": feature["properties"]["name"],
                            "services": services,
                        },
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"type": "FeatureCollection", "features": features})
}
