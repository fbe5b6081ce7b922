//! Benchmarks for Ferrodactyl. `bench-application` measures panel-api's Application
//! API under load against the ceiling set by PostgreSQL itself: pgbench running the
//! very statements the handler issued, captured from the server's statement log;
//! `bench-client` does the same for the Client API. `harness` holds what they share.

pub mod harness;
pub mod load;
pub mod pgbench;
pub mod proc;
pub mod seed;
pub mod sqllog;
