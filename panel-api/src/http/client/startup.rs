//! Startup variables on the client API (reference §7.4 "Startup"): only
//! user-viewable variables are shown, only user-editable ones change, and each value
//! is validated with the egg variable's own rules.

use super::active;
use super::servers::{render_startup, variable_attrs, VarRow, VARS_SQL};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Auth;
use crate::http::fractal;
use crate::http::input::Body;
use crate::state::AppState;
use crate::validate::{parse_rules, Rule, Validator};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/startup", get(index))
        .route("/servers/{server}/startup/variable", put(update))
}

async fn rendered(
    st: &AppState,
    s: &crate::http::application::servers::ServerRow,
    vars: &[VarRow],
) -> ApiResult<String> {
    let (ip, port): (String, i32) =
        sqlx::query_as("SELECT ip, port FROM allocations WHERE id = $1")
            .bind(s.allocation_id)
            .fetch_optional(&st.db)
            .await?
            .unwrap_or_default();
    let refs: Vec<&VarRow> = vars.iter().collect();
    Ok(render_startup(s, &ip, port, &refs, false))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/startup", tag = "client startup",
    params(("server" = String, Path)),
    responses((status = 200, description = "list of `egg_variable` with meta startup_command, docker_images, raw_startup_command")),
    security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("startup.read")?;
    let vars: Vec<VarRow> = sqlx::query_as(VARS_SQL)
        .bind([ctx.server.id])
        .fetch_all(&st.db)
        .await?;
    let images: Value = sqlx::query_scalar("SELECT docker_images FROM eggs WHERE id = $1")
        .bind(ctx.server.egg_id)
        .fetch_one(&st.db)
        .await?;
    let startup = rendered(&st, &ctx.server, &vars).await?;
    let items: Vec<Value> = vars
        .iter()
        .filter(|v| v.user_viewable)
        .map(|v| fractal::item("egg_variable", variable_attrs(v), None))
        .collect();
    Ok(fractal::ok(&json!({
        "object": "list",
        "data": items,
        "meta": {"startup_command": startup, "docker_images": images, "raw_startup_command": ctx.server.startup},
    })))
}

#[utoipa::path(put, path = "/api/client/servers/{server}/startup/variable", tag = "client startup",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 200, description = "`egg_variable` with meta"), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("startup.update")?;
    let mut v = Validator::new(&body.0);
    v.check("key", &[Rule::Required, Rule::String]);
    v.check("value", &[Rule::Present]);
    v.finish()?;
    let key = body.get("key").and_then(|k| k.as_str()).unwrap_or("");
    let vars: Vec<VarRow> = sqlx::query_as(VARS_SQL)
        .bind([ctx.server.id])
        .fetch_all(&st.db)
        .await?;
    // Upstream answers 500 for a key that matches no variable; we answer as for a
    // hidden one.
    let Some(var) = vars
        .iter()
        .find(|v| v.env_variable == key && v.user_viewable)
    else {
        return Err(ApiError::bad_request(
            "The environment variable you are trying to edit does not exist.",
        ));
    };
    if !var.user_editable {
        return Err(ApiError::bad_request(
            "The environment variable you are trying to edit is read-only.",
        ));
    }
    let mut v = Validator::new(&body.0);
    v.check("value", &parse_rules(var.rules.as_deref().unwrap_or("")));
    v.finish()?;
    let value = match body.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let var_id: i64 =
        sqlx::query_scalar("SELECT id FROM egg_variables WHERE egg_id = $1 AND env_variable = $2")
            .bind(ctx.server.egg_id)
            .bind(key)
            .fetch_one(&st.db)
            .await?;
    sqlx::query(
        "INSERT INTO server_variables (server_id, variable_id, variable_value) VALUES ($1, $2, $3)
         ON CONFLICT (server_id, variable_id) DO UPDATE SET variable_value = EXCLUDED.variable_value, updated_at = now()",
    )
    .bind(ctx.server.id)
    .bind(var_id)
    .bind(&value)
    .execute(&st.db)
    .await?;
    let old = var
        .server_value
        .clone()
        .unwrap_or_else(|| var.default_value.clone());
    if old != value {
        ctx.log(
            &st,
            "server:startup.edit",
            json!({"variable": key, "old": old, "new": value}),
        )
        .await;
    }
    let vars: Vec<VarRow> = sqlx::query_as(VARS_SQL)
        .bind([ctx.server.id])
        .fetch_all(&st.db)
        .await?;
    let var = vars
        .iter()
        .find(|v| v.env_variable == key)
        .ok_or_else(ApiError::not_found)?;
    let startup = rendered(&st, &ctx.server, &vars).await?;
    Ok(fractal::ok(&fractal::item(
        "egg_variable",
        variable_attrs(var),
        Some(json!({"startup_command": startup, "raw_startup_command": ctx.server.startup})),
    )))
}
