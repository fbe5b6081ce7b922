//! A server's network allocations on the client API (reference §7.4 "Network
//! allocations"): listing, auto-assignment from the configured port range, notes,
//! the primary allocation, and removal.

use super::{active, numeric, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Auth;
use crate::http::fractal;
use crate::http::input::Body;
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/servers/{server}/network/allocations",
            get(index).post(store),
        )
        .route(
            "/servers/{server}/network/allocations/{allocation}",
            post(update).delete(destroy),
        )
        .route(
            "/servers/{server}/network/allocations/{allocation}/primary",
            post(primary),
        )
}

#[derive(sqlx::FromRow, Clone)]
struct Alloc {
    id: i64,
    ip: String,
    ip_alias: Option<String>,
    port: i32,
    notes: Option<String>,
}

fn attrs(a: &Alloc, primary_id: i64) -> Value {
    super::servers::allocation_attrs(
        a.id,
        &a.ip,
        &a.ip_alias,
        a.port,
        &a.notes,
        a.id == primary_id,
    )
}

async fn find(st: &AppState, ctx: &Ctx, raw: &str) -> ApiResult<Alloc> {
    // Scope-bound: another server's allocation is a plain 404.
    sqlx::query_as(
        "SELECT id, ip, ip_alias, port, notes FROM allocations WHERE id = $1 AND server_id = $2",
    )
    .bind(numeric(raw)?)
    .bind(ctx.server.id)
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(ApiError::not_found)
}

fn label(a: &Alloc) -> String {
    format!("{}:{}", a.ip, a.port)
}

#[utoipa::path(get, path = "/api/client/servers/{server}/network/allocations", tag = "client network",
    params(("server" = String, Path)), responses((status = 200, description = "list of `allocation`")), security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("allocation.read")?;
    let rows: Vec<Alloc> = sqlx::query_as(
        "SELECT id, ip, ip_alias, port, notes FROM allocations WHERE server_id = $1 ORDER BY id",
    )
    .bind(ctx.server.id)
    .fetch_all(&st.db)
    .await?;
    Ok(fractal::ok(&fractal::list(
        "allocation",
        rows.iter().map(|a| attrs(a, ctx.server.allocation_id)),
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/network/allocations", tag = "client network",
    params(("server" = String, Path)), responses((status = 200, description = "`allocation`"), (status = 400, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("allocation.create")?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM allocations WHERE server_id = $1")
        .bind(ctx.server.id)
        .fetch_one(&st.db)
        .await?;
    if count >= ctx.server.allocation_limit.unwrap_or(0) {
        return Err(ApiError::display(
            "DisplayException",
            "Cannot assign additional allocations to this server: limit has been reached.",
        ));
    }
    if !st.cfg.client_allocations_enabled {
        return Err(ApiError::display(
            "AutoAllocationNotEnabledException",
            "Server auto-allocation is not enabled for this instance.",
        ));
    }
    let no_space = || {
        ApiError::display(
            "NoAutoAllocationSpaceAvailableException",
            "Cannot assign additional allocation: no more space available on node.",
        )
    };
    let primary_ip: String = sqlx::query_scalar("SELECT ip FROM allocations WHERE id = $1")
        .bind(ctx.server.allocation_id)
        .fetch_one(&st.db)
        .await?;
    let mut tx = st.db.begin().await?;
    // A free allocation on the primary IP first (locked, so two requests cannot take
    // the same one), else a new one inside the configured range.
    let mut id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM allocations WHERE node_id = $1 AND ip = $2 AND server_id IS NULL
         ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .bind(ctx.server.node_id)
    .bind(&primary_ip)
    .fetch_optional(&mut *tx)
    .await?;
    if id.is_none() {
        let (start, end) = st.cfg.client_allocations_range.ok_or_else(no_space)?;
        id = sqlx::query_scalar(
            "INSERT INTO allocations (node_id, ip, port)
             SELECT $1, $2, p FROM generate_series($3::INT, $4::INT) AS p
             WHERE NOT EXISTS (SELECT 1 FROM allocations a WHERE a.node_id = $1 AND a.ip = $2 AND a.port = p)
             ORDER BY random() LIMIT 1
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(ctx.server.node_id)
        .bind(&primary_ip)
        .bind(start as i32)
        .bind(end as i32)
        .fetch_optional(&mut *tx)
        .await?;
    }
    let id = id.ok_or_else(no_space)?;
    let a: Alloc = sqlx::query_as(
        "UPDATE allocations SET server_id = $2, updated_at = now() WHERE id = $1 RETURNING id, ip, ip_alias, port, notes",
    )
    .bind(id)
    .bind(ctx.server.id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    ctx.log(
        &st,
        "server:allocation.create",
        json!({"allocation": label(&a)}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "allocation",
        attrs(&a, ctx.server.allocation_id),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/network/allocations/{allocation}", tag = "client network",
    params(("server" = String, Path), ("allocation" = i64, Path)), request_body = Object,
    responses((status = 200, description = "`allocation`"), (status = 422, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path((server, allocation)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let a = find(&st, &ctx, &allocation).await?;
    ctx.require("allocation.update")?;
    let mut v = Validator::new(&body.0);
    v.check(
        "notes",
        &[
            Rule::Present,
            Rule::Nullable,
            Rule::String,
            Rule::Max(256.0),
        ],
    );
    v.finish()?;
    let notes = body
        .get("notes")
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let updated: Alloc = sqlx::query_as(
        "UPDATE allocations SET notes = $2, updated_at = now() WHERE id = $1 RETURNING id, ip, ip_alias, port, notes",
    )
    .bind(a.id)
    .bind(&notes)
    .fetch_one(&st.db)
    .await?;
    if a.notes != notes {
        ctx.log(
            &st,
            "server:allocation.notes",
            json!({"allocation": label(&a), "old": a.notes, "new": notes}),
        )
        .await;
    }
    Ok(fractal::ok(&fractal::item(
        "allocation",
        attrs(&updated, ctx.server.allocation_id),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/network/allocations/{allocation}/primary", tag = "client network",
    params(("server" = String, Path), ("allocation" = i64, Path)),
    responses((status = 200, description = "`allocation`")), security(("api_key" = [])))]
pub async fn primary(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, allocation)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let a = find(&st, &ctx, &allocation).await?;
    ctx.require("allocation.update")?;
    sqlx::query("UPDATE servers SET allocation_id = $2, updated_at = now() WHERE id = $1")
        .bind(ctx.server.id)
        .bind(a.id)
        .execute(&st.db)
        .await?;
    ctx.log(
        &st,
        "server:allocation.primary",
        json!({"allocation": label(&a)}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "allocation",
        attrs(&a, a.id),
        None,
    )))
}

#[utoipa::path(delete, path = "/api/client/servers/{server}/network/allocations/{allocation}", tag = "client network",
    params(("server" = String, Path), ("allocation" = i64, Path)),
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn destroy(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, allocation)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let a = find(&st, &ctx, &allocation).await?;
    ctx.require("allocation.delete")?;
    if ctx.server.allocation_limit.unwrap_or(0) == 0 {
        return Err(ApiError::display(
            "DisplayException",
            "You cannot delete allocations for this server: no allocation limit is set.",
        ));
    }
    if a.id == ctx.server.allocation_id {
        return Err(ApiError::display(
            "DisplayException",
            "You cannot delete the primary allocation for this server.",
        ));
    }
    sqlx::query("UPDATE allocations SET server_id = NULL, notes = NULL, updated_at = now() WHERE id = $1 AND server_id = $2")
        .bind(a.id)
        .bind(ctx.server.id)
        .execute(&st.db)
        .await?;
    ctx.log(
        &st,
        "server:allocation.delete",
        json!({"allocation": label(&a)}),
    )
    .await;
    Ok(fractal::no_content())
}
