//! Application users (reference §6.4, transformer §8.1).

use super::{id, servers, unique_violation};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ, WRITE};
use crate::http::fractal::{self, FilterKind, FilterSpec, Includes, Page};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{as_bool, as_string, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(index).post(store))
        .route("/users/external/{external_id}", get(external))
        .route("/users/{user}", get(view).patch(update).delete(delete))
}

/// A `users` row, selected with [`COLUMNS`] (decoded by position: list pages decode
/// thousands of columns a second, and a by-name lookup hashes each name).
#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: i64,
    pub external_id: Option<String>,
    pub uuid: uuid::Uuid,
    pub username: String,
    pub email: String,
    pub name_first: String,
    pub name_last: String,
    pub language: String,
    pub root_admin: bool,
    pub use_totp: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str =
    "id, external_id, uuid, username, email, name_first, name_last, language, root_admin, use_totp, created_at, updated_at";

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for UserRow {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(UserRow {
            id: row.try_get(0)?,
            external_id: row.try_get(1)?,
            uuid: row.try_get(2)?,
            username: row.try_get(3)?,
            email: row.try_get(4)?,
            name_first: row.try_get(5)?,
            name_last: row.try_get(6)?,
            language: row.try_get(7)?,
            root_admin: row.try_get(8)?,
            use_totp: row.try_get(9)?,
            created_at: row.try_get(10)?,
            updated_at: row.try_get(11)?,
        })
    }
}

/// [`transform`] taking the row, so its strings move instead of being copied.
pub fn transform_owned(u: UserRow) -> openapi::application::User {
    openapi::application::User {
        id: u.id,
        external_id: u.external_id,
        uuid: u.uuid.to_string(),
        username: u.username,
        email: u.email,
        first_name: u.name_first,
        last_name: u.name_last,
        language: u.language,
        root_admin: u.root_admin,
        two_factor: u.use_totp,
        created_at: u.created_at,
        updated_at: u.updated_at,
        relationships: None,
    }
}

pub fn transform(u: &UserRow) -> openapi::application::User {
    openapi::application::User {
        id: u.id,
        external_id: u.external_id.clone(),
        uuid: u.uuid.to_string(),
        username: u.username.clone(),
        email: u.email.clone(),
        first_name: u.name_first.clone(),
        last_name: u.name_last.clone(),
        language: u.language.clone(),
        root_admin: u.root_admin,
        two_factor: u.use_totp,
        created_at: u.created_at,
        updated_at: u.updated_at,
        relationships: None,
    }
}

pub async fn load(st: &AppState, ids: &[i64]) -> ApiResult<Vec<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = ANY($1) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(&st.db)
    .await?)
}

pub async fn find(st: &AppState, user_id: i64) -> ApiResult<UserRow> {
    sqlx::query_as::<_, UserRow>(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(user_id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Users with their requested relationships (`servers`), as JSON.
pub fn render<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<UserRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        render_typed(st, auth, rows, inc)
            .await?
            .into_iter()
            .map(|u| serde_json::to_value(u).map_err(ApiError::internal))
            .collect()
    }
    .boxed()
}

/// Users with their requested relationships (`servers`), as transformer structs
/// (encoded straight into the response by the list and item answers).
pub fn render_typed<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<UserRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<openapi::application::User>>> {
    async move {
        let mut out = Vec::with_capacity(rows.len());
        let mut servers_by_user: std::collections::HashMap<i64, Vec<Value>> = Default::default();
        let want_servers = inc.has("servers") && auth.can_include(Acl::Servers);
        if want_servers {
            let ids: Vec<i64> = rows.iter().map(|u| u.id).collect();
            let srv = servers::load_where(st, "s.owner_id = ANY($1)", &ids).await?;
            let owners: Vec<i64> = srv.iter().map(|s| s.owner_id).collect();
            let rendered = servers::render(st, auth, srv, &inc.nested("servers")).await?;
            for (owner, v) in owners.into_iter().zip(rendered) {
                servers_by_user.entry(owner).or_default().push(v);
            }
        }
        for u in rows {
            let id = u.id;
            let mut t = transform_owned(u);
            if inc.has("servers") {
                let rel = if want_servers {
                    fractal::list("server", servers_by_user.remove(&id).unwrap_or_default())
                } else {
                    fractal::null_resource()
                };
                let mut m = serde_json::Map::with_capacity(1);
                m.insert("servers".into(), rel);
                t.relationships = Some(m);
            }
            out.push(t);
        }
        Ok(out)
    }
    .boxed()
}

const FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "email",
        column: "email",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "uuid",
        column: "uuid",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "username",
        column: "username",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "external_id",
        column: "external_id",
        kind: FilterKind::Partial,
    },
];

#[utoipa::path(get, path = "/api/application/users", tag = "users",
    params(("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("include" = Option<String>, Query, description = "servers"),
           ("filter[email]" = Option<String>, Query), ("filter[uuid]" = Option<String>, Query), ("filter[username]" = Option<String>, Query),
           ("filter[external_id]" = Option<String>, Query), ("sort" = Option<String>, Query, description = "id, uuid (prefix - for descending)")),
    responses((status = 200, description = "Paginated list of `user`", body = openapi::List<openapi::application::User>)),
    security(("api_key" = [])))]
pub async fn index(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    auth.authorize(Acl::Users, READ)?;
    let page = Page::from_params(&p, 50, fractal::MAX_PER_PAGE)?;
    let (rows, total): (Vec<UserRow>, i64) = fractal::FoldedListQuery {
        columns: COLUMNS,
        from: "FROM users WHERE TRUE",
        count_from: "FROM users WHERE TRUE",
        filters: FILTERS,
        sorts: &[("id", "id"), ("uuid", "uuid")],
        default_order: "id",
    }
    .fetch(&st.db, &p, &page)
    .await?;
    let items = render_typed(&st, &auth, rows, &Includes::from_params(&p)).await?;
    let mut w = fractal::ListWriter::new("user", items.len());
    for u in &items {
        w.push(u);
    }
    Ok(w.finish_paginated(
        total,
        &page,
        &format!("{}/api/application/users", st.cfg.app_url),
    ))
}

async fn one(
    st: &AppState,
    auth: &Auth,
    row: UserRow,
    p: &Params,
    status: StatusCode,
    meta: Option<Value>,
) -> ApiResult<Response> {
    let id = row.id;
    let mut v = render(st, auth, vec![row], &Includes::from_params(p)).await?;
    let attrs = v.pop().ok_or_else(ApiError::not_found)?;
    let _ = id;
    Ok(fractal::respond(
        status,
        &fractal::item("user", attrs, meta),
    ))
}

#[utoipa::path(get, path = "/api/application/users/{user}", tag = "users",
    params(("user" = i64, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::User>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, id(&user)?).await?;
    auth.authorize(Acl::Users, READ)?;
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

#[utoipa::path(get, path = "/api/application/users/external/{external_id}", tag = "users",
    params(("external_id" = String, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::User>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn external(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(ext): Path<String>,
) -> ApiResult<Response> {
    let row = sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {COLUMNS} FROM users WHERE external_id = $1"
    ))
    .bind(&ext)
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(ApiError::not_found)?;
    auth.authorize(Acl::Users, READ)?;
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

const USERNAME_MESSAGE: &str = "The :attribute must start and end with alpha-numeric characters and\n                contain only letters, numbers, dashes, underscores, and periods.";

fn valid_username(v: &Value) -> bool {
    v.as_str()
        .map(|s| crate::regex!(r"^[a-z0-9]([\w\.-]+)[a-z0-9]$").is_match(&s.to_lowercase()))
        .unwrap_or(false)
}

/// Upstream's StoreUserRequest / UpdateUserRequest rules (the same set on PATCH,
/// with `unique` ignoring the user itself).
async fn validate(st: &AppState, body: &Body, ignore: Option<i64>) -> ApiResult<()> {
    let mut v = Validator::new(&body.0);
    let seq_email = v.next_seq();
    let email_ok = v.check(
        "email",
        &[Rule::Required, Rule::Email, Rule::Between(1.0, 191.0)],
    );
    let seq_ext = v.next_seq();
    let ext_ok = v.check_as(
        "external_id",
        "Third Party Identifier",
        &[
            Rule::Sometimes,
            Rule::Nullable,
            Rule::String,
            Rule::Max(191.0),
        ],
    );
    let seq_user = v.next_seq();
    let user_ok = v.check(
        "username",
        &[
            Rule::Required,
            Rule::Between(1.0, 191.0),
            Rule::Custom {
                rule: "p_username",
                message: USERNAME_MESSAGE,
                test: valid_username,
            },
        ],
    );
    v.check("password", &[Rule::Sometimes, Rule::Nullable, Rule::String]);
    v.check_as("root_admin", "Root Administrator Status", &[Rule::Boolean]);
    v.check("language", &[Rule::String, Rule::In(&["en"])]);
    v.check(
        "first_name",
        &[Rule::Required, Rule::String, Rule::Between(1.0, 191.0)],
    );
    v.check(
        "last_name",
        &[Rule::Required, Rule::String, Rule::Between(1.0, 191.0)],
    );
    let ignore = ignore.unwrap_or(0);
    if email_ok {
        let email = as_string(body.get("email")).unwrap_or_default();
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2)",
        )
        .bind(&email)
        .bind(ignore)
        .fetch_one(&st.db)
        .await?;
        if taken {
            v.add_after(
                seq_email,
                "email",
                "unique",
                "The email has already been taken.",
            );
        }
    }
    if ext_ok {
        if let Some(ext) = as_string(body.get("external_id")) {
            let taken: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM users WHERE external_id = $1 AND id <> $2)",
            )
            .bind(&ext)
            .bind(ignore)
            .fetch_one(&st.db)
            .await?;
            if taken {
                v.add_after(
                    seq_ext,
                    "external_id",
                    "unique",
                    "The Third Party Identifier has already been taken.",
                );
            }
        }
    }
    if user_ok {
        let username = as_string(body.get("username")).unwrap_or_default();
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1) AND id <> $2)",
        )
        .bind(&username)
        .bind(ignore)
        .fetch_one(&st.db)
        .await?;
        if taken {
            v.add_after(
                seq_user,
                "username",
                "unique",
                "The username has already been taken.",
            );
        }
    }
    v.finish()
}

const UNIQUES: &[(&str, &str, &str)] = &[
    ("users_email_unique", "email", "email"),
    ("users_username_unique", "username", "username"),
    (
        "users_external_id_key",
        "external_id",
        "Third Party Identifier",
    ),
];

/// Creates a user (shared with the operator CLI). Returns the new row.
pub async fn create(st: &AppState, body: &Body) -> ApiResult<UserRow> {
    validate(st, body, None).await?;
    let password = match as_string(body.get("password")) {
        Some(p) => p,
        None => crate::crypto::random_string(32),
    };
    let hash = tokio::task::spawn_blocking(move || crate::crypto::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let res = sqlx::query_as::<_, UserRow>(&format!(
        "INSERT INTO users (external_id, uuid, username, email, name_first, name_last, password, language, root_admin)
         VALUES ($1, $2, lower($3), $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(as_string(body.get("external_id")))
    .bind(uuid::Uuid::new_v4())
    .bind(as_string(body.get("username")).unwrap_or_default())
    .bind(as_string(body.get("email")).unwrap_or_default())
    .bind(as_string(body.get("first_name")).unwrap_or_default())
    .bind(as_string(body.get("last_name")).unwrap_or_default())
    .bind(hash)
    .bind(as_string(body.get("language")).unwrap_or_else(|| "en".into()))
    .bind(as_bool(body.get("root_admin")).unwrap_or(false))
    .fetch_one(&st.db)
    .await;
    res.map_err(|e| unique_violation(&e, UNIQUES).unwrap_or_else(|| e.into()))
}

#[utoipa::path(post, path = "/api/application/users", tag = "users", request_body = openapi::application::UserRequest,
    responses((status = 201, body = openapi::Item<openapi::application::User>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
) -> ApiResult<Response> {
    auth.authorize(Acl::Users, WRITE)?;
    let row = create(&st, &body).await?;
    let meta = json!({"resource": format!("{}/api/application/users/{}", st.cfg.app_url, row.id)});
    one(&st, &auth, row, &p, StatusCode::CREATED, Some(meta)).await
}

#[utoipa::path(patch, path = "/api/application/users/{user}", tag = "users", request_body = openapi::application::UserRequest,
    params(("user" = i64, Path)),
    responses((status = 200, body = openapi::Item<openapi::application::User>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let existing = find(&st, id(&user)?).await?;
    auth.authorize(Acl::Users, WRITE)?;
    validate(&st, &body, Some(existing.id)).await?;
    let hash = match as_string(body.get("password")) {
        Some(pw) => Some(
            tokio::task::spawn_blocking(move || crate::crypto::hash_password(&pw))
                .await
                .map_err(ApiError::internal)??,
        ),
        None => None,
    };
    // external_id: omitted → unchanged, null → cleared.
    let ext_present = body.0.get("external_id").is_some();
    let res = sqlx::query_as::<_, UserRow>(&format!(
        "UPDATE users SET email = $2, username = lower($3), name_first = $4, name_last = $5,
            password = COALESCE($6, password),
            language = COALESCE($7, language),
            root_admin = COALESCE($8, root_admin),
            external_id = CASE WHEN $9 THEN $10 ELSE external_id END,
            updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(existing.id)
    .bind(as_string(body.get("email")).unwrap_or_default())
    .bind(as_string(body.get("username")).unwrap_or_default())
    .bind(as_string(body.get("first_name")).unwrap_or_default())
    .bind(as_string(body.get("last_name")).unwrap_or_default())
    .bind(hash)
    .bind(as_string(body.get("language")))
    .bind(as_bool(body.get("root_admin")))
    .bind(ext_present)
    .bind(as_string(body.get("external_id")))
    .fetch_one(&st.db)
    .await;
    let row = res.map_err(|e| unique_violation(&e, UNIQUES).unwrap_or_else(|| e.into()))?;
    st.auth_cache.forget_user(existing.id);
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

#[utoipa::path(delete, path = "/api/application/users/{user}", tag = "users", params(("user" = i64, Path)),
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let existing = find(&st, id(&user)?).await?;
    auth.authorize(Acl::Users, WRITE)?;
    // The owner check and the delete run in one statement, so a server created in
    // between cannot be orphaned (the foreign key refuses it as well).
    let deleted = sqlx::query("DELETE FROM users WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM servers WHERE owner_id = $1)")
        .bind(existing.id)
        .execute(&st.db)
        .await;
    st.auth_cache.forget_user(existing.id);
    super::delete_outcome(deleted, owns_servers)
}

fn owns_servers() -> ApiError {
    ApiError::display(
        "DisplayException",
        "Cannot delete a user with active servers attached to their account. Please delete their servers before continuing.",
    )
}
