//! Application nests and eggs (reference §6.10, transformers §8.6–§8.9), and the
//! server-variable rows printed by the server `variables` include.

use super::{id, servers};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ};
use crate::http::fractal::{self, Includes, Page};
use crate::http::input::Params;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use openapi::application::{EggConfig, EggScript, EggVariable, ServerValue};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/nests", get(index))
        .route("/nests/{nest}", get(view))
        .route("/nests/{nest}/eggs", get(eggs_index))
        .route("/nests/{nest}/eggs/{egg}", get(egg_view))
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NestRow {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub author: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EggRow {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub nest_id: i64,
    pub author: String,
    pub name: String,
    pub description: Option<String>,
    pub features: Option<Value>,
    pub docker_images: Value,
    pub file_denylist: Option<Value>,
    pub update_url: Option<String>,
    pub config_files: Option<String>,
    pub config_startup: Option<String>,
    pub config_logs: Option<String>,
    pub config_stop: Option<String>,
    pub config_from: Option<i64>,
    pub startup: Option<String>,
    pub script_container: String,
    pub copy_script_from: Option<i64>,
    pub script_entry: String,
    pub script_is_privileged: bool,
    pub script_install: Option<String>,
    pub force_outgoing_ip: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VariableRow {
    pub id: i64,
    pub egg_id: i64,
    pub name: String,
    pub description: String,
    pub env_variable: String,
    pub default_value: String,
    pub user_viewable: bool,
    pub user_editable: bool,
    pub rules: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn transform_nest(n: &NestRow) -> openapi::application::Nest {
    openapi::application::Nest {
        id: n.id,
        uuid: n.uuid.to_string(),
        author: n.author.clone(),
        name: n.name.clone(),
        description: n.description.clone(),
        created_at: n.created_at,
        updated_at: n.updated_at,
        relationships: None,
    }
}

/// Decodes a stored JSON text; upstream prints an empty JSON object as `[]`.
fn decode(text: Option<&str>, empty_object_as_list: bool) -> Value {
    let v = text
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null);
    match v {
        Value::Object(ref o) if o.is_empty() && empty_object_as_list => json!([]),
        other => other,
    }
}

pub fn transform_egg(e: &EggRow) -> openapi::application::Egg {
    let images = match &e.docker_images {
        Value::Object(o) if !o.is_empty() => Value::Object(o.clone()),
        _ => json!([]),
    };
    let first_image = e
        .docker_images
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let files = match decode(e.config_files.as_deref(), false) {
        Value::Null => json!({}),
        Value::Object(o) if o.is_empty() => json!({}),
        v => v,
    };
    openapi::application::Egg {
        id: e.id,
        uuid: e.uuid.to_string(),
        name: e.name.clone(),
        nest: e.nest_id,
        author: e.author.clone(),
        description: e.description.clone(),
        docker_image: first_image,
        docker_images: images,
        config: EggConfig {
            files,
            startup: decode(e.config_startup.as_deref(), true),
            stop: e.config_stop.clone(),
            logs: decode(e.config_logs.as_deref(), true),
            file_denylist: e
                .file_denylist
                .as_ref()
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                }),
            extends: e.config_from,
        },
        startup: e.startup.clone(),
        script: EggScript {
            privileged: e.script_is_privileged,
            install: e.script_install.clone(),
            entry: e.script_entry.clone(),
            container: e.script_container.clone(),
            extends: e.copy_script_from,
        },
        created_at: e.created_at,
        updated_at: e.updated_at,
        relationships: None,
    }
}

pub fn transform_variable(v: &VariableRow, server_value: ServerValue) -> EggVariable {
    EggVariable {
        id: v.id,
        egg_id: v.egg_id,
        name: v.name.clone(),
        description: v.description.clone(),
        env_variable: v.env_variable.clone(),
        default_value: v.default_value.clone(),
        user_viewable: v.user_viewable,
        user_editable: v.user_editable,
        rules: v.rules.clone(),
        created_at: v.created_at,
        updated_at: v.updated_at,
        server_value,
    }
}

pub async fn load_nests(st: &AppState, ids: &[i64]) -> ApiResult<Vec<NestRow>> {
    Ok(sqlx::query_as::<_, NestRow>("SELECT id, uuid, author, name, description, created_at, updated_at FROM nests WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(&st.db)
        .await?)
}

pub async fn load_eggs_where(st: &AppState, cond: &str, ids: &[i64]) -> ApiResult<Vec<EggRow>> {
    Ok(sqlx::query_as::<_, EggRow>(&format!(
        "SELECT e.* FROM eggs e WHERE {cond} ORDER BY e.id"
    ))
    .bind(ids)
    .fetch_all(&st.db)
    .await?)
}

/// `server_variable` items per server (every egg variable with the server's value).
pub async fn server_variables(st: &AppState, server_ids: &[i64]) -> ApiResult<Vec<(i64, Value)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        server_id: i64,
        #[sqlx(flatten)]
        var: VariableRow,
        server_value: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.id AS server_id, v.*, sv.variable_value AS server_value FROM servers s
         JOIN egg_variables v ON v.egg_id = s.egg_id
         LEFT JOIN server_variables sv ON sv.server_id = s.id AND sv.variable_id = v.id
         WHERE s.id = ANY($1) ORDER BY s.id, v.id",
    )
    .bind(server_ids)
    .fetch_all(&st.db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let sv = match r.server_value {
                Some(v) => ServerValue::Value(v),
                None => ServerValue::Null,
            };
            Ok((
                r.server_id,
                serde_json::to_value(transform_variable(&r.var, sv)).map_err(ApiError::internal)?,
            ))
        })
        .collect()
}

/// Nests with `eggs` / `servers`.
pub fn render_nests<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<NestRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        let ids: Vec<i64> = rows.iter().map(|n| n.id).collect();
        let mut eggs_by: HashMap<i64, Vec<Value>> = HashMap::new();
        let mut servers_by: HashMap<i64, Vec<Value>> = HashMap::new();
        if inc.has("eggs") && auth.can_include(Acl::Eggs) {
            let e = load_eggs_where(st, "e.nest_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = e.iter().map(|x| x.nest_id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(render_eggs(st, auth, e, &inc.nested("eggs")).await?)
            {
                eggs_by.entry(k).or_default().push(v);
            }
        }
        if inc.has("servers") && auth.can_include(Acl::Servers) {
            let s = servers::load_where(st, "s.nest_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = s.iter().map(|x| x.nest_id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(servers::render(st, auth, s, &inc.nested("servers")).await?)
            {
                servers_by.entry(k).or_default().push(v);
            }
        }
        let mut out = Vec::new();
        for n in rows {
            let mut v = serde_json::to_value(transform_nest(&n)).map_err(ApiError::internal)?;
            let mut rel = Map::new();
            for (name, acl, map, obj) in [
                ("eggs", Acl::Eggs, &mut eggs_by, "egg"),
                ("servers", Acl::Servers, &mut servers_by, "server"),
            ] {
                if inc.has(name) {
                    rel.insert(
                        name.into(),
                        if auth.can_include(acl) {
                            fractal::list(obj, map.remove(&n.id).unwrap_or_default())
                        } else {
                            fractal::null_resource()
                        },
                    );
                }
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

/// Eggs with `nest`, `servers`, `config`, `script`, `variables`.
pub fn render_eggs<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<EggRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        let ids: Vec<i64> = rows.iter().map(|e| e.id).collect();
        let mut nests_by: HashMap<i64, Value> = HashMap::new();
        let mut servers_by: HashMap<i64, Vec<Value>> = HashMap::new();
        let mut vars_by: HashMap<i64, Vec<Value>> = HashMap::new();
        let mut parents: HashMap<i64, EggRow> = HashMap::new();
        if inc.has("nest") && auth.can_include(Acl::Nests) {
            let nids: Vec<i64> = rows.iter().map(|e| e.nest_id).collect();
            let n = load_nests(st, &nids).await?;
            let keys: Vec<i64> = n.iter().map(|x| x.id).collect();
            for (k, v) in keys.into_iter().zip(render_nests(st, auth, n, &inc.nested("nest")).await?) {
                nests_by.insert(k, v);
            }
        }
        if inc.has("servers") && auth.can_include(Acl::Servers) {
            let s = servers::load_where(st, "s.egg_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = s.iter().map(|x| x.egg_id).collect();
            for (k, v) in keys.into_iter().zip(servers::render(st, auth, s, &inc.nested("servers")).await?) {
                servers_by.entry(k).or_default().push(v);
            }
        }
        if inc.has("variables") && auth.can_include(Acl::Eggs) {
            let vars: Vec<VariableRow> = sqlx::query_as("SELECT * FROM egg_variables WHERE egg_id = ANY($1) ORDER BY id")
                .bind(&ids)
                .fetch_all(&st.db)
                .await?;
            for var in vars {
                let v = serde_json::to_value(transform_variable(&var, ServerValue::Absent)).map_err(ApiError::internal)?;
                vars_by.entry(var.egg_id).or_default().push(v);
            }
        }
        if inc.has("config") || inc.has("script") {
            let pids: Vec<i64> = rows.iter().flat_map(|e| [e.config_from, e.copy_script_from]).flatten().collect();
            for p in load_eggs_where(st, "e.id = ANY($1)", &pids).await? {
                parents.insert(p.id, p);
            }
        }
        let mut out = Vec::new();
        for e in rows {
            let mut v = serde_json::to_value(transform_egg(&e)).map_err(ApiError::internal)?;
            let mut rel = Map::new();
            if inc.has("nest") {
                rel.insert(
                    "nest".into(),
                    nests_by.get(&e.nest_id).filter(|_| auth.can_include(Acl::Nests)).map(|n| fractal::item("nest", n.clone(), None)).unwrap_or_else(fractal::null_resource),
                );
            }
            if inc.has("servers") {
                rel.insert(
                    "servers".into(),
                    if auth.can_include(Acl::Servers) { fractal::list("server", servers_by.remove(&e.id).unwrap_or_default()) } else { fractal::null_resource() },
                );
            }
            if inc.has("config") {
                // Only eggs that extend another carry this include; values inherit.
                let val = match e.config_from.and_then(|p| parents.get(&p)) {
                    Some(parent) => {
                        let pick = |own: &Option<String>, par: &Option<String>| own.clone().or_else(|| par.clone());
                        json!({"object": null, "attributes": {
                            "files": decode(pick(&e.config_files, &parent.config_files).as_deref(), false),
                            "startup": decode(pick(&e.config_startup, &parent.config_startup).as_deref(), false),
                            "stop": pick(&e.config_stop, &parent.config_stop),
                            "logs": decode(pick(&e.config_logs, &parent.config_logs).as_deref(), false),
                        }})
                    }
                    None => fractal::null_resource(),
                };
                rel.insert("config".into(), val);
            }
            if inc.has("script") {
                let val = match e.copy_script_from.and_then(|p| parents.get(&p)) {
                    Some(parent) => json!({"object": null, "attributes": {
                        "privileged": e.script_is_privileged,
                        "install": e.script_install.clone().or_else(|| parent.script_install.clone()),
                        "entry": e.script_entry,
                        "container": e.script_container,
                    }}),
                    None => fractal::null_resource(),
                };
                rel.insert("script".into(), val);
            }
            if inc.has("variables") {
                rel.insert(
                    "variables".into(),
                    if auth.can_include(Acl::Eggs) { fractal::list("egg_variable", vars_by.remove(&e.id).unwrap_or_default()) } else { fractal::null_resource() },
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

async fn find_nest(st: &AppState, raw: &str) -> ApiResult<NestRow> {
    load_nests(st, &[id(raw)?])
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(get, path = "/api/application/nests", tag = "nests",
    params(("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("include" = Option<String>, Query, description = "eggs, servers")),
    responses((status = 200, body = openapi::List<openapi::application::Nest>)), security(("api_key" = [])))]
pub async fn index(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    auth.authorize(Acl::Nests, READ)?;
    let page = Page::from_params(&p, 50, fractal::MAX_PER_PAGE)?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nests")
        .fetch_one(&st.db)
        .await?;
    let rows: Vec<NestRow> = sqlx::query_as("SELECT id, uuid, author, name, description, created_at, updated_at FROM nests ORDER BY id LIMIT $1 OFFSET $2")
        .bind(page.per_page)
        .bind(page.offset())
        .fetch_all(&st.db)
        .await?;
    let count = rows.len();
    let items = render_nests(&st, &auth, rows, &Includes::from_params(&p)).await?;
    let meta = fractal::pagination(
        total,
        count,
        &page,
        &format!("{}/api/application/nests", st.cfg.app_url),
        None,
    );
    Ok(fractal::ok(&fractal::paginated("nest", items, meta)))
}

#[utoipa::path(get, path = "/api/application/nests/{nest}", tag = "nests", params(("nest" = i64, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::Nest>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let n = find_nest(&st, &raw).await?;
    auth.authorize(Acl::Nests, READ)?;
    let attrs = render_nests(&st, &auth, vec![n], &Includes::from_params(&p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&fractal::item("nest", attrs, None)))
}

#[utoipa::path(get, path = "/api/application/nests/{nest}/eggs", tag = "nests",
    params(("nest" = i64, Path), ("include" = Option<String>, Query, description = "nest, servers, config, script, variables")),
    responses((status = 200, body = openapi::List<openapi::application::Egg>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn eggs_index(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let n = find_nest(&st, &raw).await?;
    auth.authorize(Acl::Eggs, READ)?;
    let rows = load_eggs_where(&st, "e.nest_id = ANY($1)", &[n.id]).await?;
    let items = render_eggs(&st, &auth, rows, &Includes::from_params(&p)).await?;
    Ok(fractal::ok(&fractal::list("egg", items)))
}

#[utoipa::path(get, path = "/api/application/nests/{nest}/eggs/{egg}", tag = "nests",
    params(("nest" = i64, Path), ("egg" = i64, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::Egg>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn egg_view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path((raw, egg)): Path<(String, String)>,
) -> ApiResult<Response> {
    let n = find_nest(&st, &raw).await?;
    let egg_id = id(&egg)?;
    let row = load_eggs_where(&st, "e.id = ANY($1)", &[egg_id])
        .await?
        .pop()
        .filter(|e| e.nest_id == n.id)
        .ok_or_else(ApiError::not_found)?;
    auth.authorize(Acl::Eggs, READ)?;
    let attrs = render_eggs(&st, &auth, vec![row], &Includes::from_params(&p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&fractal::item("egg", attrs, None)))
}
