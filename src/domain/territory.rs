//! Territories (national, defence zone, département, commune) and authority scopes.

use std::fmt;

use super::codes::{CodeError, DepartementCode, InseeCode, ServiceCode};

/// The level of a territory, from the widest to the narrowest.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TerritoryKind {
    National,
    Zone,
    Departement,
    Commune,
}

impl TerritoryKind {
    pub const ALL: [TerritoryKind; 4] = [
        TerritoryKind::National,
        TerritoryKind::Zone,
        TerritoryKind::Departement,
        TerritoryKind::Commune,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TerritoryKind::National => "national",
            TerritoryKind::Zone => "zone",
            TerritoryKind::Departement => "departement",
            TerritoryKind::Commune => "commune",
        }
    }

    pub fn parse(s: &str) -> Result<Self, TerritoryError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(TerritoryError::Kind)
    }
}

impl fmt::Display for TerritoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a territory or a scope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerritoryError {
    #[error("territory kind must be one of national, zone, departement, commune")]
    Kind,
    #[error("the national territory has the code FR")]
    National,
    #[error("a zone is named as in the reference data, e.g. Sud-Ouest, Paris, Antilles")]
    Zone,
    #[error(transparent)]
    Code(#[from] CodeError),
}

/// A territory a number or an outage applies to. Well-formed by construction; whether it
/// exists (a real commune, a known zone) is checked against the reference data by the
/// directory, which knows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Territory {
    National,
    Zone(String),
    Departement(DepartementCode),
    Commune(InseeCode),
}

/// The code of the national territory.
pub const NATIONAL_CODE: &str = "FR";

impl Territory {
    pub fn parse(kind: &str, code: &str) -> Result<Self, TerritoryError> {
        Self::from_parts(TerritoryKind::parse(kind.trim())?, code)
    }

    pub fn from_parts(kind: TerritoryKind, code: &str) -> Result<Self, TerritoryError> {
        let code = code.trim();
        Ok(match kind {
            TerritoryKind::National if code.eq_ignore_ascii_case(NATIONAL_CODE) => {
                Territory::National
            }
            TerritoryKind::National => return Err(TerritoryError::National),
            TerritoryKind::Zone => {
                let plausible = !code.is_empty()
                    && code.chars().count() <= 64
                    && code
                        .chars()
                        .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '\'');
                if !plausible {
                    return Err(TerritoryError::Zone);
                }
                Territory::Zone(code.to_owned())
            }
            TerritoryKind::Departement => Territory::Departement(DepartementCode::parse(code)?),
            TerritoryKind::Commune => Territory::Commune(InseeCode::parse(code)?),
        })
    }

    pub fn kind(&self) -> TerritoryKind {
        match self {
            Territory::National => TerritoryKind::National,
            Territory::Zone(_) => TerritoryKind::Zone,
            Territory::Departement(_) => TerritoryKind::Departement,
            Territory::Commune(_) => TerritoryKind::Commune,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Territory::National => NATIONAL_CODE,
            Territory::Zone(z) => z,
            Territory::Departement(d) => d.as_str(),
            Territory::Commune(c) => c.as_str(),
        }
    }
}

impl fmt::Display for Territory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.code())
    }
}

/// Knows which territories contain which: implemented by the directory from the
/// reference data.
pub trait Geography {
    /// The territories that contain `t`, from the narrowest to the national territory,
    /// `t` itself excluded. Unknown territories have only the national one above them.
    fn ancestors(&self, t: &Territory) -> Vec<Territory>;
}

/// What an organization may act on: one service (or `*` for all) in one territory and
/// everything inside it. Written `SERVICE:KIND:CODE`, e.g. `18:departement:33`,
/// `*:departement:33`, `17:commune:89387`, `*:national:FR`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `None` means every service.
    service: Option<ServiceCode>,
    territory: Territory,
}

/// Why a scope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("a scope is written SERVICE:KIND:CODE, e.g. 18:departement:33 or *:commune:89387")]
    Shape,
    #[error("scope service: {0}")]
    Service(CodeError),
    #[error("scope territory: {0}")]
    Territory(TerritoryError),
}

impl Scope {
    pub fn new(service: Option<ServiceCode>, territory: Territory) -> Self {
        Self { service, territory }
    }

    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(service), Some(kind), Some(code)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ScopeError::Shape);
        };
        let service = match service {
            "*" => None,
            code => Some(ServiceCode::parse(code).map_err(ScopeError::Service)?),
        };
        let territory = Territory::parse(kind, code).map_err(ScopeError::Territory)?;
        Ok(Self { service, territory })
    }

    pub fn service(&self) -> Option<&ServiceCode> {
        self.service.as_ref()
    }

    pub fn territory(&self) -> &Territory {
        &self.territory
    }

    /// Whether this scope allows acting on `service` in `target`: the service matches and
    /// `target` is the scope's territory or lies inside it.
    pub fn covers(&self, service: &ServiceCode, target: &Territory, geo: &impl Geography) -> bool {
        if self.service.as_ref().is_some_and(|s| s != service) {
            return false;
        }
        *target == self.territory || geo.ancestors(target).contains(&self.territory)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service {
            Some(s) => write!(f, "{s}:{}", self.territory),
            None => write!(f, "*:{}", self.territory),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-commune France: Bordeaux in Gironde (Sud-Ouest), Sens in Yonne (Est).
    struct TinyFrance;
    impl Geography for TinyFrance {
        fn ancestors(&self, t: &Territory) -> Vec<Territory> {
            let dep = |c: &str| Territory::Departement(DepartementCode::parse(c).unwrap());
            let zone = |z: &str| Territory::Zone(z.to_owned());
            match t.code() {
                "33063" => vec![dep("33"), zone("Sud-Ouest"), Territory::National],
                "89387" => vec![dep("89"), zone("Est"), Territory::National],
                "33" => vec![zone("Sud-Ouest"), Territory::National],
                "89" => vec![zone("Est"), Territory::National],
                "FR" => vec![],
                _ => vec![Territory::National],
            }
        }
    }

    fn t(kind: &str, code: &str) -> Territory {
        Territory::parse(kind, code).unwrap()
    }
    fn svc(code: &str) -> ServiceCode {
        ServiceCode::parse(code).unwrap()
    }

    #[test]
    fn territories_parse_by_kind() {
        assert_eq!(t("national", "FR"), Territory::National);
        assert_eq!(t("national", "fr").code(), "FR");
        assert_eq!(t("zone", "Sud-Ouest").code(), "Sud-Ouest");
        assert_eq!(
            t("zone", "Sud de l'océan Indien").kind(),
            TerritoryKind::Zone
        );
        assert_eq!(t("departement", "2a").code(), "2A");
        assert_eq!(t("commune", "75116").code(), "75116");
        assert_eq!(
            Territory::parse("national", "33"),
            Err(TerritoryError::National)
        );
        assert_eq!(Territory::parse("region", "75"), Err(TerritoryError::Kind));
        assert_eq!(
            Territory::parse("Commune", "33063"),
            Err(TerritoryError::Kind)
        );
        assert_eq!(Territory::parse("zone", ""), Err(TerritoryError::Zone));
        assert_eq!(
            Territory::parse("zone", "Sud;DROP"),
            Err(TerritoryError::Zone)
        );
        assert!(matches!(
            Territory::parse("departement", "20"),
            Err(TerritoryError::Code(_))
        ));
        assert!(matches!(
            Territory::parse("commune", "33000x"),
            Err(TerritoryError::Code(_))
        ));
        assert_eq!(t("commune", "33063").to_string(), "commune:33063");
    }

    #[test]
    fn scope_parses_and_prints() {
        for s in [
            "18:departement:33",
            "*:departement:33",
            "17:commune:89387",
            "*:national:FR",
            "15:zone:Sud-Ouest",
        ] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Scope::parse("18:departement"), Err(ScopeError::Shape));
        assert_eq!(Scope::parse(""), Err(ScopeError::Shape));
        assert!(matches!(
            Scope::parse("x:departement:33"),
            Err(ScopeError::Service(_))
        ));
        assert!(matches!(
            Scope::parse("18:county:33"),
            Err(ScopeError::Territory(_))
        ));
    }

    #[test]
    fn scope_covers_its_territory_and_what_is_inside() {
        let sdis33 = Scope::parse("18:departement:33").unwrap();
        assert!(sdis33.covers(&svc("18"), &t("departement", "33"), &TinyFrance));
        assert!(sdis33.covers(&svc("18"), &t("commune", "33063"), &TinyFrance));
        assert!(!sdis33.covers(&svc("17"), &t("commune", "33063"), &TinyFrance));
        assert!(!sdis33.covers(&svc("18"), &t("commune", "89387"), &TinyFrance));
        assert!(!sdis33.covers(&svc("18"), &Territory::National, &TinyFrance));
        assert!(!sdis33.covers(&svc("18"), &t("zone", "Sud-Ouest"), &TinyFrance));

        let prefecture = Scope::parse("*:departement:89").unwrap();
        assert!(prefecture.covers(&svc("15"), &t("commune", "89387"), &TinyFrance));
        assert!(prefecture.covers(&svc("112"), &t("departement", "89"), &TinyFrance));
        assert!(!prefecture.covers(&svc("15"), &t("departement", "33"), &TinyFrance));

        let ministry = Scope::parse("*:national:FR").unwrap();
        assert!(ministry.covers(&svc("17"), &t("commune", "33063"), &TinyFrance));
        assert!(ministry.covers(&svc("17"), &Territory::National, &TinyFrance));
    }
}
