//! Application nodes, their allocations and the deployable listing (reference §6.5,
//! §6.6, transformers §8.3, §8.5).

use super::{id, locations, servers};
use crate::daemon::NodeConn;
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ, WRITE};
use crate::http::fractal::{self, FilterKind, FilterSpec, Includes, Page};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{as_bool, as_i64, as_string, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete as delete_route, get};
use axum::Router;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(index).post(store))
        .route("/nodes/deployable", get(deployable))
        .route("/nodes/{node}", get(view).patch(update).delete(delete))
        .route("/nodes/{node}/configuration", get(configuration))
        .route(
            "/nodes/{node}/allocations",
            get(allocations_index).post(allocations_store),
        )
        .route(
            "/nodes/{node}/allocations/{allocation}",
            delete_route(allocations_delete),
        )
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NodeRow {
    pub id: i64,
    pub uuid: uuid::Uuid,
    pub public: bool,
    pub name: String,
    pub description: Option<String>,
    pub location_id: i64,
    pub fqdn: String,
    pub scheme: String,
    pub behind_proxy: bool,
    pub maintenance_mode: bool,
    pub memory: i64,
    pub memory_overallocate: i64,
    pub disk: i64,
    pub disk_overallocate: i64,
    pub upload_size: i64,
    pub daemon_token_id: String,
    pub daemon_token: String,
    pub daemon_listen: i32,
    pub daemon_sftp: i32,
    pub daemon_base: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub alloc_memory: i64,
    pub alloc_disk: i64,
}

const SELECT: &str = "SELECT n.*, COALESCE((SELECT SUM(s.memory) FROM servers s WHERE s.node_id = n.id), 0)::BIGINT AS alloc_memory,
        COALESCE((SELECT SUM(s.disk) FROM servers s WHERE s.node_id = n.id), 0)::BIGINT AS alloc_disk FROM nodes n";

/// [`NodeRow`]'s own columns in its order (over `n`), without the allocated totals,
/// for [`NodeRow::decode_light_at`].
pub const LIGHT_COLUMNS: &str = "n.id, n.uuid, n.public, n.name, n.description, n.location_id,
    n.fqdn, n.scheme, n.behind_proxy, n.maintenance_mode, n.memory, n.memory_overallocate, n.disk,
    n.disk_overallocate, n.upload_size, n.daemon_token_id, n.daemon_token, n.daemon_listen,
    n.daemon_sftp, n.daemon_base, n.created_at, n.updated_at";

/// How many columns [`LIGHT_COLUMNS`] names.
pub const LIGHT_WIDTH: usize = 22;

impl NodeRow {
    /// Decodes [`LIGHT_COLUMNS`] from column `i` on. `alloc_memory` and `alloc_disk`
    /// (sums over all the node's servers) are not loaded and left at 0: only the
    /// node transformer prints them, and it loads rows with [`find`].
    pub fn decode_light_at(r: &sqlx::postgres::PgRow, i: usize) -> Result<NodeRow, sqlx::Error> {
        use sqlx::Row;
        Ok(NodeRow {
            id: r.try_get(i)?,
            uuid: r.try_get(i + 1)?,
            public: r.try_get(i + 2)?,
            name: r.try_get(i + 3)?,
            description: r.try_get(i + 4)?,
            location_id: r.try_get(i + 5)?,
            fqdn: r.try_get(i + 6)?,
            scheme: r.try_get(i + 7)?,
            behind_proxy: r.try_get(i + 8)?,
            maintenance_mode: r.try_get(i + 9)?,
            memory: r.try_get(i + 10)?,
            memory_overallocate: r.try_get(i + 11)?,
            disk: r.try_get(i + 12)?,
            disk_overallocate: r.try_get(i + 13)?,
            upload_size: r.try_get(i + 14)?,
            daemon_token_id: r.try_get(i + 15)?,
            daemon_token: r.try_get(i + 16)?,
            daemon_listen: r.try_get(i + 17)?,
            daemon_sftp: r.try_get(i + 18)?,
            daemon_base: r.try_get(i + 19)?,
            created_at: r.try_get(i + 20)?,
            updated_at: r.try_get(i + 21)?,
            alloc_memory: 0,
            alloc_disk: 0,
        })
    }

    pub fn conn(&self, st: &AppState) -> ApiResult<NodeConn> {
        Ok(NodeConn {
            scheme: self.scheme.clone(),
            fqdn: self.fqdn.clone(),
            port: self.daemon_listen as i64,
            token: st.enc.decrypt(&self.daemon_token)?,
        })
    }
}

pub fn transform(n: &NodeRow) -> openapi::application::Node {
    openapi::application::Node {
        id: n.id,
        uuid: n.uuid.to_string(),
        public: n.public,
        name: n.name.clone(),
        description: n.description.clone(),
        location_id: n.location_id,
        fqdn: n.fqdn.clone(),
        scheme: n.scheme.clone(),
        behind_proxy: n.behind_proxy,
        maintenance_mode: n.maintenance_mode,
        memory: n.memory,
        memory_overallocate: n.memory_overallocate,
        disk: n.disk,
        disk_overallocate: n.disk_overallocate,
        upload_size: n.upload_size,
        daemon_listen: n.daemon_listen as i64,
        daemon_sftp: n.daemon_sftp as i64,
        daemon_base: n.daemon_base.clone(),
        created_at: n.created_at,
        updated_at: n.updated_at,
        sum_memory: None,
        sum_disk: None,
        allocated_resources: openapi::application::AllocatedResources {
            memory: n.alloc_memory,
            disk: n.alloc_disk,
        },
        relationships: None,
    }
}

/// Nodes matching `cond` (a clause over `n` with `$1` bound to `ids`).
pub async fn load_where(st: &AppState, cond: &str, ids: &[i64]) -> ApiResult<Vec<NodeRow>> {
    Ok(
        sqlx::query_as::<_, NodeRow>(&format!("{SELECT} WHERE {cond} ORDER BY n.id"))
            .bind(ids)
            .fetch_all(&st.db)
            .await?,
    )
}

pub async fn find(st: &AppState, node_id: i64) -> ApiResult<NodeRow> {
    sqlx::query_as::<_, NodeRow>(&format!("{SELECT} WHERE n.id = $1"))
        .bind(node_id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Nodes with `allocations`, `location`, `servers`.
pub fn render<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<NodeRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        let ids: Vec<i64> = rows.iter().map(|n| n.id).collect();
        let mut allocs: HashMap<i64, Vec<Value>> = HashMap::new();
        let mut servers_by: HashMap<i64, Vec<Value>> = HashMap::new();
        let mut locs: HashMap<i64, Value> = HashMap::new();
        if inc.has("allocations") && auth.can_include(Acl::Allocations) {
            let a = load_allocations_where(st, "a.node_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = a.iter().map(|x| x.node_id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(render_allocations(st, auth, a, &inc.nested("allocations")).await?)
            {
                allocs.entry(k).or_default().push(v);
            }
        }
        if inc.has("location") && auth.can_include(Acl::Locations) {
            let lids: Vec<i64> = rows.iter().map(|n| n.location_id).collect();
            let l = locations::load(st, &lids).await?;
            let keys: Vec<i64> = l.iter().map(|x| x.id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(locations::render(st, auth, l, &inc.nested("location")).await?)
            {
                locs.insert(k, v);
            }
        }
        if inc.has("servers") && auth.can_include(Acl::Servers) {
            let s = servers::load_where(st, "s.node_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = s.iter().map(|x| x.node_id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(servers::render(st, auth, s, &inc.nested("servers")).await?)
            {
                servers_by.entry(k).or_default().push(v);
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for n in rows {
            let mut v = serde_json::to_value(transform(&n)).map_err(ApiError::internal)?;
            let mut rel = Map::new();
            if inc.has("allocations") {
                rel.insert(
                    "allocations".into(),
                    if auth.can_include(Acl::Allocations) {
                        fractal::list("allocation", allocs.remove(&n.id).unwrap_or_default())
                    } else {
                        fractal::null_resource()
                    },
                );
            }
            if inc.has("location") {
                rel.insert(
                    "location".into(),
                    match locs.get(&n.location_id) {
                        Some(l) if auth.can_include(Acl::Locations) => {
                            fractal::item("location", l.clone(), None)
                        }
                        _ => fractal::null_resource(),
                    },
                );
            }
            if inc.has("servers") {
                rel.insert(
                    "servers".into(),
                    if auth.can_include(Acl::Servers) {
                        fractal::list("server", servers_by.remove(&n.id).unwrap_or_default())
                    } else {
                        fractal::null_resource()
                    },
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

const FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "uuid",
        column: "n.uuid",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "name",
        column: "n.name",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "fqdn",
        column: "n.fqdn",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "daemon_token_id",
        column: "n.daemon_token_id",
        kind: FilterKind::Partial,
    },
];

#[utoipa::path(get, path = "/api/application/nodes", tag = "nodes",
    params(("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("include" = Option<String>, Query, description = "allocations, location, servers"),
           ("filter[uuid]" = Option<String>, Query), ("filter[name]" = Option<String>, Query), ("filter[fqdn]" = Option<String>, Query),
           ("filter[daemon_token_id]" = Option<String>, Query), ("sort" = Option<String>, Query, description = "id, uuid, memory, disk")),
    responses((status = 200, body = openapi::List<openapi::application::Node>)), security(("api_key" = [])))]
pub async fn index(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    auth.authorize(Acl::Nodes, READ)?;
    let page = Page::from_params(&p, 50, fractal::MAX_PER_PAGE)?;
    let (rows, total): (Vec<NodeRow>, i64) = fractal::ListQuery {
        count: "SELECT COUNT(*) FROM nodes n WHERE TRUE",
        select: &format!("{SELECT} WHERE TRUE"),
        filters: FILTERS,
        sorts: &[
            ("id", "n.id"),
            ("uuid", "n.uuid"),
            ("memory", "n.memory"),
            ("disk", "n.disk"),
        ],
        default_order: "n.id",
    }
    .fetch(&st.db, &p, &page)
    .await?;
    let items = render(&st, &auth, rows, &Includes::from_params(&p)).await?;
    Ok(fractal::page_response(
        "node",
        items,
        total,
        &page,
        &format!("{}/api/application/nodes", st.cfg.app_url),
    ))
}

async fn one(
    st: &AppState,
    auth: &Auth,
    row: NodeRow,
    p: &Params,
    status: StatusCode,
    meta: Option<Value>,
) -> ApiResult<Response> {
    let attrs = render(st, auth, vec![row], &Includes::from_params(p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::respond(
        status,
        &fractal::item("node", attrs, meta),
    ))
}

#[utoipa::path(get, path = "/api/application/nodes/{node}", tag = "nodes", params(("node" = i64, Path), ("include" = Option<String>, Query)),
    responses((status = 200, body = openapi::Item<openapi::application::Node>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Nodes, READ)?;
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

/// The configuration Wings needs (`config.yml` essentials), §6.5.
pub fn configuration_of(
    st: &AppState,
    n: &NodeRow,
) -> ApiResult<openapi::application::NodeConfiguration> {
    use openapi::application::*;
    let fqdn = n.fqdn.to_lowercase();
    let mounts: Vec<String> = Vec::new();
    Ok(NodeConfiguration {
        debug: false,
        uuid: n.uuid.to_string(),
        token_id: n.daemon_token_id.clone(),
        token: st.enc.decrypt(&n.daemon_token)?,
        api: NodeConfigurationApi {
            host: "0.0.0.0".into(),
            port: n.daemon_listen as i64,
            ssl: NodeConfigurationSsl {
                enabled: !n.behind_proxy && n.scheme == "https",
                cert: format!("/etc/letsencrypt/live/{fqdn}/fullchain.pem"),
                key: format!("/etc/letsencrypt/live/{fqdn}/privkey.pem"),
            },
            upload_limit: n.upload_size,
        },
        system: NodeConfigurationSystem {
            data: n.daemon_base.clone(),
            sftp: NodeConfigurationSftp {
                bind_port: n.daemon_sftp as i64,
            },
        },
        allowed_mounts: mounts,
        remote: st.cfg.app_url.clone(),
    })
}

#[utoipa::path(get, path = "/api/application/nodes/{node}/configuration", tag = "nodes", params(("node" = i64, Path)),
    responses((status = 200, body = openapi::application::NodeConfiguration), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn configuration(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Nodes, READ)?;
    let mut cfg = serde_json::to_value(configuration_of(&st, &row)?).map_err(ApiError::internal)?;
    let mounts: Vec<String> =
        sqlx::query_scalar("SELECT m.source FROM mounts m JOIN mount_node mn ON mn.mount_id = m.id WHERE mn.node_id = $1 ORDER BY m.id")
            .bind(row.id)
            .fetch_all(&st.db)
            .await?;
    cfg["allowed_mounts"] = json!(mounts);
    Ok(fractal::ok(&cfg))
}

fn node_rules(v: &mut Validator, patch: bool) {
    v.check(
        "name",
        &[
            Rule::Required,
            Rule::Regex(crate::regex!(r"^([\w .-]{1,100})$")),
        ],
    );
    v.check("location_id", &[Rule::Required, Rule::Integer]);
    v.check("public", &[Rule::Boolean]);
    v.check("fqdn", &[Rule::Required, Rule::String]);
    v.check("scheme", &[Rule::Required]);
    v.check("behind_proxy", &[Rule::Boolean]);
    v.check("memory", &[Rule::Required, Rule::Numeric, Rule::Min(1.0)]);
    v.check(
        "memory_overallocate",
        &[Rule::Required, Rule::Numeric, Rule::Min(-1.0)],
    );
    v.check("disk", &[Rule::Required, Rule::Numeric, Rule::Min(1.0)]);
    v.check(
        "disk_overallocate",
        &[Rule::Required, Rule::Numeric, Rule::Min(-1.0)],
    );
    v.check(
        "daemon_base",
        &[
            Rule::Sometimes,
            Rule::Required,
            Rule::Regex(crate::regex!(r"^([/][\d\w.\-/]+)$")),
        ],
    );
    v.check(
        "daemon_sftp",
        &[Rule::Required, Rule::Numeric, Rule::Between(1.0, 65535.0)],
    );
    v.check(
        "daemon_listen",
        &[Rule::Required, Rule::Numeric, Rule::Between(1.0, 65535.0)],
    );
    v.check("maintenance_mode", &[Rule::Boolean]);
    v.check("upload_size", &[Rule::Integer, Rule::Between(1.0, 1024.0)]);
    let _ = patch;
}

async fn validate(st: &AppState, body: &Body, patch: bool) -> ApiResult<()> {
    let mut v = Validator::new(&body.0);
    let seq = v.next_seq() + 1;
    node_rules(&mut v, patch);
    if !v.has_error("location_id") {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM locations WHERE id = $1)")
                .bind(as_i64(body.get("location_id")))
                .fetch_one(&st.db)
                .await?;
        if !exists {
            v.add_after(
                seq,
                "location_id",
                "exists",
                "The selected location id is invalid.",
            );
        }
    }
    v.finish()
}

/// Creates a node (shared with the operator CLI).
pub async fn create(st: &AppState, body: &Body) -> ApiResult<NodeRow> {
    validate(st, body, false).await?;
    let token = crate::crypto::random_string(64);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO nodes (uuid, public, name, location_id, fqdn, scheme, behind_proxy, maintenance_mode, memory,
            memory_overallocate, disk, disk_overallocate, upload_size, daemon_token_id, daemon_token, daemon_listen, daemon_sftp, daemon_base)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) RETURNING id",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(as_bool(body.get("public")).unwrap_or(true))
    .bind(as_string(body.get("name")))
    .bind(as_i64(body.get("location_id")))
    .bind(as_string(body.get("fqdn")))
    .bind(as_string(body.get("scheme")))
    .bind(as_bool(body.get("behind_proxy")).unwrap_or(false))
    .bind(as_bool(body.get("maintenance_mode")).unwrap_or(false))
    .bind(as_i64(body.get("memory")))
    .bind(as_i64(body.get("memory_overallocate")))
    .bind(as_i64(body.get("disk")))
    .bind(as_i64(body.get("disk_overallocate")))
    .bind(as_i64(body.get("upload_size")).unwrap_or(100))
    .bind(crate::crypto::random_string(16))
    .bind(st.enc.encrypt(&token))
    .bind(as_i64(body.get("daemon_listen")).map(|n| n as i32))
    .bind(as_i64(body.get("daemon_sftp")).map(|n| n as i32))
    .bind(as_string(body.get("daemon_base")).unwrap_or_else(|| "/var/lib/pterodactyl/volumes".into()))
    .fetch_one(&st.db)
    .await?;
    find(st, id).await
}

#[utoipa::path(post, path = "/api/application/nodes", tag = "nodes", request_body = openapi::application::NodeRequest,
    responses((status = 201, body = openapi::Item<openapi::application::Node>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
) -> ApiResult<Response> {
    auth.authorize(Acl::Nodes, WRITE)?;
    let row = create(&st, &body).await?;
    let meta = json!({"resource": format!("{}/api/application/nodes/{}", st.cfg.app_url, row.id)});
    one(&st, &auth, row, &p, StatusCode::CREATED, Some(meta)).await
}

#[utoipa::path(patch, path = "/api/application/nodes/{node}", tag = "nodes", params(("node" = i64, Path)),
    request_body = openapi::application::NodeRequest,
    responses((status = 200, body = openapi::Item<openapi::application::Node>), (status = 400, body = openapi::ErrorEnvelope),
              (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let old = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Nodes, WRITE)?;
    validate(&st, &body, true).await?;
    // Only JSON `true` regenerates the token, as upstream.
    let reset = body.0.get("reset_secret") == Some(&Value::Bool(true));
    let new_token = reset.then(|| crate::crypto::random_string(64));
    sqlx::query(
        "UPDATE nodes SET public = COALESCE($2, public), name = $3, location_id = $4, fqdn = $5, scheme = $6,
            behind_proxy = COALESCE($7, behind_proxy), maintenance_mode = COALESCE($8, maintenance_mode), memory = $9,
            memory_overallocate = $10, disk = $11, disk_overallocate = $12, upload_size = COALESCE($13, upload_size),
            daemon_listen = $14, daemon_sftp = $15, daemon_base = $16,
            daemon_token_id = COALESCE($17, daemon_token_id), daemon_token = COALESCE($18, daemon_token), updated_at = now()
         WHERE id = $1",
    )
    .bind(old.id)
    .bind(as_bool(body.get("public")))
    .bind(as_string(body.get("name")))
    .bind(as_i64(body.get("location_id")))
    .bind(as_string(body.get("fqdn")))
    .bind(as_string(body.get("scheme")))
    .bind(as_bool(body.get("behind_proxy")))
    .bind(as_bool(body.get("maintenance_mode")))
    .bind(as_i64(body.get("memory")))
    .bind(as_i64(body.get("memory_overallocate")))
    .bind(as_i64(body.get("disk")))
    .bind(as_i64(body.get("disk_overallocate")))
    .bind(as_i64(body.get("upload_size")))
    .bind(as_i64(body.get("daemon_listen")).map(|n| n as i32))
    .bind(as_i64(body.get("daemon_sftp")).map(|n| n as i32))
    // Upstream quirk kept: omitting daemon_base resets it to the default.
    .bind(as_string(body.get("daemon_base")).unwrap_or_else(|| "/var/lib/pterodactyl/volumes".into()))
    .bind(reset.then(|| crate::crypto::random_string(16)))
    .bind(new_token.as_ref().map(|t| st.enc.encrypt(t)))
    .execute(&st.db)
    .await?;
    let row = find(&st, old.id).await?;
    // Push the new configuration with the node's *old* token (upstream's order); the
    // database change stands even when the daemon cannot be reached.
    let cfg = serde_json::to_value(configuration_of(&st, &row)?).map_err(ApiError::internal)?;
    if let Err(e) = st.daemon.update_configuration(&old.conn(&st)?, &cfg).await {
        tracing::warn!(node = row.id, error = ?e, "node configuration not pushed to the daemon");
        return Err(ApiError::display(
            "ConfigurationNotPersistedException",
            "The daemon configuration <strong>has been updated</strong>, however there was an error encountered while attempting to automatically update the configuration file on the Daemon. You will need to manually update the configuration file (config.yml) for the daemon to apply these changes.",
        ));
    }
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

#[utoipa::path(delete, path = "/api/application/nodes/{node}", tag = "nodes", params(("node" = i64, Path)),
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Nodes, WRITE)?;
    let res = sqlx::query(
        "DELETE FROM nodes WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM servers WHERE node_id = $1)",
    )
    .bind(row.id)
    .execute(&st.db)
    .await;
    let has = || {
        ApiError::display(
            "HasActiveServersException",
            "A node must have no servers linked to it in order to be deleted.",
        )
    };
    super::delete_outcome(res, has)
}

#[utoipa::path(get, path = "/api/application/nodes/deployable", tag = "nodes",
    params(("memory" = i64, Query), ("disk" = i64, Query), ("location_ids[]" = Option<Vec<i64>>, Query), ("page" = Option<i64>, Query),
           ("per_page" = Option<i64>, Query)),
    responses((status = 200, body = openapi::List<openapi::application::Node>), (status = 400, body = openapi::ErrorEnvelope),
              (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn deployable(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
) -> ApiResult<Response> {
    auth.authorize(Acl::Nodes, READ)?;
    // Parameters come from the query or the body (upstream reads `input()`).
    let mut input = body.0.as_object().cloned().unwrap_or_default();
    for k in ["memory", "disk", "page", "per_page"] {
        if let Some(v) = p.get(k) {
            input.insert(k.into(), Value::String(v.to_string()));
        }
    }
    let locs_q = p.list("location_ids");
    if !locs_q.is_empty() {
        input.insert("location_ids".into(), json!(locs_q));
    }
    let input = Value::Object(input);
    let mut v = Validator::new(&input);
    v.check("memory", &[Rule::Required, Rule::Integer, Rule::Min(0.0)]);
    v.check("disk", &[Rule::Required, Rule::Integer, Rule::Min(0.0)]);
    v.check("location_ids", &[Rule::Array]);
    if let Some(arr) = input.get("location_ids").and_then(|a| a.as_array()) {
        for i in 0..arr.len() {
            v.check(&format!("location_ids.{i}"), &[Rule::Integer]);
        }
    }
    v.finish()?;
    let memory = as_i64(input.get("memory")).unwrap_or(0);
    let disk = as_i64(input.get("disk")).unwrap_or(0);
    let locations: Vec<i64> = input
        .get("location_ids")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| as_i64(Some(x))).collect())
        .unwrap_or_default();
    let cond = "n.public AND (cardinality($1::BIGINT[]) = 0 OR n.location_id = ANY($1))
        AND COALESCE((SELECT SUM(s.memory) FROM servers s WHERE s.node_id = n.id), 0) + $2 <= n.memory * (1 + n.memory_overallocate / 100.0)
        AND COALESCE((SELECT SUM(s.disk) FROM servers s WHERE s.node_id = n.id), 0) + $3 <= n.disk * (1 + n.disk_overallocate / 100.0)";
    let paginate = input.get("page").is_some();
    let page = if paginate {
        let pp = Params::parse(&format!(
            "page={}&per_page={}",
            as_string(input.get("page")).unwrap_or_default(),
            as_string(input.get("per_page")).unwrap_or_else(|| "50".into())
        ));
        Some(Page::from_params(&pp, 50, fractal::MAX_PER_PAGE)?)
    } else {
        None
    };
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM nodes n WHERE {cond}"))
        .bind(&locations)
        .bind(memory)
        .bind(disk)
        .fetch_one(&st.db)
        .await?;
    if total == 0 {
        return Err(ApiError::display(
            "NoViableNodeException",
            "No nodes satisfying the requirements specified for automatic deployment could be found.",
        ));
    }
    let limit = page
        .map(|p| format!(" LIMIT {} OFFSET {}", p.per_page, p.offset()))
        .unwrap_or_default();
    let rows: Vec<NodeRow> = sqlx::query_as(&format!("{SELECT} WHERE {cond} ORDER BY n.id{limit}"))
        .bind(&locations)
        .bind(memory)
        .bind(disk)
        .fetch_all(&st.db)
        .await?;
    let count = rows.len();
    let sums: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (r.alloc_memory, r.alloc_disk))
        .collect();
    let mut items = render(&st, &auth, rows, &Includes::from_params(&p)).await?;
    // Deployable nodes carry upstream's `sum_memory` / `sum_disk` before
    // `allocated_resources` (numeric strings, as MySQL returns them).
    for (item, (m, d)) in items.iter_mut().zip(sums) {
        if let Value::Object(obj) = item {
            let mut re = Map::new();
            for (k, val) in std::mem::take(obj) {
                if k == "allocated_resources" {
                    re.insert("sum_memory".into(), Value::String(m.to_string()));
                    re.insert("sum_disk".into(), Value::String(d.to_string()));
                }
                re.insert(k, val);
            }
            *obj = re;
        }
    }
    let body = match page {
        Some(page) => {
            let meta = fractal::pagination(
                total,
                count,
                &page,
                &format!("{}/api/application/nodes/deployable", st.cfg.app_url),
                None,
            );
            fractal::paginated("node", items, meta)
        }
        None => fractal::list("node", items),
    };
    Ok(fractal::ok(&body))
}

// ---- allocations ------------------------------------------------------------------

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AllocationRow {
    pub id: i64,
    pub node_id: i64,
    pub ip: String,
    pub ip_alias: Option<String>,
    pub port: i32,
    pub server_id: Option<i64>,
    pub notes: Option<String>,
}

pub fn transform_allocation(a: &AllocationRow) -> openapi::application::Allocation {
    openapi::application::Allocation {
        id: a.id,
        ip: a.ip.clone(),
        alias: a.ip_alias.clone(),
        port: a.port as i64,
        notes: a.notes.clone(),
        assigned: a.server_id.is_some(),
        relationships: None,
    }
}

pub async fn load_allocations_where(
    st: &AppState,
    cond: &str,
    ids: &[i64],
) -> ApiResult<Vec<AllocationRow>> {
    Ok(sqlx::query_as::<_, AllocationRow>(&format!(
        "SELECT a.id, a.node_id, a.ip, a.ip_alias, a.port, a.server_id, a.notes FROM allocations a WHERE {cond} ORDER BY a.id"
    ))
    .bind(ids)
    .fetch_all(&st.db)
    .await?)
}

/// Allocations with `node` / `server`.
pub fn render_allocations<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<AllocationRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        let mut nodes_by: HashMap<i64, Value> = HashMap::new();
        let mut servers_by: HashMap<i64, Value> = HashMap::new();
        if inc.has("node") && auth.can_include(Acl::Nodes) {
            let ids: Vec<i64> = rows.iter().map(|a| a.node_id).collect();
            let n = load_where(st, "n.id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = n.iter().map(|x| x.id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(render(st, auth, n, &inc.nested("node")).await?)
            {
                nodes_by.insert(k, v);
            }
        }
        if inc.has("server") && auth.can_include(Acl::Servers) {
            let ids: Vec<i64> = rows.iter().filter_map(|a| a.server_id).collect();
            let s = servers::load_where(st, "s.id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = s.iter().map(|x| x.id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(servers::render(st, auth, s, &inc.nested("server")).await?)
            {
                servers_by.insert(k, v);
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for a in rows {
            let mut v =
                serde_json::to_value(transform_allocation(&a)).map_err(ApiError::internal)?;
            let mut rel = Map::new();
            if inc.has("node") {
                rel.insert(
                    "node".into(),
                    nodes_by
                        .get(&a.node_id)
                        .map(|n| fractal::item("node", n.clone(), None))
                        .unwrap_or_else(fractal::null_resource),
                );
            }
            if inc.has("server") {
                rel.insert(
                    "server".into(),
                    a.server_id
                        .and_then(|s| servers_by.get(&s))
                        .map(|s| fractal::item("server", s.clone(), None))
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

const ALLOCATION_FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "ip",
        column: "a.ip",
        kind: FilterKind::Exact,
    },
    FilterSpec {
        name: "port",
        column: "a.port",
        kind: FilterKind::Exact,
    },
    FilterSpec {
        name: "ip_alias",
        column: "a.ip_alias",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "server_id",
        column: "a.server_id",
        kind: FilterKind::ServerId,
    },
];

#[utoipa::path(get, path = "/api/application/nodes/{node}/allocations", tag = "nodes",
    params(("node" = i64, Path), ("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("include" = Option<String>, Query, description = "node, server"),
           ("filter[ip]" = Option<String>, Query), ("filter[port]" = Option<String>, Query), ("filter[ip_alias]" = Option<String>, Query),
           ("filter[server_id]" = Option<String>, Query)),
    responses((status = 200, body = openapi::List<openapi::application::Allocation>)), security(("api_key" = [])))]
pub async fn allocations_index(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let node = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Allocations, READ)?;
    let page = Page::from_params(&p, 50, fractal::MAX_PER_PAGE)?;
    let mut count =
        sqlx::QueryBuilder::new("SELECT COUNT(*) FROM allocations a WHERE a.node_id = ");
    count.push_bind(node.id);
    fractal::apply_filters(&mut count, &p, ALLOCATION_FILTERS)?;
    let total: i64 = count.build_query_scalar().fetch_one(&st.db).await?;
    let mut q = sqlx::QueryBuilder::new(
        "SELECT a.id, a.node_id, a.ip, a.ip_alias, a.port, a.server_id, a.notes FROM allocations a WHERE a.node_id = ",
    );
    q.push_bind(node.id);
    fractal::apply_filters(&mut q, &p, ALLOCATION_FILTERS)?;
    q.push(" ORDER BY a.id LIMIT ")
        .push_bind(page.per_page)
        .push(" OFFSET ")
        .push_bind(page.offset());
    let rows: Vec<AllocationRow> = q.build_query_as().fetch_all(&st.db).await?;
    let count = rows.len();
    let items = render_allocations(&st, &auth, rows, &Includes::from_params(&p)).await?;
    let meta = fractal::pagination(
        total,
        count,
        &page,
        &format!(
            "{}/api/application/nodes/{}/allocations",
            st.cfg.app_url, node.id
        ),
        None,
    );
    Ok(fractal::ok(&fractal::paginated("allocation", items, meta)))
}

/// Expands the `ip` field: an address, a hostname, or a /25–/32 CIDR block.
fn expand_ips(ip: &str) -> ApiResult<Vec<String>> {
    if let Some((net, mask)) = ip.split_once('/') {
        let mask: u8 = mask.parse().map_err(|_| cidr_err())?;
        if !(25..=32).contains(&mask) {
            return Err(cidr_err());
        }
        let net: Ipv4Addr = net.parse().map_err(|_| parse_err(ip, "invalid address"))?;
        let block = ipnet::Ipv4Net::new(net, mask).map_err(|_| cidr_err())?;
        let hosts: Vec<String> = block.hosts().map(|a| a.to_string()).collect();
        return Ok(if hosts.is_empty() {
            vec![block.network().to_string()]
        } else {
            hosts
        });
    }
    if let Ok(addr) = ip.parse::<IpAddr>() {
        return Ok(vec![addr.to_string()]);
    }
    match (ip, 0).to_socket_addrs() {
        Ok(mut it) => it
            .find(|a| a.is_ipv4())
            .map(|a| vec![a.ip().to_string()])
            .ok_or_else(|| parse_err(ip, "no address found")),
        Err(e) => Err(parse_err(ip, &e.to_string())),
    }
}

fn cidr_err() -> ApiError {
    ApiError::display(
        "CidrOutOfRangeException",
        "CIDR notation only allows masks between /25 and /32.",
    )
}

fn parse_err(ip: &str, why: &str) -> ApiError {
    ApiError::display(
        "DisplayException",
        format!("Could not parse provided allocation IP address ({ip}): {why}"),
    )
}

/// Parses `"25565"` / `"25565-25600"` into ports (upstream's checks and messages).
fn expand_ports(spec: &str) -> ApiResult<Vec<i32>> {
    let invalid = || {
        ApiError::display(
            "InvalidPortMappingException",
            format!("The mapping provided for {spec} was invalid and could not be processed."),
        )
    };
    let out_of_range = || {
        ApiError::display(
            "PortOutOfRangeException",
            "Ports in an allocation must be greater than 1024 and less than or equal to 65535.",
        )
    };
    let ports: Vec<i32> = if let Some((a, b)) = spec.split_once('-') {
        let re = crate::regex!(r"^\d{4,5}$");
        if !re.is_match(a) || !re.is_match(b) {
            return Err(invalid());
        }
        let (a, b): (i32, i32) = (
            a.parse().map_err(|_| invalid())?,
            b.parse().map_err(|_| invalid())?,
        );
        if b < a {
            return Err(invalid());
        }
        if b - a + 1 > 1000 {
            return Err(ApiError::display(
                "TooManyPortsInRangeException",
                "Adding more than 1000 ports in a single range at once is not supported.",
            ));
        }
        (a..=b).collect()
    } else {
        if spec.is_empty() || !spec.chars().all(|c| c.is_ascii_digit()) || spec.len() > 5 {
            return Err(invalid());
        }
        vec![spec.parse().map_err(|_| invalid())?]
    };
    if ports.iter().any(|p| *p <= 1024 || *p > 65535) {
        return Err(out_of_range());
    }
    Ok(ports)
}

/// Adds allocations to a node (shared with the operator CLI).
pub async fn add_allocations(st: &AppState, node_id: i64, body: &Body) -> ApiResult<()> {
    let mut v = Validator::new(&body.0);
    v.check("ip", &[Rule::Required, Rule::String]);
    v.check(
        "alias",
        &[
            Rule::Sometimes,
            Rule::Nullable,
            Rule::String,
            Rule::Max(191.0),
        ],
    );
    v.check("ports", &[Rule::Required, Rule::Array]);
    if let Some(arr) = body.get("ports").and_then(|a| a.as_array()) {
        for i in 0..arr.len() {
            v.check(&format!("ports.{i}"), &[Rule::String]);
        }
    }
    v.finish()?;
    let ips = expand_ips(&as_string(body.get("ip")).unwrap_or_default())?;
    let mut ports = Vec::new();
    for p in body
        .get("ports")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        ports.extend(expand_ports(p.as_str().unwrap_or(""))?);
    }
    let alias = as_string(body.get("alias"));
    let mut tx = st.db.begin().await?;
    for ip in &ips {
        sqlx::query(
            "INSERT INTO allocations (node_id, ip, ip_alias, port) SELECT $1, $2, $3, p FROM UNNEST($4::INT[]) AS p
             ON CONFLICT (node_id, ip, port) DO NOTHING",
        )
        .bind(node_id)
        .bind(ip)
        .bind(&alias)
        .bind(&ports)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[utoipa::path(post, path = "/api/application/nodes/{node}/allocations", tag = "nodes", params(("node" = i64, Path)),
    request_body = openapi::application::AllocationRequest,
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn allocations_store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let node = find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Allocations, WRITE)?;
    add_allocations(&st, node.id, &body).await?;
    Ok(fractal::no_content())
}

#[utoipa::path(delete, path = "/api/application/nodes/{node}/allocations/{allocation}", tag = "nodes",
    params(("node" = i64, Path), ("allocation" = i64, Path)),
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn allocations_delete(
    State(st): State<AppState>,
    auth: Auth,
    Path((raw, alloc)): Path<(String, String)>,
) -> ApiResult<Response> {
    let node = find(&st, id(&raw)?).await?;
    let alloc_id = id(&alloc)?;
    let exists: Option<Option<i64>> =
        sqlx::query_scalar("SELECT server_id FROM allocations WHERE id = $1 AND node_id = $2")
            .bind(alloc_id)
            .bind(node.id)
            .fetch_optional(&st.db)
            .await?;
    let Some(_) = exists else {
        return Err(ApiError::not_found());
    };
    auth.authorize(Acl::Allocations, WRITE)?;
    let res = sqlx::query("DELETE FROM allocations WHERE id = $1 AND server_id IS NULL")
        .bind(alloc_id)
        .execute(&st.db)
        .await;
    let used = || {
        ApiError::display(
            "ServerUsingAllocationException",
            "A server is currently assigned to this allocation. An allocation can only be deleted if no server is currently assigned.",
        )
    };
    super::delete_outcome(res, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_upstreams_rules() {
        assert_eq!(expand_ports("25565").unwrap(), vec![25565]);
        assert_eq!(
            expand_ports("25565-25567").unwrap(),
            vec![25565, 25566, 25567]
        );
        assert!(matches!(
            expand_ports("1024"),
            Err(ApiError::Display {
                code: "PortOutOfRangeException",
                ..
            })
        ));
        assert!(matches!(
            expand_ports("2000-3001"),
            Err(ApiError::Display {
                code: "TooManyPortsInRangeException",
                ..
            })
        ));
        assert!(matches!(
            expand_ports("abc"),
            Err(ApiError::Display {
                code: "InvalidPortMappingException",
                ..
            })
        ));
    }

    #[test]
    fn cidr_blocks_expand_and_masks_are_bounded() {
        assert_eq!(
            expand_ips("10.0.0.0/30").unwrap(),
            vec!["10.0.0.1", "10.0.0.2"]
        );
        assert!(matches!(
            expand_ips("10.0.0.0/24"),
            Err(ApiError::Display {
                code: "CidrOutOfRangeException",
                ..
            })
        ));
        assert_eq!(expand_ips("127.0.0.1").unwrap(), vec!["127.0.0.1"]);
    }
}
