//! The reference geography of France, loaded once from storage: communes, municipal
//! arrondissements, postcodes, départements, defence zones, and the service catalogue.
//! It changes only when the reference data is reseeded.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;

use crate::db::models::{CommuneRow, DepartementRow, PostcodeRow, ServiceRow};
use crate::db::{schema, DbConnection};
use crate::domain::{Geography, Territory};
use crate::model::{Service, TerritoryRef};

/// A commune or a municipal arrondissement (Paris, Lyon, Marseille).
#[derive(Debug, Clone)]
pub struct Commune {
    pub insee: String,
    pub name: String,
    /// For an arrondissement, the commune it belongs to.
    pub parent: Option<String>,
    pub departement: String,
    pub population: Option<i64>,
    /// Centroid, longitude then latitude; missing for a few overseas communes.
    pub centroid: Option<(f64, f64)>,
}

impl Commune {
    pub fn is_arrondissement(&self) -> bool {
        self.parent.is_some()
    }
}

/// A département or overseas collectivité, as stored: its `zone` (de défense et de
/// sécurité) is none for Saint-Pierre-et-Miquelon and Clipperton; `kind` is metro, drom or
/// com; `chef_lieu` is the INSEE code of its chef-lieu.
pub type Departement = DepartementRow;

/// The reference geography and catalogue.
#[derive(Debug, Default)]
pub struct Atlas {
    communes: HashMap<String, Commune>,
    departements: Vec<Departement>,
    departement_index: HashMap<String, usize>,
    zones: BTreeSet<String>,
    /// Postcode to INSEE codes, communes and arrondissements alike, sorted.
    postcodes: HashMap<String, Vec<String>>,
    services: Vec<Service>,
}

impl Atlas {
    /// Reads the reference data from storage.
    pub fn load(conn: &mut DbConnection) -> QueryResult<Atlas> {
        let departements: Vec<DepartementRow> = schema::departements::table
            .select(DepartementRow::as_select())
            .order(schema::departements::code)
            .load(conn)?;
        let communes: Vec<CommuneRow> = schema::communes::table
            .select(CommuneRow::as_select())
            .load(conn)?;
        let postcodes: Vec<PostcodeRow> = schema::postcodes::table
            .select(PostcodeRow::as_select())
            .load(conn)?;
        let services: Vec<ServiceRow> = schema::services::table
            .select(ServiceRow::as_select())
            .order(schema::services::position)
            .load(conn)?;
        Ok(Self::from_rows(departements, communes, postcodes, services))
    }

    pub fn from_rows(
        departements: Vec<DepartementRow>,
        communes: Vec<CommuneRow>,
        postcodes: Vec<PostcodeRow>,
        services: Vec<ServiceRow>,
    ) -> Atlas {
        let departement_index = departements
            .iter()
            .enumerate()
            .map(|(i, d)| (d.code.clone(), i))
            .collect();
        let zones = departements.iter().filter_map(|d| d.zone.clone()).collect();
        let communes = communes
            .into_iter()
            .map(|c| {
                let centroid = c.lon.zip(c.lat);
                let commune = Commune {
                    insee: c.insee.clone(),
                    name: c.name,
                    parent: c.parent_insee,
                    departement: c.departement_code,
                    population: c.population,
                    centroid,
                };
                (c.insee, commune)
            })
            .collect();
        let mut by_postcode: HashMap<String, Vec<String>> = HashMap::new();
        for p in postcodes {
            by_postcode.entry(p.postcode).or_default().push(p.insee);
        }
        for codes in by_postcode.values_mut() {
            codes.sort();
        }
        let services = services
            .into_iter()
            .map(|s| Service {
                code: s.code,
                name: s.name,
                description: s.description,
            })
            .collect();
        Atlas {
            communes,
            departements,
            departement_index,
            zones,
            postcodes: by_postcode,
            services,
        }
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn service(&self, code: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.code == code)
    }

    pub fn departements(&self) -> &[Departement] {
        &self.departements
    }

    pub fn departement(&self, code: &str) -> Option<&Departement> {
        self.departement_index
            .get(code)
            .map(|&i| &self.departements[i])
    }

    pub fn commune(&self, insee: &str) -> Option<&Commune> {
        self.communes.get(insee)
    }

    pub fn communes(&self) -> impl Iterator<Item = &Commune> {
        self.communes.values()
    }

    pub fn zones(&self) -> impl Iterator<Item = &str> {
        self.zones.iter().map(String::as_str)
    }

    /// The INSEE codes a postcode serves (communes and municipal arrondissements).
    pub fn postcode(&self, postcode: &str) -> Option<&[String]> {
        self.postcodes.get(postcode).map(Vec::as_slice)
    }

    /// Every postcode, in no particular order.
    pub fn postcode_codes(&self) -> impl Iterator<Item = &str> {
        self.postcodes.keys().map(String::as_str)
    }

    pub fn postcode_count(&self) -> usize {
        self.postcodes.len()
    }

    /// Communes (not arrondissements) whose name starts with `query`, ignoring case,
    /// accents, hyphens and apostrophes; the most populated first.
    pub fn search_communes(&self, query: &str, limit: usize) -> Vec<&Commune> {
        let wanted = fold(query);
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<&Commune> = self
            .communes
            .values()
            .filter(|c| !c.is_arrondissement() && fold(&c.name).starts_with(&wanted))
            .collect();
        found.sort_by(|a, b| b.population.cmp(&a.population).then(a.insee.cmp(&b.insee)));
        found.truncate(limit);
        found
    }

    /// The postcodes of a commune.
    pub fn postcodes_of(&self, insee: &str) -> Vec<&str> {
        let mut codes: Vec<&str> = self
            .postcodes
            .iter()
            .filter(|(_, communes)| communes.iter().any(|c| c == insee))
            .map(|(p, _)| p.as_str())
            .collect();
        codes.sort_unstable();
        codes
    }

    /// The territory with its name, if it exists in the reference data.
    pub fn describe(&self, t: &Territory) -> Option<TerritoryRef> {
        let name = match t {
            Territory::National => "France".to_owned(),
            Territory::Zone(z) => {
                if !self.zones.contains(z) {
                    return None;
                }
                format!("Zone de défense {z}")
            }
            Territory::Departement(d) => self.departement(d.as_str())?.name.clone(),
            Territory::Commune(c) => self.commune(c.as_str())?.name.clone(),
        };
        Some(TerritoryRef {
            kind: t.kind(),
            code: t.code().to_owned(),
            name,
        })
    }

    /// Like [`Atlas::describe`], for stored rows that were checked when written: a territory
    /// that has since left the reference data keeps its code and gets its code as name.
    pub fn describe_stored(&self, t: &Territory) -> TerritoryRef {
        self.describe(t).unwrap_or_else(|| TerritoryRef {
            kind: t.kind(),
            code: t.code().to_owned(),
            name: t.code().to_owned(),
        })
    }
}

impl Geography for Atlas {
    fn ancestors(&self, t: &Territory) -> Vec<Territory> {
        let departement_chain = |code: &str| -> Vec<Territory> {
            let mut chain = Vec::with_capacity(3);
            if let Some(d) = self.departement(code) {
                if let Ok(t) = Territory::parse("departement", &d.code) {
                    chain.push(t);
                }
                if let Some(zone) = &d.zone {
                    chain.push(Territory::Zone(zone.clone()));
                }
            }
            chain.push(Territory::National);
            chain
        };
        match t {
            Territory::National => Vec::new(),
            Territory::Zone(_) => vec![Territory::National],
            Territory::Departement(d) => {
                let mut chain = departement_chain(d.as_str());
                if self.departement(d.as_str()).is_some() {
                    chain.remove(0);
                }
                chain
            }
            Territory::Commune(c) => match self.commune(c.as_str()) {
                Some(commune) => {
                    let mut chain = Vec::with_capacity(4);
                    if let Some(parent) = &commune.parent {
                        if let Ok(p) = Territory::parse("commune", parent) {
                            chain.push(p);
                        }
                    }
                    chain.extend(departement_chain(&commune.departement));
                    chain
                }
                None => vec![Territory::National],
            },
        }
    }
}

/// Folds a name for search: lower case, no accents, hyphens and apostrophes as spaces.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars().flat_map(char::to_lowercase) {
        let base = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'ç' => 'c',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' | 'ì' => 'i',
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => 'o',
            'û' | 'ü' | 'ú' | 'ù' => 'u',
            'ÿ' => 'y',
            'œ' => {
                out.push_str("oe");
                continue;
            }
            'æ' => {
                out.push_str("ae");
                continue;
            }
            '-' | '\'' | '’' => ' ',
            c => c,
        };
        if !(base == ' ' && out.ends_with(' ')) {
            out.push(base);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folding_ignores_case_accents_and_punctuation() {
        assert_eq!(fold("Saint-Étienne"), "saint etienne");
        assert_eq!(fold("L'Haÿ-les-Roses"), "l hay les roses");
        assert_eq!(fold("  Œuilly "), "oeuilly");
    }
}
