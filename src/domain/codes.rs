//! Identifier codes: postcodes, INSEE commune codes, département codes and service codes.

use std::fmt;

/// Why a code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a postcode is exactly 5 digits, e.g. 33000")]
    Postcode,
    #[error("an INSEE commune code is 5 characters: 2 digits (or 2A/2B for Corsica) and 3 digits, e.g. 33063, 2A004, 97101")]
    Insee,
    #[error(
        "a département code is 2 digits, 2A or 2B, or 3 digits from 971 to 989, e.g. 33, 2A, 971"
    )]
    Departement,
    #[error("a service code is the short number it replaces: 2 to 6 digits, e.g. 15, 17, 18, 112, 116117")]
    Service,
}

/// The most characters a code has: `116117`, a service; the others have five at most.
const MAX_CODE: usize = 6;

/// A code of at most [`MAX_CODE`] ASCII characters, kept inline. A number of the snapshot
/// holds its territory's code, and so does every key of the maps by territory: as a
/// `String` each was an allocation of its own (a hundred thousand numbers, 3-5 MB).
macro_rules! string_code {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            len: u8,
            bytes: [u8; MAX_CODE],
        }

        impl $name {
            /// The code as written in the reference data.
            pub fn as_str(&self) -> &str {
                // Checked ASCII when made (`inline`): never falls back.
                std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
            }

            /// `code`, already checked by the caller's `parse`; `None` if it is not ASCII or
            /// longer than [`MAX_CODE`] (no code is).
            fn inline(code: &str) -> Option<Self> {
                if code.len() > MAX_CODE || !code.is_ascii() {
                    return None;
                }
                let mut bytes = [0; MAX_CODE];
                bytes[..code.len()].copy_from_slice(code.as_bytes());
                Some(Self {
                    len: code.len() as u8,
                    bytes,
                })
            }
        }

        // Ordered, hashed and shown as the text of the code, as the `String` it once was.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_str()).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = CodeError;
            fn from_str(s: &str) -> Result<Self, CodeError> {
                Self::parse(s)
            }
        }
    };
}

string_code!(
    /// A French postcode (code postal): five digits. A postcode is not a territory: it
    /// resolves to one or several communes, sometimes in several départements.
    Postcode
);
string_code!(
    /// An INSEE (COG) commune code, also used for the municipal arrondissements of Paris,
    /// Lyon and Marseille: `33063`, `2A004` (Corsica), `97101` (overseas), `75116`.
    InseeCode
);
string_code!(
    /// A département code: `01`..`95` (without `20`), `2A`, `2B`, and `971`..`989` for the
    /// overseas départements and collectivités.
    DepartementCode
);
string_code!(
    /// The short number a service is reached by in normal times: `15`, `17`, `18`, `112`,
    /// `114`, `115`, `119`, `116000`, `116117`, `191`, `196`, `197`.
    ServiceCode
);

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Postcode {
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.len() == 5 && all_digits(s) {
            Self::inline(s).ok_or(CodeError::Postcode)
        } else {
            Err(CodeError::Postcode)
        }
    }
}

impl InseeCode {
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.len() != 5 || !s.is_ascii() {
            return Err(CodeError::Insee);
        }
        let upper = s.to_ascii_uppercase();
        let (head, tail) = upper.split_at(2);
        let head_ok = match head {
            "2A" | "2B" => true,
            "20" => false, // Corsica has had 2A/2B since 1976; 20xxx is a postcode, not an INSEE code
            _ => all_digits(head) && head != "00",
        };
        if head_ok && all_digits(tail) {
            Self::inline(&upper).ok_or(CodeError::Insee)
        } else {
            Err(CodeError::Insee)
        }
    }

    /// The département this code belongs to by construction: the first two characters,
    /// or three for the overseas codes (97x, 98x).
    pub fn departement(&self) -> DepartementCode {
        let len = if self.bytes.starts_with(b"97") || self.bytes.starts_with(b"98") {
            3
        } else {
            2
        };
        let mut bytes = [0; MAX_CODE];
        bytes[..len].copy_from_slice(&self.bytes[..len]);
        DepartementCode {
            len: len as u8,
            bytes,
        }
    }
}

impl DepartementCode {
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim().to_ascii_uppercase();
        let ok = match s.len() {
            2 if s == "2A" || s == "2B" => true,
            2 => all_digits(&s) && s != "00" && s != "20" && s.as_str() <= "95",
            3 => all_digits(&s) && ("971".."990").contains(&s.as_str()),
            _ => false,
        };
        if ok {
            Self::inline(&s).ok_or(CodeError::Departement)
        } else {
            Err(CodeError::Departement)
        }
    }
}

impl ServiceCode {
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if (2..=MAX_CODE).contains(&s.len()) && all_digits(s) {
            Self::inline(s).ok_or(CodeError::Service)
        } else {
            Err(CodeError::Service)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_order_hash_and_show_as_their_text() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        // Of different lengths: the order of the text, not of the length first.
        let texts = ["971", "2A", "01", "976", "95", "2B", "988", "10"];
        let mut codes: Vec<DepartementCode> = texts
            .iter()
            .map(|t| DepartementCode::parse(t).unwrap())
            .collect();
        codes.sort();
        let mut sorted = texts.to_vec();
        sorted.sort();
        assert_eq!(
            codes
                .iter()
                .map(DepartementCode::as_str)
                .collect::<Vec<_>>(),
            sorted
        );
        let hash = |h: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            h(&mut hasher);
            hasher.finish()
        };
        let code = InseeCode::parse("2a004").unwrap();
        assert_eq!(
            hash(&|h| code.hash(h)),
            hash(&|h| "2A004".hash(h)),
            "hashed as its text"
        );
        assert_eq!(format!("{code:?}"), "InseeCode(\"2A004\")");
        assert_eq!(code.to_string(), "2A004");
        assert_eq!(code.departement().as_str(), "2A");
        assert_eq!(
            InseeCode::parse("97101").unwrap().departement().as_str(),
            "971"
        );
        assert_eq!(ServiceCode::parse("116117").unwrap().as_str(), "116117");
        assert_eq!(ServiceCode::parse("1161170"), Err(CodeError::Service));
    }

    #[test]
    fn postcode_is_five_digits() {
        assert_eq!(Postcode::parse("33000").unwrap().as_str(), "33000");
        assert_eq!(Postcode::parse(" 05110 ").unwrap().as_str(), "05110");
        assert_eq!(Postcode::parse("97133").unwrap().as_str(), "97133");
        for bad in ["", "1234", "123456", "abc", "3300a", "33 000", "٣٣٠٠٠"] {
            assert_eq!(Postcode::parse(bad), Err(CodeError::Postcode), "{bad:?}");
        }
    }

    #[test]
    fn insee_accepts_corsica_overseas_and_arrondissements() {
        for ok in [
            "33063", "2A004", "2B033", "97101", "97701", "98818", "75116", "13201", "01001",
        ] {
            assert_eq!(InseeCode::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(InseeCode::parse("2a004").unwrap().as_str(), "2A004");
        for bad in [
            "20004", "2C004", "00001", "3306", "330633", "33O63", "", "2A0O4",
        ] {
            assert_eq!(InseeCode::parse(bad), Err(CodeError::Insee), "{bad:?}");
        }
    }

    #[test]
    fn insee_knows_its_departement() {
        let dep = |s: &str| {
            InseeCode::parse(s)
                .unwrap()
                .departement()
                .as_str()
                .to_owned()
        };
        assert_eq!(dep("33063"), "33");
        assert_eq!(dep("2A004"), "2A");
        assert_eq!(dep("97101"), "971");
        assert_eq!(dep("97701"), "977");
        assert_eq!(dep("98818"), "988");
        assert_eq!(dep("75116"), "75");
    }

    #[test]
    fn departement_codes() {
        for ok in ["01", "33", "95", "2A", "2B", "971", "976", "989"] {
            assert!(DepartementCode::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(DepartementCode::parse("2b").unwrap().as_str(), "2B");
        for bad in ["00", "20", "96", "970", "990", "1", "0033", "", "2C"] {
            assert_eq!(
                DepartementCode::parse(bad),
                Err(CodeError::Departement),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn service_codes() {
        for ok in ["15", "17", "18", "112", "116000", "116117"] {
            assert!(ServiceCode::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["1", "1161170", "1a", "", "SAMU"] {
            assert_eq!(ServiceCode::parse(bad), Err(CodeError::Service), "{bad:?}");
        }
    }
}
