//! Roles of accounts and kinds of organizations.

use std::fmt;

/// What an account may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages organizations, accounts and tokens; may retire numbers and resolve outages anywhere.
    Admin,
    /// Acts for an SDIS, police, gendarmerie, SAMU or préfecture, inside its organization's scopes.
    Authority,
    /// A digital volunteer: submits and reviews numbers seen elsewhere.
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Authority => "authority",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Authority, Role::Moderator]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an organization.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OrganizationKind {
    Sdis,
    Police,
    Gendarmerie,
    Samu,
    Prefecture,
    Ministry,
    Volunteers,
}

impl OrganizationKind {
    pub const ALL: [OrganizationKind; 7] = [
        OrganizationKind::Sdis,
        OrganizationKind::Police,
        OrganizationKind::Gendarmerie,
        OrganizationKind::Samu,
        OrganizationKind::Prefecture,
        OrganizationKind::Ministry,
        OrganizationKind::Volunteers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrganizationKind::Sdis => "sdis",
            OrganizationKind::Police => "police",
            OrganizationKind::Gendarmerie => "gendarmerie",
            OrganizationKind::Samu => "samu",
            OrganizationKind::Prefecture => "prefecture",
            OrganizationKind::Ministry => "ministry",
            OrganizationKind::Volunteers => "volunteers",
        }
    }

    pub fn parse(s: &str) -> Option<OrganizationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_kinds_round_trip_and_refuse_others() {
        for r in [Role::Admin, Role::Authority, Role::Moderator] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("root"), None);
        for k in OrganizationKind::ALL {
            assert_eq!(OrganizationKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(OrganizationKind::parse("army"), None);
    }
}
