//! Domain types that validate on construction ("parse, don't validate"): once a value of
//! one of these types exists, it is well-formed, so the rest of the code never re-checks it.

mod codes;
mod phone;
mod roles;
mod territory;

pub use codes::{CodeError, DepartementCode, InseeCode, Postcode, ServiceCode};
pub use phone::{load_numbering_data, PhoneError, PhoneNumber};
pub use roles::{OrganizationKind, Role};
pub use territory::{
    Geography, Scope, ScopeError, Territory, TerritoryError, TerritoryKind, NATIONAL_CODE,
};
