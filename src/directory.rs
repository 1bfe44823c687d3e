//! The in-memory directory snapshot: everything a public read needs, immutable once
//! built and swapped atomically after each committed write. A lookup is a few hash-map
//! probes; public reads never touch the database.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::atlas::{Atlas, Commune};
use crate::domain::{Geography, Territory, TerritoryKind};
use crate::model::{Number, NumberStatus, Outage, OutageStatus};

/// One snapshot of the directory.
#[derive(Debug)]
pub struct Directory {
    atlas: Arc<Atlas>,
    /// Published and retired numbers by id (pending and rejected ones are never public).
    numbers: HashMap<String, Arc<Number>>,
    /// Published numbers, oldest first (ids are UUIDv7, so by id).
    published: Vec<Arc<Number>>,
    /// Published numbers by service and territory.
    by_place: HashMap<(String, Territory), Vec<Arc<Number>>>,
    /// Every outage, newest first.
    outages: Vec<Arc<Outage>>,
    /// Active outages with their parsed territory.
    active: Vec<(Territory, Arc<Outage>)>,
    /// The last changes-log sequence this snapshot includes.
    seq: i64,
    built_at: DateTime<Utc>,
}

/// A place to look up: a commune, and the arrondissement inside it when known.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub commune: &'a Commune,
    pub arrondissement: Option<&'a Commune>,
}

impl Directory {
    /// Builds a snapshot. `numbers` may hold any status; only published and retired ones
    /// are kept.
    pub fn build(
        atlas: Arc<Atlas>,
        numbers: Vec<Number>,
        outages: Vec<Outage>,
        seq: i64,
        built_at: DateTime<Utc>,
    ) -> Directory {
        let mut by_id = HashMap::with_capacity(numbers.len());
        let mut published = Vec::new();
        let mut by_place: HashMap<(String, Territory), Vec<Arc<Number>>> = HashMap::new();
        for n in numbers {
            if !matches!(n.status, NumberStatus::Published | NumberStatus::Retired) {
                continue;
            }
            let n = Arc::new(n);
            if n.status == NumberStatus::Published {
                if let Ok(t) = Territory::from_parts(n.territory.kind, &n.territory.code) {
                    by_place
                        .entry((n.service.clone(), t))
                        .or_default()
                        .push(n.clone());
                }
                published.push(n.clone());
            }
            by_id.insert(n.id.clone(), n);
        }
        published.sort_by(|a, b| a.id.cmp(&b.id));
        for list in by_place.values_mut() {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let mut outages: Vec<Arc<Outage>> = outages.into_iter().map(Arc::new).collect();
        outages.sort_by(|a, b| b.declared_at.cmp(&a.declared_at).then(b.id.cmp(&a.id)));
        let active = outages
            .iter()
            .filter(|o| o.status == OutageStatus::Active)
            .filter_map(|o| {
                Territory::from_parts(o.territory.kind, &o.territory.code)
                    .ok()
                    .map(|t| (t, o.clone()))
            })
            .collect();
        Directory {
            atlas,
            numbers: by_id,
            published,
            by_place,
            outages,
            active,
            seq,
            built_at,
        }
    }

    pub fn atlas(&self) -> &Atlas {
        &self.atlas
    }

    pub fn atlas_arc(&self) -> Arc<Atlas> {
        self.atlas.clone()
    }

    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn built_at(&self) -> DateTime<Utc> {
        self.built_at
    }

    /// A published or retired number.
    pub fn number(&self, id: &str) -> Option<&Arc<Number>> {
        self.numbers.get(id)
    }

    /// Published numbers, oldest first.
    pub fn published(&self) -> &[Arc<Number>] {
        &self.published
    }

    /// Every outage, newest first.
    pub fn outages(&self) -> &[Arc<Outage>] {
        &self.outages
    }

    /// The place an INSEE code names: an arrondissement resolves to its commune too.
    pub fn place(&self, insee: &str) -> Option<Place<'_>> {
        let c = self.atlas.commune(insee)?;
        match &c.parent {
            Some(parent) => Some(Place {
                commune: self.atlas.commune(parent)?,
                arrondissement: Some(c),
            }),
            None => Some(Place {
                commune: c,
                arrondissement: None,
            }),
        }
    }

    /// The places a postcode serves, one per commune; for Paris, Lyon and Marseille with
    /// the arrondissement the postcode belongs to.
    pub fn places_for_postcode(&self, postcode: &str) -> Option<Vec<Place<'_>>> {
        let codes = self.atlas.postcode(postcode)?;
        let all: Vec<&Commune> = codes.iter().filter_map(|c| self.atlas.commune(c)).collect();
        let places = all
            .iter()
            .filter(|c| !c.is_arrondissement())
            .map(|commune| Place {
                commune,
                arrondissement: all
                    .iter()
                    .find(|a| a.parent.as_deref() == Some(commune.insee.as_str()))
                    .copied(),
            })
            .collect();
        Some(places)
    }

    /// The territories a place lies in, from the narrowest to the national territory.
    pub fn chain(&self, place: Place<'_>) -> Vec<Territory> {
        let narrowest = place.arrondissement.unwrap_or(place.commune);
        let Ok(t) = Territory::parse("commune", &narrowest.insee) else {
            return vec![Territory::National];
        };
        let mut chain = self.atlas.ancestors(&t);
        chain.insert(0, t);
        chain
    }

    /// The active outages of `service` that cover a territory of `chain`.
    pub fn outages_covering<'a>(
        &'a self,
        service: &'a str,
        chain: &'a [Territory],
    ) -> impl Iterator<Item = &'a Arc<Outage>> + 'a {
        self.active
            .iter()
            .filter(move |(t, o)| chain.contains(t) && o.services.iter().any(|s| s == service))
            .map(|(_, o)| o)
    }

    /// The numbers in force for `service` at the most specific level of `chain` that has
    /// any: arrondissement, commune, département, zone, then national.
    pub fn numbers_for(
        &self,
        service: &str,
        chain: &[Territory],
        now: DateTime<Utc>,
    ) -> Vec<Arc<Number>> {
        // Allocating the key once per level keeps the lookup a handful of probes.
        let mut key = (service.to_owned(), Territory::National);
        for t in chain {
            key.1 = t.clone();
            if let Some(list) = self.by_place.get(&key) {
                let in_force: Vec<Arc<Number>> =
                    list.iter().filter(|n| n.in_force(now)).cloned().collect();
                if !in_force.is_empty() {
                    return in_force;
                }
            }
        }
        Vec::new()
    }

    /// The numbers in force for `service` at exactly `territory`.
    pub fn in_force_at(
        &self,
        service: &str,
        territory: &Territory,
        now: DateTime<Utc>,
    ) -> Vec<Arc<Number>> {
        self.by_place
            .get(&(service.to_owned(), territory.clone()))
            .map(|list| list.iter().filter(|n| n.in_force(now)).cloned().collect())
            .unwrap_or_default()
    }

    /// Published numbers in force matching the filters of `GET /v1/numbers`.
    pub fn filter_in_force<'a>(
        &'a self,
        filter: &'a NumberFilter,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a Arc<Number>> + 'a {
        self.published
            .iter()
            .filter(move |n| n.in_force(now) && filter.matches(n, &self.atlas))
    }
}

/// Filters of the number lists and feeds.
#[derive(Debug, Clone, Default)]
pub struct NumberFilter {
    pub service: Option<String>,
    /// The département itself and its communes.
    pub departement: Option<String>,
    pub territory_kind: Option<TerritoryKind>,
    pub territory_code: Option<String>,
}

impl NumberFilter {
    pub fn matches(&self, n: &Number, atlas: &Atlas) -> bool {
        if self.service.as_ref().is_some_and(|s| *s != n.service) {
            return false;
        }
        if self.territory_kind.is_some_and(|k| k != n.territory.kind) {
            return false;
        }
        if self
            .territory_code
            .as_ref()
            .is_some_and(|c| *c != n.territory.code)
        {
            return false;
        }
        if let Some(dep) = &self.departement {
            let in_dep = match n.territory.kind {
                TerritoryKind::Departement => n.territory.code == *dep,
                TerritoryKind::Commune => atlas
                    .commune(&n.territory.code)
                    .is_some_and(|c| c.departement == *dep),
                TerritoryKind::Zone | TerritoryKind::National => false,
            };
            if !in_dep {
                return false;
            }
        }
        true
    }
}
