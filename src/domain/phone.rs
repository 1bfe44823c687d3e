//! Phone numbers that a person in France can dial to reach help.
//!
//! A substitute number published by Relai is dialled by someone whose call to 15, 17, 18 or
//! 112 just failed. A wrong number, a number that does not ring, or a premium-rate number
//! that bills the caller can cost a life or a fortune, so [`PhoneNumber::parse`] is strict.
//!
//! # How a number is checked
//!
//! 1. **Spelling.** Surrounding whitespace is trimmed; the rest must be at most
//!    [`MAX_INPUT_LEN`] bytes, made of ASCII digits, an optional leading `+`, separators
//!    (spaces, non-breaking and thin spaces, tabs, `.`, `-` and other dashes, `/`) and at
//!    most one `(0)` right after a country code. An international prefix is `+` or `00`.
//!    The digits go into a fixed-size buffer: nothing is allocated before the length check.
//! 2. **The French numbering plan, by prefix (the primary check).** The ten-digit national
//!    form decides everything: which territory (hence which E.164 country code) and which
//!    kind of number it is. The rules are written out in [`classify`], from the contract:
//!    * accepted: `01`–`05` geographic, `06` and `073`–`079` mobile, `09` (except
//!      `0937`–`0939`), `0800`–`0805` free, `0806`–`0809` ordinary-cost service numbers
//!      (accepted with a [`PhoneNumber::warning`]);
//!    * accepted overseas, with the territory's own country code: `0590`/`0690` (+590,
//!      Guadeloupe, Saint-Barthélemy, Saint-Martin), `0594`/`0694` (+594, Guyane),
//!      `0596`/`0696` (+596, Martinique), `0262`/`0692`/`0693` (+262, La Réunion),
//!      `0269`/`0639` (+262, Mayotte), `0508` (+508, Saint-Pierre-et-Miquelon, whose
//!      subscriber numbers have six digits: `05 08 41 23 45` is `+508412345`);
//!    * refused: `081`, `082`, `089` (premium rate and shared cost), the other `08` ranges,
//!      `070`–`072`, `0937`–`0939`, short codes, foreign numbers;
//!    * refused as well, beyond the contract's list, because their E.164 form would be
//!      wrong: overseas ranges that sit inside a metropolitan-looking prefix and that the
//!      contract does not open: `0263` and `0268` (La Réunion, Mayotte), `0691`
//!      (Guadeloupe), `0697` (Martinique), `09475`–`09479` and `0976` (overseas `09`
//!      numbers). The `phonenumber` crate's own FR data calls `+33 976…`, `+33 263…` or
//!      `+33 9475…` valid, while its overseas data puts them under +590, +594, +596 or
//!      +262: publishing them with `+33` would give a wrong `tel:` link.
//! 3. **Confirmation by the `phonenumber` crate** (libphonenumber's data). The E.164 form
//!    built from the prefix rules must parse back to the same country code and E.164
//!    string, and the crate must never classify the number as premium rate or shared cost
//!    nor as another kind than the prefix rules expect. For `+33` numbers the crate must
//!    also call the number valid (its metropolitan data is range-level, e.g. it refuses
//!    `04 00 …`). For overseas numbers it must match the territory's general pattern (it
//!    refuses `+508 12 34 56`), but a number it does not know block by block is accepted:
//!    its overseas data is block-level and lags the plan (it knows neither `0596 12 …` nor
//!    `0639 12 …`), and the contract opens these ranges whole.
//!
//! The crate alone is not enough: it calls `089x` and `081x` valid (premium rate, shared
//! cost), it calls overseas numbers invalid when they are parsed as French, and it has no
//! short-number support.

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::DATABASE;
use phonenumber::Type;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest input accepted, in bytes, once surrounding whitespace is trimmed. The
/// longest reasonable spelling, `+33 (0)5 56 12 34 56` with non-breaking spaces, is about
/// 30 bytes.
pub const MAX_INPUT_LEN: usize = 64;

/// The warning given with the ordinary-cost service numbers 0806 to 0809.
const ORDINARY_COST_WARNING: &str = "ordinary-cost service number (0806-0809): a call costs \
     the same as a call to a landline, it is not free";

/// Why a text was refused as a phone number. Each message tells a client developer what to
/// send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing but whitespace was given.
    #[error("the phone number is empty: give a ten-digit French number, e.g. 05 56 12 34 56")]
    Empty,
    /// More than 64 bytes (`MAX_INPUT_LEN`) once surrounding whitespace is trimmed.
    #[error(
        "the phone number is too long: at most {} characters, e.g. 05 56 12 34 56",
        MAX_INPUT_LEN
    )]
    TooLong,
    /// A letter or a symbol other than the accepted separators.
    #[error(
        "the phone number may only contain digits, a leading '+', spaces, dots, dashes, \
         slashes and '(0)' right after the country code, e.g. 05.56.12.34.56 or \
         +33 (0)5 56 12 34 56"
    )]
    InvalidCharacters,
    /// A short code (15, 17, 18, 112, 3xxx, 116xxx, 118xxx...).
    #[error(
        "this is a short code (like 15, 17, 18, 112, 3xxx, 116xxx or 118xxx), not a \
         substitute number: give the ten-digit number that reaches the service, \
         e.g. 05 56 12 34 56"
    )]
    ShortCode,
    /// A premium-rate or shared-cost number (081x, 082x, 089x...).
    #[error(
        "premium-rate and shared-cost numbers (081x, 082x, 089x...) charge the caller extra \
         and are refused: give a geographic, mobile, 09 or free (0800-0805) number"
    )]
    PremiumRate,
    /// Not ten digits in the national form (nine after +33, six after +508).
    #[error(
        "a French phone number has ten digits starting with 0, e.g. 05 56 12 34 56 \
         (nine digits after +33, e.g. +33 5 56 12 34 56)"
    )]
    NotTenDigits,
    /// A country code outside the French numbering plan.
    #[error(
        "only numbers of the French numbering plan are accepted: +33, or +590, +594, +596, \
         +262 and +508 overseas; give a number that can be dialled from France as ten digits"
    )]
    Foreign,
    /// An overseas country code given with a number of another territory (`+590 594…`).
    #[error(
        "the country code does not match the number: 0590/0690 take +590, 0594/0694 +594, \
         0596/0696 +596, 0262/0692/0693/0269/0639 +262, 0508 +508 and the other numbers +33; \
         or give the ten-digit form, e.g. 0590 12 34 56"
    )]
    CountryCodeMismatch,
    /// A range that does not take ordinary calls (070-072, 0937-0939, 083x-088x...).
    #[error(
        "this number is in a range that is not open to ordinary calls (070-072, 0937-0939, \
         08 outside 0800-0809...): give a geographic, mobile, 09 or free (0800-0805) number"
    )]
    NotDialable,
    /// An overseas range that Relai does not publish (0263, 0268, 0691, 0697, 0976...).
    #[error(
        "this overseas range is not accepted (only 0590/0690, 0594/0694, 0596/0696, \
         0262/0692/0693, 0269/0639 and 0508 are): give another number for the same service"
    )]
    UnsupportedOverseasRange,
    /// A number in an accepted range but outside the blocks of the numbering data.
    #[error(
        "this number is not in a block open to subscribers in the numbering plan: check \
         the digits"
    )]
    Unassigned,
}

/// The numbering plans a published number can belong to: metropolitan France (+33) and the
/// overseas territories with their own country codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Territory {
    Metropole,
    /// Guadeloupe, Saint-Barthélemy and Saint-Martin share +590 and their ranges.
    Guadeloupe,
    Guyane,
    Martinique,
    Reunion,
    Mayotte,
    SaintPierreEtMiquelon,
}

impl Territory {
    /// The E.164 country code, as digits.
    fn country_code(self) -> &'static str {
        match self {
            Territory::Metropole => "33",
            Territory::Guadeloupe => "590",
            Territory::Guyane => "594",
            Territory::Martinique => "596",
            Territory::Reunion | Territory::Mayotte => "262",
            Territory::SaintPierreEtMiquelon => "508",
        }
    }

    /// The region of libphonenumber's data.
    fn region(self) -> &'static str {
        match self {
            Territory::Metropole => "FR",
            Territory::Guadeloupe => "GP",
            Territory::Guyane => "GF",
            Territory::Martinique => "MQ",
            Territory::Reunion => "RE",
            Territory::Mayotte => "YT",
            Territory::SaintPierreEtMiquelon => "PM",
        }
    }

    /// How many leading digits of the ten-digit national form the E.164 form drops: the
    /// trunk `0`, and for Saint-Pierre-et-Miquelon the whole `0508`.
    fn national_prefix_len(self) -> usize {
        match self {
            Territory::SaintPierreEtMiquelon => 4,
            _ => 1,
        }
    }
}

/// The kind of number, as the prefix rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Category {
    /// 01-05 and the overseas geographic ranges.
    Geographic,
    /// 06, 073-079 and the overseas mobile ranges.
    Mobile,
    /// 09 ("numéros polyvalents").
    Polyvalent,
    /// 0800-0805.
    Freephone,
    /// 0806-0809, "numéros à tarification banalisée".
    OrdinaryCost,
    /// 0508: Saint-Pierre-et-Miquelon's plan mixes fixed and mobile blocks.
    FixedOrMobile,
}

impl Category {
    /// The kinds libphonenumber may give this category. Anything else (once a premium or
    /// shared-cost kind is ruled out) means the two sources disagree: the number is refused.
    fn expected_types(self) -> &'static [Type] {
        match self {
            Category::Geographic => &[Type::FixedLine, Type::FixedLineOrMobile],
            Category::Mobile => &[Type::Mobile, Type::FixedLineOrMobile],
            Category::Polyvalent => &[Type::Voip, Type::FixedLine, Type::FixedLineOrMobile],
            Category::Freephone => &[Type::TollFree],
            Category::OrdinaryCost => &[Type::Uan, Type::StandardRate],
            Category::FixedOrMobile => &[Type::FixedLine, Type::Mobile, Type::FixedLineOrMobile],
        }
    }
}

/// A phone number that a person in France can dial to reach help: a ten-digit number of
/// the French numbering plan (metropolitan or overseas) that is neither premium rate nor
/// shared cost nor a short code, checked by [`PhoneNumber::parse`] (see the module
/// documentation for the rules). Once built it is known good, in every form a client needs.
///
/// Serialized as the object `{"e164", "national", "display", "tel_uri"}`; deserialized
/// from a string through [`PhoneNumber::parse`] (or from that object, for a round trip).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    /// `+33556123456`, `+590590123456`, `+508412345`.
    e164: String,
    /// `0556123456`, `0590123456`, `0508412345`.
    national: String,
    territory: Territory,
    category: Category,
}

impl PhoneNumber {
    /// Reads a phone number as people write it and checks that it is a number Relai may
    /// publish.
    ///
    /// Accepted spellings: `0556123456`, `05 56 12 34 56`, `05.56.12.34.56`,
    /// `05-56-12-34-56`, `+33556123456`, `+33 5 56 12 34 56`, `+33 (0)5 56 12 34 56`,
    /// `0033 5 56 12 34 56`, with any mix of spaces, non-breaking spaces, dots, dashes and
    /// slashes, and surrounding whitespace. Overseas numbers are accepted in the national
    /// form (`0590 12 34 56`) and with their own country code (`+590 590 12 34 56`), with
    /// the same result.
    ///
    /// Decisions beyond the contract:
    /// * **An overseas number written with +33** (`+33 5 90 12 34 56`) is accepted and
    ///   normalized to the territory's own code (`+590590123456`). Its ten-digit form
    ///   `0590123456` is the same whichever code was written, it is what a caller in France
    ///   dials, and no metropolitan number starts with `0590`; only the E.164 form changes,
    ///   and the `+33` one would not reach the territory from abroad. The same holds for
    ///   `+33 5 08 …` (Saint-Pierre-et-Miquelon, `+508`) and every other overseas range.
    /// * An overseas code with a number of another territory or of metropolitan France
    ///   (`+590 594 …`, `+262 5 56 …`) is refused ([`PhoneError::CountryCodeMismatch`]):
    ///   the two parts contradict each other and Relai will not guess which is right.
    /// * A trunk `0` written after the country code without parentheses
    ///   (`+33 0 5 56 12 34 56`) is dropped: no national significant number starts with 0,
    ///   so this spelling is unambiguous.
    pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
        Self::read(input, true)
    }

    /// A number read back from storage, where only numbers [`PhoneNumber::parse`]
    /// accepted are written: the spelling and the numbering plan are checked again (cheap),
    /// the confirmation by libphonenumber's metadata (its regular expressions, most of the
    /// cost of a parse) is not. Loading a directory of 100,000 numbers and every write's
    /// read-back would otherwise run it again for numbers checked when they were written.
    pub fn from_stored(e164: &str) -> Result<PhoneNumber, PhoneError> {
        Self::read(e164, false)
    }

    fn read(input: &str, confirm_with_metadata: bool) -> Result<PhoneNumber, PhoneError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(PhoneError::Empty);
        }
        if text.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let scanned = scan(text)?;
        let digits = scanned.digits();

        let (written_code, national) = if scanned.plus || digits.starts_with(b"00") {
            let skip = if scanned.plus { 0 } else { 2 };
            let trunk_at = match scanned.trunk_at {
                Some(at) => Some(at.checked_sub(skip).ok_or(PhoneError::InvalidCharacters)?),
                None => None,
            };
            let (code, national) = international(&digits[skip..], trunk_at)?;
            (Some(code), national)
        } else {
            if scanned.trunk_at.is_some() {
                return Err(PhoneError::InvalidCharacters);
            }
            (None, national_form(digits)?)
        };

        let (territory, category) = classify(&national)?;
        if let Some(code) = written_code {
            if code != "33" && code != territory.country_code() {
                return Err(PhoneError::CountryCodeMismatch);
            }
        }

        let national: String = national.iter().map(|&b| char::from(b)).collect();
        let significant = &national[territory.national_prefix_len()..];
        let e164 = format!("+{}{}", territory.country_code(), significant);
        if confirm_with_metadata {
            confirm(territory, category, &e164, significant)?;
        }

        Ok(PhoneNumber {
            e164,
            national,
            territory,
            category,
        })
    }

    /// The international E.164 form, with the territory's country code: `+33556123456`,
    /// `+590590123456`, `+508412345`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The ten digits dialled from France: `0556123456`, `0590123456`, `0508412345`.
    pub fn national(&self) -> &str {
        &self.national
    }

    /// The national form in pairs of digits, for display: `05 56 12 34 56`,
    /// `08 00 12 34 56`, `05 90 12 34 56`.
    pub fn display(&self) -> String {
        let mut out = String::with_capacity(14);
        for (i, c) in self.national.chars().enumerate() {
            if i > 0 && i % 2 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    /// A `tel:` URI (RFC 3966) for a tap-to-call link: `tel:+33556123456`.
    pub fn tel_uri(&self) -> String {
        format!("tel:{}", self.e164)
    }

    /// A short English warning to show with the number, if any: `Some` for the
    /// ordinary-cost service numbers 0806 to 0809, which are not free to call.
    pub fn warning(&self) -> Option<&'static str> {
        match self.category {
            Category::OrdinaryCost => Some(ORDINARY_COST_WARNING),
            _ => None,
        }
    }
}

impl fmt::Display for PhoneNumber {
    /// Writes the display form, `05 56 12 34 56`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;

    /// Same as [`PhoneNumber::parse`].
    fn from_str(s: &str) -> Result<Self, PhoneError> {
        Self::parse(s)
    }
}

impl Serialize for PhoneNumber {
    /// Writes `{"e164": "+33556123456", "national": "0556123456",
    /// "display": "05 56 12 34 56", "tel_uri": "tel:+33556123456"}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("PhoneNumber", 4)?;
        s.serialize_field("e164", &self.e164)?;
        s.serialize_field("national", &self.national)?;
        s.serialize_field("display", &self.display())?;
        s.serialize_field("tel_uri", &self.tel_uri())?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    /// Reads a string through [`PhoneNumber::parse`], so that a refused number fails with
    /// its reason. For a round trip, the serialized object is accepted too: its `e164` is
    /// parsed and every other field given must equal the form computed from it. Needs a
    /// self-describing format (JSON, YAML, TOML...).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PhoneVisitor)
    }
}

/// Fields of the serialized object.
const FIELDS: &[&str] = &["e164", "national", "display", "tel_uri"];

struct PhoneVisitor;

impl<'de> Visitor<'de> for PhoneVisitor {
    type Value = PhoneNumber;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a French phone number as a string, e.g. \"05 56 12 34 56\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PhoneNumber, E> {
        PhoneNumber::parse(v).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PhoneNumber, A::Error> {
        // e164, national, display, tel_uri, in the order of FIELDS.
        let mut values: [Option<String>; 4] = Default::default();
        while let Some(key) = map.next_key::<String>()? {
            let index = FIELDS
                .iter()
                .position(|f| *f == key)
                .ok_or_else(|| de::Error::unknown_field(&key, FIELDS))?;
            if values[index].is_some() {
                return Err(de::Error::duplicate_field(FIELDS[index]));
            }
            values[index] = Some(map.next_value()?);
        }
        let [e164, national, display, tel_uri] = values;
        let e164 = e164.ok_or_else(|| de::Error::missing_field("e164"))?;
        let number = PhoneNumber::parse(&e164).map_err(de::Error::custom)?;
        let consistent = number.e164 == e164
            && national.is_none_or(|v| v == number.national)
            && display.is_none_or(|v| v == number.display())
            && tel_uri.is_none_or(|v| v == number.tel_uri());
        if !consistent {
            return Err(de::Error::custom(
                "the fields of the phone number do not agree: e164 must be in E.164 form and \
                 national, display and tel_uri must be the forms of the same number",
            ));
        }
        Ok(number)
    }
}

/// What the character scan found: the digits in order, whether a `+` led, and where a
/// `(0)` stood (how many digits came before it).
struct Scanned {
    digits: [u8; MAX_INPUT_LEN],
    len: usize,
    plus: bool,
    trunk_at: Option<usize>,
}

impl Scanned {
    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

/// Spaces and punctuation people put between digits.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '.'
            | '-'
            | '/'
            | '\u{00A0}' // no-break space
            | '\u{2007}' // figure space
            | '\u{2009}' // thin space
            | '\u{202F}' // narrow no-break space (French typography)
            | '\u{2010}' // hyphen
            | '\u{2011}' // non-breaking hyphen
            | '\u{2012}' // figure dash
            | '\u{2013}' // en dash
    )
}

/// Reads the characters of an already length-bounded text into a fixed buffer.
fn scan(text: &str) -> Result<Scanned, PhoneError> {
    let mut out = Scanned {
        digits: [0; MAX_INPUT_LEN],
        len: 0,
        plus: false,
        trunk_at: None,
    };
    let mut chars = text.chars();
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '0'..='9' => {
                let slot = out.digits.get_mut(out.len).ok_or(PhoneError::TooLong)?;
                *slot = c as u8;
                out.len += 1;
            }
            '+' if first => out.plus = true,
            '(' => {
                if out.trunk_at.is_some() || chars.next() != Some('0') || chars.next() != Some(')')
                {
                    return Err(PhoneError::InvalidCharacters);
                }
                out.trunk_at = Some(out.len);
            }
            c if is_separator(c) => {}
            _ => return Err(PhoneError::InvalidCharacters),
        }
        first = false;
    }
    Ok(out)
}

/// Whether digits written without a country code look like a French short code: two to
/// six digits starting with 1 (15, 17, 18, 112, 114, 116xxx, 118xxx, 10xx...) or 3 (3xxx,
/// 3xxxx).
fn is_short_code(digits: &[u8]) -> bool {
    (2..=6).contains(&digits.len()) && matches!(digits[0], b'1' | b'3')
}

/// The error for digits of the wrong length.
fn wrong_length(digits: &[u8]) -> PhoneError {
    if is_short_code(digits) {
        PhoneError::ShortCode
    } else {
        PhoneError::NotTenDigits
    }
}

/// The ten-digit national form written without a country code.
fn national_form(digits: &[u8]) -> Result<[u8; 10], PhoneError> {
    match <[u8; 10]>::try_from(digits) {
        Ok(national) if national[0] == b'0' => Ok(national),
        _ => Err(wrong_length(digits)),
    }
}

/// Splits what follows `+` or `00` into a country code of the French numbering plan and
/// returns it with the ten-digit national form. `trunk_at` is where a `(0)` stood.
fn international(
    rest: &[u8],
    trunk_at: Option<usize>,
) -> Result<(&'static str, [u8; 10]), PhoneError> {
    const CODES: [&str; 6] = ["33", "590", "594", "596", "262", "508"];
    let code = match CODES.iter().find(|c| rest.starts_with(c.as_bytes())) {
        Some(code) => *code,
        // A country code never starts with 0 and nothing follows "+": not a number at all.
        None if rest.first().is_none_or(|&d| d == b'0') => return Err(PhoneError::NotTenDigits),
        None => return Err(PhoneError::Foreign),
    };
    if trunk_at.is_some_and(|at| at != code.len()) {
        return Err(PhoneError::InvalidCharacters);
    }
    let mut significant = &rest[code.len()..];
    let expected = if code == "508" { 6 } else { 9 };
    if trunk_at.is_none() && significant.len() == expected + 1 && significant[0] == b'0' {
        significant = &significant[1..];
    }
    if significant.len() != expected || significant[0] == b'0' {
        return Err(wrong_length(significant));
    }
    let mut national = [b'0'; 10];
    if code == "508" {
        national[..4].copy_from_slice(b"0508");
        national[4..].copy_from_slice(significant);
    } else {
        national[1..].copy_from_slice(significant);
    }
    Ok((code, national))
}

/// The French numbering plan by prefix: the territory and kind of a ten-digit national
/// number, or why it is refused. This is the primary check; [`confirm`] then asks
/// libphonenumber's data.
fn classify(n: &[u8; 10]) -> Result<(Territory, Category), PhoneError> {
    use Category::*;
    use Territory::*;
    let p = |prefix: &str| n.starts_with(prefix.as_bytes());
    let any = |prefixes: &[&str]| prefixes.iter().any(|prefix| p(prefix));

    let found = match n[1] {
        b'1'..=b'5' => {
            if p("0262") {
                (Reunion, Geographic)
            } else if p("0269") {
                (Mayotte, Geographic)
            } else if p("0590") {
                (Guadeloupe, Geographic)
            } else if p("0594") {
                (Guyane, Geographic)
            } else if p("0596") {
                (Martinique, Geographic)
            } else if p("0508") {
                (SaintPierreEtMiquelon, FixedOrMobile)
            } else if any(&["0263", "0268"]) {
                return Err(PhoneError::UnsupportedOverseasRange);
            } else {
                (Metropole, Geographic)
            }
        }
        b'6' => {
            if p("0690") {
                (Guadeloupe, Mobile)
            } else if p("0694") {
                (Guyane, Mobile)
            } else if p("0696") {
                (Martinique, Mobile)
            } else if any(&["0692", "0693"]) {
                (Reunion, Mobile)
            } else if p("0639") {
                (Mayotte, Mobile)
            } else if any(&["0691", "0697"]) {
                return Err(PhoneError::UnsupportedOverseasRange);
            } else {
                (Metropole, Mobile)
            }
        }
        b'7' => {
            if any(&["070", "071", "072"]) {
                return Err(PhoneError::NotDialable);
            }
            (Metropole, Mobile)
        }
        b'8' => {
            if any(&["0800", "0801", "0802", "0803", "0804", "0805"]) {
                (Metropole, Freephone)
            } else if any(&["0806", "0807", "0808", "0809"]) {
                (Metropole, OrdinaryCost)
            } else if any(&["081", "082", "089"]) {
                return Err(PhoneError::PremiumRate);
            } else {
                // 083x-088x: refused whatever they are; say "premium" when the data says so.
                return Err(match french_type(n) {
                    Type::PremiumRate | Type::SharedCost => PhoneError::PremiumRate,
                    _ => PhoneError::NotDialable,
                });
            }
        }
        b'9' => {
            if any(&["0937", "0938", "0939"]) {
                return Err(PhoneError::NotDialable);
            }
            if any(&["09475", "09476", "09477", "09478", "09479", "0976"]) {
                return Err(PhoneError::UnsupportedOverseasRange);
            }
            (Metropole, Polyvalent)
        }
        // n[1] == b'0' cannot come from the parsers ("00" is an international prefix).
        _ => return Err(PhoneError::NotTenDigits),
    };
    Ok(found)
}

/// Loads libphonenumber's metadata and compiles the patterns a French number goes
/// through, so that the first number published after a start does not pay for it (the
/// metadata of every country is parsed and its patterns checked on first use: a tenth of
/// a second or more, on the request of the first authority to publish in a crisis).
pub fn load_numbering_data() {
    for sample in [
        "05 56 12 34 56",
        "06 12 34 56 78",
        "09 72 12 34 56",
        "0800 12 34 56",
        "0590 12 34 56",
        "0262 12 34 56",
    ] {
        let _ = PhoneNumber::parse(sample);
    }
}

/// libphonenumber's kind of a ten-digit national number read as metropolitan (+33).
fn french_type(n: &[u8; 10]) -> Type {
    let significant: String = n[1..].iter().map(|&b| char::from(b)).collect();
    phonenumber::parse(None, format!("+33{significant}"))
        .map(|number| number.number_type(&DATABASE))
        .unwrap_or(Type::Unknown)
}

/// The second opinion: libphonenumber's data must agree with the prefix rules (see the
/// module documentation, step 3).
fn confirm(
    territory: Territory,
    category: Category,
    e164: &str,
    significant: &str,
) -> Result<(), PhoneError> {
    let parsed = phonenumber::parse(None, e164).map_err(|_| PhoneError::Unassigned)?;
    let same_code = parsed.code().value().to_string() == territory.country_code();
    // What the crate's E.164 formatter writes ("+", the code, the national number with
    // its leading zeros), without the formatter: it also searches the country's display
    // formats with their patterns, which E.164 never uses (a sixth of a publication's check).
    let same_e164 = format!("+{}{}", parsed.code().value(), parsed.national()) == e164;
    if !same_code || !same_e164 {
        return Err(PhoneError::Unassigned);
    }

    let kind = parsed.number_type(&DATABASE);
    if matches!(kind, Type::PremiumRate | Type::SharedCost) {
        return Err(PhoneError::PremiumRate);
    }
    let expected = category.expected_types().contains(&kind);
    if territory == Territory::Metropole {
        // For +33, whose one region is FR, the crate's `is_valid()` is exactly
        // `number_type(FR) != Unknown`: the kind just computed, not a second pass over
        // every type's patterns (`metropolitan_validity_is_the_kind` checks it).
        if kind == Type::Unknown || !expected {
            return Err(PhoneError::Unassigned);
        }
    } else {
        let in_plan = DATABASE
            .by_id(territory.region())
            .is_some_and(|meta| meta.descriptors().general().is_match(significant));
        if !in_plan || !(expected || kind == Type::Unknown) {
            return Err(PhoneError::Unassigned);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    fn ok(input: &str) -> PhoneNumber {
        match PhoneNumber::parse(input) {
            Ok(number) => number,
            Err(e) => panic!("{input:?} was refused: {e}"),
        }
    }

    fn err(input: &str) -> PhoneError {
        match PhoneNumber::parse(input) {
            Ok(number) => panic!("{input:?} was accepted as {number:?}"),
            Err(e) => e,
        }
    }

    /// Accepted, with this E.164 form and no warning.
    fn accepts(input: &str, e164: &str) {
        let number = ok(input);
        assert_eq!(number.e164(), e164, "{input:?}");
        assert_eq!(number.warning(), None, "{input:?}");
    }

    fn refuses(input: &str, expected: PhoneError) {
        assert_eq!(err(input), expected, "{input:?}");
    }

    /// `confirm` reads the crate's verdicts without its two costly helpers; over every
    /// block of four leading digits of the national plan (and numbers of every overseas
    /// code), both shortcuts must say exactly what the helpers say.
    #[test]
    fn metropolitan_validity_is_the_kind() {
        use phonenumber::Mode;
        let mut checked = 0;
        for block in 1000..10_000u32 {
            for tail in ["00000", "12345", "56789", "99999"] {
                let e164 = format!("+33{block}{tail}");
                let Ok(parsed) = phonenumber::parse(None, &e164) else {
                    continue;
                };
                let kind = parsed.number_type(&DATABASE);
                assert_eq!(parsed.is_valid(), kind != Type::Unknown, "{e164}");
                assert_eq!(
                    parsed.format().mode(Mode::E164).to_string(),
                    format!("+{}{}", parsed.code().value(), parsed.national()),
                    "{e164}"
                );
                checked += 1;
            }
        }
        for e164 in ["+590590123456", "+262262123456", "+508412345", "+687123456"] {
            let parsed = phonenumber::parse(None, e164).expect("parses");
            assert_eq!(
                parsed.format().mode(Mode::E164).to_string(),
                format!("+{}{}", parsed.code().value(), parsed.national()),
            );
        }
        assert!(checked > 30_000, "only {checked} numbers parsed");
    }

    // ---- accepted metropolitan ranges ----

    #[test]
    fn geographic_01_to_05() {
        accepts("01 40 20 50 50", "+33140205050");
        accepts("02 99 28 35 35", "+33299283535");
        accepts("03 86 94 54 04", "+33386945404");
        accepts("04 71 02 02 02", "+33471020202");
        accepts("05 56 12 34 56", "+33556123456");
    }

    #[test]
    fn geographic_range_edges() {
        accepts("01 00 00 00 00", "+33100000000");
        accepts("05 99 99 99 99", "+33599999999");
        accepts("04 10 12 34 56", "+33410123456");
        // 0260/0261 and 0264-0267 are metropolitan (Nord-Ouest); 0262/0263/0268/0269 are not.
        accepts("02 61 12 34 56", "+33261123456");
        accepts("02 67 12 34 56", "+33267123456");
    }

    #[test]
    fn mobile_06() {
        accepts("06 12 34 56 78", "+33612345678");
        accepts("06 00 00 00 00", "+33600000000");
        accepts("06 38 12 34 56", "+33638123456");
        accepts("06 95 12 34 56", "+33695123456");
        accepts("06 99 99 99 99", "+33699999999");
    }

    #[test]
    fn mobile_073_to_079() {
        accepts("07 30 12 34 56", "+33730123456");
        accepts("07 45 12 34 56", "+33745123456");
        accepts("07 99 12 34 56", "+33799123456");
    }

    #[test]
    fn polyvalent_09_around_the_refused_0937_0939() {
        accepts("09 00 00 00 00", "+33900000000");
        accepts("09 36 12 34 56", "+33936123456");
        accepts("09 36 99 99 99", "+33936999999");
        refuses("09 37 00 00 00", PhoneError::NotDialable);
        refuses("09 38 12 34 56", PhoneError::NotDialable);
        refuses("09 39 99 99 99", PhoneError::NotDialable);
        accepts("09 40 00 00 00", "+33940000000");
        accepts("09 47 41 23 45", "+33947412345");
        accepts("09 75 12 34 56", "+33975123456");
        accepts("09 77 12 34 56", "+33977123456");
        accepts("09 99 99 99 99", "+33999999999");
    }

    #[test]
    fn freephone_0800_to_0805_without_warning() {
        accepts("0 800 12 34 56", "+33800123456");
        accepts("0801 12 34 56", "+33801123456");
        accepts("0805 12 34 56", "+33805123456");
    }

    #[test]
    fn ordinary_cost_0806_to_0809_with_warning() {
        for (input, e164) in [
            ("0806 12 34 56", "+33806123456"),
            ("0807 12 34 56", "+33807123456"),
            ("0808 12 34 56", "+33808123456"),
            ("0809 40 00 00", "+33809400000"),
        ] {
            let number = ok(input);
            assert_eq!(number.e164(), e164);
            let warning = number.warning().expect("0806-0809 carry a warning");
            assert!(warning.contains("0806-0809"), "{warning}");
            assert!(warning.contains("not free"), "{warning}");
        }
    }

    // ---- overseas ranges ----

    /// The national form, the international form with the territory's own code and the
    /// +33 form all give the same number.
    fn overseas(national: &str, international: &str, with_33: &str, e164: &str) {
        let number = ok(national);
        assert_eq!(number.e164(), e164, "{national:?}");
        assert_eq!(number.warning(), None);
        assert_eq!(ok(international), number, "{international:?}");
        assert_eq!(ok(with_33), number, "{with_33:?}");
        assert_eq!(ok(e164), number, "{e164:?}");
    }

    #[test]
    fn guadeloupe_saint_barthelemy_saint_martin_590() {
        overseas(
            "0590 12 34 56",
            "+590 590 12 34 56",
            "+33 5 90 12 34 56",
            "+590590123456",
        );
        overseas(
            "0690 12 34 56",
            "+590 690 12 34 56",
            "+33 6 90 12 34 56",
            "+590690123456",
        );
        assert_eq!(ok("0590 12 34 56").national(), "0590123456");
    }

    #[test]
    fn guyane_594() {
        overseas(
            "0594 29 30 00",
            "+594 594 29 30 00",
            "+33 5 94 29 30 00",
            "+594594293000",
        );
        overseas(
            "0694 12 34 56",
            "+594 694 12 34 56",
            "+33 6 94 12 34 56",
            "+594694123456",
        );
    }

    #[test]
    fn martinique_596() {
        overseas(
            "0596 55 12 34",
            "+596 596 55 12 34",
            "+33 5 96 55 12 34",
            "+596596551234",
        );
        overseas(
            "0696 12 34 56",
            "+596 696 12 34 56",
            "+33 6 96 12 34 56",
            "+596696123456",
        );
    }

    #[test]
    fn reunion_262() {
        overseas(
            "0262 12 34 56",
            "+262 262 12 34 56",
            "+33 2 62 12 34 56",
            "+262262123456",
        );
        overseas(
            "0692 12 34 56",
            "+262 692 12 34 56",
            "+33 6 92 12 34 56",
            "+262692123456",
        );
        overseas(
            "0693 12 34 56",
            "+262 693 12 34 56",
            "+33 6 93 12 34 56",
            "+262693123456",
        );
    }

    #[test]
    fn mayotte_262() {
        overseas(
            "0269 61 23 45",
            "+262 269 61 23 45",
            "+33 2 69 61 23 45",
            "+262269612345",
        );
        overseas(
            "0639 26 12 34",
            "+262 639 26 12 34",
            "+33 6 39 26 12 34",
            "+262639261234",
        );
    }

    #[test]
    fn saint_pierre_et_miquelon_508_has_six_digit_subscriber_numbers() {
        overseas(
            "05 08 41 23 45",
            "+508 41 23 45",
            "+33 5 08 41 23 45",
            "+508412345",
        );
        overseas(
            "0508 55 12 34",
            "+508 55 12 34",
            "+33 508 55 12 34",
            "+508551234",
        );
        let number = ok("+508 41 23 45");
        assert_eq!(number.national(), "0508412345");
        assert_eq!(number.display(), "05 08 41 23 45");
        assert_eq!(number.tel_uri(), "tel:+508412345");
        accepts("00508 41 23 45", "+508412345");
        accepts("+508 (0)41 23 45", "+508412345");
        // Nine digits after +508 is not the Saint-Pierre-et-Miquelon plan.
        refuses("+508 508 41 23 45", PhoneError::NotTenDigits);
        refuses("+508 41 23 4", PhoneError::NotTenDigits);
    }

    #[test]
    fn overseas_blocks_the_numbering_data_does_not_list_are_accepted() {
        // libphonenumber knows neither block, but the contract opens the ranges whole.
        accepts("0596 12 34 56", "+596596123456");
        accepts("0639 12 34 56", "+262639123456");
        accepts("+596 596 12 34 56", "+596596123456");
    }

    #[test]
    fn overseas_number_outside_the_territory_plan_is_unassigned() {
        // Saint-Pierre-et-Miquelon subscriber numbers start with 2 to 9.
        refuses("0508 12 34 56", PhoneError::Unassigned);
        refuses("+508 12 34 56", PhoneError::Unassigned);
    }

    #[test]
    fn overseas_code_with_a_number_of_another_territory() {
        refuses("+590 594 12 34 56", PhoneError::CountryCodeMismatch);
        refuses("+596 590 12 34 56", PhoneError::CountryCodeMismatch);
        refuses("+594 696 12 34 56", PhoneError::CountryCodeMismatch);
        refuses("+262 590 12 34 56", PhoneError::CountryCodeMismatch);
        refuses("+262 5 56 12 34 56", PhoneError::CountryCodeMismatch);
        refuses("+590 6 12 34 56 78", PhoneError::CountryCodeMismatch);
        refuses("00590 9 36 12 34 56", PhoneError::CountryCodeMismatch);
    }

    #[test]
    fn overseas_ranges_outside_the_contract() {
        for input in [
            "0263 01 23 45",
            "0268 81 23 45",
            "0691 22 12 34",
            "0697 12 34 56",
            "+596 697 12 34 56",
            "+33 6 97 12 34 56",
            "09 47 51 23 45",
            "09 47 91 23 45",
            "09 76 12 34 56",
        ] {
            refuses(input, PhoneError::UnsupportedOverseasRange);
        }
    }

    // ---- spellings ----

    #[test]
    fn every_spelling_gives_the_same_number() {
        let expected = ok("0556123456");
        for input in [
            "0556123456",
            "05 56 12 34 56",
            "05.56.12.34.56",
            "05-56-12-34-56",
            "05/56/12/34/56",
            "05 - 56 - 12 - 34 - 56",
            "05\u{a0}56\u{a0}12\u{a0}34\u{a0}56",
            "05\u{202f}56\u{202f}12\u{202f}34\u{202f}56",
            "05\u{2009}56\u{2009}12\u{2009}34\u{2009}56",
            "05\u{2011}56\u{2011}12\u{2011}34\u{2011}56",
            "05\t56\t12\t34\t56",
            "  05 56 12 34 56 \n",
            "\u{a0}0556123456\u{3000}",
            "+33556123456",
            "+33 5 56 12 34 56",
            "+33 (0)5 56 12 34 56",
            "+33(0)556123456",
            "+33 (0) 5 56 12 34 56",
            "+33.5.56.12.34.56",
            "+ 33 5 56 12 34 56",
            "+33 0 5 56 12 34 56",
            "+330556123456",
            "0033556123456",
            "0033 5 56 12 34 56",
            "00 33 5 56 12 34 56",
            "0033 (0)5 56 12 34 56",
        ] {
            assert_eq!(ok(input), expected, "{input:?}");
        }
    }

    #[test]
    fn refused_spellings() {
        for input in [
            "05 56 12 34 5a",
            "O5 56 12 34 56",
            "05(0)56123456",
            "(0)5 56 12 34 56",
            "+33 5 (0)56 12 34 56",
            "+33 (0)(0)5 56 12 34 56",
            "+33 (1)5 56 12 34 56",
            "+33 ( 0 )5 56 12 34 56",
            "(05) 56 12 34 56",
            "0556+123456",
            "++33556123456",
            "05 56 12 34 56 ext 12",
            "05 56 12 34 56;ext=12",
            "05,56,12,34,56",
            "05_56_12_34_56",
            "tel:+33556123456",
            "\u{ff10}\u{ff15}\u{ff15}\u{ff16}\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}",
            "\u{0660}\u{0665}\u{0665}\u{0666}\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}",
            "05 56 12 34 56\u{0}",
            "call me",
        ] {
            refuses(input, PhoneError::InvalidCharacters);
        }
    }

    // ---- refusals ----

    #[test]
    fn premium_rate_and_shared_cost() {
        for input in [
            "0810 12 34 56",
            "0811 12 34 56",
            "0820 12 34 56",
            "0825 12 34 56",
            "0890 12 34 56",
            "0899 12 34 56",
            "0899 99 99 99",
            "+33 8 99 12 34 56",
            "0033 810 12 34 56",
            // Outside 081/082/089, refused as premium because the data says so.
            "0836 12 34 56",
            "0840 12 34 56",
            "0860 12 34 56",
            "0884 12 34 56",
        ] {
            refuses(input, PhoneError::PremiumRate);
        }
    }

    #[test]
    fn other_08_ranges_are_not_dialable() {
        // Neither premium rate nor shared cost in the data, refused all the same.
        refuses("0870 12 34 56", PhoneError::NotDialable);
        refuses("0841 12 34 56", PhoneError::NotDialable);
        refuses("0836 04 12 34", PhoneError::NotDialable);
        // Premium rate in the data.
        refuses("0830 12 34 56", PhoneError::PremiumRate);
        refuses("0851 12 34 56", PhoneError::PremiumRate);
    }

    #[test]
    fn ranges_070_to_072_are_not_dialable() {
        for input in [
            "07 00 12 34 56",
            "07 09 00 12 34",
            "07 10 12 34 56",
            "07 20 12 34 56",
            "07 29 99 99 99",
            "+33 7 00 12 34 56",
        ] {
            refuses(input, PhoneError::NotDialable);
        }
    }

    #[test]
    fn unassigned_block_in_an_accepted_range() {
        // libphonenumber's FR data has no 040x block.
        refuses("04 00 12 34 56", PhoneError::Unassigned);
        refuses("+33 4 00 12 34 56", PhoneError::Unassigned);
    }

    #[test]
    fn short_codes_say_so() {
        for input in [
            "15", "17", "18", "112", "114", "115", "119", "196", "1 1 2", "3949", "3237", "116000",
            "116 117", "118218", "118 712", "+33 112", "+33 3949", "0033 15",
        ] {
            refuses(input, PhoneError::ShortCode);
        }
        assert!(PhoneError::ShortCode.to_string().contains("short code"));
    }

    #[test]
    fn wrong_number_of_digits() {
        for input in [
            "05 56 12 34 5",
            "05 56 12 34 567",
            "055612345",
            "05561234567",
            "556123456",
            "5561234567",
            "0",
            "1",
            "42",
            "1234567",
            "+33 5 56 12 34",
            "+33 5 56 12 34 567",
            "+33 (0)0 5 56 12 34 56",
            "+33 0 56 12 34 56",
            "+",
            "00",
            "0033",
            "+0556123456",
            "-",
            ". .",
            "0 0",
        ] {
            refuses(input, PhoneError::NotTenDigits);
        }
    }

    #[test]
    fn foreign_numbers() {
        for input in [
            "+44 20 7946 0000",
            "+44 (0)20 7946 0000",
            "0044 20 7946 0000",
            "+1 202 555 0123",
            "001 202 555 0123",
            "+32 2 123 45 67",
            "+34 912 34 56 78",
            "+269 773 12 34",
            "+687 27 12 34",
            "+689 40 12 34 56",
            "+3",
            "+59",
        ] {
            refuses(input, PhoneError::Foreign);
        }
    }

    #[test]
    fn empty_input() {
        refuses("", PhoneError::Empty);
        refuses("   ", PhoneError::Empty);
        refuses("\t\n\u{a0}", PhoneError::Empty);
    }

    #[test]
    fn long_input_is_bounded() {
        refuses(&"0".repeat(10 * 1024), PhoneError::TooLong);
        refuses(&"05 56 12 34 56 ".repeat(700), PhoneError::TooLong);
        // Surrounding whitespace does not count; the content does.
        let padded = format!("{}05 56 12 34 56{}", " ".repeat(5000), "\n".repeat(5000));
        assert_eq!(ok(&padded), ok("0556123456"));

        let at_limit = format!("05{}56 12 34 56", " ".repeat(MAX_INPUT_LEN - 13));
        assert_eq!(at_limit.len(), MAX_INPUT_LEN);
        assert_eq!(ok(&at_limit), ok("0556123456"));
        let over_limit = format!("05{}56 12 34 56", " ".repeat(MAX_INPUT_LEN - 12));
        refuses(&over_limit, PhoneError::TooLong);
    }

    // ---- output forms ----

    #[test]
    fn the_four_output_forms() {
        let number = ok("+33 (0)5 56 12 34 56");
        assert_eq!(number.e164(), "+33556123456");
        assert_eq!(number.national(), "0556123456");
        assert_eq!(number.display(), "05 56 12 34 56");
        assert_eq!(number.tel_uri(), "tel:+33556123456");
        assert_eq!(number.to_string(), "05 56 12 34 56");

        let free = ok("0800 12 34 56");
        assert_eq!(free.display(), "08 00 12 34 56");
        assert_eq!(free.tel_uri(), "tel:+33800123456");

        let overseas = ok("+590 590 12 34 56");
        assert_eq!(overseas.e164(), "+590590123456");
        assert_eq!(overseas.national(), "0590123456");
        assert_eq!(overseas.display(), "05 90 12 34 56");
        assert_eq!(overseas.tel_uri(), "tel:+590590123456");
    }

    #[test]
    fn every_output_form_parses_back_to_the_same_number() {
        for input in [
            "04 71 02 02 02",
            "07 99 12 34 56",
            "0806 12 34 56",
            "0590 12 34 56",
            "0639 26 12 34",
            "0508 41 23 45",
        ] {
            let number = ok(input);
            assert_eq!(ok(number.e164()), number, "{input:?}");
            assert_eq!(ok(number.national()), number, "{input:?}");
            assert_eq!(ok(&number.display()), number, "{input:?}");
            assert_eq!(ok(&number.to_string()), number, "{input:?}");
        }
    }

    #[test]
    fn from_str_and_equality() {
        let a: PhoneNumber = "03 86 94 54 04".parse().expect("valid");
        let b: PhoneNumber = "+33386945404".parse().expect("valid");
        assert_eq!(a, b);
        let hash = |n: &PhoneNumber| {
            let mut h = DefaultHasher::new();
            n.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(a, ok("03 86 94 54 05"));
        assert_eq!(
            "0899 12 34 56".parse::<PhoneNumber>(),
            Err(PhoneError::PremiumRate)
        );
    }

    #[test]
    fn error_messages_are_distinct_and_actionable() {
        let all = [
            PhoneError::Empty,
            PhoneError::TooLong,
            PhoneError::InvalidCharacters,
            PhoneError::ShortCode,
            PhoneError::PremiumRate,
            PhoneError::NotTenDigits,
            PhoneError::Foreign,
            PhoneError::CountryCodeMismatch,
            PhoneError::NotDialable,
            PhoneError::UnsupportedOverseasRange,
            PhoneError::Unassigned,
        ];
        let messages: std::collections::HashSet<String> =
            all.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), all.len());
        assert!(PhoneError::TooLong.to_string().contains("64"));
        assert!(PhoneError::NotTenDigits.to_string().contains("ten digits"));
    }

    // ---- serde ----

    #[test]
    fn serializes_as_the_four_forms() {
        let value = serde_json::to_value(ok("05.56.12.34.56")).expect("serializes");
        assert_eq!(
            value,
            serde_json::json!({
                "e164": "+33556123456",
                "national": "0556123456",
                "display": "05 56 12 34 56",
                "tel_uri": "tel:+33556123456",
            })
        );
        let text = serde_json::to_string(&ok("0590 12 34 56")).expect("serializes");
        assert_eq!(
            text,
            r#"{"e164":"+590590123456","national":"0590123456","display":"05 90 12 34 56","tel_uri":"tel:+590590123456"}"#
        );
    }

    #[test]
    fn deserializes_from_a_string_through_parse() {
        let number: PhoneNumber =
            serde_json::from_str(r#""+33 (0)4 71 02 02 02""#).expect("deserializes");
        assert_eq!(number, ok("0471020202"));

        let error = serde_json::from_str::<PhoneNumber>(r#""0899 12 34 56""#)
            .expect_err("premium rate is refused");
        assert!(
            error
                .to_string()
                .contains(&PhoneError::PremiumRate.to_string()),
            "{error}"
        );
        let error = serde_json::from_str::<PhoneNumber>(r#""112""#).expect_err("short code");
        assert!(error.to_string().contains("short code"), "{error}");
        assert!(serde_json::from_str::<PhoneNumber>("556123456").is_err());
        assert!(serde_json::from_str::<PhoneNumber>("null").is_err());
    }

    #[test]
    fn serde_round_trip() {
        for input in [
            "0556123456",
            "0809 12 34 56",
            "0692 12 34 56",
            "0508 41 23 45",
        ] {
            let number = ok(input);
            let json = serde_json::to_string(&number).expect("serializes");
            let back: PhoneNumber = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, number, "{json}");
            let from_e164: PhoneNumber =
                serde_json::from_value(serde_json::Value::String(number.e164().to_owned()))
                    .expect("deserializes");
            assert_eq!(from_e164, number);
        }
    }

    #[test]
    fn deserializing_an_object_checks_it() {
        let only_e164: PhoneNumber =
            serde_json::from_str(r#"{"e164":"+33556123456"}"#).expect("deserializes");
        assert_eq!(only_e164, ok("0556123456"));
        for bad in [
            r#"{"e164":"+33556123456","national":"0556123457"}"#,
            r#"{"e164":"+33556123456","display":"05 56 12 34 57"}"#,
            r#"{"e164":"+33556123456","tel_uri":"tel:+33556123457"}"#,
            r#"{"e164":"05 56 12 34 56"}"#,
            r#"{"e164":"+33899123456"}"#,
            r#"{"national":"0556123456"}"#,
            r#"{"e164":"+33556123456","e164":"+33556123456"}"#,
            r#"{"e164":"+33556123456","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<PhoneNumber>(bad).is_err(), "{bad}");
        }
    }

    // ---- the numbering data this module relies on ----

    /// The assumptions about libphonenumber's data that the rules above rely on. If an
    /// upgrade of the crate breaks one, review the prefix rules.
    #[test]
    fn stored_numbers_read_back_as_they_were_parsed() {
        for written in [
            "05 56 12 34 56",
            "0590 12 34 56",
            "+508 41 23 45",
            "0262 12 34 56",
        ] {
            let parsed = PhoneNumber::parse(written).expect("valid");
            let stored = PhoneNumber::from_stored(parsed.e164()).expect("reads back");
            assert_eq!(stored, parsed, "{written}");
            assert_eq!(stored.display(), parsed.display());
        }
        // The numbering plan is still applied: a stored premium or malformed number is
        // refused rather than served.
        assert!(PhoneNumber::from_stored("+33899123456").is_err());
        assert!(PhoneNumber::from_stored("+3355612").is_err());
    }

    #[test]
    fn numbering_data_still_matches_the_assumptions() {
        let lib = |e164: &str| {
            let n = phonenumber::parse(None, e164).expect("parses");
            (n.is_valid(), n.number_type(&DATABASE))
        };
        // The crate alone would accept premium rate and shared cost.
        assert_eq!(lib("+33899123456"), (true, Type::PremiumRate));
        assert_eq!(lib("+33810123456"), (true, Type::SharedCost));
        // Overseas numbers are invalid as +33 but valid with their own code.
        assert!(!lib("+33590123456").0);
        assert!(lib("+590590123456").0);
        // The ranges refused as UnsupportedOverseasRange are valid +33 numbers to the crate's
        // FR data, but belong to an overseas code in its overseas data.
        for (as_33, overseas) in [
            ("+33976123456", "+594976123456"),
            ("+33947512345", "+590947512345"),
            ("+33263012345", "+262263012345"),
            ("+33268812345", "+262268812345"),
        ] {
            assert!(lib(as_33).0, "{as_33}");
            assert!(lib(overseas).0, "{overseas}");
        }
        assert!(lib("+590691221234").0);
        assert!(lib("+596697123456").0);
        // Block-level gaps in the overseas data.
        assert_eq!(lib("+596596123456"), (false, Type::Unknown));
        assert_eq!(lib("+262639123456"), (false, Type::Unknown));
        // Saint-Pierre-et-Miquelon numbers have six digits after +508.
        assert_eq!(lib("+508412345"), (true, Type::FixedLine));
        // No short-number support.
        assert_eq!(lib("+33112"), (false, Type::Unknown));
    }
}
