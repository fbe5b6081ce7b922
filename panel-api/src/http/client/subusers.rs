//! Subusers (reference §7.4 "Subusers", §10): adding people to a server with a
//! subset of the 40 permissions — never more than the caller holds — and revoking
//! their open websocket sessions on the node when their permissions change.

use super::{active, is_known_permission, not_for_server, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Auth;
use crate::http::fractal;
use crate::http::input::Body;
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/users", get(index).post(store))
        .route(
            "/servers/{server}/users/{user}",
            get(view).post(update).delete(destroy),
        )
}

/// The submitted list filtered to known strings, de-duplicated (upstream can leave
/// index gaps that serialise as an object; we do not), with `websocket.connect`.
fn clean(list: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in list.iter().filter_map(|p| p.as_str()) {
        if is_known_permission(p) && !out.iter().any(|x| x == p) {
            out.push(p.to_string());
        }
    }
    if !out.iter().any(|p| p == "websocket.connect") {
        out.push("websocket.connect".into());
    }
    out
}

/// Upstream checks the submitted strings as sent (before filtering): a subuser may
/// only pass on permissions it holds itself.
fn escalation_check(ctx: &Ctx, submitted: &[Value]) -> ApiResult<()> {
    if ctx.auth.root_admin || ctx.is_owner {
        return Ok(());
    }
    if submitted
        .iter()
        .any(|p| p.as_str().is_none_or(|p| !ctx.can(p)))
    {
        return Err(ApiError::http(
            StatusCode::FORBIDDEN,
            "HttpForbiddenException",
            "Cannot assign permissions to a subuser that your account does not actively possess.",
        ));
    }
    Ok(())
}

struct Sub {
    user_id: i64,
    email: String,
    permissions: Vec<String>,
    attrs: Value,
}

async fn find(st: &AppState, ctx: &Ctx, raw: &str) -> ApiResult<Sub> {
    let uuid: uuid::Uuid = raw.parse().map_err(|_| ApiError::not_found())?;
    let row: Option<(i64, String)> = sqlx::query_as("SELECT id, email FROM users WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(&st.db)
        .await?;
    let (user_id, email) = row.ok_or_else(ApiError::not_found)?;
    let all = super::servers::subusers_of(st, &[ctx.server.id]).await?;
    let attrs = all
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["uuid"] == json!(uuid.to_string()))
        .ok_or_else(not_for_server)?;
    let permissions = attrs["permissions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // Nobody edits their own subuser entry.
    if user_id == ctx.auth.user_id {
        return Err(ApiError::unauthorized_action());
    }
    Ok(Sub {
        user_id,
        email,
        permissions,
        attrs,
    })
}

async fn revoke(st: &AppState, ctx: &Ctx, user_id: i64) {
    let jti = crate::http::application::servers::jti(user_id, &ctx.server.uuid);
    match ctx.conn(st) {
        Ok(conn) => {
            if let Err(e) = st
                .daemon
                .revoke_jtis(&conn, &ctx.server.uuid.to_string(), &[jti])
                .await
            {
                tracing::warn!(error = ?e, "could not revoke a subuser's websocket tokens on the node");
            }
        }
        Err(e) => tracing::warn!(error = ?e, "node connection"),
    }
}

#[utoipa::path(get, path = "/api/client/servers/{server}/users", tag = "client subusers",
    params(("server" = String, Path)), responses((status = 200, description = "list of `server_subuser`")), security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("user.read")?;
    let all = super::servers::subusers_of(&st, &[ctx.server.id]).await?;
    Ok(fractal::ok(&fractal::list(
        "server_subuser",
        all.into_iter().map(|(_, v)| v),
    )))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/users/{user}", tag = "client subusers",
    params(("server" = String, Path), ("user" = String, Path, description = "the subuser's user uuid")),
    responses((status = 200, description = "`server_subuser`")), security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let sub = find(&st, &ctx, &user).await?;
    ctx.require("user.read")?;
    Ok(fractal::ok(&fractal::item(
        "server_subuser",
        sub.attrs,
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/users", tag = "client subusers",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 200, description = "`server_subuser`"), (status = 400, body = openapi::ErrorEnvelope), (status = 403, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("user.create")?;
    let mut v = Validator::new(&body.0);
    v.check(
        "email",
        &[Rule::Required, Rule::Email, Rule::Between(1.0, 191.0)],
    );
    v.check("permissions", &[Rule::Required, Rule::Array]);
    v.finish()?;
    let submitted = body
        .get("permissions")
        .and_then(|p| p.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    escalation_check(&ctx, submitted)?;
    let perms = clean(submitted);
    let email = body
        .get("email")
        .and_then(|e| e.as_str())
        .unwrap_or("")
        .to_string();
    let mut tx = st.db.begin().await?;
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    let user_id = match existing {
        Some(id) => {
            if id == ctx.server.owner_id {
                return Err(ApiError::display(
                    "UserIsServerOwnerException",
                    "Cannot add the owner of a server as a subuser for that server.",
                ));
            }
            id
        }
        None => {
            let local = email.split('@').next().unwrap_or("");
            let base: String = local
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '-')
                .collect();
            let username = format!("{base}{}", crate::crypto::random_string(3));
            let password = crate::crypto::hash_password(&crate::crypto::random_string(32))
                .map_err(ApiError::internal)?;
            sqlx::query_scalar(
                "INSERT INTO users (uuid, username, email, name_first, name_last, password)
                 VALUES ($1, $2, $3, 'Server', 'Subuser', $4) RETURNING id",
            )
            .bind(uuid::Uuid::new_v4())
            .bind(&username)
            .bind(&email)
            .bind(password)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, $3) ON CONFLICT (user_id, server_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(ctx.server.id)
    .bind(json!(perms))
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::display(
            "ServerSubuserExistsException",
            "A user with that email address is already assigned as a subuser for this server.",
        ));
    }
    tx.commit().await?;
    let subject = crate::activity::Subject {
        kind: "user",
        id: user_id,
    };
    ctx.log_with(
        &st,
        "server:subuser.create",
        json!({"email": email, "permissions": perms}),
        &[subject],
    )
    .await;
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&st.db)
        .await?;
    let sub = find(&st, &ctx, &uuid.to_string()).await?;
    Ok(fractal::ok(&fractal::item(
        "server_subuser",
        sub.attrs,
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/users/{user}", tag = "client subusers",
    params(("server" = String, Path), ("user" = String, Path)), request_body = Object,
    responses((status = 200, description = "`server_subuser`"), (status = 403, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path((server, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let sub = find(&st, &ctx, &user).await?;
    ctx.require("user.update")?;
    let mut v = Validator::new(&body.0);
    v.check("permissions", &[Rule::Required, Rule::Array]);
    v.finish()?;
    let submitted = body
        .get("permissions")
        .and_then(|p| p.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    escalation_check(&ctx, submitted)?;
    let perms = clean(submitted);
    let mut old = sub.permissions.clone();
    let mut new = perms.clone();
    old.sort();
    new.sort();
    if old != new {
        sqlx::query("UPDATE subusers SET permissions = $3, updated_at = now() WHERE user_id = $1 AND server_id = $2")
            .bind(sub.user_id)
            .bind(ctx.server.id)
            .bind(json!(perms))
            .execute(&st.db)
            .await?;
        revoke(&st, &ctx, sub.user_id).await;
        ctx.log_with(
            &st,
            "server:subuser.update",
            json!({"email": sub.email, "old": sub.permissions, "new": perms}),
            &[crate::activity::Subject {
                kind: "user",
                id: sub.user_id,
            }],
        )
        .await;
    }
    let sub = find(&st, &ctx, &user).await?;
    Ok(fractal::ok(&fractal::item(
        "server_subuser",
        sub.attrs,
        None,
    )))
}

#[utoipa::path(delete, path = "/api/client/servers/{server}/users/{user}", tag = "client subusers",
    params(("server" = String, Path), ("user" = String, Path)), responses((status = 204)), security(("api_key" = [])))]
pub async fn destroy(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let sub = find(&st, &ctx, &user).await?;
    ctx.require("user.delete")?;
    sqlx::query("DELETE FROM subusers WHERE user_id = $1 AND server_id = $2")
        .bind(sub.user_id)
        .bind(ctx.server.id)
        .execute(&st.db)
        .await?;
    revoke(&st, &ctx, sub.user_id).await;
    ctx.log_with(
        &st,
        "server:subuser.delete",
        json!({"email": sub.email}),
        &[crate::activity::Subject {
            kind: "user",
            id: sub.user_id,
        }],
    )
    .await;
    Ok(fractal::no_content())
}
