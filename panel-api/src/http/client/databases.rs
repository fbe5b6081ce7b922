//! Server databases on the client API (reference §7.4 "Databases", transformer §9):
//! hashid ids, host picking, and real databases and users on MariaDB/MySQL hosts
//! through the same service the Application API uses.

use super::{active, not_for_server, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::hashids::{Hashids, PTERODACTYL_ALPHABET};
use crate::http::application::databases::{self as svc, DatabaseRow};
use crate::http::auth::Auth;
use crate::http::fractal::{self, Includes};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/databases", get(index).post(store))
        .route(
            "/servers/{server}/databases/{database}/rotate-password",
            post(rotate),
        )
        .route("/servers/{server}/databases/{database}", delete(destroy))
}

pub fn hashids(st: &AppState) -> Hashids {
    Hashids::new(
        &st.cfg.hashids_salt,
        st.cfg.hashids_length,
        PTERODACTYL_ALPHABET,
    )
}

async fn render(
    st: &AppState,
    ctx: &Ctx,
    rows: &[DatabaseRow],
    with_password: bool,
) -> ApiResult<Vec<Value>> {
    let h = hashids(st);
    let host_ids: Vec<i64> = rows.iter().map(|d| d.database_host_id).collect();
    let hosts = svc::load_hosts(st, &host_ids).await?;
    let mut out = Vec::new();
    for d in rows {
        let host = hosts.iter().find(|x| x.id == d.database_host_id);
        let mut v = json!({
            "id": h.encode(&[d.id as u64]),
            "host": {"address": host.map(|x| x.host.clone()).unwrap_or_default(), "port": host.map(|x| x.port).unwrap_or(3306)},
            "name": d.database, "username": d.username, "connections_from": d.remote, "max_connections": d.max_connections,
        });
        if with_password {
            v["relationships"] = json!({"password": if ctx.can("database.view_password") {
                fractal::item("database_password", json!({"password": st.enc.decrypt(&d.password)?}), None)
            } else {
                fractal::null_resource()
            }});
        }
        out.push(v);
    }
    Ok(out)
}

async fn find(st: &AppState, ctx: &Ctx, raw: &str) -> ApiResult<DatabaseRow> {
    let id = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<i64>().ok()
    } else {
        hashids(st).decode(raw).first().map(|n| *n as i64)
    }
    .ok_or_else(ApiError::not_found)?;
    let row = svc::load_where(st, "d.id = ANY($1)", &[id])
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    if row.server_id != ctx.server.id {
        return Err(not_for_server());
    }
    Ok(row)
}

#[utoipa::path(get, path = "/api/client/servers/{server}/databases", tag = "client databases",
    params(("server" = String, Path), ("include" = Option<String>, Query, description = "password")),
    responses((status = 200, description = "list of `server_database`")), security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("database.read")?;
    let rows = svc::load_where(&st, "d.server_id = ANY($1)", &[ctx.server.id]).await?;
    let items = render(&st, &ctx, &rows, Includes::from_params(&p).has("password")).await?;
    Ok(fractal::ok(&fractal::list("server_database", items)))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/databases", tag = "client databases",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 200, description = "`server_database` with the password include"), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("database.create")?;
    let mut v = Validator::new(&body.0);
    if v.check(
        "database",
        &[Rule::Required, Rule::AlphaDash, Rule::Between(3.0, 48.0)],
    ) {
        let name = body.get("database").and_then(|d| d.as_str()).unwrap_or("");
        let full = format!("s{}_{}", ctx.server.id, name);
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM databases WHERE server_id = $1 AND database = $2)",
        )
        .bind(ctx.server.id)
        .bind(&full)
        .fetch_one(&st.db)
        .await?;
        if taken {
            v.add(
                "database",
                "unique",
                "The database name you have selected is already in use by this server.",
            );
        }
    }
    v.check(
        "remote",
        &[
            Rule::Required,
            Rule::String,
            Rule::Regex(crate::regex!(r"^[\w\-/.%:]+$")),
        ],
    );
    v.finish()?;
    let name = body
        .get("database")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    let remote = body
        .get("remote")
        .and_then(|d| d.as_str())
        .unwrap_or("%")
        .to_string();
    if let Some(limit) = ctx.server.database_limit {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE server_id = $1")
            .bind(ctx.server.id)
            .fetch_one(&st.db)
            .await?;
        if count >= limit {
            return Err(ApiError::display(
                "TooManyDatabasesException",
                "Operation aborted: creating a new database would put this server over the defined limit.",
            ));
        }
    }
    let mut host: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM database_hosts WHERE node_id = $1 ORDER BY random() LIMIT 1",
    )
    .bind(ctx.server.node_id)
    .fetch_optional(&st.db)
    .await?;
    if host.is_none() && st.cfg.client_databases_allow_random {
        host = sqlx::query_scalar("SELECT id FROM database_hosts ORDER BY random() LIMIT 1")
            .fetch_optional(&st.db)
            .await?;
    }
    let Some(host) = host else {
        return Err(ApiError::display(
            "NoSuitableDatabaseHostException",
            "There is no database host configured that can be used for this server.",
        ));
    };
    let row = svc::create(&st, &ctx.server, &name, &remote, host).await?;
    ctx.log(&st, "server:database.create", json!({"name": row.database}))
        .await;
    let item = render(&st, &ctx, std::slice::from_ref(&row), true)
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&fractal::item("server_database", item, None)))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/databases/{database}/rotate-password", tag = "client databases",
    params(("server" = String, Path), ("database" = String, Path, description = "hashid or numeric id")),
    responses((status = 200, description = "`server_database` with the password include")), security(("api_key" = [])))]
pub async fn rotate(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, database)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let row = find(&st, &ctx, &database).await?;
    ctx.require("database.update")?;
    svc::rotate_password(&st, &row).await?;
    let row = find(&st, &ctx, &database).await?;
    ctx.log(
        &st,
        "server:database.rotate-password",
        json!({"name": row.database}),
    )
    .await;
    let item = render(&st, &ctx, std::slice::from_ref(&row), true)
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&fractal::item("server_database", item, None)))
}

#[utoipa::path(delete, path = "/api/client/servers/{server}/databases/{database}", tag = "client databases",
    params(("server" = String, Path), ("database" = String, Path)), responses((status = 204)), security(("api_key" = [])))]
pub async fn destroy(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, database)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let row = find(&st, &ctx, &database).await?;
    ctx.require("database.delete")?;
    svc::destroy(&st, &row).await?;
    ctx.log(&st, "server:database.delete", json!({"name": row.database}))
        .await;
    Ok(fractal::no_content())
}
