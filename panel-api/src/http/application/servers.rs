//! Application servers (reference §6.8, transformer §8.2): listing with filters and
//! includes, creation with upstream's deploy/allocation logic and egg-variable
//! validation, details/build/startup updates, suspension, reinstall and deletion —
//! each reaching the node's daemon as upstream's panel does.

use super::{databases, id, locations, nests, nodes, unique_violation, users};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ, WRITE};
use crate::http::fractal::{self, FilterKind, FilterSpec, Includes, Page};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{as_bool, as_i64, as_string, parse_rules, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete as delete_route, get, patch, post};
use axum::Router;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers", get(index).post(store))
        .route("/servers/external/{external_id}", get(external))
        .route("/servers/{server}", get(view).delete(delete))
        .route("/servers/{server}/details", patch(details))
        .route("/servers/{server}/build", patch(build))
        .route("/servers/{server}/startup", patch(startup))
        .route("/servers/{server}/suspend", post(suspend))
        .route("/servers/{server}/unsuspend", post(unsuspend))
        .route("/servers/{server}/reinstall", post(reinstall))
        .route("/servers/{server}/{force}", delete_route(delete_forced))
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServerRow {
    pub id: i64,
    pub external_id: Option<String>,
    pub uuid: uuid::Uuid,
    pub uuid_short: String,
    pub node_id: i64,
    pub name: String,
    pub description: String,
    pub status: Option<String>,
    pub skip_scripts: bool,
    pub owner_id: i64,
    pub memory: i64,
    pub swap: i64,
    pub disk: i64,
    pub io: i64,
    pub cpu: i64,
    pub threads: Option<String>,
    pub oom_disabled: bool,
    pub allocation_id: i64,
    pub nest_id: i64,
    pub egg_id: i64,
    pub startup: String,
    pub image: String,
    pub allocation_limit: Option<i64>,
    pub database_limit: Option<i64>,
    pub backup_limit: i64,
    pub installed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub location_id: i64,
    pub location_short: String,
}

pub const SELECT: &str = "SELECT s.*, n.location_id, l.short AS location_short FROM servers s
    JOIN nodes n ON n.id = s.node_id JOIN locations l ON l.id = n.location_id";

/// [`ServerRow`]'s columns in its order, for [`ServerRow::decode_at`] (over `s`,
/// `n` = its node, `l` = the node's location).
pub const ROW_COLUMNS: &str = "s.id, s.external_id, s.uuid, s.uuid_short, s.node_id, s.name,
    s.description, s.status, s.skip_scripts, s.owner_id, s.memory, s.swap, s.disk, s.io, s.cpu,
    s.threads, s.oom_disabled, s.allocation_id, s.nest_id, s.egg_id, s.startup, s.image,
    s.allocation_limit, s.database_limit, s.backup_limit, s.installed_at, s.created_at,
    s.updated_at, n.location_id, l.short AS location_short";

/// How many columns [`ROW_COLUMNS`] names.
pub const ROW_WIDTH: usize = 30;

/// A server's environment (egg variables with the server's values) as a JSON
/// array of `[variable id, env_variable, value]`, over the page's `s`.
const ENV_AGG: &str = "(SELECT json_agg(json_build_array(v.id, v.env_variable,
        COALESCE(sv.variable_value, v.default_value)))
    FROM egg_variables v
    LEFT JOIN server_variables sv ON sv.server_id = s.id AND sv.variable_id = v.id
    WHERE v.egg_id = s.egg_id)";

/// A server's allocations as a JSON array of [`nodes::AllocationRow`] tuples
/// (without `server_id`, which is `s.id`).
const ALLOCATION_AGG: &str = "(SELECT json_agg(json_build_array(a.id, a.node_id, a.ip,
        a.ip_alias, a.port, a.notes))
    FROM allocations a WHERE a.server_id = s.id)";

type EnvTuple = (i64, String, String);
type AllocationTuple = (i64, i64, String, Option<String>, i32, Option<String>);

/// One row of the list's page statement: [`ROW_COLUMNS`], [`ENV_AGG`], then
/// [`ALLOCATION_AGG`] when selected, then the page total.
struct PageRow {
    server: ServerRow,
    env: Vec<(String, String)>,
    allocations: Option<Vec<nodes::AllocationRow>>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for PageRow {
    fn from_row(r: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::types::Json;
        use sqlx::Row;
        let server = ServerRow::decode_at(r, 0)?;
        // json_agg keeps no order of its own: sort by id, as the separate queries do.
        let env: Option<Json<Vec<EnvTuple>>> = r.try_get(ROW_WIDTH)?;
        let mut env = env.map(|j| j.0).unwrap_or_default();
        env.sort_unstable_by_key(|v| v.0);
        let env = env.into_iter().map(|(_, k, v)| (k, v)).collect();
        // The page total is the last column; allocations sit before it when selected.
        let allocations = if r.len() > ROW_WIDTH + 2 {
            let a: Option<Json<Vec<AllocationTuple>>> = r.try_get(ROW_WIDTH + 1)?;
            let mut a = a.map(|j| j.0).unwrap_or_default();
            a.sort_unstable_by_key(|x| x.0);
            Some(
                a.into_iter()
                    .map(
                        |(id, node_id, ip, ip_alias, port, notes)| nodes::AllocationRow {
                            id,
                            node_id,
                            ip,
                            ip_alias,
                            port,
                            server_id: Some(server.id),
                            notes,
                        },
                    )
                    .collect(),
            )
        } else {
            None
        };
        Ok(PageRow {
            server,
            env,
            allocations,
        })
    }
}

impl ServerRow {
    /// Decodes [`ROW_COLUMNS`] from column `i` on.
    pub fn decode_at(r: &sqlx::postgres::PgRow, i: usize) -> Result<ServerRow, sqlx::Error> {
        use sqlx::Row;
        Ok(ServerRow {
            id: r.try_get(i)?,
            external_id: r.try_get(i + 1)?,
            uuid: r.try_get(i + 2)?,
            uuid_short: r.try_get(i + 3)?,
            node_id: r.try_get(i + 4)?,
            name: r.try_get(i + 5)?,
            description: r.try_get(i + 6)?,
            status: r.try_get(i + 7)?,
            skip_scripts: r.try_get(i + 8)?,
            owner_id: r.try_get(i + 9)?,
            memory: r.try_get(i + 10)?,
            swap: r.try_get(i + 11)?,
            disk: r.try_get(i + 12)?,
            io: r.try_get(i + 13)?,
            cpu: r.try_get(i + 14)?,
            threads: r.try_get(i + 15)?,
            oom_disabled: r.try_get(i + 16)?,
            allocation_id: r.try_get(i + 17)?,
            nest_id: r.try_get(i + 18)?,
            egg_id: r.try_get(i + 19)?,
            startup: r.try_get(i + 20)?,
            image: r.try_get(i + 21)?,
            allocation_limit: r.try_get(i + 22)?,
            database_limit: r.try_get(i + 23)?,
            backup_limit: r.try_get(i + 24)?,
            installed_at: r.try_get(i + 25)?,
            created_at: r.try_get(i + 26)?,
            updated_at: r.try_get(i + 27)?,
            location_id: r.try_get(i + 28)?,
            location_short: r.try_get(i + 29)?,
        })
    }
}

/// Servers matching `cond` (over `s` / `n`, `$1` bound to `ids`), in id order.
pub async fn load_where(st: &AppState, cond: &str, ids: &[i64]) -> ApiResult<Vec<ServerRow>> {
    Ok(
        sqlx::query_as::<_, ServerRow>(&format!("{SELECT} WHERE {cond} ORDER BY s.id"))
            .bind(ids)
            .fetch_all(&st.db)
            .await?,
    )
}

pub async fn find(st: &AppState, server_id: i64) -> ApiResult<ServerRow> {
    sqlx::query_as::<_, ServerRow>(&format!("{SELECT} WHERE s.id = $1"))
        .bind(server_id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `ENV → server value ?? default` per server, in egg-variable order.
pub async fn environments(
    st: &AppState,
    ids: &[i64],
) -> ApiResult<HashMap<i64, Vec<(String, String)>>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT s.id, v.env_variable, COALESCE(sv.variable_value, v.default_value)
         FROM servers s JOIN egg_variables v ON v.egg_id = s.egg_id
         LEFT JOIN server_variables sv ON sv.server_id = s.id AND sv.variable_id = v.id
         WHERE s.id = ANY($1) ORDER BY s.id, v.id",
    )
    .bind(ids)
    .fetch_all(&st.db)
    .await?;
    let mut out: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    for (sid, k, v) in rows {
        out.entry(sid).or_default().push((k, v));
    }
    Ok(out)
}

pub fn transform(s: &ServerRow, env: &[(String, String)]) -> openapi::application::Server {
    transform_owned(s.clone(), env.to_vec())
}

/// [`transform`] taking the row and its environment, so strings move rather than
/// being copied.
pub fn transform_owned(s: ServerRow, env: Vec<(String, String)>) -> openapi::application::Server {
    use openapi::application::*;
    let mut environment = Map::with_capacity(env.len() + 4);
    for (k, v) in env {
        environment.insert(k, Value::String(v));
    }
    let uuid = s.uuid.to_string();
    environment.insert("STARTUP".into(), Value::String(s.startup.clone()));
    environment.insert("P_SERVER_LOCATION".into(), Value::String(s.location_short));
    environment.insert("P_SERVER_UUID".into(), Value::String(uuid.clone()));
    environment.insert(
        "P_SERVER_ALLOCATION_LIMIT".into(),
        json!(s.allocation_limit),
    );
    let installing = matches!(
        s.status.as_deref(),
        Some("installing") | Some("install_failed")
    );
    let suspended = s.status.as_deref() == Some("suspended");
    Server {
        id: s.id,
        external_id: s.external_id,
        uuid,
        identifier: s.uuid_short,
        name: s.name,
        description: s.description,
        status: s.status,
        suspended,
        limits: ServerLimits {
            memory: s.memory,
            swap: s.swap,
            disk: s.disk,
            io: s.io,
            cpu: s.cpu,
            threads: s.threads,
            oom_disabled: s.oom_disabled,
        },
        feature_limits: FeatureLimits {
            databases: s.database_limit,
            allocations: s.allocation_limit,
            backups: s.backup_limit,
        },
        user: s.owner_id,
        node: s.node_id,
        allocation: s.allocation_id,
        nest: s.nest_id,
        egg: s.egg_id,
        container: ServerContainer {
            startup_command: s.startup,
            image: s.image,
            installed: if installing { 0 } else { 1 },
            environment,
        },
        updated_at: s.updated_at,
        created_at: s.created_at,
        relationships: None,
    }
}

type Grouped = HashMap<i64, Vec<Value>>;

fn group(keys: Vec<i64>, vals: Vec<Value>) -> Grouped {
    let mut m: Grouped = HashMap::new();
    for (k, v) in keys.into_iter().zip(vals) {
        m.entry(k).or_default().push(v);
    }
    m
}

/// A server's attributes as encoded: the transformer struct, then the requested
/// relationships in include order (upstream puts them last).
#[derive(serde::Serialize)]
pub struct ServerAttributes {
    #[serde(flatten)]
    pub server: openapi::application::Server,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "relationships"
    )]
    pub relationships: Vec<(&'static str, Related)>,
}

/// One relationship: JSON from another resource's renderer, or allocations that
/// are encoded straight from their transformer structs.
pub enum Related {
    Json(Value),
    Allocations(Vec<openapi::application::Allocation>),
}

impl serde::Serialize for Related {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Related::Json(v) => v.serialize(s),
            Related::Allocations(list) => fractal::TypedList {
                object: "allocation",
                items: list,
            }
            .serialize(s),
        }
    }
}

fn relationships<S: serde::Serializer>(
    rels: &[(&'static str, Related)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(rels.len()))?;
    for (name, v) in rels {
        m.serialize_entry(name, v)?;
    }
    m.end()
}

/// Servers with any of `allocations`, `user`, `subusers`, `nest`, `egg`,
/// `variables`, `location`, `node`, `databases`, as JSON.
pub fn render<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<ServerRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        render_typed(st, auth, rows, inc, Prefetched::default())
            .await?
            .into_iter()
            .map(|s| serde_json::to_value(s).map_err(ApiError::internal))
            .collect()
    }
    .boxed()
}

/// What the page statement already brought along (see [`PageRow`]); the rest
/// [`render_typed`] loads itself.
#[derive(Default)]
pub struct Prefetched {
    pub envs: Option<HashMap<i64, Vec<(String, String)>>>,
    pub allocations: Option<Vec<nodes::AllocationRow>>,
}

/// [`render`] without the JSON tree: what the list and item answers encode.
pub fn render_typed<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<ServerRow>,
    inc: &'a Includes,
    pre: Prefetched,
) -> BoxFuture<'a, ApiResult<Vec<ServerAttributes>>> {
    async move {
        let ids: Vec<i64> = rows.iter().map(|s| s.id).collect();
        // The allocations and the environments are independent: fetch them at once.
        let want_allocations = inc.has("allocations") && auth.can_include(Acl::Allocations);
        let Prefetched {
            envs: pre_envs,
            allocations: pre_allocations,
        } = pre;
        let allocations = async {
            if !want_allocations {
                Ok(None)
            } else if let Some(a) = pre_allocations {
                Ok(Some(a))
            } else {
                nodes::load_allocations_where(st, "a.server_id = ANY($1)", &ids)
                    .await
                    .map(Some)
            }
        };
        let envs = async {
            match pre_envs {
                Some(e) => Ok(e),
                None => environments(st, &ids).await,
            }
        };
        let (mut envs, allocations) = futures::try_join!(envs, allocations)?;
        // (include name, allowed, values by server id, object name)
        let mut rel_maps: Vec<(&'static str, Acl, bool, Grouped, &str)> = Vec::new();
        // Allocations without nested includes skip the JSON tree entirely.
        let mut typed_allocations: Option<HashMap<i64, Vec<openapi::application::Allocation>>> =
            None;
        // list relationships keyed by server id
        if inc.has("allocations") {
            let ok = want_allocations;
            let mut m = Grouped::new();
            if let Some(a) = allocations {
                let nested = inc.nested("allocations");
                if nested.is_empty() {
                    let mut by: HashMap<i64, Vec<openapi::application::Allocation>> =
                        HashMap::with_capacity(rows.len());
                    for x in &a {
                        if let Some(sid) = x.server_id {
                            by.entry(sid)
                                .or_default()
                                .push(nodes::transform_allocation(x));
                        }
                    }
                    typed_allocations = Some(by);
                } else {
                    let keys: Vec<i64> = a.iter().filter_map(|x| x.server_id).collect();
                    m = group(keys, nodes::render_allocations(st, auth, a, &nested).await?);
                }
            }
            rel_maps.push(("allocations", Acl::Allocations, ok, m, "allocation"));
        }
        if inc.has("user") {
            let ok = auth.can_include(Acl::Users);
            let mut m = Grouped::new();
            if ok {
                let owners: Vec<i64> = rows.iter().map(|s| s.owner_id).collect();
                let u = users::load(st, &owners).await?;
                let keys: Vec<i64> = u.iter().map(|x| x.id).collect();
                let by_user = group(keys, users::render(st, auth, u, &inc.nested("user")).await?);
                for s in &rows {
                    if let Some(v) = by_user.get(&s.owner_id).and_then(|v| v.first()) {
                        m.insert(s.id, vec![v.clone()]);
                    }
                }
            }
            rel_maps.push(("user", Acl::Users, ok, m, "user"));
        }
        if inc.has("subusers") {
            let ok = auth.can_include(Acl::Users);
            let mut m = Grouped::new();
            if ok {
                let subs = databases::load_subusers(st, &ids).await?;
                for (sid, v) in subs {
                    m.entry(sid).or_default().push(v);
                }
            }
            rel_maps.push(("subusers", Acl::Users, ok, m, "subuser"));
        }
        if inc.has("nest") {
            let ok = auth.can_include(Acl::Nests);
            let mut m = Grouped::new();
            if ok {
                let nids: Vec<i64> = rows.iter().map(|s| s.nest_id).collect();
                let n = nests::load_nests(st, &nids).await?;
                let keys: Vec<i64> = n.iter().map(|x| x.id).collect();
                let by = group(
                    keys,
                    nests::render_nests(st, auth, n, &inc.nested("nest")).await?,
                );
                for s in &rows {
                    if let Some(v) = by.get(&s.nest_id) {
                        m.insert(s.id, v.clone());
                    }
                }
            }
            rel_maps.push(("nest", Acl::Nests, ok, m, "nest"));
        }
        if inc.has("egg") {
            let ok = auth.can_include(Acl::Eggs);
            let mut m = Grouped::new();
            if ok {
                let eids: Vec<i64> = rows.iter().map(|s| s.egg_id).collect();
                let e = nests::load_eggs_where(st, "e.id = ANY($1)", &eids).await?;
                let keys: Vec<i64> = e.iter().map(|x| x.id).collect();
                let by = group(
                    keys,
                    nests::render_eggs(st, auth, e, &inc.nested("egg")).await?,
                );
                for s in &rows {
                    if let Some(v) = by.get(&s.egg_id) {
                        m.insert(s.id, v.clone());
                    }
                }
            }
            rel_maps.push(("egg", Acl::Eggs, ok, m, "egg"));
        }
        if inc.has("variables") {
            let ok = auth.can_include(Acl::Servers);
            let mut m = Grouped::new();
            if ok {
                for (sid, v) in nests::server_variables(st, &ids).await? {
                    m.entry(sid).or_default().push(v);
                }
            }
            rel_maps.push(("variables", Acl::Servers, ok, m, "server_variable"));
        }
        if inc.has("location") {
            let ok = auth.can_include(Acl::Locations);
            let mut m = Grouped::new();
            if ok {
                let lids: Vec<i64> = rows.iter().map(|s| s.location_id).collect();
                let l = locations::load(st, &lids).await?;
                let keys: Vec<i64> = l.iter().map(|x| x.id).collect();
                let by = group(
                    keys,
                    locations::render(st, auth, l, &inc.nested("location")).await?,
                );
                for s in &rows {
                    if let Some(v) = by.get(&s.location_id) {
                        m.insert(s.id, v.clone());
                    }
                }
            }
            rel_maps.push(("location", Acl::Locations, ok, m, "location"));
        }
        if inc.has("node") {
            let ok = auth.can_include(Acl::Nodes);
            let mut m = Grouped::new();
            if ok {
                let nids: Vec<i64> = rows.iter().map(|s| s.node_id).collect();
                let n = nodes::load_where(st, "n.id = ANY($1)", &nids).await?;
                let keys: Vec<i64> = n.iter().map(|x| x.id).collect();
                let by = group(keys, nodes::render(st, auth, n, &inc.nested("node")).await?);
                for s in &rows {
                    if let Some(v) = by.get(&s.node_id) {
                        m.insert(s.id, v.clone());
                    }
                }
            }
            rel_maps.push(("node", Acl::Nodes, ok, m, "node"));
        }
        if inc.has("databases") {
            let ok = auth.can_include(Acl::ServerDatabases);
            let mut m = Grouped::new();
            if ok {
                let d = databases::load_where(st, "d.server_id = ANY($1)", &ids).await?;
                let keys: Vec<i64> = d.iter().map(|x| x.server_id).collect();
                m = group(
                    keys,
                    databases::render(st, auth, d, &inc.nested("databases")).await?,
                );
            }
            rel_maps.push(("databases", Acl::ServerDatabases, ok, m, "databases"));
        }
        const ITEMS: &[&str] = &["user", "nest", "egg", "location", "node"];
        let mut out = Vec::with_capacity(rows.len());
        for s in rows {
            let id = s.id;
            let env = envs.remove(&id).unwrap_or_default();
            let server = transform_owned(s, env);
            let mut relationships = Vec::with_capacity(rel_maps.len());
            for (name, _, ok, m, obj) in rel_maps.iter_mut() {
                if *name == "allocations" {
                    if let Some(by) = typed_allocations.as_mut() {
                        let list = by.remove(&id).unwrap_or_default();
                        relationships.push(("allocations", Related::Allocations(list)));
                        continue;
                    }
                }
                let vals = m.remove(&id).unwrap_or_default();
                let val = if !*ok {
                    fractal::null_resource()
                } else if ITEMS.contains(name) {
                    vals.into_iter()
                        .next()
                        .map(|a| fractal::item(obj, a, None))
                        .unwrap_or_else(fractal::null_resource)
                } else {
                    fractal::list(obj, vals)
                };
                relationships.push((*name, Related::Json(val)));
            }
            out.push(ServerAttributes {
                server,
                relationships,
            });
        }
        Ok(out)
    }
    .boxed()
}

const FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "uuid",
        column: "s.uuid",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "uuidShort",
        column: "s.uuid_short",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "name",
        column: "s.name",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "description",
        column: "s.description",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "image",
        column: "s.image",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "external_id",
        column: "s.external_id",
        kind: FilterKind::Partial,
    },
];

#[utoipa::path(get, path = "/api/application/servers", tag = "servers",
    params(("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query),
           ("include" = Option<String>, Query, description = "allocations, user, subusers, nest, egg, variables, location, node, databases"),
           ("filter[uuid]" = Option<String>, Query), ("filter[uuidShort]" = Option<String>, Query), ("filter[name]" = Option<String>, Query),
           ("filter[description]" = Option<String>, Query), ("filter[image]" = Option<String>, Query), ("filter[external_id]" = Option<String>, Query),
           ("sort" = Option<String>, Query, description = "id, uuid")),
    responses((status = 200, body = openapi::List<openapi::application::Server>)), security(("api_key" = [])))]
pub async fn index(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    auth.authorize(Acl::Servers, READ)?;
    let page = Page::from_params(&p, 50, fractal::MAX_PER_PAGE)?;
    if let Some(search) = p.get("search") {
        if search.chars().count() > 100 {
            return Err(ApiError::field(
                "search",
                "max",
                "The search may not be greater than 100 characters.",
            ));
        }
    }
    let inc = Includes::from_params(&p);
    // The environments always, and plain allocations when included, come in the
    // page statement itself (one round trip instead of three).
    let fold_allocations = inc.has("allocations")
        && auth.can_include(Acl::Allocations)
        && inc.nested("allocations").is_empty();
    let columns = if fold_allocations {
        format!("{ROW_COLUMNS}, {ENV_AGG}, {ALLOCATION_AGG}")
    } else {
        format!("{ROW_COLUMNS}, {ENV_AGG}")
    };
    let (rows, total): (Vec<PageRow>, i64) = fractal::FoldedListQuery {
        columns: &columns,
        from: "FROM servers s JOIN nodes n ON n.id = s.node_id
            JOIN locations l ON l.id = n.location_id WHERE TRUE",
        count_from: "FROM servers s WHERE TRUE",
        filters: FILTERS,
        sorts: &[("id", "s.id"), ("uuid", "s.uuid")],
        default_order: "s.id",
    }
    .fetch(&st.db, &p, &page)
    .await?;
    let mut pre = Prefetched {
        envs: Some(HashMap::with_capacity(rows.len())),
        allocations: fold_allocations.then(Vec::new),
    };
    let mut servers = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(e) = pre.envs.as_mut() {
            e.insert(r.server.id, r.env);
        }
        if let (Some(all), Some(a)) = (pre.allocations.as_mut(), r.allocations) {
            all.extend(a);
        }
        servers.push(r.server);
    }
    let items = render_typed(&st, &auth, servers, &inc, pre).await?;
    // A server with its environment is about 1.2 kB, each allocation 150 bytes more.
    let mut w = fractal::ListWriter::with_item_size("server", items.len(), 2048);
    for s in &items {
        w.push(s);
    }
    Ok(w.finish_paginated(
        total,
        &page,
        &format!("{}/api/application/servers", st.cfg.app_url),
    ))
}

async fn one(
    st: &AppState,
    auth: &Auth,
    row: ServerRow,
    p: &Params,
    status: StatusCode,
) -> ApiResult<Response> {
    let attrs = render(st, auth, vec![row], &Includes::from_params(p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::respond(
        status,
        &fractal::item("server", attrs, None),
    ))
}

#[utoipa::path(get, path = "/api/application/servers/{server}", tag = "servers", params(("server" = i64, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::Server>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, READ)?;
    one(&st, &auth, row, &p, StatusCode::OK).await
}

#[utoipa::path(get, path = "/api/application/servers/external/{external_id}", tag = "servers", params(("external_id" = String, Path)),
    responses((status = 200, body = openapi::Item<openapi::application::Server>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn external(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(ext): Path<String>,
) -> ApiResult<Response> {
    let row = sqlx::query_as::<_, ServerRow>(&format!("{SELECT} WHERE s.external_id = $1"))
        .bind(&ext)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)?;
    auth.authorize(Acl::Servers, READ)?;
    one(&st, &auth, row, &p, StatusCode::OK).await
}

fn limit_rules(v: &mut Validator, prefix: &str, required: Rule) {
    let k = |n: &str| {
        if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}.{n}")
        }
    };
    v.check(
        &k("memory"),
        &[required.clone(), Rule::Numeric, Rule::Min(0.0)],
    );
    v.check(
        &k("swap"),
        &[required.clone(), Rule::Numeric, Rule::Min(-1.0)],
    );
    v.check(
        &k("disk"),
        &[required.clone(), Rule::Numeric, Rule::Min(0.0)],
    );
    v.check(
        &k("io"),
        &[required.clone(), Rule::Numeric, Rule::Between(10.0, 1000.0)],
    );
    v.check(&k("cpu"), &[required, Rule::Numeric, Rule::Min(0.0)]);
    v.check(
        &k("threads"),
        &[Rule::Nullable, Rule::Regex(crate::regex!(r"^[0-9-,]+$"))],
    );
}

/// Validates `environment` against an egg's variables (admin level: all of them);
/// errors are keyed `environment.<ENV>` and name "<Variable Name> variable".
pub async fn validate_environment(
    st: &AppState,
    egg_id: i64,
    env: &Value,
    v: &mut Validator<'_>,
) -> ApiResult<Vec<(i64, Option<String>)>> {
    let vars: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, name, env_variable, rules FROM egg_variables WHERE egg_id = $1 ORDER BY id",
    )
    .bind(egg_id)
    .fetch_all(&st.db)
    .await?;
    let mut wrapped = Map::new();
    wrapped.insert("environment".into(), env.clone());
    let wrapped = Value::Object(wrapped);
    let mut out = Vec::new();
    for (vid, name, key, rules) in vars {
        let rules = parse_rules(rules.as_deref().unwrap_or(""));
        let mut sub = Validator::new(&wrapped);
        sub.check_as(
            &format!("environment.{key}"),
            &format!("{name} variable"),
            &rules,
        );
        if let Err(ApiError::Validation(errs)) = sub.finish() {
            for e in errs {
                v.add(&e.field, &e.rule, e.message);
            }
        }
        out.push((vid, as_string(env.get(&key))));
    }
    Ok(out)
}

/// Picks a node and a free allocation for `deploy` (upstream's FindViableNodesService
/// + AllocationSelectionService).
async fn deploy_allocation(st: &AppState, body: &Body, memory: i64, disk: i64) -> ApiResult<i64> {
    let locations: Vec<i64> = body
        .get("deploy.locations")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| as_i64(Some(x))).collect())
        .unwrap_or_default();
    let dedicated = as_bool(body.get("deploy.dedicated_ip")).unwrap_or(false);
    let ranges: Vec<String> = body
        .get("deploy.port_range")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| as_string(Some(x))).collect())
        .unwrap_or_default();
    let node_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT n.id FROM nodes n WHERE n.public AND (cardinality($1::BIGINT[]) = 0 OR n.location_id = ANY($1))
          AND COALESCE((SELECT SUM(s.memory) FROM servers s WHERE s.node_id = n.id), 0) + $2 <= n.memory * (1 + n.memory_overallocate / 100.0)
          AND COALESCE((SELECT SUM(s.disk) FROM servers s WHERE s.node_id = n.id), 0) + $3 <= n.disk * (1 + n.disk_overallocate / 100.0)
         ORDER BY n.id",
    )
    .bind(&locations)
    .bind(memory)
    .bind(disk)
    .fetch_all(&st.db)
    .await?;
    if node_ids.is_empty() {
        return Err(ApiError::display(
            "NoViableNodeException",
            "No nodes satisfying the requirements specified for automatic deployment could be found.",
        ));
    }
    let mut ports: Vec<(i32, i32)> = Vec::new();
    for r in &ranges {
        let (a, b) = r.split_once('-').unwrap_or((r.as_str(), r.as_str()));
        match (a.trim().parse::<i32>(), b.trim().parse::<i32>()) {
            (Ok(a), Ok(b)) if a <= b => ports.push((a, b)),
            _ => {
                return Err(ApiError::display(
                    "DisplayException",
                    format!("The mapping provided for {r} was invalid and could not be processed."),
                ))
            }
        }
    }
    let (lo, hi): (Vec<i32>, Vec<i32>) = ports.into_iter().unzip();
    let dedicated_sql = if dedicated {
        " AND NOT EXISTS (SELECT 1 FROM allocations o WHERE o.node_id = a.node_id AND o.ip = a.ip AND o.server_id IS NOT NULL)"
    } else {
        ""
    };
    let alloc: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT a.id FROM allocations a WHERE a.node_id = ANY($1) AND a.server_id IS NULL
           AND (cardinality($2::INT[]) = 0 OR EXISTS (SELECT 1 FROM UNNEST($2::INT[], $3::INT[]) r(lo, hi) WHERE a.port BETWEEN r.lo AND r.hi))
           {dedicated_sql}
         ORDER BY random() LIMIT 1"
    ))
    .bind(&node_ids)
    .bind(&lo)
    .bind(&hi)
    .fetch_optional(&st.db)
    .await?;
    alloc.ok_or_else(|| {
        ApiError::display(
            "NoViableAllocationException",
            "No allocations satisfying the requirements for automatic deployment were found.",
        )
    })
}

#[utoipa::path(post, path = "/api/application/servers", tag = "servers", request_body = openapi::application::CreateServerRequest,
    responses((status = 201, body = openapi::Item<openapi::application::Server>), (status = 400, body = openapi::ErrorEnvelope),
              (status = 422, body = openapi::ErrorEnvelope), (status = 504, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
) -> ApiResult<Response> {
    auth.authorize(Acl::Servers, WRITE)?;
    let b = &body.0;
    let mut v = Validator::new(b);
    let seq_ext = v.next_seq();
    let ext_ok = v.check(
        "external_id",
        &[
            Rule::Sometimes,
            Rule::Nullable,
            Rule::String,
            Rule::Between(1.0, 191.0),
        ],
    );
    v.check(
        "name",
        &[Rule::Required, Rule::String, Rule::Between(1.0, 191.0)],
    );
    v.check("description", &[Rule::Nullable, Rule::String]);
    let seq_user = v.next_seq();
    let user_ok = v.check("user", &[Rule::Required, Rule::Integer]);
    let seq_egg = v.next_seq();
    let egg_ok = v.check("egg", &[Rule::Required, Rule::Integer]);
    v.check(
        "docker_image",
        &[
            Rule::Required,
            Rule::String,
            Rule::Max(191.0),
            Rule::Regex(crate::regex!(r"^~?[\w\.\/\-:@ ]*$")),
        ],
    );
    v.check("startup", &[Rule::Required, Rule::String]);
    let env_ok = v.check("environment", &[Rule::Present, Rule::Array]);
    v.check("skip_scripts", &[Rule::Sometimes, Rule::Boolean]);
    v.check("oom_disabled", &[Rule::Sometimes, Rule::Boolean]);
    v.check("start_on_completion", &[Rule::Sometimes, Rule::Boolean]);
    v.check("limits", &[Rule::Required, Rule::Array]);
    limit_rules(&mut v, "limits", Rule::Required);
    v.check("feature_limits", &[Rule::Required, Rule::Array]);
    v.check(
        "feature_limits.databases",
        &[Rule::Present, Rule::Nullable, Rule::Integer, Rule::Min(0.0)],
    );
    v.check(
        "feature_limits.allocations",
        &[
            Rule::Sometimes,
            Rule::Nullable,
            Rule::Integer,
            Rule::Min(0.0),
        ],
    );
    v.check(
        "feature_limits.backups",
        &[Rule::Present, Rule::Nullable, Rule::Integer, Rule::Min(0.0)],
    );
    let deploying = b.get("deploy").is_some();
    let mut seq_alloc = 0;
    if deploying {
        v.check("deploy", &[Rule::Required, Rule::Array]);
        v.check("deploy.locations", &[Rule::Present, Rule::Array]);
        if let Some(arr) = b.pointer("/deploy/locations").and_then(|a| a.as_array()) {
            for i in 0..arr.len() {
                v.check(
                    &format!("deploy.locations.{i}"),
                    &[Rule::Integer, Rule::Min(1.0)],
                );
            }
        }
        v.check("deploy.dedicated_ip", &[Rule::Required]);
        v.check("deploy.port_range", &[Rule::Present, Rule::Array]);
        if let Some(arr) = b.pointer("/deploy/port_range").and_then(|a| a.as_array()) {
            for i in 0..arr.len() {
                v.check(&format!("deploy.port_range.{i}"), &[Rule::String]);
            }
        }
    } else {
        seq_alloc = v.next_seq();
        v.check("allocation.default", &[Rule::Required, Rule::Integer]);
        if let Some(arr) = b
            .pointer("/allocation/additional")
            .and_then(|a| a.as_array())
        {
            for i in 0..arr.len() {
                v.check(&format!("allocation.additional.{i}"), &[Rule::Integer]);
            }
        }
    }
    // Checks that need the database.
    if ext_ok {
        if let Some(ext) = as_string(body.get("external_id")) {
            let taken: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM servers WHERE external_id = $1)")
                    .bind(&ext)
                    .fetch_one(&st.db)
                    .await?;
            if taken {
                v.add_after(
                    seq_ext,
                    "external_id",
                    "unique",
                    "The external id has already been taken.",
                );
            }
        }
    }
    if user_ok {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(as_i64(body.get("user")))
            .fetch_one(&st.db)
            .await?;
        if !exists {
            v.add_after(seq_user, "user", "exists", "The selected user is invalid.");
        }
    }
    let egg: Option<(i64, i64)> = if egg_ok {
        sqlx::query_as("SELECT id, nest_id FROM eggs WHERE id = $1")
            .bind(as_i64(body.get("egg")))
            .fetch_optional(&st.db)
            .await?
    } else {
        None
    };
    if egg_ok && egg.is_none() {
        v.add_after(seq_egg, "egg", "exists", "The selected egg is invalid.");
    }
    if !deploying && !v.has_error("allocation.default") {
        let free: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM allocations WHERE id = $1 AND server_id IS NULL)",
        )
        .bind(as_i64(body.get("allocation.default")))
        .fetch_one(&st.db)
        .await?;
        if !free {
            v.add_after(
                seq_alloc,
                "allocation.default",
                "exists",
                "The selected allocation.default is invalid.",
            );
        }
    }
    let mut variables = Vec::new();
    if let (Some((egg_id, _)), true) = (egg, env_ok) {
        let env = b.get("environment").cloned().unwrap_or(Value::Null);
        variables = validate_environment(&st, egg_id, &env, &mut v).await?;
    }
    v.finish()?;
    let (egg_id, nest_id) = egg.ok_or_else(ApiError::not_found)?;
    let memory = as_i64(body.get("limits.memory")).unwrap_or(0);
    let disk = as_i64(body.get("limits.disk")).unwrap_or(0);
    let primary = if deploying {
        deploy_allocation(&st, &body, memory, disk).await?
    } else {
        as_i64(body.get("allocation.default")).unwrap_or(0)
    };
    let additional: Vec<i64> = if deploying {
        Vec::new()
    } else {
        b.pointer("/allocation/additional")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| as_i64(Some(x))).collect())
            .unwrap_or_default()
    };

    // Everything in one transaction: the server, its allocations, its variables.
    let mut tx = st.db.begin().await?;
    let node_id: Option<i64> = sqlx::query_scalar(
        "SELECT node_id FROM allocations WHERE id = $1 AND server_id IS NULL FOR UPDATE",
    )
    .bind(primary)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(node_id) = node_id else {
        return Err(ApiError::field(
            "allocation.default",
            "exists",
            "The selected allocation.default is invalid.",
        ));
    };
    let server_id: i64 = loop {
        let uuid = uuid::Uuid::new_v4();
        let short = uuid.to_string()[..8].to_string();
        let taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM servers WHERE uuid_short = $1)")
                .bind(&short)
                .fetch_one(&mut *tx)
                .await?;
        if taken {
            continue;
        }
        let res = sqlx::query_scalar(
            "INSERT INTO servers (external_id, uuid, uuid_short, node_id, name, description, status, skip_scripts, owner_id,
                memory, swap, disk, io, cpu, threads, oom_disabled, allocation_id, nest_id, egg_id, startup, image,
                allocation_limit, database_limit, backup_limit)
             VALUES ($1,$2,$3,$4,$5,$6,'installing',$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23) RETURNING id",
        )
        .bind(as_string(body.get("external_id")))
        .bind(uuid)
        .bind(&short)
        .bind(node_id)
        .bind(as_string(body.get("name")))
        .bind(as_string(body.get("description")).unwrap_or_default())
        .bind(as_bool(body.get("skip_scripts")).unwrap_or(false))
        .bind(as_i64(body.get("user")))
        .bind(memory)
        .bind(as_i64(body.get("limits.swap")).unwrap_or(0))
        .bind(disk)
        .bind(as_i64(body.get("limits.io")).unwrap_or(500))
        .bind(as_i64(body.get("limits.cpu")).unwrap_or(0))
        .bind(as_string(body.get("limits.threads")))
        .bind(as_bool(body.get("oom_disabled")).unwrap_or(true))
        .bind(primary)
        .bind(nest_id)
        .bind(egg_id)
        .bind(as_string(body.get("startup")))
        .bind(as_string(body.get("docker_image")))
        .bind(as_i64(body.get("feature_limits.allocations")).unwrap_or(0))
        .bind(as_i64(body.get("feature_limits.databases")).unwrap_or(0))
        .bind(as_i64(body.get("feature_limits.backups")).unwrap_or(0))
        .fetch_one(&mut *tx)
        .await;
        match res {
            Ok(id) => break id,
            Err(e) => {
                return Err(unique_violation(
                    &e,
                    &[("servers_external_id_key", "external_id", "external id")],
                )
                .unwrap_or_else(|| e.into()))
            }
        }
    };
    let mut all = vec![primary];
    all.extend(additional.iter().copied());
    // Additional allocations must be free and on the same node, as upstream.
    sqlx::query("UPDATE allocations SET server_id = $1 WHERE id = ANY($2) AND server_id IS NULL AND node_id = $3")
        .bind(server_id)
        .bind(&all)
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
    for (vid, value) in &variables {
        sqlx::query("INSERT INTO server_variables (server_id, variable_id, variable_value) VALUES ($1, $2, $3)")
            .bind(server_id)
            .bind(vid)
            .bind(value.clone().unwrap_or_default())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

    let row = find(&st, server_id).await?;
    let node = nodes::find(&st, node_id).await?;
    let start = as_bool(body.get("start_on_completion")).unwrap_or(false);
    if let Err(e) = st
        .daemon
        .create_server(&node.conn(&st)?, &row.uuid.to_string(), start)
        .await
    {
        // Upstream force-deletes the server when the daemon refuses it: nothing is left behind.
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(server_id)
            .execute(&st.db)
            .await?;
        return Err(e.into());
    }
    one(&st, &auth, row, &p, StatusCode::CREATED).await
}

async fn sync_quietly(st: &AppState, s: &ServerRow) {
    let node = match nodes::find(st, s.node_id).await {
        Ok(n) => n,
        Err(_) => return,
    };
    if let Ok(conn) = node.conn(st) {
        if let Err(e) = st.daemon.sync_server(&conn, &s.uuid.to_string()).await {
            tracing::warn!(server = %s.uuid, error = ?e, "daemon sync failed after a change");
        }
    }
}

#[utoipa::path(patch, path = "/api/application/servers/{server}/details", tag = "servers", params(("server" = i64, Path)),
    request_body = openapi::application::ServerDetailsRequest,
    responses((status = 200, body = openapi::Item<openapi::application::Server>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn details(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    let mut v = Validator::new(&body.0);
    v.check(
        "name",
        &[Rule::Required, Rule::String, Rule::Between(1.0, 191.0)],
    );
    let seq_user = v.next_seq();
    let user_ok = v.check("user", &[Rule::Required, Rule::Integer]);
    let seq_ext = v.next_seq();
    let ext_ok = v.check(
        "external_id",
        &[
            Rule::Sometimes,
            Rule::Nullable,
            Rule::String,
            Rule::Between(1.0, 191.0),
        ],
    );
    v.check("description", &[Rule::Nullable, Rule::String]);
    if user_ok {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(as_i64(body.get("user")))
            .fetch_one(&st.db)
            .await?;
        if !exists {
            v.add_after(seq_user, "user", "exists", "The selected user is invalid.");
        }
    }
    if ext_ok {
        if let Some(ext) = as_string(body.get("external_id")) {
            let taken: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM servers WHERE external_id = $1 AND id <> $2)",
            )
            .bind(&ext)
            .bind(s.id)
            .fetch_one(&st.db)
            .await?;
            if taken {
                v.add_after(
                    seq_ext,
                    "external_id",
                    "unique",
                    "The external id has already been taken.",
                );
            }
        }
    }
    v.finish()?;
    let new_owner = as_i64(body.get("user")).unwrap_or(s.owner_id);
    sqlx::query("UPDATE servers SET name = $2, owner_id = $3, external_id = $4, description = $5, updated_at = now() WHERE id = $1")
        .bind(s.id)
        .bind(as_string(body.get("name")))
        .bind(new_owner)
        .bind(as_string(body.get("external_id")))
        .bind(as_string(body.get("description")).unwrap_or_default())
        .execute(&st.db)
        .await
        .map_err(|e| unique_violation(&e, &[("servers_external_id_key", "external_id", "external id")]).unwrap_or_else(|| e.into()))?;
    if new_owner != s.owner_id {
        // The old owner's websocket tokens stop working (errors ignored, as upstream).
        if let Ok(node) = nodes::find(&st, s.node_id).await {
            if let Ok(conn) = node.conn(&st) {
                let _ = st
                    .daemon
                    .revoke_jtis(&conn, &s.uuid.to_string(), &[jti(s.owner_id, &s.uuid)])
                    .await;
            }
        }
    }
    one(&st, &auth, find(&st, s.id).await?, &p, StatusCode::OK).await
}

/// Hex form of md5 (websocket JTIs are `md5(user id . server uuid)`).
pub fn jti(user_id: i64, uuid: &uuid::Uuid) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(format!("{user_id}{uuid}").as_bytes()))
}

#[utoipa::path(patch, path = "/api/application/servers/{server}/build", tag = "servers", params(("server" = i64, Path)),
    request_body = openapi::application::ServerBuildRequest,
    responses((status = 200, body = openapi::Item<openapi::application::Server>), (status = 400, body = openapi::ErrorEnvelope),
              (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn build(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    let b = &body.0;
    let mut v = Validator::new(b);
    let seq_alloc = v.next_seq();
    let alloc_ok = v.check("allocation", &[Rule::Required, Rule::Integer]);
    v.check("oom_disabled", &[Rule::Sometimes, Rule::Boolean]);
    let nested = b.get("limits").is_some();
    if nested {
        v.check("limits", &[Rule::Sometimes, Rule::Array]);
        limit_rules(&mut v, "limits", Rule::RequiredWith("limits"));
    } else {
        limit_rules(&mut v, "", Rule::RequiredWithout("limits"));
    }
    v.check("add_allocations", &[Rule::Array]);
    v.check("remove_allocations", &[Rule::Array]);
    for key in ["add_allocations", "remove_allocations"] {
        if let Some(arr) = b.get(key).and_then(|a| a.as_array()) {
            for i in 0..arr.len() {
                v.check(&format!("{key}.{i}"), &[Rule::Integer]);
            }
        }
    }
    v.check("feature_limits", &[Rule::Required, Rule::Array]);
    v.check(
        "feature_limits.databases",
        &[Rule::Present, Rule::Nullable, Rule::Integer, Rule::Min(0.0)],
    );
    v.check(
        "feature_limits.allocations",
        &[
            Rule::Sometimes,
            Rule::Nullable,
            Rule::Integer,
            Rule::Min(0.0),
        ],
    );
    v.check(
        "feature_limits.backups",
        &[Rule::Present, Rule::Nullable, Rule::Integer, Rule::Min(0.0)],
    );
    if alloc_ok {
        let ok: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM allocations a WHERE a.id = $1 AND NOT EXISTS (SELECT 1 FROM servers o WHERE o.allocation_id = a.id AND o.id <> $2))",
        )
        .bind(as_i64(b.get("allocation")))
        .bind(s.id)
        .fetch_one(&st.db)
        .await?;
        if !ok {
            v.add_after(
                seq_alloc,
                "allocation",
                "exists",
                "The selected allocation is invalid.",
            );
        }
    }
    v.finish()?;
    let lim = |n: &str| -> Option<i64> {
        if nested {
            as_i64(body.get(&format!("limits.{n}")))
        } else {
            as_i64(body.get(n))
        }
    };
    let threads = if nested {
        as_string(body.get("limits.threads"))
    } else {
        as_string(body.get("threads"))
    };
    let ids = |key: &str| -> Vec<i64> {
        b.get(key)
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| as_i64(Some(x))).collect())
            .unwrap_or_default()
    };
    let (add, remove) = (ids("add_allocations"), ids("remove_allocations"));
    let primary = as_i64(b.get("allocation")).unwrap_or(s.allocation_id);

    let mut tx = st.db.begin().await?;
    if !add.is_empty() {
        sqlx::query("UPDATE allocations SET server_id = $1 WHERE id = ANY($2) AND server_id IS NULL AND node_id = $3")
            .bind(s.id)
            .bind(&add)
            .bind(s.node_id)
            .execute(&mut *tx)
            .await?;
    }
    if !remove.is_empty() {
        if remove.contains(&primary) {
            return Err(ApiError::display(
                "DisplayException",
                "You are attempting to delete the default allocation for this server but there is no fallback allocation to use.",
            ));
        }
        sqlx::query("UPDATE allocations SET server_id = NULL, notes = NULL WHERE id = ANY($1) AND server_id = $2")
            .bind(&remove)
            .bind(s.id)
            .execute(&mut *tx)
            .await?;
    }
    let assigned: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM allocations WHERE id = $1 AND server_id = $2)",
    )
    .bind(primary)
    .bind(s.id)
    .fetch_one(&mut *tx)
    .await?;
    if !assigned {
        return Err(ApiError::display(
            "DisplayException",
            "The requested default allocation is not currently assigned to this server.",
        ));
    }
    let fl_allocs = if b.pointer("/feature_limits/allocations").is_some() {
        as_i64(body.get("feature_limits.allocations"))
    } else {
        None
    };
    sqlx::query(
        "UPDATE servers SET allocation_id = $2, oom_disabled = COALESCE($3, oom_disabled), memory = $4, swap = $5, disk = $6, io = $7,
            cpu = $8, threads = $9, database_limit = $10, allocation_limit = $11, backup_limit = $12, updated_at = now() WHERE id = $1",
    )
    .bind(s.id)
    .bind(primary)
    .bind(as_bool(b.get("oom_disabled")))
    .bind(lim("memory").unwrap_or(s.memory))
    .bind(lim("swap").unwrap_or(s.swap))
    .bind(lim("disk").unwrap_or(s.disk))
    .bind(lim("io").unwrap_or(s.io))
    .bind(lim("cpu").unwrap_or(s.cpu))
    .bind(threads)
    .bind(as_i64(body.get("feature_limits.databases")))
    .bind(fl_allocs)
    .bind(as_i64(body.get("feature_limits.backups")).unwrap_or(0))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let row = find(&st, s.id).await?;
    sync_quietly(&st, &row).await;
    one(&st, &auth, row, &p, StatusCode::OK).await
}

#[utoipa::path(patch, path = "/api/application/servers/{server}/startup", tag = "servers", params(("server" = i64, Path)),
    request_body = openapi::application::ServerStartupRequest,
    responses((status = 200, body = openapi::Item<openapi::application::Server>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn startup(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    let b = &body.0;
    let mut v = Validator::new(b);
    v.check("startup", &[Rule::Required, Rule::String]);
    let env_ok = v.check("environment", &[Rule::Present, Rule::Array]);
    let seq_egg = v.next_seq();
    let egg_ok = v.check("egg", &[Rule::Required, Rule::Integer]);
    v.check(
        "image",
        &[
            Rule::Required,
            Rule::String,
            Rule::Max(191.0),
            Rule::Regex(crate::regex!(r"^~?[\w\.\/\-:@ ]*$")),
        ],
    );
    v.check("skip_scripts", &[Rule::Present, Rule::Boolean]);
    let egg: Option<(i64, i64)> = if egg_ok {
        sqlx::query_as("SELECT id, nest_id FROM eggs WHERE id = $1")
            .bind(as_i64(b.get("egg")))
            .fetch_optional(&st.db)
            .await?
    } else {
        None
    };
    if egg_ok && egg.is_none() {
        v.add_after(seq_egg, "egg", "exists", "The selected egg is invalid.");
    }
    let mut variables = Vec::new();
    if let (Some((egg_id, _)), true) = (egg, env_ok) {
        let env = b.get("environment").cloned().unwrap_or(Value::Null);
        variables = validate_environment(&st, egg_id, &env, &mut v).await?;
    }
    v.finish()?;
    let (egg_id, nest_id) = egg.ok_or_else(ApiError::not_found)?;
    let env = b.get("environment").cloned().unwrap_or(Value::Null);
    let mut tx = st.db.begin().await?;
    sqlx::query("UPDATE servers SET startup = $2, egg_id = $3, nest_id = $4, image = $5, skip_scripts = $6, updated_at = now() WHERE id = $1")
        .bind(s.id)
        .bind(as_string(b.get("startup")))
        .bind(egg_id)
        .bind(nest_id)
        .bind(as_string(b.get("image")))
        .bind(as_bool(b.get("skip_scripts")).unwrap_or(false))
        .execute(&mut *tx)
        .await?;
    if egg_id != s.egg_id {
        sqlx::query("DELETE FROM server_variables WHERE server_id = $1")
            .bind(s.id)
            .execute(&mut *tx)
            .await?;
    }
    for (vid, _) in &variables {
        // Only keys that were sent change; the rest keep their value (or default).
        let key: String =
            sqlx::query_scalar("SELECT env_variable FROM egg_variables WHERE id = $1")
                .bind(vid)
                .fetch_one(&mut *tx)
                .await?;
        let sent = env.get(&key).is_some();
        let value = as_string(env.get(&key)).unwrap_or_default();
        if sent || egg_id != s.egg_id {
            sqlx::query(
                "INSERT INTO server_variables (server_id, variable_id, variable_value) VALUES ($1, $2, $3)
                 ON CONFLICT (server_id, variable_id) DO UPDATE SET variable_value = EXCLUDED.variable_value, updated_at = now()",
            )
            .bind(s.id)
            .bind(vid)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    let row = find(&st, s.id).await?;
    sync_quietly(&st, &row).await;
    one(&st, &auth, row, &p, StatusCode::OK).await
}

async fn has_active_transfer(st: &AppState, server_id: i64) -> ApiResult<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM server_transfers WHERE server_id = $1 AND successful IS NULL)")
        .bind(server_id)
        .fetch_one(&st.db)
        .await?)
}

async fn toggle_suspension(st: &AppState, s: &ServerRow, suspend: bool) -> ApiResult<()> {
    let is = s.status.as_deref() == Some("suspended");
    if is == suspend {
        return Ok(());
    }
    if has_active_transfer(st, s.id).await? {
        return Err(ApiError::conflict(
            "ConflictHttpException",
            "Cannot toggle suspension status on a server that is currently being transferred.",
        ));
    }
    let new_status: Option<&str> = if suspend { Some("suspended") } else { None };
    sqlx::query("UPDATE servers SET status = $2, updated_at = now() WHERE id = $1")
        .bind(s.id)
        .bind(new_status)
        .execute(&st.db)
        .await?;
    let node = nodes::find(st, s.node_id).await?;
    if let Err(e) = st
        .daemon
        .sync_server(&node.conn(st)?, &s.uuid.to_string())
        .await
    {
        // Roll back, as upstream does when the daemon cannot apply the change.
        sqlx::query("UPDATE servers SET status = $2 WHERE id = $1")
            .bind(s.id)
            .bind(&s.status)
            .execute(&st.db)
            .await?;
        return Err(e.into());
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/application/servers/{server}/suspend", tag = "servers", params(("server" = i64, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope), (status = 409, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn suspend(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    toggle_suspension(&st, &s, true).await?;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/application/servers/{server}/unsuspend", tag = "servers", params(("server" = i64, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope), (status = 409, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn unsuspend(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    toggle_suspension(&st, &s, false).await?;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/application/servers/{server}/reinstall", tag = "servers", params(("server" = i64, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope), (status = 504, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn reinstall(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    sqlx::query("UPDATE servers SET status = 'installing', updated_at = now() WHERE id = $1")
        .bind(s.id)
        .execute(&st.db)
        .await?;
    let node = nodes::find(&st, s.node_id).await?;
    if let Err(e) = st
        .daemon
        .reinstall_server(&node.conn(&st)?, &s.uuid.to_string())
        .await
    {
        sqlx::query("UPDATE servers SET status = $2 WHERE id = $1")
            .bind(s.id)
            .bind(&s.status)
            .execute(&st.db)
            .await?;
        return Err(e.into());
    }
    Ok(fractal::no_content())
}

/// Deletes a server: on the daemon first (a 404 there is fine), then its databases
/// and its rows. With `force`, daemon and database-host errors are ignored.
pub async fn destroy(st: &AppState, s: &ServerRow, force: bool) -> ApiResult<()> {
    let node = nodes::find(st, s.node_id).await?;
    match st
        .daemon
        .delete_server(&node.conn(st)?, &s.uuid.to_string())
        .await
    {
        Ok(()) => {}
        Err(e) if e.status() == Some(404) || force => {
            tracing::warn!(server = %s.uuid, error = ?e, "daemon delete failed; continuing");
        }
        Err(e) => return Err(e.into()),
    }
    databases::drop_all_for_server(st, s.id, force).await?;
    sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(s.id)
        .execute(&st.db)
        .await?;
    Ok(())
}

#[utoipa::path(delete, path = "/api/application/servers/{server}", tag = "servers", params(("server" = i64, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope), (status = 504, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    destroy(&st, &s, false).await?;
    Ok(fractal::no_content())
}

#[utoipa::path(delete, path = "/api/application/servers/{server}/{force}", tag = "servers", params(("server" = i64, Path), ("force" = String, Path)),
    responses((status = 204), (status = 404, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn delete_forced(
    State(st): State<AppState>,
    auth: Auth,
    Path((raw, force)): Path<(String, String)>,
) -> ApiResult<Response> {
    let s = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    // Upstream's route accepts any segment here, so `DELETE /servers/{id}/databases`
    // deletes the server. We only accept the literal `force` and answer 404 otherwise
    // (upstream bug fixed: no client relies on deleting a server through that path).
    if force != "force" {
        return Err(ApiError::http(
            StatusCode::NOT_FOUND,
            "NotFoundHttpException",
            format!("The route api/application/servers/{raw}/{force} could not be found."),
        ));
    }
    destroy(&st, &s, true).await?;
    Ok(fractal::no_content())
}
