//! Server settings on the client API (reference §7.4 "Settings"): rename and
//! description, reinstall, and choosing a Docker image among the egg's.

use super::active;
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Auth;
use crate::http::fractal;
use crate::http::input::Body;
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/settings/rename", post(rename))
        .route("/servers/{server}/settings/reinstall", post(reinstall))
        .route("/servers/{server}/settings/docker-image", put(docker_image))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/settings/rename", tag = "client settings",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 204), (status = 422, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn rename(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("settings.rename")?;
    let mut v = Validator::new(&body.0);
    v.check(
        "name",
        &[Rule::Required, Rule::String, Rule::Between(1.0, 191.0)],
    );
    v.check("description", &[Rule::Nullable, Rule::String]);
    v.finish()?;
    let name = body
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    // Absent: unchanged; null (or ""): cleared.
    let description = match body.0.get("description") {
        None => ctx.server.description.clone(),
        Some(d) => d.as_str().unwrap_or("").to_string(),
    };
    sqlx::query("UPDATE servers SET name = $2, description = $3, updated_at = now() WHERE id = $1")
        .bind(ctx.server.id)
        .bind(&name)
        .bind(&description)
        .execute(&st.db)
        .await?;
    if name != ctx.server.name {
        ctx.log(
            &st,
            "server:settings.rename",
            json!({"old": ctx.server.name, "new": name}),
        )
        .await;
    }
    if description != ctx.server.description {
        ctx.log(
            &st,
            "server:settings.description",
            json!({"old": ctx.server.description, "new": description}),
        )
        .await;
    }
    Ok(fractal::no_content())
}

/// `202 []`, as upstream answers the accepted-for-later routes.
pub fn accepted() -> Response {
    fractal::respond(StatusCode::ACCEPTED, &json!([]))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/settings/reinstall", tag = "client settings",
    params(("server" = String, Path)), responses((status = 202, description = "`[]`")), security(("api_key" = [])))]
pub async fn reinstall(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("settings.reinstall")?;
    sqlx::query("UPDATE servers SET status = 'installing', updated_at = now() WHERE id = $1")
        .bind(ctx.server.id)
        .execute(&st.db)
        .await?;
    if let Err(e) = st
        .daemon
        .reinstall_server(&ctx.conn(&st)?, &ctx.server.uuid.to_string())
        .await
    {
        sqlx::query("UPDATE servers SET status = $2 WHERE id = $1")
            .bind(ctx.server.id)
            .bind(&ctx.server.status)
            .execute(&st.db)
            .await?;
        return Err(e.into());
    }
    ctx.log(&st, "server:reinstall", json!({})).await;
    Ok(accepted())
}

#[utoipa::path(put, path = "/api/client/servers/{server}/settings/docker-image", tag = "client settings",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn docker_image(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("startup.docker-image")?;
    let images: Value = sqlx::query_scalar("SELECT docker_images FROM eggs WHERE id = $1")
        .bind(ctx.server.egg_id)
        .fetch_one(&st.db)
        .await?;
    let allowed: Vec<String> = images
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut v = Validator::new(&body.0);
    v.check(
        "docker_image",
        &[
            Rule::Required,
            Rule::String,
            Rule::Max(191.0),
            Rule::Regex(crate::regex!(r"^[\w#\./\- ]*\|?~?[\w\./\-:@ ]*$")),
            Rule::InList(allowed.clone()),
        ],
    );
    v.finish()?;
    if !allowed.contains(&ctx.server.image) {
        return Err(ApiError::bad_request(
            "This server's Docker image has been manually set by an administrator and cannot be updated.",
        ));
    }
    let image = body
        .get("docker_image")
        .and_then(|i| i.as_str())
        .unwrap_or("")
        .to_string();
    sqlx::query("UPDATE servers SET image = $2, updated_at = now() WHERE id = $1")
        .bind(ctx.server.id)
        .bind(&image)
        .execute(&st.db)
        .await?;
    if image != ctx.server.image {
        ctx.log(
            &st,
            "server:startup.image",
            json!({"old": ctx.server.image, "new": image}),
        )
        .await;
    }
    Ok(fractal::no_content())
}
