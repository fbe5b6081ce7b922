//! The client server list and each server's details, websocket credentials,
//! resources, console command, power and activity (reference §7.3–§7.4, §9.1–§9.2).

use super::{atom, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::http::application::servers::{ServerRow, ROW_COLUMNS, ROW_WIDTH};
use crate::http::auth::Auth;
use crate::http::fractal::{self, FilterKind, FilterSpec, Includes, Page};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/permissions", get(permissions))
        .route("/servers/{server}", get(view))
        .route("/servers/{server}/websocket", get(websocket))
        .route("/servers/{server}/resources", get(resources))
        .route("/servers/{server}/activity", get(activity))
        .route("/servers/{server}/command", post(command))
        .route("/servers/{server}/power", post(power))
}

// ---- the client `server` transformer ---------------------------------------------

/// The client `user` transformer (subusers, activity actors).
pub fn user_attrs(
    uuid: &uuid::Uuid,
    username: &str,
    email: &str,
    use_totp: bool,
    created_at: &chrono::DateTime<chrono::Utc>,
) -> Map<String, Value> {
    use md5::Digest;
    let mut m = Map::new();
    m.insert("uuid".into(), Value::String(uuid.to_string()));
    m.insert("username".into(), Value::String(username.into()));
    m.insert("email".into(), Value::String(email.into()));
    m.insert(
        "image".into(),
        Value::String(format!(
            "https://gravatar.com/avatar/{}",
            hex::encode(md5::Md5::digest(email.to_lowercase().as_bytes()))
        )),
    );
    m.insert("2fa_enabled".into(), Value::Bool(use_totp));
    m.insert("created_at".into(), Value::String(atom(created_at)));
    m
}

/// One of a server's allocations.
struct AllocRow {
    id: i64,
    ip: String,
    ip_alias: Option<String>,
    port: i32,
    notes: Option<String>,
}

#[derive(sqlx::FromRow, Clone)]
pub struct VarRow {
    pub server_id: i64,
    pub name: String,
    pub description: String,
    pub env_variable: String,
    pub default_value: String,
    pub server_value: Option<String>,
    pub user_viewable: bool,
    pub user_editable: bool,
    pub rules: Option<String>,
}

pub const VARS_SQL: &str =
    "SELECT s.id AS server_id, v.name, v.description, v.env_variable, v.default_value,
        sv.variable_value AS server_value, v.user_viewable, v.user_editable, v.rules
     FROM servers s JOIN egg_variables v ON v.egg_id = s.egg_id
     LEFT JOIN server_variables sv ON sv.server_id = s.id AND sv.variable_id = v.id
     WHERE s.id = ANY($1) ORDER BY s.id, v.id";

pub fn allocation_attrs(
    id: i64,
    ip: &str,
    alias: &Option<String>,
    port: i32,
    notes: &Option<String>,
    primary: bool,
) -> Value {
    json!({"id": id, "ip": ip, "ip_alias": alias, "port": port, "notes": notes, "is_default": primary})
}

pub fn variable_attrs(v: &VarRow) -> Value {
    json!({
        "name": v.name, "description": v.description, "env_variable": v.env_variable,
        "default_value": v.default_value, "server_value": v.server_value,
        "is_editable": v.user_editable, "rules": v.rules.clone().unwrap_or_default(),
    })
}

/// Upstream's StartupCommandService: memory, primary ip/port, each variable's value
/// (or `[hidden]`).
pub fn render_startup(
    s: &ServerRow,
    ip: &str,
    port: i32,
    vars: &[&VarRow],
    hide_all: bool,
) -> String {
    let mut out = s
        .startup
        .replace("{{SERVER_MEMORY}}", &s.memory.to_string())
        .replace("{{SERVER_IP}}", ip)
        .replace("{{SERVER_PORT}}", &port.to_string());
    for v in vars {
        let value = if v.user_viewable && !hide_all {
            v.server_value
                .clone()
                .unwrap_or_else(|| v.default_value.clone())
        } else {
            "[hidden]".into()
        };
        out = out.replace(&format!("{{{{{}}}}}", v.env_variable), &value);
    }
    out
}

/// The columns of one client server row after [`ROW_COLUMNS`]: its node, its egg
/// (features inherit from the parent egg, `config_from`, when null), whether a
/// transfer is under way, its allocations and its egg variables (with the server's
/// values) as JSON arrays of arrays, the page's total and the caller's subuser
/// permissions (the user id is bound right after). Lookups are scalar subqueries
/// rather than joins: PostgreSQL plans this statement on each execution, and its
/// join search grows fast with every joined relation, while each subquery is a
/// one-table plan.
const DETAIL_COLUMNS: &str = "n.name::text, n.maintenance_mode, n.fqdn::text, n.daemon_sftp,
    e.uuid, e.name::text,
    COALESCE(e.features, (SELECT pe.features FROM eggs pe WHERE pe.id = e.config_from)),
    EXISTS (SELECT 1 FROM server_transfers t WHERE t.server_id = s.id AND t.successful IS NULL),
    (SELECT json_agg(json_build_array(a.id, a.ip, a.ip_alias, a.port, a.notes))
        FROM allocations a WHERE a.server_id = s.id),
    (SELECT json_agg(json_build_array(v.id, v.name, v.description, v.env_variable,
            v.default_value, sv.variable_value, v.user_viewable, v.user_editable, v.rules))
        FROM egg_variables v
        LEFT JOIN server_variables sv ON sv.server_id = s.id AND sv.variable_id = v.id
        WHERE v.egg_id = s.egg_id),
    page.total,
    (SELECT su.permissions FROM subusers su WHERE su.server_id = s.id AND su.user_id = ";

/// `FROM` for [`DETAIL_COLUMNS`] (after the bound user id), over a `page (id, total)`
/// CTE of server ids.
const DETAIL_FROM: &str = ") FROM page JOIN servers s ON s.id = page.id
    JOIN nodes n ON n.id = s.node_id JOIN locations l ON l.id = n.location_id
    LEFT JOIN eggs e ON e.id = s.egg_id ORDER BY s.id";

/// One allocation as [`DETAIL_COLUMNS`] aggregates it.
type AllocTuple = (i64, String, Option<String>, i32, Option<String>);

/// One egg variable as [`DETAIL_COLUMNS`] aggregates it.
type VarTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    bool,
    Option<String>,
);

/// One server as the client transformer needs it, from one row of the detail query
/// (kept by `crate::authcache` for the server view).
pub struct ClientRow {
    pub(crate) server: ServerRow,
    node_name: String,
    maintenance: bool,
    fqdn: String,
    sftp_port: i32,
    egg_uuid: Option<uuid::Uuid>,
    egg_name: Option<String>,
    features: Option<Value>,
    transferring: bool,
    allocations: Vec<AllocRow>,
    variables: Vec<VarRow>,
    total: i64,
    permissions: Option<Value>,
}

impl ClientRow {
    /// About how many bytes this row holds, for the view cache's budget.
    pub(crate) fn approx_bytes(&self) -> usize {
        fn json(v: &Option<Value>) -> usize {
            // Serialising is the simplest honest measure; these are small lists.
            v.as_ref().map_or(0, |v| 2 * v.to_string().len())
        }
        let s = &self.server;
        let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        std::mem::size_of::<ClientRow>()
            + s.uuid_short.len()
            + s.name.len()
            + s.description.len()
            + s.startup.len()
            + s.image.len()
            + s.location_short.len()
            + opt(&s.external_id)
            + opt(&s.status)
            + opt(&s.threads)
            + self.node_name.len()
            + self.fqdn.len()
            + opt(&self.egg_name)
            + json(&self.features)
            + json(&self.permissions)
            + self
                .allocations
                .iter()
                .map(|a| {
                    std::mem::size_of::<AllocRow>() + a.ip.len() + opt(&a.ip_alias) + opt(&a.notes)
                })
                .sum::<usize>()
            + self
                .variables
                .iter()
                .map(|v| {
                    std::mem::size_of::<VarRow>()
                        + v.name.len()
                        + v.description.len()
                        + v.env_variable.len()
                        + v.default_value.len()
                        + opt(&v.server_value)
                        + opt(&v.rules)
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
impl ClientRow {
    /// A row of server `id` owned by `owner`, for the cache's unit tests.
    pub fn sample(id: i64, owner: i64) -> ClientRow {
        let now = chrono::Utc::now();
        ClientRow {
            server: ServerRow {
                id,
                external_id: None,
                uuid: uuid::Uuid::nil(),
                uuid_short: format!("{id:08x}"),
                node_id: 1,
                name: "s".into(),
                description: String::new(),
                status: None,
                skip_scripts: false,
                owner_id: owner,
                memory: 0,
                swap: 0,
                disk: 0,
                io: 500,
                cpu: 0,
                threads: None,
                oom_disabled: true,
                allocation_id: 1,
                nest_id: 1,
                egg_id: 1,
                startup: String::new(),
                image: String::new(),
                allocation_limit: None,
                database_limit: None,
                backup_limit: 0,
                installed_at: None,
                created_at: now,
                updated_at: now,
                location_id: 1,
                location_short: "l".into(),
            },
            node_name: "n".into(),
            maintenance: false,
            fqdn: "localhost".into(),
            sftp_port: 2022,
            egg_uuid: None,
            egg_name: None,
            features: None,
            transferring: false,
            allocations: Vec::new(),
            variables: Vec::new(),
            total: 1,
            permissions: None,
        }
    }
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for ClientRow {
    fn from_row(r: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let server = ServerRow::decode_at(r, 0)?;
        let i = ROW_WIDTH;
        // json_agg keeps no order of its own: sort by id, as the transformer lists them.
        let allocs: Option<sqlx::types::Json<Vec<AllocTuple>>> = r.try_get(i + 8)?;
        let mut allocs = allocs.map(|j| j.0).unwrap_or_default();
        allocs.sort_unstable_by_key(|a| a.0);
        let allocations = allocs
            .into_iter()
            .map(|(id, ip, ip_alias, port, notes)| AllocRow {
                id,
                ip,
                ip_alias,
                port,
                notes,
            })
            .collect();
        let vars: Option<sqlx::types::Json<Vec<VarTuple>>> = r.try_get(i + 9)?;
        let mut vars = vars.map(|j| j.0).unwrap_or_default();
        vars.sort_unstable_by_key(|v| v.0);
        let variables = vars
            .into_iter()
            .map(
                |(
                    _,
                    name,
                    description,
                    env_variable,
                    default_value,
                    server_value,
                    user_viewable,
                    user_editable,
                    rules,
                )| VarRow {
                    server_id: server.id,
                    name,
                    description,
                    env_variable,
                    default_value,
                    server_value,
                    user_viewable,
                    user_editable,
                    rules,
                },
            )
            .collect();
        Ok(ClientRow {
            node_name: r.try_get(i)?,
            maintenance: r.try_get(i + 1)?,
            fqdn: r.try_get(i + 2)?,
            sftp_port: r.try_get(i + 3)?,
            egg_uuid: r.try_get(i + 4)?,
            egg_name: r.try_get(i + 5)?,
            features: r.try_get(i + 6)?,
            transferring: r.try_get(i + 7)?,
            allocations,
            variables,
            total: r.try_get(i + 10)?,
            permissions: r.try_get(i + 11)?,
            server,
        })
    }
}

/// The client `allocation` transformer, typed (same bytes as [`allocation_attrs`]).
#[derive(serde::Serialize)]
struct AllocationAttrs<'a> {
    id: i64,
    ip: &'a str,
    ip_alias: &'a Option<String>,
    port: i32,
    notes: Option<&'a str>,
    is_default: bool,
}

/// The client `egg_variable` transformer, typed (same bytes as [`variable_attrs`]).
#[derive(serde::Serialize)]
struct VariableAttrs<'a> {
    name: &'a str,
    description: &'a str,
    env_variable: &'a str,
    default_value: &'a str,
    server_value: &'a Option<String>,
    is_editable: bool,
    rules: &'a str,
}

#[derive(serde::Serialize)]
struct SftpDetails<'a> {
    ip: &'a str,
    port: i32,
}

#[derive(serde::Serialize)]
struct Limits<'a> {
    memory: i64,
    swap: i64,
    disk: i64,
    io: i64,
    cpu: i64,
    threads: &'a Option<String>,
    oom_disabled: bool,
}

#[derive(serde::Serialize)]
struct FeatureLimits {
    databases: Option<i64>,
    allocations: Option<i64>,
    backups: i64,
}

#[derive(serde::Serialize)]
struct EggAttrs<'a> {
    uuid: uuid::Uuid,
    name: &'a str,
}

/// `{"object":"null_resource","attributes":null}`.
#[derive(serde::Serialize)]
struct NullResource {
    object: &'static str,
    attributes: Option<()>,
}

const NULL_RESOURCE: NullResource = NullResource {
    object: "null_resource",
    attributes: None,
};

/// A relationship that is either a list or, without the permission, a null resource.
enum Listed<'a, T> {
    List(&'a str, Vec<T>),
    Null,
}

impl<T: serde::Serialize> serde::Serialize for Listed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Listed::List(object, items) => fractal::TypedList {
                object,
                items: items.as_slice(),
            }
            .serialize(s),
            Listed::Null => NULL_RESOURCE.serialize(s),
        }
    }
}

/// `allocations`, `variables`, then the requested `egg` and `subusers`, in that order.
struct Relationships<'a> {
    allocations: Listed<'a, AllocationAttrs<'a>>,
    variables: Listed<'a, VariableAttrs<'a>>,
    egg: Option<EggAttrs<'a>>,
    subusers: Option<Value>,
}

impl serde::Serialize for Relationships<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("allocations", &self.allocations)?;
        m.serialize_entry("variables", &self.variables)?;
        if let Some(egg) = &self.egg {
            m.serialize_entry(
                "egg",
                &fractal::TypedItem {
                    object: "egg",
                    attributes: egg,
                },
            )?;
        }
        if let Some(subusers) = &self.subusers {
            m.serialize_entry("subusers", subusers)?;
        }
        m.end()
    }
}

/// The client `server` transformer's attributes, in upstream's key order.
#[derive(serde::Serialize)]
struct ServerAttrs<'a> {
    server_owner: bool,
    identifier: &'a str,
    internal_id: i64,
    uuid: uuid::Uuid,
    name: &'a str,
    node: &'a str,
    is_node_under_maintenance: bool,
    sftp_details: SftpDetails<'a>,
    description: &'a str,
    limits: Limits<'a>,
    invocation: String,
    docker_image: &'a str,
    egg_features: &'a Option<Value>,
    feature_limits: FeatureLimits,
    status: &'a Option<String>,
    is_suspended: bool,
    is_installing: bool,
    is_transferring: bool,
    relationships: Relationships<'a>,
}

/// What a page needs besides its rows: the includes, and the `subusers` include's
/// items by server id when it was asked for.
struct RenderCtx<'a> {
    auth: &'a Auth,
    inc: &'a Includes,
    subusers: Option<Vec<(i64, Value)>>,
}

impl<'a> RenderCtx<'a> {
    async fn new(
        st: &AppState,
        auth: &'a Auth,
        inc: &'a Includes,
        rows: &[ClientRow],
    ) -> ApiResult<RenderCtx<'a>> {
        let subusers = if inc.has("subusers") && !rows.is_empty() {
            let ids: Vec<i64> = rows.iter().map(|r| r.server.id).collect();
            Some(subusers_of(st, &ids).await?)
        } else {
            None
        };
        Ok(RenderCtx {
            auth,
            inc,
            subusers,
        })
    }

    /// Renders client `server` attributes (with relationships) for one row.
    fn attrs<'r>(&self, row: &'r ClientRow) -> ServerAttrs<'r> {
        let s = &row.server;
        let auth = self.auth;
        let owner = s.owner_id == auth.user_id;
        let perms = row.permissions.as_ref().and_then(Value::as_array);
        let can = |p: &str| {
            auth.root_admin
                || owner
                || perms.is_some_and(|a| a.iter().any(|x| x.as_str() == Some(p)))
        };
        let primary = row.allocations.iter().find(|a| a.id == s.allocation_id);
        let vars: Vec<&VarRow> = row.variables.iter().collect();
        let startup_read = can("startup.read");
        let invocation = render_startup(
            s,
            primary.map(|a| a.ip.as_str()).unwrap_or(""),
            primary.map(|a| a.port).unwrap_or(0),
            &vars,
            !startup_read,
        );
        let allocations = if can("allocation.read") {
            row.allocations
                .iter()
                .map(|a| AllocationAttrs {
                    id: a.id,
                    ip: &a.ip,
                    ip_alias: &a.ip_alias,
                    port: a.port,
                    notes: a.notes.as_deref(),
                    is_default: a.id == s.allocation_id,
                })
                .collect()
        } else {
            primary
                .map(|a| {
                    vec![AllocationAttrs {
                        id: a.id,
                        ip: &a.ip,
                        ip_alias: &a.ip_alias,
                        port: a.port,
                        notes: None,
                        is_default: true,
                    }]
                })
                .unwrap_or_default()
        };
        let variables = if startup_read {
            Listed::List(
                "egg_variable",
                row.variables
                    .iter()
                    .filter(|v| v.user_viewable)
                    .map(|v| VariableAttrs {
                        name: &v.name,
                        description: &v.description,
                        env_variable: &v.env_variable,
                        default_value: &v.default_value,
                        server_value: &v.server_value,
                        is_editable: v.user_editable,
                        rules: v.rules.as_deref().unwrap_or_default(),
                    })
                    .collect(),
            )
        } else {
            Listed::Null
        };
        let egg = self.inc.has("egg").then(|| EggAttrs {
            uuid: row.egg_uuid.unwrap_or_else(uuid::Uuid::nil),
            name: row.egg_name.as_deref().unwrap_or_default(),
        });
        let subusers = self.subusers.as_ref().map(|all| {
            if can("user.read") {
                fractal::list(
                    "server_subuser",
                    all.iter()
                        .filter(|(sid, _)| *sid == s.id)
                        .map(|(_, v)| v.clone()),
                )
            } else {
                fractal::null_resource()
            }
        });
        ServerAttrs {
            server_owner: owner,
            identifier: &s.uuid_short,
            internal_id: s.id,
            uuid: s.uuid,
            name: &s.name,
            node: &row.node_name,
            is_node_under_maintenance: row.maintenance,
            sftp_details: SftpDetails {
                ip: &row.fqdn,
                port: row.sftp_port,
            },
            description: &s.description,
            limits: Limits {
                memory: s.memory,
                swap: s.swap,
                disk: s.disk,
                io: s.io,
                cpu: s.cpu,
                threads: &s.threads,
                oom_disabled: s.oom_disabled,
            },
            invocation,
            docker_image: &s.image,
            egg_features: &row.features,
            feature_limits: FeatureLimits {
                databases: s.database_limit,
                allocations: s.allocation_limit,
                backups: s.backup_limit,
            },
            status: &s.status,
            is_suspended: s.status.as_deref() == Some("suspended"),
            is_installing: matches!(
                s.status.as_deref(),
                Some("installing") | Some("install_failed")
            ),
            is_transferring: row.transferring,
            relationships: Relationships {
                allocations: Listed::List("allocation", allocations),
                variables,
                egg,
                subusers,
            },
        }
    }
}

/// `server_subuser` attributes per server.
pub async fn subusers_of(st: &AppState, server_ids: &[i64]) -> ApiResult<Vec<(i64, Value)>> {
    type Row = (
        i64,
        uuid::Uuid,
        String,
        String,
        bool,
        chrono::DateTime<chrono::Utc>,
        Value,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT su.server_id, u.uuid, u.username, u.email, u.use_totp, su.created_at, su.permissions
         FROM subusers su JOIN users u ON u.id = su.user_id WHERE su.server_id = ANY($1) ORDER BY su.id",
    )
    .bind(server_ids)
    .fetch_all(&st.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sid, uuid, username, email, totp, created, perms)| {
            let mut m = user_attrs(&uuid, &username, &email, totp, &created);
            m.insert("permissions".into(), perms);
            (sid, Value::Object(m))
        })
        .collect())
}

// ---- routes -----------------------------------------------------------------------

const FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "uuid",
        column: "s.uuid",
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
        name: "external_id",
        column: "s.external_id",
        kind: FilterKind::Partial,
    },
    // `*` is handled by `star_filter`; listed so it is not refused.
    FilterSpec {
        name: "*",
        column: "s.id",
        kind: FilterKind::Custom,
    },
];

/// `filter[*]` (§4.3): an IP / `ip:port` / `:port` matches the server's allocations;
/// anything else matches uuid (exact or prefix), identifier, external id or name.
fn star_filter(qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, value: &str) {
    let re = crate::regex!(r"^(\d{1,3}(\.\d{1,3}){3})?(:\d*)?$");
    if !value.is_empty() && re.is_match(value) && (value.contains('.') || value.starts_with(':')) {
        let (ip, port) = match value.split_once(':') {
            Some((ip, port)) => (ip, Some(port)),
            None => (value, None),
        };
        qb.push(" AND EXISTS (SELECT 1 FROM allocations fa WHERE fa.server_id = s.id");
        if !ip.is_empty() {
            qb.push(" AND fa.ip = ").push_bind(ip.to_string());
        }
        if let Some(port) = port.filter(|p| !p.is_empty()) {
            qb.push(" AND fa.port::text LIKE ")
                .push_bind(format!("{port}%"));
        }
        qb.push(")");
    } else {
        let escaped = value
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        qb.push(" AND (s.uuid::text = ")
            .push_bind(value.to_string())
            .push(" OR s.uuid::text LIKE ")
            .push_bind(format!("{escaped}%"))
            .push(" OR s.uuid_short = ")
            .push_bind(value.to_string())
            .push(" OR s.external_id = ")
            .push_bind(value.to_string())
            .push(" OR LOWER(s.name) LIKE ")
            .push_bind(format!("%{escaped}%"))
            .push(")");
    }
}

fn scope(qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, auth: &Auth, kind: Option<&str>) {
    let mine = |qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>| {
        qb.push(" AND (s.owner_id = ")
            .push_bind(auth.user_id)
            .push(" OR s.id IN (SELECT server_id FROM subusers WHERE user_id = ")
            .push_bind(auth.user_id)
            .push("))");
    };
    match kind {
        Some("owner") => {
            qb.push(" AND s.owner_id = ").push_bind(auth.user_id);
        }
        Some("admin") if auth.root_admin => {
            qb.push(" AND NOT (s.owner_id = ")
                .push_bind(auth.user_id)
                .push(" OR s.id IN (SELECT server_id FROM subusers WHERE user_id = ")
                .push_bind(auth.user_id)
                .push("))");
        }
        Some("admin-all") if auth.root_admin => {}
        // A non-admin asking for the admin views gets an empty list, not an error.
        Some("admin") | Some("admin-all") => {
            qb.push(" AND FALSE");
        }
        _ => mine(qb),
    }
}

#[utoipa::path(get, path = "/api/client", tag = "client",
    params(("type" = Option<String>, Query, description = "owner, admin, admin-all"), ("include" = Option<String>, Query, description = "egg, subusers"),
           ("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query)),
    responses((status = 200, description = "A paginated list of `server`")), security(("api_key" = [])))]
pub async fn index(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    let page = Page::capped(&p, 50, 100)?;
    let kind = p.get("type");
    let star = p
        .filters()
        .into_iter()
        .find(|(n, _)| n == "*")
        .and_then(|(_, v)| v);
    let filtered = |qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>| -> ApiResult<()> {
        scope(qb, &auth, kind);
        fractal::apply_filters(qb, &p, FILTERS)?;
        if let Some(v) = &star {
            star_filter(qb, v);
        }
        Ok(())
    };
    // One statement: the page's ids with the filtered total (a window over the
    // matching servers, before the limit), then everything each server shows.
    let mut q = sqlx::QueryBuilder::new(
        "WITH page AS (SELECT s.id, COUNT(*) OVER () AS total FROM servers s WHERE TRUE",
    );
    filtered(&mut q)?;
    q.push(" ORDER BY s.id LIMIT ")
        .push_bind(page.per_page)
        .push(" OFFSET ")
        .push_bind(page.offset())
        .push(format!(") SELECT {ROW_COLUMNS}, {DETAIL_COLUMNS}"))
        .push_bind(auth.user_id)
        .push(DETAIL_FROM);
    let rows: Vec<ClientRow> = q.build_query_as().fetch_all(&st.db).await?;
    let total = match rows.first() {
        Some(r) => r.total,
        // Past the last page the window has no row to ride on: count on its own.
        None if page.page > 1 => {
            let mut count = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM servers s WHERE TRUE");
            filtered(&mut count)?;
            count.build_query_scalar().fetch_one(&st.db).await?
        }
        None => 0,
    };
    let inc = Includes::from_params(&p);
    let ctx = RenderCtx::new(&st, &auth, &inc, &rows).await?;
    // A server with one allocation and a few variables is about 1.5 kB.
    let mut w = fractal::ListWriter::with_item_size("server", rows.len(), 2048);
    for r in &rows {
        w.push(&ctx.attrs(r));
    }
    Ok(w.finish_paginated_query(
        total,
        &page,
        &format!("{}/api/client", st.cfg.app_url),
        Some(&p),
    ))
}

#[utoipa::path(get, path = "/api/client/permissions", tag = "client",
    responses((status = 200, description = "`system_permissions`")), security(("api_key" = [])))]
pub async fn permissions(_auth: Auth) -> ApiResult<Response> {
    let mut groups = Map::new();
    for (group, description, keys) in super::PERMISSIONS {
        let mut k = Map::new();
        for (key, d) in *keys {
            k.insert((*key).into(), Value::String((*d).into()));
        }
        groups.insert(
            (*group).into(),
            json!({"description": description, "keys": Value::Object(k)}),
        );
    }
    Ok(fractal::ok(&fractal::item(
        "system_permissions",
        json!({"permissions": Value::Object(groups)}),
        None,
    )))
}

#[utoipa::path(get, path = "/api/client/servers/{server}", tag = "client",
    params(("server" = String, Path, description = "identifier or uuid"), ("include" = Option<String>, Query, description = "egg, subusers")),
    responses((status = 200, description = "`server` with meta.is_server_owner and meta.user_permissions"), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    // Details stay readable whatever the server's state (§7.1), so this is
    // `super::load`'s lookup and access rule, folded into the one statement that
    // also reads what the transformer shows.
    let Some(key) = super::ServerKey::parse(&raw) else {
        return Err(ApiError::not_found());
    };
    // Built once per key kind: the text is sqlx's statement-cache key as well.
    static VIEW_SQL: [std::sync::OnceLock<String>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let which = usize::from(matches!(key, super::ServerKey::Uuid(_)));
    let sql = VIEW_SQL[which].get_or_init(|| {
        format!(
            "WITH page AS (SELECT s.id, 1::BIGINT AS total FROM servers s WHERE {})
         SELECT {ROW_COLUMNS}, {DETAIL_COLUMNS}$2{DETAIL_FROM}",
            key.clause()
        )
    });
    // The row depends on the user only through their subuser permissions; whether
    // they may see it is decided on every request, from the key's user. Kept by
    // the uuid in one spelling (any accepted form finds the same entry) or by the
    // identifier, which matches only as written.
    let mut uuid_buf = uuid::Uuid::encode_buffer();
    let cache_key: &str = match &key {
        super::ServerKey::Short(s) => s,
        super::ServerKey::Uuid(u) => u.hyphenated().encode_lower(&mut uuid_buf),
    };
    let cache = &st.auth_cache;
    let (row, is_owner, subuser_permissions) = match cache.get_view(auth.user_id, cache_key) {
        Some(row) => {
            let (is_owner, perms) =
                super::access(&auth, row.server.owner_id, row.permissions.as_ref())?;
            (row, is_owner, perms)
        }
        None => {
            let epoch = cache.epoch();
            let cache_key = cache_key.to_string();
            let row: Option<ClientRow> = key
                .bind(sqlx::query_as(sql))
                .bind(auth.user_id)
                .fetch_optional(&st.db)
                .await?;
            let row = row.ok_or_else(ApiError::not_found)?;
            // Only what the caller may see is kept.
            let (is_owner, perms) =
                super::access(&auth, row.server.owner_id, row.permissions.as_ref())?;
            (
                cache.insert_view(epoch, auth.user_id, &cache_key, row),
                is_owner,
                perms,
            )
        }
    };
    let inc = Includes::from_params(&p);
    let rows = std::slice::from_ref(&*row);
    let ctx = RenderCtx::new(&st, &auth, &inc, rows).await?;
    #[derive(serde::Serialize)]
    struct Meta {
        is_server_owner: bool,
        user_permissions: Vec<String>,
    }
    Ok(fractal::ok(&fractal::TypedItemMeta {
        object: "server",
        attributes: &ctx.attrs(&row),
        meta: &Meta {
            is_server_owner: is_owner,
            user_permissions: super::user_permissions(&auth, is_owner, subuser_permissions),
        },
    }))
}

fn forbidden_http(detail: &str) -> ApiError {
    ApiError::http(StatusCode::FORBIDDEN, "HttpForbiddenException", detail)
}

/// The node connection address `scheme://fqdn:port`.
pub fn node_address(n: &crate::http::application::nodes::NodeRow) -> String {
    format!("{}://{}:{}", n.scheme, n.fqdn, n.daemon_listen)
}

#[utoipa::path(get, path = "/api/client/servers/{server}/websocket", tag = "client",
    params(("server" = String, Path)),
    responses((status = 200, description = "`{\"data\":{\"token\",\"socket\"}}`"), (status = 403, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn websocket(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let ctx = super::load(&st, &auth, &raw).await?;
    if let Err(e) = crate::http::remote::state_conflict(&st, &ctx.server, &ctx.node).await {
        let admin_may = auth.root_admin
            && ctx.server.status.as_deref() != Some("suspended")
            && !ctx.node.maintenance_mode;
        if !admin_may {
            return Err(e);
        }
    }
    if !ctx.can("websocket.connect") {
        return Err(forbidden_http(
            "You do not have permission to connect to this server's websocket.",
        ));
    }
    let mut node = ctx.node.clone();
    let transfer: Option<(bool, i64)> = sqlx::query_as(
        "SELECT archived, new_node FROM server_transfers WHERE server_id = $1 AND successful IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(ctx.server.id)
    .fetch_optional(&st.db)
    .await?;
    if let Some((archived, new_node)) = transfer {
        if !ctx
            .user_permissions()
            .iter()
            .any(|p| p == "admin.websocket.transfer")
        {
            return Err(forbidden_http(
                "You do not have permission to view server transfer logs.",
            ));
        }
        if archived {
            node = crate::http::application::nodes::find(&st, new_node).await?;
        }
    }
    let mut claims = Map::new();
    claims.insert("server_uuid".into(), ctx.server.uuid.to_string().into());
    claims.insert("permissions".into(), json!(ctx.user_permissions()));
    let token = ctx.mint(&st, &node, 600, claims)?;
    let address = node_address(&node);
    let socket = format!(
        "{}/api/servers/{}/ws",
        address
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1),
        ctx.server.uuid
    );
    Ok(fractal::ok(
        &json!({"data": {"token": token, "socket": socket}}),
    ))
}

type StatsCache = std::sync::Mutex<HashMap<uuid::Uuid, (std::time::Instant, Value)>>;
static STATS: std::sync::OnceLock<StatsCache> = std::sync::OnceLock::new();

/// Upstream's StatsTransformer over Wings' `GET /api/servers/{uuid}` answer.
pub fn stats_attrs(d: &Value) -> Value {
    let get = |path: &[&str]| -> Value {
        let mut cur = d;
        for k in path {
            match cur.get(k) {
                Some(v) => cur = v,
                None => return json!(0),
            }
        }
        if cur.is_null() {
            json!(0)
        } else {
            cur.clone()
        }
    };
    json!({
        "current_state": d.get("state").and_then(|v| v.as_str()).unwrap_or("stopped"),
        "is_suspended": d.get("is_suspended").and_then(|v| v.as_bool()).unwrap_or(false),
        "resources": {
            "memory_bytes": get(&["utilization", "memory_bytes"]),
            "cpu_absolute": get(&["utilization", "cpu_absolute"]),
            "disk_bytes": get(&["utilization", "disk_bytes"]),
            "network_rx_bytes": get(&["utilization", "network", "rx_bytes"]),
            "network_tx_bytes": get(&["utilization", "network", "tx_bytes"]),
            "uptime": get(&["utilization", "uptime"]),
        }
    })
}

#[utoipa::path(get, path = "/api/client/servers/{server}/resources", tag = "client",
    params(("server" = String, Path)),
    responses((status = 200, description = "`stats`"), (status = 409, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn resources(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let ctx = super::active(&st, &auth, &raw).await?;
    let cache = STATS.get_or_init(Default::default);
    let cached = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ctx.server.uuid)
        .filter(|(t, _)| t.elapsed() < std::time::Duration::from_secs(20))
        .map(|(_, v)| v.clone());
    let details = match cached {
        Some(v) => v,
        None => {
            // Upstream does not adopt the daemon's status here: any failure is a 504.
            let v = st
                .daemon
                .server_details(&ctx.conn(&st)?, &ctx.server.uuid.to_string())
                .await
                .map_err(|e| {
                    tracing::warn!(error = ?e, "server details from the daemon");
                    ApiError::http(
                        StatusCode::GATEWAY_TIMEOUT,
                        "DaemonConnectionException",
                        crate::error::DAEMON_UNREACHABLE,
                    )
                })?;
            let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.len() > 10_000 {
                c.retain(|_, (t, _)| t.elapsed() < std::time::Duration::from_secs(20));
            }
            c.insert(ctx.server.uuid, (std::time::Instant::now(), v.clone()));
            v
        }
    };
    Ok(fractal::ok(&fractal::item(
        "stats",
        stats_attrs(&details),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/command", tag = "client",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 204), (status = 502, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn command(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let ctx = super::active(&st, &auth, &raw).await?;
    ctx.require("control.console")?;
    let mut v = Validator::new(&body.0);
    v.check("command", &[Rule::Required, Rule::String, Rule::Min(1.0)]);
    v.finish()?;
    let cmd = body
        .get("command")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    match st
        .daemon
        .commands(
            &ctx.conn(&st)?,
            &ctx.server.uuid.to_string(),
            std::slice::from_ref(&cmd),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if e.status() == Some(502) => {
            return Err(ApiError::http(
                StatusCode::BAD_GATEWAY,
                "HttpException",
                "Server must be online in order to send commands.",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    ctx.log(&st, "server:console.command", json!({"command": cmd}))
        .await;
    Ok(fractal::no_content())
}

#[utoipa::path(post, path = "/api/client/servers/{server}/power", tag = "client",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 204), (status = 403, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn power(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let ctx = super::active(&st, &auth, &raw).await?;
    let signal = body.get("signal").and_then(|s| s.as_str()).unwrap_or("");
    // The permission comes from the signal before validation, as upstream.
    let perm = match signal {
        "start" => "control.start",
        "stop" | "kill" => "control.stop",
        "restart" => "control.restart",
        _ => "control.unknown",
    };
    ctx.require(perm)?;
    let mut v = Validator::new(&body.0);
    v.check(
        "signal",
        &[
            Rule::Required,
            Rule::In(&["start", "stop", "restart", "kill"]),
        ],
    );
    v.finish()?;
    st.daemon
        .power(&ctx.conn(&st)?, &ctx.server.uuid.to_string(), signal)
        .await?;
    ctx.log(&st, &format!("server:power.{signal}"), json!({}))
        .await;
    Ok(fractal::no_content())
}

// ---- activity ---------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub struct ActivityRow {
    pub id: i64,
    pub batch: Option<uuid::Uuid>,
    pub event: String,
    pub ip: Option<String>,
    pub description: Option<String>,
    pub actor_type: Option<String>,
    pub actor_id: Option<i64>,
    pub api_key_id: Option<i64>,
    pub properties: Value,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

/// The placeholder keys of each event's English description (upstream's
/// `lang/en/activity.php`): they are shown inline, so they are not "additional".
fn placeholders(event: &str) -> &'static [&'static str] {
    match event {
        "user:account.email-changed" => &["old", "new"],
        "user:api-key.create" | "user:api-key.delete" => &["identifier"],
        "user:ssh-key.create" | "user:ssh-key.delete" => &["fingerprint"],
        "server:console.command" => &["command"],
        e if e.starts_with("server:backup.") => &["name"],
        e if e.starts_with("server:database.") => &["name"],
        "server:file.compress" | "server:file.delete" => &["directory", "files"],
        "server:file.decompress" => &["directory", "files"],
        "server:file.read" | "server:file.copy" | "server:file.download" | "server:file.write" => {
            &["file"]
        }
        "server:file.create-directory" => &["directory", "name"],
        "server:file.pull" => &["url", "directory"],
        "server:file.rename" => &["directory", "files", "from", "to"],
        "server:file.uploaded" => &["directory", "file"],
        e if e.starts_with("server:sftp.") => &["files"],
        "server:allocation.notes" => &["allocation", "old", "new"],
        e if e.starts_with("server:allocation.") => &["allocation"],
        "server:task.create" | "server:task.update" => &["action", "name"],
        e if e.starts_with("server:schedule.") || e.starts_with("server:task.") => &["name"],
        "server:settings.rename" | "server:settings.description" | "server:startup.image" => {
            &["old", "new"]
        }
        "server:startup.edit" => &["variable", "old", "new"],
        e if e.starts_with("server:subuser.") => &["email"],
        _ => &[],
    }
}

/// The client `activity_log` transformer (§9.2).
pub fn activity_attrs(a: &ActivityRow, caller: &Auth, actor: Option<Value>) -> Value {
    use sha1::Digest;
    let is_actor = a.actor_type.as_deref() == Some("user") && a.actor_id == Some(caller.user_id);
    let props = a.properties.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for (k, v) in &props {
        if k == "ip" && !is_actor {
            out.insert(k.clone(), Value::String("[hidden]".into()));
            continue;
        }
        match v {
            Value::Array(items) => {
                out.insert(k.clone(), v.clone());
                out.insert(format!("{k}_count"), items.len().into());
            }
            Value::String(s) if k == "directory" => {
                let d = format!("/{}/", s.trim_matches('/')).replace("//", "/");
                out.insert(k.clone(), Value::String(d));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let counts: Vec<String> = out
        .keys()
        .filter(|k| k.ends_with("_count"))
        .cloned()
        .collect();
    if counts.len() == 1 {
        if let Some(v) = out.shift_remove(&counts[0]) {
            out.insert("count".into(), v);
        }
    }
    let exclude = placeholders(&a.event);
    let additional = props.keys().any(|k| {
        !matches!(k.as_str(), "ip" | "useragent" | "using_sftp") && !exclude.contains(&k.as_str())
    });
    let mut m = Map::new();
    m.insert(
        "id".into(),
        Value::String(hex::encode(sha1::Sha1::digest(a.id.to_string().as_bytes()))),
    );
    m.insert("batch".into(), json!(a.batch.map(|b| b.to_string())));
    m.insert("event".into(), Value::String(a.event.clone()));
    m.insert("is_api".into(), a.api_key_id.is_some().into());
    m.insert(
        "ip".into(),
        if is_actor || caller.root_admin {
            json!(a.ip)
        } else {
            Value::Null
        },
    );
    m.insert("description".into(), json!(a.description));
    m.insert("properties".into(), Value::Object(out));
    m.insert("has_additional_metadata".into(), additional.into());
    m.insert("timestamp".into(), Value::String(atom(&a.timestamp)));
    if let Some(actor) = actor {
        m.insert("relationships".into(), json!({"actor": actor}));
    }
    Value::Object(m)
}

/// One page of activity entries whose subject is `(kind, id)`.
pub async fn activity_page(
    st: &AppState,
    auth: &Auth,
    p: &Params,
    subject_kind: &str,
    subject_id: i64,
    hide_admins_of: Option<&ServerRow>,
    url: &str,
) -> ApiResult<Response> {
    let page = Page::capped(p, 25, 100)?;
    let filters = &[FilterSpec {
        name: "event",
        column: "a.event",
        kind: FilterKind::Partial,
    }];
    let order = fractal::order_by(p, &[("timestamp", "a.timestamp")], "a.timestamp DESC")?;
    let build = |select: &str| -> ApiResult<sqlx::QueryBuilder<'static, sqlx::Postgres>> {
        let mut qb = sqlx::QueryBuilder::new(select.to_string());
        qb.push(" FROM activity_logs a WHERE a.event <> 'server:file.upload' AND EXISTS (SELECT 1 FROM activity_log_subjects su WHERE su.activity_log_id = a.id AND su.subject_type = ")
            .push_bind(subject_kind.to_string())
            .push(" AND su.subject_id = ")
            .push_bind(subject_id)
            .push(")");
        if let Some(s) = hide_admins_of {
            // APP_ACTIVITY_HIDE_ADMIN: root admins who are neither owner nor subuser.
            qb.push(" AND NOT EXISTS (SELECT 1 FROM users au WHERE a.actor_type = 'user' AND au.id = a.actor_id AND au.root_admin AND au.id <> ")
                .push_bind(s.owner_id)
                .push(" AND NOT EXISTS (SELECT 1 FROM subusers x WHERE x.user_id = au.id AND x.server_id = ")
                .push_bind(s.id)
                .push("))");
        }
        fractal::apply_filters(&mut qb, p, filters)?;
        Ok(qb)
    };
    let total: i64 = build("SELECT COUNT(*)")?
        .build_query_scalar()
        .fetch_one(&st.db)
        .await?;
    let mut q = build("SELECT a.*")?;
    q.push(order)
        .push(", a.id DESC LIMIT ")
        .push_bind(page.per_page)
        .push(" OFFSET ")
        .push_bind(page.offset());
    let rows: Vec<ActivityRow> = q.build_query_as().fetch_all(&st.db).await?;
    let with_actor = Includes::from_params(p).has("actor");
    let mut actors: HashMap<i64, Value> = HashMap::new();
    if with_actor {
        let ids: Vec<i64> = rows
            .iter()
            .filter(|r| r.actor_type.as_deref() == Some("user"))
            .filter_map(|r| r.actor_id)
            .collect();
        type U = (
            i64,
            uuid::Uuid,
            String,
            String,
            bool,
            chrono::DateTime<chrono::Utc>,
        );
        let users: Vec<U> = sqlx::query_as(
            "SELECT id, uuid, username, email, use_totp, created_at FROM users WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&st.db)
        .await?;
        for (id, uuid, username, email, totp, created) in users {
            actors.insert(
                id,
                fractal::item(
                    "user",
                    Value::Object(user_attrs(&uuid, &username, &email, totp, &created)),
                    None,
                ),
            );
        }
    }
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let actor = with_actor.then(|| {
                r.actor_id
                    .filter(|_| r.actor_type.as_deref() == Some("user"))
                    .and_then(|id| actors.get(&id).cloned())
                    .unwrap_or_else(fractal::null_resource)
            });
            activity_attrs(r, auth, actor)
        })
        .collect();
    let count = items.len();
    Ok(fractal::ok(&fractal::paginated(
        "activity_log",
        items,
        fractal::pagination(total, count, &page, url, Some(p)),
    )))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/activity", tag = "client",
    params(("server" = String, Path), ("filter[event]" = Option<String>, Query), ("sort" = Option<String>, Query, description = "timestamp, -timestamp"),
           ("include" = Option<String>, Query, description = "actor")),
    responses((status = 200, description = "paginated `activity_log`")), security(("api_key" = [])))]
pub async fn activity(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let ctx: Ctx = super::active(&st, &auth, &raw).await?;
    ctx.require("activity.read")?;
    let hide = st.cfg.activity_hide_admin.then_some(&ctx.server);
    activity_page(
        &st,
        &auth,
        &p,
        "server",
        ctx.server.id,
        hide,
        &format!(
            "{}/api/client/servers/{}/activity",
            st.cfg.app_url, ctx.server.uuid_short
        ),
    )
    .await
}
