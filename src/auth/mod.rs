//! Authentication: signed tokens (the accounts and scopes that use them come with the
//! authorities issue).

pub mod jwt;
