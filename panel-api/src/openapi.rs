//! The OpenAPI document, generated from the handlers' utoipa annotations and the
//! `openapi` crate's schemas, served at `/openapi.json`.

use crate::http::application as app;
use axum::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A `ptla_` application key, or a root admin's `ptlc_` client key",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Ferrodactyl panel API", description = "Pterodactyl-compatible Application API (and, as they land, the Client and Remote APIs)."),
    modifiers(&BearerKeys),
    paths(
        app::users::index, app::users::view, app::users::external, app::users::store, app::users::update, app::users::delete,
        app::nodes::index, app::nodes::deployable, app::nodes::view, app::nodes::configuration, app::nodes::store, app::nodes::update,
        app::nodes::delete, app::nodes::allocations_index, app::nodes::allocations_store, app::nodes::allocations_delete,
        app::locations::index, app::locations::view, app::locations::store, app::locations::update, app::locations::delete,
        app::servers::index, app::servers::view, app::servers::external, app::servers::details, app::servers::build,
        app::servers::startup, app::servers::store, app::servers::suspend, app::servers::unsuspend, app::servers::reinstall,
        app::servers::delete, app::servers::delete_forced,
        app::databases::index, app::databases::view, app::databases::store, app::databases::reset_password, app::databases::delete,
        app::nests::index, app::nests::view, app::nests::eggs_index, app::nests::egg_view,
    ),
    components(schemas(
        openapi::ErrorEnvelope, openapi::ErrorObject, openapi::Pagination,
        openapi::application::User, openapi::application::Server, openapi::application::Node, openapi::application::Location,
        openapi::application::Allocation, openapi::application::Nest, openapi::application::Egg, openapi::application::EggVariable,
        openapi::application::ServerDatabase, openapi::application::DatabaseHost, openapi::application::Subuser,
        openapi::application::NodeConfiguration,
    ))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> Response {
    crate::http::fractal::ok(&ApiDoc::openapi())
}
