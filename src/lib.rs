//! Relai: substitute emergency numbers for France when the short numbers fail.
//!
//! Writes go through one path (`store`, driven by `state::AppState::write`), public reads
//! are answered from an in-memory snapshot (`directory`), and every write appends to an
//! ordered changes log.

pub mod accounts;
pub mod answers;
pub mod atlas;
pub mod auth;
pub mod backup;
pub mod config;
pub mod db;
pub mod directory;
pub mod domain;
pub mod error;
pub mod feeds;
pub mod follow;
pub mod http;
pub mod idempotency;
pub mod import;
pub mod lookup;
pub mod model;
pub mod moderation;
pub mod net;
pub mod openapi;
pub mod public_number;
pub mod ratelimit;
pub mod routes;
pub mod seed;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
