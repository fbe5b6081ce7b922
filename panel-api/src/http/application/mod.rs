//! The Application API (`/api/application`, reference §6): upstream's 42 routes for
//! admins and their application keys, plus our transfer extension (`transfers`). One module per resource; each exposes its `router()`, its
//! row type and the transformer that prints it (used by other resources' includes).

pub mod databases;
pub mod locations;
pub mod nests;
pub mod nodes;
pub mod servers;
pub mod transfers;
pub mod users;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(nodes::router())
        .merge(locations::router())
        .merge(servers::router())
        .merge(transfers::router())
        .merge(databases::router())
        .merge(nests::router())
}

/// Every route's methods (HEAD follows GET), for the 405 answer. Kept beside the
/// routers; `tests/routing.rs` checks each entry against the real router.
pub const METHODS: &[(&str, &[&str])] = &[
    ("/users", &["GET", "POST"]),
    ("/users/external/{external_id}", &["GET"]),
    ("/users/{user}", &["GET", "PATCH", "DELETE"]),
    ("/nodes", &["GET", "POST"]),
    ("/nodes/deployable", &["GET"]),
    ("/nodes/{node}", &["GET", "PATCH", "DELETE"]),
    ("/nodes/{node}/configuration", &["GET"]),
    ("/nodes/{node}/allocations", &["GET", "POST"]),
    ("/nodes/{node}/allocations/{allocation}", &["DELETE"]),
    ("/locations", &["GET", "POST"]),
    ("/locations/{location}", &["GET", "PATCH", "DELETE"]),
    ("/servers", &["GET", "POST"]),
    ("/servers/external/{external_id}", &["GET"]),
    ("/servers/{server}", &["GET", "DELETE"]),
    ("/servers/{server}/details", &["PATCH"]),
    ("/servers/{server}/build", &["PATCH"]),
    ("/servers/{server}/startup", &["PATCH"]),
    ("/servers/{server}/suspend", &["POST"]),
    ("/servers/{server}/unsuspend", &["POST"]),
    ("/servers/{server}/reinstall", &["POST"]),
    ("/servers/{server}/{force}", &["DELETE"]),
    // Ferrodactyl's extension (upstream: admin UI only), not one of upstream's 42.
    ("/servers/{server}/transfer", &["GET", "POST"]),
    ("/servers/{server}/databases", &["GET", "POST"]),
    ("/servers/{server}/databases/{database}", &["GET", "DELETE"]),
    (
        "/servers/{server}/databases/{database}/reset-password",
        &["POST"],
    ),
    ("/nests", &["GET"]),
    ("/nests/{nest}", &["GET"]),
    ("/nests/{nest}/eggs", &["GET"]),
    ("/nests/{nest}/eggs/{egg}", &["GET"]),
];

/// A numeric route id; anything else cannot bind a model (404).
pub fn id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(ApiError::not_found)
}

/// The answer to a guarded `DELETE … WHERE … AND NOT EXISTS (dependants)`: 204 when
/// the row went, `blocked()` when dependants kept it (or a foreign key refused it).
pub fn delete_outcome(
    res: Result<sqlx::postgres::PgQueryResult, sqlx::Error>,
    blocked: impl Fn() -> ApiError,
) -> ApiResult<axum::response::Response> {
    match res {
        Ok(r) if r.rows_affected() == 1 => Ok(crate::http::fractal::no_content()),
        Ok(_) => Err(blocked()),
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23503") => {
            Err(blocked())
        }
        Err(e) => Err(e.into()),
    }
}

/// Maps a unique-constraint violation to the validation message upstream's
/// `unique` rule would have given, for races the pre-check could not see.
pub fn unique_violation(e: &sqlx::Error, map: &[(&str, &str, &str)]) -> Option<ApiError> {
    let db = e.as_database_error()?;
    if db.code().as_deref() != Some("23505") {
        return None;
    }
    let constraint = db.constraint().unwrap_or("");
    map.iter()
        .find(|(c, _, _)| *c == constraint)
        .map(|(_, field, attr)| {
            ApiError::field(
                field,
                "unique",
                format!("The {attr} has already been taken."),
            )
        })
}
