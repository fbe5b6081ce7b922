//! The OpenAPI document, generated from the handlers' utoipa annotations and the
//! `openapi` crate's schemas, served at `/openapi.json`.

use crate::http::application as app;
use crate::http::client as cl;
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
    info(title = "Ferrodactyl panel API", description = "Pterodactyl-compatible Application API and Client API."),
    modifiers(&BearerKeys),
    paths(
        app::users::index, app::users::view, app::users::external, app::users::store, app::users::update, app::users::delete,
        app::nodes::index, app::nodes::deployable, app::nodes::view, app::nodes::configuration, app::nodes::store, app::nodes::update,
        app::nodes::delete, app::nodes::allocations_index, app::nodes::allocations_store, app::nodes::allocations_delete,
        app::locations::index, app::locations::view, app::locations::store, app::locations::update, app::locations::delete,
        app::servers::index, app::servers::view, app::servers::external, app::servers::details, app::servers::build,
        app::servers::startup, app::servers::store, app::servers::suspend, app::servers::unsuspend, app::servers::reinstall,
        app::servers::delete, app::servers::delete_forced, app::transfers::store, app::transfers::view,
        app::databases::index, app::databases::view, app::databases::store, app::databases::reset_password, app::databases::delete,
        app::nests::index, app::nests::view, app::nests::eggs_index, app::nests::egg_view,
        cl::servers::index, cl::servers::permissions, cl::account::index, cl::account::two_factor_setup, cl::account::two_factor_enable,
        cl::account::two_factor_disable, cl::account::update_email, cl::account::update_password, cl::account::activity,
        cl::account::api_keys, cl::account::api_key_store, cl::account::api_key_delete, cl::account::ssh_keys, cl::account::ssh_key_store,
        cl::account::ssh_key_delete, cl::servers::view, cl::servers::websocket, cl::servers::resources, cl::servers::activity,
        cl::servers::command, cl::servers::power, cl::databases::index, cl::databases::store, cl::databases::rotate, cl::databases::destroy,
        cl::files::list, cl::files::contents, cl::files::download, cl::files::rename, cl::files::copy, cl::files::write, cl::files::compress,
        cl::files::decompress, cl::files::delete, cl::files::create_folder, cl::files::chmod, cl::files::pull, cl::files::upload,
        cl::schedules::index, cl::schedules::store, cl::schedules::view, cl::schedules::update, cl::schedules::execute, cl::schedules::destroy,
        cl::schedules::task_store, cl::schedules::task_update, cl::schedules::task_delete,
        cl::network::index, cl::network::store, cl::network::update, cl::network::primary, cl::network::destroy,
        cl::subusers::index, cl::subusers::store, cl::subusers::view, cl::subusers::update, cl::subusers::destroy,
        cl::backups::index, cl::backups::store, cl::backups::view, cl::backups::download, cl::backups::lock, cl::backups::restore, cl::backups::destroy,
        cl::startup::index, cl::startup::update, cl::settings::rename, cl::settings::reinstall, cl::settings::docker_image,
    ),
    components(schemas(
        openapi::ErrorEnvelope, openapi::ErrorObject, openapi::Pagination,
        openapi::application::User, openapi::application::Server, openapi::application::Node, openapi::application::Location,
        openapi::application::Allocation, openapi::application::Nest, openapi::application::Egg, openapi::application::EggVariable,
        openapi::application::ServerDatabase, openapi::application::DatabaseHost, openapi::application::Subuser,
        openapi::application::NodeConfiguration, openapi::application::ServerTransfer,
        openapi::application::TransferServerRequest,
    ))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> Response {
    crate::http::fractal::ok(&ApiDoc::openapi())
}
