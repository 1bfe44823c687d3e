//! A published number as the snapshot keeps it: its public JSON, serialized once when it
//! is published, and the few fields that reads select on.
//!
//! A lookup lists numbers in nearly every one of its sections, and a directory of a whole
//! country holds a hundred thousand of them: keeping each one's JSON once, and writing it
//! out as is, makes an answer a copy of shared bytes rather than a serialization, and
//! makes a number cost its JSON plus a few dozen bytes instead of a dozen allocations.

use chrono::{DateTime, Utc};
use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;
use triomphe::ThinArc;

use crate::domain::Territory;
use crate::model::{Number, NumberStatus};

/// A published number of the snapshot: one allocation holding the fields reads select on
/// and, right after them, the number's public JSON. Cloning it is a reference count; it
/// serializes as the [`Number`] it was made from, byte for byte.
///
/// One allocation rather than a struct pointing to its JSON: an answer lists some 70
/// numbers, and following one pointer per number instead of two halves the cache misses
/// of copying them out.
#[derive(Clone)]
pub struct PublicNumber(ThinArc<Head, u8>);

/// What reads select on. `id` and `service` are read out of the JSON (`id_at`,
/// `service_at`: byte ranges of their values), which serde writes first.
struct Head {
    id_at: (u16, u16),
    service_at: (u16, u16),
    territory: Territory,
    valid_from: DateTime<Utc>,
    valid_until: Option<DateTime<Utc>>,
    version: i32,
    demo: bool,
}

/// Why a number cannot be kept in the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum NotPublic {
    #[error("number {0} is not published")]
    NotPublished(String),
    #[error("number {id} has an unknown territory {code}")]
    UnknownTerritory { id: String, code: String },
    #[error("number {0} cannot be serialized: {1}")]
    Json(String, serde_json::Error),
    #[error("number {0}: its id or service code is not plain text in its JSON")]
    Layout(String),
}

/// The byte range of `value` as the JSON string that follows `"key":` at `from` in
/// `json`, if it is written there as is (no escape).
fn value_at(json: &str, from: usize, key: &str, value: &str) -> Option<(u16, u16)> {
    let expected = format!("\"{key}\":\"{value}\"");
    json.get(from..)?.starts_with(&expected).then_some(())?;
    let start = from + key.len() + 4;
    let end = start + value.len();
    Some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

impl PublicNumber {
    /// The snapshot's form of a published number.
    pub fn new(n: &Number) -> Result<PublicNumber, NotPublic> {
        if n.status != NumberStatus::Published {
            return Err(NotPublic::NotPublished(n.id.clone()));
        }
        let territory =
            Territory::from_parts(n.territory.kind, &n.territory.code).map_err(|_| {
                NotPublic::UnknownTerritory {
                    id: n.id.clone(),
                    code: n.territory.code.clone(),
                }
            })?;
        let json = serde_json::to_string(n).map_err(|e| NotPublic::Json(n.id.clone(), e))?;
        // Ids are UUIDs the service made and service codes come from the catalogue:
        // neither needs escaping, so both can be read out of the JSON.
        let layout = || NotPublic::Layout(n.id.clone());
        let id_at = value_at(&json, 1, "id", &n.id).ok_or_else(layout)?;
        let service_at =
            value_at(&json, usize::from(id_at.1) + 2, "service", &n.service).ok_or_else(layout)?;
        let head = Head {
            id_at,
            service_at,
            territory,
            valid_from: n.valid_from,
            valid_until: n.valid_until,
            version: n.version,
            demo: n.demo,
        };
        Ok(PublicNumber(ThinArc::from_header_and_slice(
            head,
            json.as_bytes(),
        )))
    }

    fn head(&self) -> &Head {
        &self.0.header.header
    }

    fn bytes_at(&self, (from, to): (u16, u16)) -> &[u8] {
        self.0
            .slice
            .get(usize::from(from)..usize::from(to))
            .unwrap_or_default()
    }

    /// Checks only the few bytes asked for, not the whole JSON around them.
    fn text_at(&self, at: (u16, u16)) -> &str {
        std::str::from_utf8(self.bytes_at(at)).unwrap_or_default()
    }

    /// [`PublicNumber::service`] as bytes, for the lookups' hot path (bytes order as
    /// strings do).
    pub fn service_bytes(&self) -> &[u8] {
        self.bytes_at(self.head().service_at)
    }

    pub fn id(&self) -> &str {
        self.text_at(self.head().id_at)
    }

    /// The code of the service it replaces.
    pub fn service(&self) -> &str {
        self.text_at(self.head().service_at)
    }

    pub fn territory(&self) -> &Territory {
        &self.head().territory
    }

    pub fn valid_from(&self) -> DateTime<Utc> {
        self.head().valid_from
    }

    pub fn valid_until(&self) -> Option<DateTime<Utc>> {
        self.head().valid_until
    }

    /// Its version: the `ETag` of the number.
    pub fn version(&self) -> i32 {
        self.head().version
    }

    /// Historical demonstration data.
    pub fn demo(&self) -> bool {
        self.head().demo
    }

    /// Its public JSON.
    pub fn json(&self) -> &str {
        // Made from a `String`: always UTF-8.
        std::str::from_utf8(&self.0.slice).unwrap_or_default()
    }

    /// Where it lies in memory, and how many bytes from there hold what
    /// [`PublicNumber::json_bytes`] reads if the JSON is `json_len` bytes long: what to
    /// prefetch before copying it, known without reading the number itself.
    pub fn memory(&self, json_len: usize) -> (*const u8, usize) {
        // The reference count, the head and the slice's length come first (triomphe's
        // layout, give or take padding: this only says what to prefetch).
        const BEFORE_JSON: usize = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Head>();
        (self.0.heap_ptr().cast(), BEFORE_JSON + json_len)
    }

    /// Its public JSON as bytes (no check: the answers' hot path).
    pub fn json_bytes(&self) -> &[u8] {
        &self.0.slice
    }

    /// The phone for display and the label, as the text answers give them:
    /// "05 56 12 34 56 (CTA-CODIS Gironde)". Read from the JSON: text answers are rendered
    /// once per answer, and the snapshot need not keep a second copy of every label.
    pub fn text(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Phone<'a> {
            #[serde(borrow)]
            display: std::borrow::Cow<'a, str>,
        }
        #[derive(serde::Deserialize)]
        struct Text<'a> {
            #[serde(borrow)]
            phone: Phone<'a>,
            #[serde(borrow)]
            label: std::borrow::Cow<'a, str>,
        }
        match serde_json::from_str::<Text<'_>>(self.json()) {
            Ok(t) => format!("{} ({})", t.phone.display, t.label),
            Err(_) => String::new(),
        }
    }

    /// Within its validity at `now` (it is published, or the snapshot would not hold it).
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.valid_from() <= now && self.valid_until().is_none_or(|until| now < until)
    }

    /// The whole number, read back from its JSON (for the few reads that need every
    /// field as a value: CSV export, moderation queue).
    pub fn to_number(&self) -> Number {
        // Made from a `Number` by serde: reading it back cannot fail short of a bug.
        serde_json::from_str(self.json()).expect("a public number's JSON reads back")
    }
}

impl std::fmt::Debug for PublicNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicNumber").field(&self.json()).finish()
    }
}

/// Numbers are ordered, compared and looked up by id (the snapshot's set of published
/// numbers is keyed by it).
impl PartialEq for PublicNumber {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for PublicNumber {}

impl PartialOrd for PublicNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id().cmp(other.id())
    }
}

impl std::borrow::Borrow<str> for PublicNumber {
    fn borrow(&self) -> &str {
        self.id()
    }
}

impl Serialize for PublicNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue =
            serde_json::from_str(self.json()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TerritoryKind;
    use crate::model::{OrganizationRef, Phone, Provenance, TerritoryRef};

    fn number(status: NumberStatus, code: &str) -> Number {
        let t = "2026-11-26T10:00:00Z".parse().unwrap();
        Number {
            id: "0190a000-0000-7000-8000-000000000001".to_owned(),
            service: "18".to_owned(),
            territory: TerritoryRef {
                kind: TerritoryKind::Departement,
                code: code.to_owned(),
                name: "Gironde".to_owned(),
            },
            phone: Phone {
                e164: "+33556123456".to_owned(),
                national: "0556123456".to_owned(),
                display: "05 56 12 34 56".to_owned(),
                tel_uri: "tel:+33556123456".to_owned(),
            },
            label: "CTA-CODIS \"Gironde\"".to_owned(),
            status,
            provenance: Provenance::Official {
                organization: OrganizationRef {
                    id: "org".to_owned(),
                    name: "SDIS 33".to_owned(),
                },
            },
            outage_id: None,
            valid_from: t,
            valid_until: Some(t + chrono::Duration::hours(2)),
            published_at: Some(t),
            updated_at: t,
            retired_at: None,
            retire_reason: None,
            version: 3,
            demo: false,
        }
    }

    #[test]
    fn serializes_and_reads_back_as_the_number_it_was_made_from() {
        let n = number(NumberStatus::Published, "33");
        let p = PublicNumber::new(&n).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            serde_json::to_string(&n).unwrap()
        );
        assert_eq!(p.json(), serde_json::to_string(&n).unwrap());
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::to_value(&n).unwrap()
        );
        assert_eq!(p.to_number(), n);
        assert_eq!(p.text(), "05 56 12 34 56 (CTA-CODIS \"Gironde\")");
        assert_eq!(
            p.territory(),
            &Territory::parse("departement", "33").unwrap()
        );
        assert_eq!((p.service(), p.version(), p.demo()), ("18", 3, false));
    }

    #[test]
    fn is_in_force_within_its_validity_only() {
        let n = number(NumberStatus::Published, "33");
        let p = PublicNumber::new(&n).unwrap();
        assert!(!p.in_force(n.valid_from - chrono::Duration::seconds(1)));
        assert!(p.in_force(n.valid_from));
        assert!(!p.in_force(n.valid_until.unwrap()));
    }

    #[test]
    fn only_published_numbers_of_known_territories_are_kept() {
        assert!(matches!(
            PublicNumber::new(&number(NumberStatus::Retired, "33")),
            Err(NotPublic::NotPublished(_))
        ));
        assert!(matches!(
            PublicNumber::new(&number(NumberStatus::Published, "00")),
            Err(NotPublic::UnknownTerritory { .. })
        ));
    }
}
