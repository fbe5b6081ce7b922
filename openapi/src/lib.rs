//! The wire contract of Ferrodactyl: every request and response body of the
//! Application, Client, Remote and Wings APIs as serde + utoipa types, a typed HTTP
//! client for them, and the helpers that print Pterodactyl's timestamp formats.
//!
//! One crate owns each wire format so a field renamed here is renamed everywhere:
//! panel-api serialises these types, wings serialises the daemon ones, the bot and
//! the tests read them back through [`client`].

pub mod application;
pub mod client;
pub mod client_api;
pub mod envelope;
pub mod remote;
pub mod time;
pub mod wings;

pub use envelope::{ErrorEnvelope, ErrorObject, Item, List, Pagination};
