//! Application server databases (reference §6.9, transformers §8.10–§8.12): real
//! databases and users on a MySQL/MariaDB database host, with their passwords
//! encrypted at rest; also the subuser rows printed by the server `subusers` include.

use super::{id, servers};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ, WRITE};
use crate::http::fractal::{self, Includes};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{as_i64, as_string, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Map, Value};
use sqlx::Connection;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/databases", get(index).post(store))
        .route(
            "/servers/{server}/databases/{database}",
            get(view).delete(delete),
        )
        .route(
            "/servers/{server}/databases/{database}/reset-password",
            post(reset_password),
        )
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DatabaseRow {
    pub id: i64,
    pub server_id: i64,
    pub database_host_id: i64,
    pub database: String,
    pub username: String,
    pub remote: String,
    pub password: String,
    pub max_connections: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct HostRow {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub username: String,
    pub password: String,
    pub max_databases: Option<i64>,
    pub node_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn transform(d: &DatabaseRow) -> openapi::application::ServerDatabase {
    openapi::application::ServerDatabase {
        id: d.id,
        server: d.server_id,
        host: d.database_host_id,
        database: d.database.clone(),
        username: d.username.clone(),
        remote: d.remote.clone(),
        max_connections: d.max_connections,
        created_at: d.created_at,
        updated_at: d.updated_at,
        relationships: None,
    }
}

pub fn transform_host(h: &HostRow) -> openapi::application::DatabaseHost {
    openapi::application::DatabaseHost {
        id: h.id,
        name: h.name.clone(),
        host: h.host.clone(),
        port: h.port as i64,
        username: h.username.clone(),
        node: h.node_id,
        created_at: h.created_at,
        updated_at: h.updated_at,
        relationships: None,
    }
}

pub async fn load_where(st: &AppState, cond: &str, ids: &[i64]) -> ApiResult<Vec<DatabaseRow>> {
    Ok(sqlx::query_as::<_, DatabaseRow>(&format!(
        "SELECT d.* FROM databases d WHERE {cond} ORDER BY d.id"
    ))
    .bind(ids)
    .fetch_all(&st.db)
    .await?)
}

pub async fn load_hosts(st: &AppState, ids: &[i64]) -> ApiResult<Vec<HostRow>> {
    Ok(
        sqlx::query_as::<_, HostRow>("SELECT * FROM database_hosts WHERE id = ANY($1) ORDER BY id")
            .bind(ids)
            .fetch_all(&st.db)
            .await?,
    )
}

/// `subuser` items per server.
pub async fn load_subusers(st: &AppState, server_ids: &[i64]) -> ApiResult<Vec<(i64, Value)>> {
    type Row = (i64, i64, i64, Value, DateTime<Utc>, DateTime<Utc>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, user_id, server_id, permissions, created_at, updated_at FROM subusers WHERE server_id = ANY($1) ORDER BY id",
    )
    .bind(server_ids)
    .fetch_all(&st.db)
    .await?;
    rows.into_iter()
        .map(|(id, user_id, server_id, perms, c, u)| {
            let s = openapi::application::Subuser {
                id,
                user_id,
                server_id,
                permissions: perms
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                created_at: c,
                updated_at: u,
                relationships: None,
            };
            Ok((
                server_id,
                serde_json::to_value(s).map_err(ApiError::internal)?,
            ))
        })
        .collect()
}

/// Databases with `password` (always allowed) / `host`.
pub fn render<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<DatabaseRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        let mut hosts: HashMap<i64, Value> = HashMap::new();
        if inc.has("host") && auth.can_include(Acl::DatabaseHosts) {
            let hids: Vec<i64> = rows.iter().map(|d| d.database_host_id).collect();
            for h in load_hosts(st, &hids).await? {
                hosts.insert(
                    h.id,
                    serde_json::to_value(transform_host(&h)).map_err(ApiError::internal)?,
                );
            }
        }
        let mut out = Vec::new();
        for d in rows {
            let mut v = serde_json::to_value(transform(&d)).map_err(ApiError::internal)?;
            let mut rel = Map::new();
            if inc.has("password") {
                rel.insert(
                    "password".into(),
                    fractal::item(
                        "database_password",
                        json!({"password": st.enc.decrypt(&d.password)?}),
                        None,
                    ),
                );
            }
            if inc.has("host") {
                rel.insert(
                    "host".into(),
                    hosts
                        .get(&d.database_host_id)
                        .map(|h| fractal::item("database_host", h.clone(), None))
                        .unwrap_or_else(fractal::null_resource),
                );
            }
            if !rel.is_empty() {
                v["relationships"] = Value::Object(rel);
            }
            out.push(v);
        }
        Ok(out)
    }
    .boxed()
}

// ---- database host operations ---------------------------------------------------

async fn host_conn(st: &AppState, h: &HostRow) -> ApiResult<sqlx::MySqlConnection> {
    let password = st.enc.decrypt(&h.password)?;
    let mut opts = sqlx::mysql::MySqlConnectOptions::new()
        .host(&h.host)
        .port(h.port as u16)
        .username(&h.username);
    // An empty password means "none": sending an empty one is refused by MySQL.
    if !password.is_empty() {
        opts = opts.password(&password);
    }
    sqlx::MySqlConnection::connect_with(&opts)
        .await
        .map_err(|e| {
            tracing::warn!(host = h.id, error = %e, "database host unreachable");
            ApiError::display(
                "DisplayException",
                "Could not connect to the database host for this server.",
            )
        })
}

/// Runs one administrative statement on a database host. (A plain
/// `raw_sql(..).execute(&mut conn)` in a loop trips an HRTB `Send` inference bug.)
fn exec(
    c: &mut sqlx::MySqlConnection,
    sql: String,
) -> futures::future::BoxFuture<'_, ApiResult<()>> {
    Box::pin(async move {
        sqlx::Executor::execute(c, sql.as_str())
            .await
            .map_err(ApiError::internal)?;
        Ok(())
    })
}

fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Creates the database and its user on the host.
async fn create_on_host(
    st: &AppState,
    h: &HostRow,
    db: &str,
    user: &str,
    remote: &str,
    password: &str,
) -> ApiResult<()> {
    let mut c = host_conn(st, h).await?;
    let account = format!("{}@{}", quote_str(user), quote_str(remote));
    for sql in [
        format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(db)),
        format!("CREATE USER {account} IDENTIFIED BY {}", quote_str(password)),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, LOCK TABLES, CREATE TEMPORARY TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, REFERENCES ON {}.* TO {account}",
            quote_ident(db)
        ),
        "FLUSH PRIVILEGES".to_string(),
    ] {
        exec(&mut c, sql).await?;
    }
    Ok(())
}

async fn drop_on_host(
    st: &AppState,
    h: &HostRow,
    db: &str,
    user: &str,
    remote: &str,
) -> ApiResult<()> {
    let mut c = host_conn(st, h).await?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {}", quote_ident(db)),
        format!(
            "DROP USER IF EXISTS {}@{}",
            quote_str(user),
            quote_str(remote)
        ),
        "FLUSH PRIVILEGES".to_string(),
    ] {
        exec(&mut c, sql).await?;
    }
    Ok(())
}

/// 24 characters with some of `!@=.+^`, as upstream generates.
pub fn generate_password() -> String {
    use rand::seq::SliceRandom;
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let specials = ['!', '@', '=', '.', '+', '^'];
    let mut chars: Vec<char> = crate::crypto::random_string(20).chars().collect();
    for _ in 0..4 {
        chars.push(*specials.choose(&mut rng).unwrap_or(&'!'));
    }
    chars.shuffle(&mut rng);
    let _ = rng.gen::<u8>();
    chars.into_iter().collect()
}

/// Drops every database of a server (used by server deletion).
pub async fn drop_all_for_server(st: &AppState, server_id: i64, force: bool) -> ApiResult<()> {
    let rows = load_where(st, "d.server_id = ANY($1)", &[server_id]).await?;
    for d in rows {
        if let Some(h) = load_hosts(st, &[d.database_host_id]).await?.pop() {
            if let Err(e) = drop_on_host(st, &h, &d.database, &d.username, &d.remote).await {
                if !force {
                    return Err(e);
                }
            }
        }
        sqlx::query("DELETE FROM databases WHERE id = $1")
            .bind(d.id)
            .execute(&st.db)
            .await?;
    }
    Ok(())
}

/// Creates a database for a server (shared with the Client API).
pub async fn create(
    st: &AppState,
    server: &servers::ServerRow,
    name: &str,
    remote: &str,
    host_id: i64,
) -> ApiResult<DatabaseRow> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE server_id = $1")
        .bind(server.id)
        .fetch_one(&st.db)
        .await?;
    if let Some(limit) = server.database_limit {
        if count >= limit {
            return Err(ApiError::display(
                "TooManyDatabasesException",
                "Operation aborted: creating a new database would put this server over the defined limit.",
            ));
        }
    }
    let host = load_hosts(st, &[host_id])
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    let full: String = format!("s{}_{}", server.id, name)
        .chars()
        .take(48)
        .collect();
    let user = format!("u{}_{}", server.id, crate::crypto::random_string(10));
    let password = generate_password();
    // The row first (its unique constraint refuses a duplicate), then the host.
    let row: DatabaseRow = sqlx::query_as(
        "INSERT INTO databases (server_id, database_host_id, database, username, remote, password, max_connections)
         VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING *",
    )
    .bind(server.id)
    .bind(host.id)
    .bind(&full)
    .bind(&user)
    .bind(remote)
    .bind(st.enc.encrypt(&password))
    .fetch_one(&st.db)
    .await
    .map_err(|e| super::unique_violation(&e, &[("databases_database_host_id_database_key", "database", "database")]).unwrap_or_else(|| e.into()))?;
    if let Err(e) = create_on_host(st, &host, &full, &user, remote, &password).await {
        let _ = drop_on_host(st, &host, &full, &user, remote).await;
        sqlx::query("DELETE FROM databases WHERE id = $1")
            .bind(row.id)
            .execute(&st.db)
            .await?;
        return Err(e);
    }
    Ok(row)
}

/// Rotates a database user's password on the host and in the row.
pub async fn rotate_password(st: &AppState, d: &DatabaseRow) -> ApiResult<()> {
    let host = load_hosts(st, &[d.database_host_id])
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    let password = generate_password();
    let mut c = host_conn(st, &host).await?;
    let sql = format!(
        "ALTER USER {}@{} IDENTIFIED BY {}",
        quote_str(&d.username),
        quote_str(&d.remote),
        quote_str(&password)
    );
    exec(&mut c, sql).await?;
    sqlx::query("UPDATE databases SET password = $2, updated_at = now() WHERE id = $1")
        .bind(d.id)
        .bind(st.enc.encrypt(&password))
        .execute(&st.db)
        .await?;
    Ok(())
}

/// Deletes a database on the host and its row.
pub async fn destroy(st: &AppState, d: &DatabaseRow) -> ApiResult<()> {
    let host = load_hosts(st, &[d.database_host_id])
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    drop_on_host(st, &host, &d.database, &d.username, &d.remote).await?;
    sqlx::query("DELETE FROM databases WHERE id = $1")
        .bind(d.id)
        .execute(&st.db)
        .await?;
    Ok(())
}

// ---- routes -----------------------------------------------------------------------

/// Upstream binds `{database}` globally (not scoped to `{server}`); we scope it, so a
/// database of another server is a 404 (upstream bug fixed; no client relies on
/// reaching another server's database through this path).
async fn find(st: &AppState, server_id: i64, raw: &str) -> ApiResult<DatabaseRow> {
    let db_id = id(raw)?;
    load_where(st, "d.id = ANY($1)", &[db_id])
        .await?
        .pop()
        .filter(|d| d.server_id == server_id)
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(get, path = "/api/application/servers/{server}/databases", tag = "server databases",
    params(("server" = i64, Path), ("include" = Option<String>, Query, description = "password, host")),
    responses((status = 200, body = openapi::List<openapi::application::ServerDatabase>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    auth.authorize(Acl::ServerDatabases, READ)?;
    let rows = load_where(&st, "d.server_id = ANY($1)", &[s.id]).await?;
    let items = render(&st, &auth, rows, &Includes::from_params(&p)).await?;
    Ok(fractal::ok(&fractal::list("server_database", items)))
}

#[utoipa::path(get, path = "/api/application/servers/{server}/databases/{database}", tag = "server databases",
    params(("server" = i64, Path), ("database" = i64, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::ServerDatabase>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path((raw, dbid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    let d = find(&st, s.id, &dbid).await?;
    auth.authorize(Acl::ServerDatabases, READ)?;
    let attrs = render(&st, &auth, vec![d], &Includes::from_params(&p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&fractal::item("server_database", attrs, None)))
}

#[utoipa::path(post, path = "/api/application/servers/{server}/databases", tag = "server databases", params(("server" = i64, Path)),
    request_body = openapi::application::ServerDatabaseRequest,
    responses((status = 201, body = openapi::Item<openapi::application::ServerDatabase>), (status = 400, body = openapi::ErrorEnvelope),
              (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    auth.authorize(Acl::ServerDatabases, WRITE)?;
    let mut v = Validator::new(&body.0);
    let seq_db = v.next_seq();
    let db_ok = v.check(
        "database",
        &[Rule::Required, Rule::AlphaDash, Rule::Between(1.0, 48.0)],
    );
    v.check(
        "remote",
        &[
            Rule::Required,
            Rule::String,
            Rule::Regex(crate::regex!(r"^[0-9%.]{1,15}$")),
        ],
    );
    let seq_host = v.next_seq();
    let host_ok = v.check("host", &[Rule::Required, Rule::Integer]);
    let name = as_string(body.get("database")).unwrap_or_default();
    if db_ok {
        let full: String = format!("s{}_{}", s.id, name).chars().take(48).collect();
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM databases WHERE server_id = $1 AND database = $2)",
        )
        .bind(s.id)
        .bind(&full)
        .fetch_one(&st.db)
        .await?;
        if taken {
            v.add_after(
                seq_db,
                "database",
                "unique",
                "The database has already been taken.",
            );
        }
    }
    if host_ok {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM database_hosts WHERE id = $1)")
                .bind(as_i64(body.get("host")))
                .fetch_one(&st.db)
                .await?;
        if !exists {
            v.add_after(seq_host, "host", "exists", "The selected host is invalid.");
        }
    }
    v.finish()?;
    let d = create(
        &st,
        &s,
        &name,
        &as_string(body.get("remote")).unwrap_or_default(),
        as_i64(body.get("host")).unwrap_or(0),
    )
    .await?;
    let meta = json!({"resource": format!("{}/api/application/servers/{}/databases/{}", st.cfg.app_url, s.id, d.id)});
    let attrs = render(&st, &auth, vec![d], &Includes::from_params(&p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::respond(
        StatusCode::CREATED,
        &fractal::item("server_database", attrs, Some(meta)),
    ))
}

#[utoipa::path(post, path = "/api/application/servers/{server}/databases/{database}/reset-password", tag = "server databases",
    params(("server" = i64, Path), ("database" = i64, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn reset_password(
    State(st): State<AppState>,
    auth: Auth,
    Path((raw, dbid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    let d = find(&st, s.id, &dbid).await?;
    auth.authorize(Acl::ServerDatabases, WRITE)?;
    rotate_password(&st, &d).await?;
    Ok(fractal::no_content())
}

#[utoipa::path(delete, path = "/api/application/servers/{server}/databases/{database}", tag = "server databases",
    params(("server" = i64, Path), ("database" = i64, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path((raw, dbid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    let d = find(&st, s.id, &dbid).await?;
    auth.authorize(Acl::ServerDatabases, WRITE)?;
    destroy(&st, &d).await?;
    Ok(fractal::no_content())
}
