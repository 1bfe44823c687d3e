//! The public representations: what the API answers and the changes log records.
//! Their doc comments become the OpenAPI descriptions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{PhoneNumber, TerritoryKind};

/// A service of the catalogue: an emergency or help line reached by a short number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Service {
    /// The short number it is reached by in normal times, used as its code: "15", "17", "18", "112"...
    #[schema(example = "18")]
    pub code: String,
    /// Its name in French, as citizens know it.
    #[schema(example = "Sapeurs-pompiers")]
    pub name: String,
    /// What to call it for, in French.
    pub description: String,
}

/// A territory: the whole country, a defence zone, a département or a commune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TerritoryRef {
    /// The level of the territory.
    pub kind: TerritoryKind,
    /// "FR" for national, a zone name ("Sud-Ouest"), a département code ("33", "2A", "971"),
    /// or an INSEE commune code ("33063"; municipal arrondissements too, "75116").
    #[schema(example = "33")]
    pub code: String,
    /// Its name in French.
    #[schema(example = "Gironde")]
    pub name: String,
}

/// A phone number in the forms a client needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Phone {
    /// International E.164 form, with the country code of the territory (+33, or +590, +594,
    /// +596, +262, +508 overseas).
    #[schema(example = "+33556123456")]
    pub e164: String,
    /// Ten-digit form dialled from France.
    #[schema(example = "0556123456")]
    pub national: String,
    /// Ten-digit form grouped by pairs, for display.
    #[schema(example = "05 56 12 34 56")]
    pub display: String,
    /// `tel:` URI for a tap-to-call link.
    #[schema(example = "tel:+33556123456")]
    pub tel_uri: String,
}

impl From<&PhoneNumber> for Phone {
    fn from(p: &PhoneNumber) -> Self {
        Self {
            e164: p.e164().to_owned(),
            national: p.national().to_owned(),
            display: p.display(),
            tel_uri: p.tel_uri(),
        }
    }
}

/// A reference to an organization (an SDIS, a police or gendarmerie unit, a SAMU, a
/// préfecture, a ministry, an association of volunteers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrganizationRef {
    /// Opaque identifier.
    pub id: String,
    /// Public name.
    #[schema(example = "SDIS 33")]
    pub name: String,
}

/// Where a number comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Provenance {
    /// Published by the authority responsible for the service and territory.
    Official {
        /// The publishing organization.
        organization: OrganizationRef,
    },
    /// Seen elsewhere (social media) and checked by a moderator before publication.
    Relayed {
        /// Where the number was seen.
        source_url: String,
        /// The organization of the reviewer who checked it; null while it waits for review.
        verified_by: Option<OrganizationRef>,
    },
}

/// The life of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NumberStatus {
    /// Submitted, waiting for review; never public.
    Pending,
    /// Public and, within its validity, in force.
    Published,
    /// Refused by review; never public.
    Rejected,
    /// No longer in force.
    Retired,
}

impl NumberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberStatus::Pending => "pending",
            NumberStatus::Published => "published",
            NumberStatus::Rejected => "rejected",
            NumberStatus::Retired => "retired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Published,
            Self::Rejected,
            Self::Retired,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A substitute number: what to dial for a service in a territory while its short number fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Number {
    /// Opaque identifier (UUIDv7).
    pub id: String,
    /// The service it replaces (code of the catalogue).
    #[schema(example = "18")]
    pub service: String,
    /// The territory it serves, and everything inside it that has no more specific number.
    pub territory: TerritoryRef,
    /// The number to dial.
    pub phone: Phone,
    /// Whom and where it serves, e.g. "CTA-CODIS Gironde" or "Police - Sens".
    pub label: String,
    /// Where it is in its life.
    pub status: NumberStatus,
    /// Who published it, or who checked it.
    pub provenance: Provenance,
    /// The outage it was published for; resolving that outage retires it.
    pub outage_id: Option<String>,
    /// In force from this time.
    pub valid_from: DateTime<Utc>,
    /// In force until this time (exclusive); none means until retired.
    pub valid_until: Option<DateTime<Utc>>,
    /// When it was published.
    pub published_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was retired, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// Why it was retired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retire_reason: Option<String>,
    /// Incremented on every change; the `ETag` of the number.
    pub version: i32,
    /// True for the historical demonstration data of 2 June 2021: never to be dialled.
    pub demo: bool,
}

impl Number {
    /// Published and within its validity at `now`.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.status == NumberStatus::Published
            && self.valid_from <= now
            && self.valid_until.is_none_or(|until| now < until)
    }
}

/// Whether an outage is going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutageStatus {
    /// The short numbers of its services fail in its territory.
    Active,
    /// Over; its numbers were retired.
    Resolved,
}

impl OutageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutageStatus::Active => "active",
            OutageStatus::Resolved => "resolved",
        }
    }
}

/// A declared failure of one or more short numbers in a territory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Outage {
    /// Opaque identifier (UUIDv7).
    pub id: String,
    /// The services whose short number fails.
    pub services: Vec<String>,
    /// Where they fail.
    pub territory: TerritoryRef,
    /// What is known, in French.
    pub description: String,
    /// Active or resolved.
    pub status: OutageStatus,
    /// When it was declared (or when it began, if declared afterwards).
    pub declared_at: DateTime<Utc>,
    /// When it ended.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The declaring organization.
    pub declared_by: OrganizationRef,
    /// Incremented on every change.
    pub version: i32,
    /// True for the historical demonstration data of 2 June 2021.
    pub demo: bool,
}
