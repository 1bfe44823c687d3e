//! "What do I dial here?": the lookup answer, assembled from the directory snapshot, as
//! JSON and as short French text for bots and SMS.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::{CommuneSection, RenderedAnswer};
use crate::directory::{Directory, Place};
use crate::domain::Territory;
use crate::public_number::PublicNumber;

/// Whether a service's usual short number works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// No outage known: dial the usual short number.
    Normal,
    /// An active outage covers this commune and service: dial a substitute number.
    Outage,
}

/// A département, by code and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DepartementRef {
    /// Its code: "33", "2A", "971".
    #[schema(example = "33")]
    pub code: String,
    /// Its name.
    #[schema(example = "Gironde")]
    pub name: String,
}

/// A municipal arrondissement of Paris, Lyon or Marseille.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArrondissementRef {
    /// Its INSEE code.
    #[schema(example = "75116")]
    pub insee: String,
    /// Its name.
    #[schema(example = "Paris 16e Arrondissement")]
    pub name: String,
}

/// What to dial for one service in one commune.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LookupService {
    /// Service code (the usual short number).
    #[schema(example = "18")]
    pub service: String,
    /// Service name in French.
    #[schema(example = "Sapeurs-pompiers")]
    pub name: String,
    /// `outage` when an active outage covers this commune and service, else `normal`.
    pub status: ServiceStatus,
    /// The active outages that cover it (ids), most specific first.
    pub outage_ids: Vec<String>,
    /// The published numbers in force for this service at the most specific level that has
    /// any (arrondissement, commune, département, zone, national). Numbers may be published
    /// before an outage is declared, so they can appear with `status: normal`.
    #[schema(value_type = Vec<crate::model::Number>)]
    pub numbers: Vec<PublicNumber>,
}

/// One commune of the answer, with every service of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LookupCommune {
    /// INSEE code of the commune.
    #[schema(example = "33063")]
    pub insee: String,
    /// Name of the commune.
    #[schema(example = "Bordeaux")]
    pub name: String,
    /// Its département (never derived from the postcode).
    pub departement: DepartementRef,
    /// For Paris, Lyon and Marseille: the arrondissement the postcode or code names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrondissement: Option<ArrondissementRef>,
    /// Every service of the catalogue, in catalogue order.
    pub services: Vec<LookupService>,
}

/// The answer of `GET /v1/lookup`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LookupResponse {
    /// The postcode asked for, when looked up by postcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "33000")]
    pub postcode: Option<String>,
    /// The INSEE code asked for, when looked up by INSEE code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insee: Option<String>,
    /// When this answer was computed.
    pub generated_at: DateTime<Utc>,
    /// True when any outage or number in the answer is historical demonstration data.
    pub demo: bool,
    /// A warning in French to show with the answer, e.g. that demo data is not to be dialled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// The communes the postcode serves (several, sometimes in several départements), or the one commune asked for.
    pub communes: Vec<LookupCommune>,
}

/// The notice shown with historical demonstration data.
pub const DEMO_NOTICE: &str = "DÉMONSTRATION HISTORIQUE : données de la panne du 2 juin 2021, \
    à ne pas composer. En cas d'urgence, appelez les numéros habituels (15, 17, 18, 112).";

/// One commune's part of the answer, and whether a number or an outage of it is
/// historical demonstration data. `chain` is the place's (see [`Directory::chain`]).
fn commune_answer(
    dir: &Directory,
    place: Place<'_>,
    chain: &[Territory],
    now: DateTime<Utc>,
) -> (LookupCommune, bool) {
    let atlas = dir.atlas();
    let view = dir.place_view(chain);
    let mut demo = false;
    let services = atlas
        .services()
        .iter()
        .map(|service| {
            let mut outage_ids = Vec::new();
            for o in view.outages_covering(&service.code) {
                demo |= o.demo;
                outage_ids.push(o.id.clone());
            }
            let numbers = view.numbers_for(&service.code, now);
            demo |= numbers.iter().any(PublicNumber::demo);
            LookupService {
                service: service.code.clone(),
                name: service.name.clone(),
                status: if outage_ids.is_empty() {
                    ServiceStatus::Normal
                } else {
                    ServiceStatus::Outage
                },
                outage_ids,
                numbers,
            }
        })
        .collect();
    let c = place.commune;
    let commune = LookupCommune {
        insee: c.insee.clone(),
        name: c.name.clone(),
        departement: DepartementRef {
            code: c.departement.clone(),
            name: atlas
                .departement(&c.departement)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
        },
        arrondissement: place.arrondissement.map(|a| ArrondissementRef {
            insee: a.insee.clone(),
            name: a.name.clone(),
        }),
        services,
    };
    (commune, demo)
}

fn answer(
    dir: &Directory,
    places: Vec<Place<'_>>,
    postcode: Option<String>,
    insee: Option<String>,
    now: DateTime<Utc>,
) -> LookupResponse {
    let mut demo = false;
    let communes: Vec<LookupCommune> = places
        .into_iter()
        .map(|p| {
            let (commune, commune_demo) = commune_answer(dir, p, &dir.chain(p), now);
            demo |= commune_demo;
            commune
        })
        .collect();
    LookupResponse {
        postcode,
        insee,
        generated_at: now,
        demo,
        notice: demo.then(|| DEMO_NOTICE.to_owned()),
        communes,
    }
}

/// The answer for a postcode, or `None` if the postcode is unknown.
pub fn by_postcode(dir: &Directory, postcode: &str, now: DateTime<Utc>) -> Option<LookupResponse> {
    let places = dir.places_for_postcode(postcode)?;
    Some(answer(dir, places, Some(postcode.to_owned()), None, now))
}

/// The answer for an INSEE code (commune or arrondissement), or `None` if unknown.
pub fn by_insee(dir: &Directory, insee: &str, now: DateTime<Utc>) -> Option<LookupResponse> {
    let place = dir.place(insee)?;
    Some(answer(dir, vec![place], None, Some(insee.to_owned()), now))
}

/// The section of one place, rendered for the cache of `dir` (see [`crate::answers`]):
/// computed at `now`, from the snapshot `dir`.
pub fn render_section(dir: &Directory, place: Place<'_>, now: DateTime<Utc>) -> CommuneSection {
    let chain = dir.chain(place);
    let (commune, demo) = commune_answer(dir, place, &chain, now);
    let holds_until = dir.next_validity_change(&chain, now);
    CommuneSection::new(&commune, demo, dir.seq(), holds_until)
}

/// The answer of a postcode the atlas knows, assembled for the cache of `dir` from its
/// communes' sections (see [`crate::answers`]), stamped with the snapshot time.
pub fn render_postcode(dir: &Directory, postcode: &str, now: DateTime<Utc>) -> RenderedAnswer {
    let sections = dir
        .places_for_postcode(postcode)
        .unwrap_or_default()
        .into_iter()
        .map(|place| dir.section(place, now))
        .collect();
    RenderedAnswer::assemble(Some(postcode), None, sections, dir.seq())
}

/// The answer of an INSEE code (commune or arrondissement), assembled for one request
/// from the commune's section; `None` if the code is unknown.
pub fn render_insee(dir: &Directory, insee: &str, now: DateTime<Utc>) -> Option<RenderedAnswer> {
    let place = dir.place(insee)?;
    let section = dir.section(place, now);
    Some(RenderedAnswer::assemble(
        None,
        Some(insee),
        vec![section],
        dir.seq(),
    ))
}

/// The same answer as short French text, ready to post as is.
pub fn to_text(answer: &LookupResponse) -> String {
    let mut out = to_text_body(answer);
    out.push_str(&text_footer(answer.generated_at));
    out
}

/// The last line of the text answer: the time of the data.
pub fn text_footer(generated_at: DateTime<Utc>) -> String {
    format!(
        "Mis à jour le {} UTC.",
        generated_at.format("%d/%m/%Y à %H:%M")
    )
}

/// The text answer without its last line.
pub fn to_text_body(answer: &LookupResponse) -> String {
    let mut out = String::new();
    if answer.demo {
        let _ = writeln!(out, "{DEMO_NOTICE}\n");
    }
    for commune in &answer.communes {
        let place = match &commune.arrondissement {
            Some(a) => a.name.clone(),
            None => commune.name.clone(),
        };
        let _ = writeln!(
            out,
            "{place} ({} - {})",
            commune.departement.name, commune.departement.code
        );
        let failing: Vec<&LookupService> = commune
            .services
            .iter()
            .filter(|s| s.status == ServiceStatus::Outage)
            .collect();
        if failing.is_empty() {
            let _ = writeln!(out, "Aucune panne connue : composez les numéros habituels.");
        }
        let european_ok = commune
            .services
            .iter()
            .any(|s| s.service == "112" && s.status == ServiceStatus::Normal);
        for s in &failing {
            let _ = write!(out, "{} {} en panne : ", s.service, s.name);
            if s.numbers.is_empty() {
                let advice = if european_ok {
                    "pas encore de numéro de remplacement, appelez le 112 (ou SMS au 114)."
                } else {
                    "pas encore de numéro de remplacement, appelez un autre service d'urgence ci-dessus (ou SMS au 114)."
                };
                let _ = writeln!(out, "{advice}");
            } else {
                let numbers: Vec<String> = s.numbers.iter().map(|n| n.text()).collect();
                let _ = writeln!(out, "appelez le {}.", numbers.join(" ou le "));
            }
        }
        if !failing.is_empty() {
            let normal: Vec<&str> = commune
                .services
                .iter()
                .filter(|s| s.status == ServiceStatus::Normal)
                .map(|s| s.service.as_str())
                .collect();
            if !normal.is_empty() {
                let _ = writeln!(out, "Fonctionnent normalement : {}.", normal.join(", "));
            }
        }
        out.push('\n');
    }
    out
}
