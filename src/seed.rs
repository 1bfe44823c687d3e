//! Loading the reference data (embedded in the binary from `seed-data/`) and the demo
//! scenario of 2 June 2021.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::atlas::Atlas;
use crate::db::models::*;
use crate::db::{schema, DbConnection};
use crate::domain::{PhoneNumber, ServiceCode, Territory};
use crate::model::NumberStatus;
use crate::store::{self, NewNumber, NewOutage, NewProvenance, StoreError};

const COMMUNES: &str = include_str!("../seed-data/communes.csv");
const POSTCODES: &str = include_str!("../seed-data/postcodes.csv");
const POSTCODES_ARRONDISSEMENTS: &str = include_str!("../seed-data/postcodes_arrondissements.csv");
const DEPARTEMENTS: &str = include_str!("../seed-data/departements.csv");
const SERVICES: &str = include_str!("../seed-data/services.csv");
const DEMO_OUTAGE: &str = include_str!("../seed-data/demo/2021-06-02-outage.csv");
const DEMO_NUMBERS: &str = include_str!("../seed-data/demo/2021-06-02-numbers.csv");

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("reference data {file}: {message}")]
    Data { file: &'static str, message: String },
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error("demo scenario: {0}")]
    Store(#[from] StoreError),
}

fn data_err(file: &'static str) -> impl Fn(csv::Error) -> SeedError {
    move |e| SeedError::Data {
        file,
        message: e.to_string(),
    }
}

/// The reference data, parsed.
pub struct Reference {
    pub departements: Vec<DepartementRow>,
    pub communes: Vec<CommuneRow>,
    pub postcodes: Vec<PostcodeRow>,
    pub services: Vec<ServiceRow>,
    /// Identifies this version of the data, to tell whether a database holds it.
    pub digest: String,
}

#[derive(Deserialize)]
struct CommuneCsv {
    insee_code: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    parent_code: String,
    departement_code: String,
    population: Option<i64>,
    lat: Option<f64>,
    lon: Option<f64>,
}

#[derive(Deserialize)]
struct DepartementCsv {
    code: String,
    name: String,
    region: String,
    region_name: String,
    zone_defense: String,
    kind: String,
    chef_lieu: String,
}

#[derive(Deserialize)]
struct ServiceCsv {
    code: String,
    name: String,
    description: String,
}

fn read<T: for<'de> Deserialize<'de>>(file: &'static str, text: &str) -> Result<Vec<T>, SeedError> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(data_err(file))
}

impl Reference {
    /// Parses the embedded reference data.
    pub fn embedded() -> Result<Reference, SeedError> {
        let departements = read::<DepartementCsv>("departements.csv", DEPARTEMENTS)?
            .into_iter()
            .map(|d| DepartementRow {
                code: d.code,
                name: d.name,
                region_code: d.region,
                region_name: d.region_name,
                zone: (!d.zone_defense.is_empty()).then_some(d.zone_defense),
                kind: d.kind,
                chef_lieu: d.chef_lieu,
            })
            .collect();
        let communes = read::<CommuneCsv>("communes.csv", COMMUNES)?
            .into_iter()
            .map(|c| CommuneRow {
                insee: c.insee_code,
                name: c.name,
                kind: c.kind,
                parent_insee: (!c.parent_code.is_empty()).then_some(c.parent_code),
                departement_code: c.departement_code,
                population: c.population,
                lat: c.lat,
                lon: c.lon,
            })
            .collect();
        let mut postcodes: BTreeSet<PostcodeRow> =
            read("postcodes.csv", POSTCODES)?.into_iter().collect();
        postcodes.extend(read::<PostcodeRow>(
            "postcodes_arrondissements.csv",
            POSTCODES_ARRONDISSEMENTS,
        )?);
        let services = read::<ServiceCsv>("services.csv", SERVICES)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| ServiceRow {
                code: s.code,
                name: s.name,
                description: s.description,
                position: i32::try_from(i).unwrap_or(i32::MAX),
            })
            .collect();
        let mut hasher = Sha256::new();
        for part in [
            DEPARTEMENTS,
            COMMUNES,
            POSTCODES,
            POSTCODES_ARRONDISSEMENTS,
            SERVICES,
        ] {
            hasher.update(part.as_bytes());
        }
        Ok(Reference {
            departements,
            communes,
            postcodes: postcodes.into_iter().collect(),
            services,
            digest: hex::encode(hasher.finalize()),
        })
    }
}

/// What [`seed_reference`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The database was empty and is now seeded.
    Seeded,
    /// The database held other reference data and was updated in place.
    Updated,
    /// The database already held this reference data.
    Unchanged,
}

/// Whether the database holds any reference data.
pub fn is_seeded(conn: &mut DbConnection) -> QueryResult<bool> {
    Ok(schema::seed_state::table.count().get_result::<i64>(conn)? > 0)
}

// Rows per INSERT: well under both backends' limits on bound parameters.
const BATCH: usize = 1000;

/// Loads the reference data into the database, or updates it in place, in one
/// transaction: readers never see a half-loaded France.
pub fn seed_reference(
    conn: &mut DbConnection,
    reference: &Reference,
    force: bool,
    now: DateTime<Utc>,
) -> Result<SeedOutcome, SeedError> {
    conn.transaction(|conn| {
        let current: Option<String> = schema::seed_state::table
            .select(schema::seed_state::reference_digest)
            .first(conn)
            .optional()?;
        if current.as_deref() == Some(reference.digest.as_str()) && !force {
            return Ok(SeedOutcome::Unchanged);
        }
        // Territories are referenced by code only (numbers keep their code even if a
        // commune merges away), so they can be replaced wholesale.
        diesel::delete(schema::postcodes::table).execute(conn)?;
        diesel::delete(schema::communes::table).execute(conn)?;
        diesel::delete(schema::departements::table).execute(conn)?;
        // Batch inserts are backend-specific in diesel: run them on the concrete connection,
        // inside the transaction opened above.
        crate::with_backend!(conn, |c| {
            for chunk in reference.departements.chunks(BATCH) {
                diesel::insert_into(schema::departements::table)
                    .values(chunk)
                    .execute(c)?;
            }
            for chunk in reference.communes.chunks(BATCH / 2) {
                diesel::insert_into(schema::communes::table)
                    .values(chunk)
                    .execute(c)?;
            }
            for chunk in reference.postcodes.chunks(BATCH) {
                diesel::insert_into(schema::postcodes::table)
                    .values(chunk)
                    .execute(c)?;
            }
        });
        // Services are referenced by numbers: update in place, never delete.
        for service in &reference.services {
            let updated = diesel::update(schema::services::table.find(&service.code))
                .set(service)
                .execute(conn)?;
            if updated == 0 {
                diesel::insert_into(schema::services::table)
                    .values(service)
                    .execute(conn)?;
            }
        }
        diesel::delete(schema::seed_state::table).execute(conn)?;
        diesel::insert_into(schema::seed_state::table)
            .values((
                schema::seed_state::id.eq(1),
                schema::seed_state::reference_digest.eq(&reference.digest),
                schema::seed_state::seeded_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        Ok(if current.is_some() {
            SeedOutcome::Updated
        } else {
            SeedOutcome::Seeded
        })
    })
}

#[derive(Deserialize)]
struct DemoOutageCsv {
    services: String,
    territory_kind: String,
    territory_code: String,
    description: String,
    declared_at: DateTime<Utc>,
    organization: String,
    organization_kind: String,
}

#[derive(Deserialize)]
struct DemoNumberCsv {
    service: String,
    territory_kind: String,
    territory_code: String,
    phone: String,
    label: String,
    organization: String,
    organization_kind: String,
}

/// What [`seed_demo`] added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DemoOutcome {
    pub outages: usize,
    pub numbers: usize,
}

fn demo_organization(
    conn: &mut DbConnection,
    name: &str,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<String, SeedError> {
    let existing: Option<String> = schema::organizations::table
        .filter(schema::organizations::name.eq(name))
        .filter(schema::organizations::is_demo.eq(1))
        .select(schema::organizations::id)
        .first(conn)
        .optional()?;
    match existing {
        Some(id) => Ok(id),
        None => Ok(store::create_organization(conn, name, kind, true, now)?.id),
    }
}

fn demo_data_err(message: impl ToString) -> SeedError {
    SeedError::Data {
        file: "demo",
        message: message.to_string(),
    }
}

/// Loads the demo scenario through the write path; what is already there (an active demo
/// outage, a demo number in force) is left as it is, so running it twice adds nothing.
pub fn seed_demo(
    conn: &mut DbConnection,
    atlas: &Atlas,
    now: DateTime<Utc>,
) -> Result<DemoOutcome, SeedError> {
    let mut outcome = DemoOutcome::default();
    let active_demo_outage: Option<String> = schema::outages::table
        .filter(schema::outages::is_demo.eq(1))
        .filter(schema::outages::status.eq("active"))
        .select(schema::outages::id)
        .first(conn)
        .optional()?;
    let outage_id = match active_demo_outage {
        Some(id) => id,
        None => {
            let row = read::<DemoOutageCsv>("demo/2021-06-02-outage.csv", DEMO_OUTAGE)?
                .into_iter()
                .next()
                .ok_or_else(|| demo_data_err("no outage"))?;
            let declared_by =
                demo_organization(conn, &row.organization, &row.organization_kind, now)?;
            let services = row
                .services
                .split_whitespace()
                .map(ServiceCode::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(demo_data_err)?;
            let outage = store::declare_outage(
                conn,
                atlas,
                NewOutage {
                    services,
                    territory: Territory::parse(&row.territory_kind, &row.territory_code)
                        .map_err(demo_data_err)?,
                    description: row.description,
                    declared_by,
                    declared_at: Some(row.declared_at),
                    demo: true,
                    by_account: None,
                },
                now,
            )?;
            outcome.outages += 1;
            outage.id
        }
    };
    let valid_from = DateTime::parse_from_rfc3339("2021-06-02T17:30:00Z")
        .map_err(demo_data_err)?
        .with_timezone(&Utc);
    for row in read::<DemoNumberCsv>("demo/2021-06-02-numbers.csv", DEMO_NUMBERS)? {
        let phone = PhoneNumber::parse(&row.phone).map_err(demo_data_err)?;
        let territory =
            Territory::parse(&row.territory_kind, &row.territory_code).map_err(demo_data_err)?;
        let already: i64 = schema::numbers::table
            .filter(schema::numbers::is_demo.eq(1))
            .filter(schema::numbers::status.eq(NumberStatus::Published.as_str()))
            .filter(schema::numbers::phone_e164.eq(phone.e164()))
            .filter(schema::numbers::service_code.eq(&row.service))
            .count()
            .get_result(conn)?;
        if already > 0 {
            continue;
        }
        let organization_id =
            demo_organization(conn, &row.organization, &row.organization_kind, now)?;
        store::publish_number(
            conn,
            atlas,
            NewNumber {
                service: ServiceCode::parse(&row.service).map_err(demo_data_err)?,
                territory,
                phone,
                label: row.label,
                provenance: NewProvenance::Official { organization_id },
                outage_id: Some(outage_id.clone()),
                valid_from: Some(valid_from),
                valid_until: None,
                demo: true,
                by_account: None,
            },
            now,
        )?;
        outcome.numbers += 1;
    }
    Ok(outcome)
}

/// Ends the demonstration: resolves the demo outages (which retires their numbers) and
/// retires any other demo number still published, through the write path.
pub fn clear_demo(
    conn: &mut DbConnection,
    atlas: &Atlas,
    now: DateTime<Utc>,
) -> Result<DemoOutcome, SeedError> {
    let mut outcome = DemoOutcome::default();
    let outages: Vec<String> = schema::outages::table
        .filter(schema::outages::is_demo.eq(1))
        .filter(schema::outages::status.eq("active"))
        .select(schema::outages::id)
        .load(conn)?;
    for id in outages {
        let declared_by: String = schema::outages::table
            .find(&id)
            .select(schema::outages::declared_by)
            .first(conn)?;
        let actor = store::Actor::organization(&declared_by);
        let (_, retired) = store::resolve_outage(conn, atlas, &actor, &id, now)?;
        outcome.outages += 1;
        outcome.numbers += retired.len();
    }
    let numbers: Vec<(String, Option<String>)> = schema::numbers::table
        .filter(schema::numbers::is_demo.eq(1))
        .filter(schema::numbers::status.eq(NumberStatus::Published.as_str()))
        .select((schema::numbers::id, schema::numbers::organization_id))
        .load(conn)?;
    for (id, organization) in numbers {
        let actor = store::Actor {
            organization_id: organization,
            account_id: None,
        };
        store::retire_number(conn, atlas, &actor, &id, "Fin de la démonstration.", now)?;
        outcome.numbers += 1;
    }
    Ok(outcome)
}
