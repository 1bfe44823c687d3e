//! The in-memory directory snapshot: everything a public read needs, immutable once
//! built and swapped atomically. A new snapshot is the last one with the committed changes
//! of the changes log applied ([`Directory::apply`]): the maps are persistent (`imbl`), so
//! it shares every unchanged entry with the last one and costs a few allocations per
//! change, whatever the size of the directory. Public reads never touch the database.

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use imbl::{OrdMap, OrdSet};

use crate::answers::{AnswerCache, CommuneSection, PostcodeIndex, RenderedAnswer};
use crate::atlas::{Atlas, Commune};
use crate::db::models::ChangeRow;
use crate::domain::{Geography, Territory, TerritoryKind};
use crate::model::{Number, NumberStatus, Outage, OutageStatus};
use crate::public_number::PublicNumber;
use crate::store::change_kind;

/// The published numbers of one territory, by service then oldest first.
type NumberList = Arc<[PublicNumber]>;

/// One snapshot of the directory.
#[derive(Debug)]
pub struct Directory {
    atlas: Arc<Atlas>,
    /// Postcodes by position, and the postcodes each territory reaches.
    postcodes: Arc<PostcodeIndex>,
    /// Published numbers by id: oldest first, as ids are UUIDv7. Retired numbers leave the
    /// snapshot (storage answers for them), so that its size follows what is in force,
    /// not the history.
    published: OrdSet<PublicNumber>,
    /// Published numbers by territory. A B-tree: its nodes are dense, where a hash trie
    /// of a hundred thousand sparse keys spends most of its memory on empty slots.
    by_territory: OrdMap<Territory, NumberList>,
    /// Every outage, newest first.
    outages: Arc<Vec<Arc<Outage>>>,
    /// Active outages with their parsed territory.
    active: Arc<Vec<(Territory, Arc<Outage>)>>,
    /// The last changes-log sequence this snapshot includes.
    seq: i64,
    built_at: DateTime<Utc>,
    /// `built_at` as JSON, spliced into the cached lookup answers.
    built_at_json: Bytes,
    /// The last line of the text answers (the time of the data).
    text_footer: Bytes,
    /// The lookup answers by postcode, rendered on first use and shared with the next
    /// snapshots until a change reaches one of their territories.
    answers: Arc<AnswerCache>,
}

/// A change of the log that the snapshot could not apply: the caller reloads from storage.
#[derive(Debug, thiserror::Error)]
#[error("change {seq} ({kind}) cannot be applied: {reason}")]
pub struct ApplyError {
    pub seq: i64,
    pub kind: String,
    pub reason: String,
}

/// A place to look up: a commune, and the arrondissement inside it when known.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub commune: &'a Commune,
    pub arrondissement: Option<&'a Commune>,
}

/// Builds a snapshot number by number, so that loading a large directory never holds
/// all of its rows at once.
pub struct DirectoryBuilder {
    atlas: Arc<Atlas>,
    postcodes: Arc<PostcodeIndex>,
    published: OrdSet<PublicNumber>,
    by_territory: std::collections::HashMap<Territory, Vec<PublicNumber>>,
}

impl DirectoryBuilder {
    pub fn new(atlas: Arc<Atlas>, postcodes: Arc<PostcodeIndex>) -> DirectoryBuilder {
        DirectoryBuilder {
            atlas,
            postcodes,
            published: OrdSet::new(),
            by_territory: std::collections::HashMap::new(),
        }
    }

    /// Adds a number; only published ones are kept.
    pub fn add_number(&mut self, n: Number) {
        if n.status != NumberStatus::Published {
            return;
        }
        let n = match PublicNumber::new(&n) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "number left out of the directory");
                return;
            }
        };
        self.by_territory
            .entry(n.territory().clone())
            .or_default()
            .push(n.clone());
        self.published.insert(n);
    }

    pub fn finish(self, outages: Vec<Outage>, seq: i64, built_at: DateTime<Utc>) -> Directory {
        let mut by_territory = OrdMap::new();
        for (key, mut list) in self.by_territory {
            list.sort_by(list_order);
            by_territory.insert(key, list.into());
        }
        let mut outages: Vec<Arc<Outage>> = outages.into_iter().map(Arc::new).collect();
        outages.sort_by(by_declared_desc);
        Directory {
            answers: Arc::new(AnswerCache::new(&self.postcodes)),
            atlas: self.atlas,
            postcodes: self.postcodes,
            published: self.published,
            by_territory,
            active: Arc::new(active_of(&outages)),
            outages: Arc::new(outages),
            seq,
            built_at,
            built_at_json: json_time(built_at),
            text_footer: text_footer(built_at),
        }
    }
}

fn by_declared_desc(a: &Arc<Outage>, b: &Arc<Outage>) -> std::cmp::Ordering {
    b.declared_at.cmp(&a.declared_at).then(b.id.cmp(&a.id))
}

fn territory_of(r: &crate::model::TerritoryRef) -> Option<Territory> {
    Territory::from_parts(r.kind, &r.code).ok()
}

fn active_of(outages: &[Arc<Outage>]) -> Vec<(Territory, Arc<Outage>)> {
    outages
        .iter()
        .filter(|o| o.status == OutageStatus::Active)
        .filter_map(|o| territory_of(&o.territory).map(|t| (t, o.clone())))
        .collect()
}

impl Directory {
    /// Builds a snapshot from everything in storage. `numbers` may hold any status; only
    /// published ones are kept.
    pub fn build(
        atlas: Arc<Atlas>,
        postcodes: Arc<PostcodeIndex>,
        numbers: Vec<Number>,
        outages: Vec<Outage>,
        seq: i64,
        built_at: DateTime<Utc>,
    ) -> Directory {
        let mut builder = DirectoryBuilder::new(atlas, postcodes);
        for n in numbers {
            builder.add_number(n);
        }
        builder.finish(outages, seq, built_at)
    }

    /// The next snapshot: this one with `changes` (the log after [`Directory::seq`], in
    /// order) applied. Changes the public never sees (submissions, rejections) only move
    /// the sequence. The lookup answers of every postcode a change reaches no longer hold
    /// from the new snapshot on; the others are shared with it.
    pub fn apply(
        &self,
        changes: &[ChangeRow],
        now: DateTime<Utc>,
    ) -> Result<Directory, ApplyError> {
        let mut published = self.published.clone();
        let mut by_territory = self.by_territory.clone();
        let mut outages: Option<Vec<Arc<Outage>>> = None;
        let mut touched: HashSet<Territory> = HashSet::new();
        let mut seq = self.seq;
        for change in changes {
            let fail = |reason: String| ApplyError {
                seq: change.seq,
                kind: change.kind.clone(),
                reason,
            };
            seq = seq.max(change.seq);
            match change.kind.as_str() {
                change_kind::NUMBER_PUBLISHED
                | change_kind::NUMBER_CORRECTED
                | change_kind::NUMBER_RETIRED
                | change_kind::NUMBER_SUPERSEDED => {
                    let number: Number =
                        serde_json::from_str(&change.payload).map_err(|e| fail(e.to_string()))?;
                    if number.id != change.entity_id {
                        return Err(fail("payload of another number".to_owned()));
                    }
                    if let Some(old) = published.remove(number.id.as_str()) {
                        remove_from_territory(&mut by_territory, old.territory(), old.id());
                        touched.insert(old.territory().clone());
                    }
                    let t = territory_of(&number.territory).ok_or_else(|| {
                        fail(format!("unknown territory {}", number.territory.code))
                    })?;
                    touched.insert(t);
                    if number.status == NumberStatus::Published {
                        let number = PublicNumber::new(&number).map_err(|e| fail(e.to_string()))?;
                        add_to_territory(&mut by_territory, number.clone());
                        published.insert(number);
                    }
                }
                change_kind::OUTAGE_DECLARED | change_kind::OUTAGE_RESOLVED => {
                    let outage: Outage =
                        serde_json::from_str(&change.payload).map_err(|e| fail(e.to_string()))?;
                    if outage.id != change.entity_id {
                        return Err(fail("payload of another outage".to_owned()));
                    }
                    let t = territory_of(&outage.territory).ok_or_else(|| {
                        fail(format!("unknown territory {}", outage.territory.code))
                    })?;
                    touched.insert(t);
                    let list = outages.get_or_insert_with(|| self.outages.as_ref().clone());
                    if let Some(old) = list.iter().position(|o| o.id == outage.id) {
                        if let Some(old_t) = territory_of(&list[old].territory) {
                            touched.insert(old_t);
                        }
                        list.remove(old);
                    }
                    list.push(Arc::new(outage));
                }
                // Submissions and rejections are moderation's business; a kind this
                // version does not know changes nothing public.
                _ => {}
            }
        }
        let (outages, active) = match outages {
            Some(mut list) => {
                list.sort_by(by_declared_desc);
                let active = Arc::new(active_of(&list));
                (Arc::new(list), active)
            }
            None => (self.outages.clone(), self.active.clone()),
        };
        self.answers.touch(&self.postcodes, &touched, seq);
        Ok(Directory {
            atlas: self.atlas.clone(),
            postcodes: self.postcodes.clone(),
            published,
            by_territory,
            outages,
            active,
            seq,
            built_at: now,
            built_at_json: json_time(now),
            text_footer: text_footer(now),
            answers: self.answers.clone(),
        })
    }

    pub fn atlas(&self) -> &Atlas {
        &self.atlas
    }

    pub fn atlas_arc(&self) -> Arc<Atlas> {
        self.atlas.clone()
    }

    pub fn postcode_index(&self) -> &Arc<PostcodeIndex> {
        &self.postcodes
    }

    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn built_at(&self) -> DateTime<Utc> {
        self.built_at
    }

    /// `built_at` as a JSON string.
    pub fn built_at_json(&self) -> &Bytes {
        &self.built_at_json
    }

    /// The last line of the text answers of this snapshot.
    pub fn text_footer(&self) -> &Bytes {
        &self.text_footer
    }

    /// A published number (retired ones are in storage only).
    pub fn number(&self, id: &str) -> Option<&PublicNumber> {
        self.published.get(id)
    }

    /// Published numbers, oldest first.
    pub fn published(&self) -> impl Iterator<Item = &PublicNumber> + '_ {
        self.published.iter()
    }

    /// How many numbers are published.
    pub fn published_count(&self) -> usize {
        self.published.len()
    }

    /// Every outage, newest first.
    pub fn outages(&self) -> &[Arc<Outage>] {
        &self.outages
    }

    /// The lookup answer of a postcode, rendered once and reused while nothing it shows
    /// changes; `None` for an unknown postcode.
    pub fn postcode_answer(
        &self,
        postcode: &str,
        now: DateTime<Utc>,
    ) -> Option<Arc<RenderedAnswer>> {
        let position = self.postcodes.position(postcode)?;
        Some(
            self.answers
                .postcode_answer(position, self.seq, now, self.postcodes.budget(), || {
                    crate::lookup::render_postcode(self, postcode, now)
                }),
        )
    }

    /// The section of a place's commune in the lookup answers, rendered once and reused
    /// while nothing it shows changes.
    pub fn section(&self, place: Place<'_>, now: DateTime<Utc>) -> Arc<CommuneSection> {
        let narrowest = place.arrondissement.unwrap_or(place.commune);
        match self.postcodes.place_position(&narrowest.insee) {
            Some(position) => {
                self.answers
                    .section(position, self.seq, now, self.postcodes.budget(), || {
                        crate::lookup::render_section(self, place, now)
                    })
            }
            None => Arc::new(crate::lookup::render_section(self, place, now)),
        }
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
        places_for_postcode(&self.atlas, postcode)
    }

    /// The territories a place lies in, from the narrowest to the national territory.
    pub fn chain(&self, place: Place<'_>) -> Vec<Territory> {
        chain(&self.atlas, place)
    }

    /// What the lookups of one place read, looked up once for all the services of the
    /// catalogue: its chain's lists of numbers and the active outages that cover it.
    pub fn place_view<'a>(&'a self, chain: &'a [Territory]) -> PlaceView<'a> {
        PlaceView {
            lists: chain
                .iter()
                .map(|t| self.by_territory.get(t).map_or(&[][..], |l| &l[..]))
                .collect(),
            outages: self
                .active
                .iter()
                .filter(|(t, _)| chain.contains(t))
                .map(|(_, o)| o)
                .collect(),
        }
    }

    /// The first instant after `now` at which a published number of `chain` enters or
    /// leaves its validity: an answer computed at `now` holds until then.
    pub fn next_validity_change(
        &self,
        chain: &[Territory],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        chain
            .iter()
            .filter_map(|t| self.by_territory.get(t))
            .flat_map(|list| list.iter())
            .flat_map(|n| [Some(n.valid_from()), n.valid_until()])
            .flatten()
            .filter(|at| *at > now)
            .min()
    }

    /// The numbers in force for `service` at exactly `territory`.
    pub fn in_force_at(
        &self,
        service: &str,
        territory: &Territory,
        now: DateTime<Utc>,
    ) -> Vec<PublicNumber> {
        let Some(list) = self.by_territory.get(territory) else {
            return Vec::new();
        };
        in_force_in(list, service, now)
    }

    /// Published numbers in force matching the filters of `GET /v1/numbers`.
    pub fn filter_in_force<'a>(
        &'a self,
        filter: &'a NumberFilter,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a PublicNumber> + 'a {
        self.published
            .iter()
            .filter(move |n| n.in_force(now) && filter.matches(n, &self.atlas))
    }
}

/// The places a postcode serves (see [`Directory::places_for_postcode`]).
pub fn places_for_postcode<'a>(atlas: &'a Atlas, postcode: &str) -> Option<Vec<Place<'a>>> {
    let codes = atlas.postcode(postcode)?;
    let all: Vec<&Commune> = codes.iter().filter_map(|c| atlas.commune(c)).collect();
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
pub fn chain(atlas: &Atlas, place: Place<'_>) -> Vec<Territory> {
    let narrowest = place.arrondissement.unwrap_or(place.commune);
    let Ok(t) = Territory::parse("commune", &narrowest.insee) else {
        return vec![Territory::National];
    };
    let mut chain = atlas.ancestors(&t);
    chain.insert(0, t);
    chain
}

/// The numbers of `service` in force at `now` in a territory's list.
fn in_force_in(list: &[PublicNumber], service: &str, now: DateTime<Utc>) -> Vec<PublicNumber> {
    // Sorted by service: the numbers of one service are one run.
    let service = service.as_bytes();
    let from = list.partition_point(|n| n.service_bytes() < service);
    list[from..]
        .iter()
        .take_while(|n| n.service_bytes() == service)
        .filter(|n| n.in_force(now))
        .cloned()
        .collect()
}

/// One place's part of a snapshot (see [`Directory::place_view`]).
pub struct PlaceView<'a> {
    /// The numbers of each territory of the chain, most specific first.
    lists: Vec<&'a [PublicNumber]>,
    /// The active outages covering a territory of the chain, in the snapshot's order.
    outages: Vec<&'a Arc<Outage>>,
}

impl<'a> PlaceView<'a> {
    /// The numbers in force for `service` at the most specific level of the chain that
    /// has any: arrondissement, commune, département, zone, then national.
    pub fn numbers_for(&self, service: &str, now: DateTime<Utc>) -> Vec<PublicNumber> {
        for list in &self.lists {
            let in_force = in_force_in(list, service, now);
            if !in_force.is_empty() {
                return in_force;
            }
        }
        Vec::new()
    }

    /// The active outages of `service` that cover a territory of the chain.
    pub fn outages_covering<'b>(
        &'b self,
        service: &'b str,
    ) -> impl Iterator<Item = &'a Arc<Outage>> + 'b {
        self.outages
            .iter()
            .copied()
            .filter(move |o| o.services.iter().any(|s| s == service))
    }
}

/// The order of a territory's list: by service, then oldest first.
fn list_order(a: &PublicNumber, b: &PublicNumber) -> std::cmp::Ordering {
    (a.service_bytes(), a.id()).cmp(&(b.service_bytes(), b.id()))
}

fn add_to_territory(map: &mut OrdMap<Territory, NumberList>, n: PublicNumber) {
    let mut list: Vec<PublicNumber> = map
        .get(n.territory())
        .map(|l| l.to_vec())
        .unwrap_or_default();
    let at = list.partition_point(|x| list_order(x, &n).is_lt());
    let key = n.territory().clone();
    list.insert(at, n);
    map.insert(key, list.into());
}

fn remove_from_territory(map: &mut OrdMap<Territory, NumberList>, territory: &Territory, id: &str) {
    let Some(list) = map.get(territory) else {
        return;
    };
    let list: Vec<PublicNumber> = list.iter().filter(|n| n.id() != id).cloned().collect();
    if list.is_empty() {
        map.remove(territory);
    } else {
        map.insert(territory.clone(), list.into());
    }
}

/// A time as JSON, exactly as `serde_json` writes a `DateTime<Utc>` field.
fn json_time(t: DateTime<Utc>) -> Bytes {
    Bytes::from(serde_json::to_string(&t).unwrap_or_else(|_| format!("\"{}\"", t.to_rfc3339())))
}

fn text_footer(t: DateTime<Utc>) -> Bytes {
    Bytes::from(crate::lookup::text_footer(t))
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
    pub fn matches(&self, n: &PublicNumber, atlas: &Atlas) -> bool {
        let territory = n.territory();
        if self.service.as_ref().is_some_and(|s| s != n.service()) {
            return false;
        }
        if self.territory_kind.is_some_and(|k| k != territory.kind()) {
            return false;
        }
        if self
            .territory_code
            .as_ref()
            .is_some_and(|c| c != territory.code())
        {
            return false;
        }
        if let Some(dep) = &self.departement {
            let in_dep = match territory.kind() {
                TerritoryKind::Departement => territory.code() == dep,
                TerritoryKind::Commune => atlas
                    .commune(territory.code())
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
