//! The API test suite: one binary, every test on SQLite and, when
//! `RELAI_TEST_POSTGRES_URL` is set, on PostgreSQL.

mod helpers;

mod authorities;
mod cap;
mod cluster;
mod conventions;
mod durability;
mod feeds;
mod lookup;
mod moderation;
mod numbers;
mod openapi;
mod operations;
mod owasp;
mod reference;
mod seeding;
mod snapshot;
mod tokens;
mod webhooks;
mod writes;
