//! The Client API (`/api/client`, reference §7): what players, server owners, the
//! upstream web UI, mobile apps and bots call. One module per resource. This module
//! owns what every server-scoped route shares (§7.1): resolving `{server}`, the
//! owner/admin/subuser access rule (404 for servers the caller cannot see), the
//! server-state conflict check, and the subuser permission catalog (§10).

pub mod account;
pub mod backups;
pub mod databases;
pub mod files;
pub mod network;
pub mod schedules;
pub mod servers;
pub mod settings;
pub mod startup;
pub mod subusers;

use crate::error::{ApiError, ApiResult};
use crate::http::application::{nodes, servers as app_servers};
use crate::http::auth::Auth;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(account::router())
        .merge(servers::router())
        .merge(databases::router())
        .merge(files::router())
        .merge(schedules::router())
        .merge(network::router())
        .merge(subusers::router())
        .merge(backups::router())
        .merge(startup::router())
        .merge(settings::router())
}

/// Every route's methods, for the 405 answer (checked against the router by tests).
pub const METHODS: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/permissions", &["GET"]),
    ("/account", &["GET"]),
    ("/account/two-factor", &["GET", "POST"]),
    ("/account/two-factor/disable", &["POST"]),
    ("/account/email", &["PUT"]),
    ("/account/password", &["PUT"]),
    ("/account/activity", &["GET"]),
    ("/account/api-keys", &["GET", "POST"]),
    ("/account/api-keys/{identifier}", &["DELETE"]),
    ("/account/ssh-keys", &["GET", "POST"]),
    ("/account/ssh-keys/remove", &["POST"]),
    ("/servers/{server}", &["GET"]),
    ("/servers/{server}/websocket", &["GET"]),
    ("/servers/{server}/resources", &["GET"]),
    ("/servers/{server}/activity", &["GET"]),
    ("/servers/{server}/command", &["POST"]),
    ("/servers/{server}/power", &["POST"]),
    ("/servers/{server}/databases", &["GET", "POST"]),
    (
        "/servers/{server}/databases/{database}/rotate-password",
        &["POST"],
    ),
    ("/servers/{server}/databases/{database}", &["DELETE"]),
    ("/servers/{server}/files/list", &["GET"]),
    ("/servers/{server}/files/contents", &["GET"]),
    ("/servers/{server}/files/download", &["GET"]),
    ("/servers/{server}/files/rename", &["PUT"]),
    ("/servers/{server}/files/copy", &["POST"]),
    ("/servers/{server}/files/write", &["POST"]),
    ("/servers/{server}/files/compress", &["POST"]),
    ("/servers/{server}/files/decompress", &["POST"]),
    ("/servers/{server}/files/delete", &["POST"]),
    ("/servers/{server}/files/create-folder", &["POST"]),
    ("/servers/{server}/files/chmod", &["POST"]),
    ("/servers/{server}/files/pull", &["POST"]),
    ("/servers/{server}/files/upload", &["GET"]),
    ("/servers/{server}/schedules", &["GET", "POST"]),
    (
        "/servers/{server}/schedules/{schedule}",
        &["GET", "POST", "DELETE"],
    ),
    ("/servers/{server}/schedules/{schedule}/execute", &["POST"]),
    ("/servers/{server}/schedules/{schedule}/tasks", &["POST"]),
    (
        "/servers/{server}/schedules/{schedule}/tasks/{task}",
        &["POST", "DELETE"],
    ),
    ("/servers/{server}/network/allocations", &["GET", "POST"]),
    (
        "/servers/{server}/network/allocations/{allocation}",
        &["POST", "DELETE"],
    ),
    (
        "/servers/{server}/network/allocations/{allocation}/primary",
        &["POST"],
    ),
    ("/servers/{server}/users", &["GET", "POST"]),
    ("/servers/{server}/users/{user}", &["GET", "POST", "DELETE"]),
    ("/servers/{server}/backups", &["GET", "POST"]),
    ("/servers/{server}/backups/{backup}", &["GET", "DELETE"]),
    ("/servers/{server}/backups/{backup}/download", &["GET"]),
    ("/servers/{server}/backups/{backup}/lock", &["POST"]),
    ("/servers/{server}/backups/{backup}/restore", &["POST"]),
    ("/servers/{server}/startup", &["GET"]),
    ("/servers/{server}/startup/variable", &["PUT"]),
    ("/servers/{server}/settings/rename", &["POST"]),
    ("/servers/{server}/settings/reinstall", &["POST"]),
    ("/servers/{server}/settings/docker-image", &["PUT"]),
];

/// The subuser permission catalog (§10): groups, their descriptions, and each key's
/// description, in upstream's order.
pub type PermissionGroup = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

pub const PERMISSIONS: &[PermissionGroup] = &[
    ("websocket", "Allows the user to connect to the server websocket, giving them access to view console output and realtime server stats.", &[
        ("connect", "Allows a user to connect to the websocket instance for a server to stream the console."),
    ]),
    ("control", "Permissions that control a user's ability to control the power state of a server, or send commands.", &[
        ("console", "Allows a user to send commands to the server instance via the console."),
        ("start", "Allows a user to start the server if it is stopped."),
        ("stop", "Allows a user to stop a server if it is running."),
        ("restart", "Allows a user to perform a server restart. This allows them to start the server if it is offline, but not put the server in a completely stopped state."),
    ]),
    ("user", "Permissions that allow a user to manage other subusers on a server. They will never be able to edit their own account, or assign permissions they do not have themselves.", &[
        ("create", "Allows a user to create new subusers for the server."),
        ("read", "Allows the user to view subusers and their permissions for the server."),
        ("update", "Allows a user to modify other subusers."),
        ("delete", "Allows a user to delete a subuser from the server."),
    ]),
    ("file", "Permissions that control a user's ability to modify the filesystem for this server.", &[
        ("create", "Allows a user to create additional files and folders via the Panel or direct upload."),
        ("read", "Allows a user to view the contents of a directory, but not view the contents of or download files."),
        ("read-content", "Allows a user to view the contents of a given file. This will also allow the user to download files."),
        ("update", "Allows a user to update the contents of an existing file or directory."),
        ("delete", "Allows a user to delete files or directories."),
        ("archive", "Allows a user to archive the contents of a directory as well as decompress existing archives on the system."),
        ("sftp", "Allows a user to connect to SFTP and manage server files using the other assigned file permissions."),
    ]),
    ("backup", "Permissions that control a user's ability to generate and manage server backups.", &[
        ("create", "Allows a user to create new backups for this server."),
        ("read", "Allows a user to view all backups that exist for this server."),
        ("delete", "Allows a user to remove backups from the system."),
        ("download", "Allows a user to download a backup for the server. Danger: this allows a user to access all files for the server in the backup."),
        ("restore", "Allows a user to restore a backup for the server. Danger: this allows the user to delete all of the server files in the process."),
    ]),
    ("allocation", "Permissions that control a user's ability to modify the port allocations for this server.", &[
        ("read", "Allows a user to view all allocations currently assigned to this server. Users with any level of access to this server can always view the primary allocation."),
        ("create", "Allows a user to assign additional allocations to the server."),
        ("update", "Allows a user to change the primary server allocation and attach notes to each allocation."),
        ("delete", "Allows a user to delete an allocation from the server."),
    ]),
    ("startup", "Permissions that control a user's ability to view this server's startup parameters.", &[
        ("read", "Allows a user to view the startup variables for a server."),
        ("update", "Allows a user to modify the startup variables for the server."),
        ("docker-image", "Allows a user to modify the Docker image used when running the server."),
    ]),
    ("database", "Permissions that control a user's access to the database management for this server.", &[
        ("create", "Allows a user to create a new database for this server."),
        ("read", "Allows a user to view the database associated with this server."),
        ("update", "Allows a user to rotate the password on a database instance. If the user does not have the view_password permission they will not see the updated password."),
        ("delete", "Allows a user to remove a database instance from this server."),
        ("view_password", "Allows a user to view the password associated with a database instance for this server."),
    ]),
    ("schedule", "Permissions that control a user's access to the schedule management for this server.", &[
        ("create", "Allows a user to create new schedules for this server."),
        ("read", "Allows a user to view schedules and the tasks associated with them for this server."),
        ("update", "Allows a user to update schedules and schedule tasks for this server."),
        ("delete", "Allows a user to delete schedules for this server."),
    ]),
    ("settings", "Permissions that control a user's access to the settings for this server.", &[
        ("rename", "Allows a user to rename this server and change the description of it."),
        ("reinstall", "Allows a user to trigger a reinstall of this server."),
    ]),
    ("activity", "Permissions that control a user's access to the server activity logs.", &[
        ("read", "Allows a user to view the activity logs for the server."),
    ]),
];

/// Whether `perm` is one of the 40 assignable permission strings.
pub fn is_known_permission(perm: &str) -> bool {
    perm.split_once('.').is_some_and(|(g, k)| {
        PERMISSIONS
            .iter()
            .any(|(group, _, keys)| *group == g && keys.iter().any(|(key, _)| *key == k))
    })
}

/// A server-scoped request: the caller, the server, its node, and the caller's
/// standing on it. `node` comes without its allocated totals (`alloc_memory`,
/// `alloc_disk` are 0), see [`load`].
pub struct Ctx {
    pub auth: Auth,
    pub server: app_servers::ServerRow,
    pub node: nodes::NodeRow,
    pub is_owner: bool,
    /// The subuser's permission list (empty for owners and admins, who hold all).
    pub subuser_permissions: Vec<String>,
}

pub const NO_ACCESS: &str = "The requested resource does not exist on this server.";
pub const NOT_FOR_SERVER: &str = "The requested resource was not found for this server.";

impl Ctx {
    /// Root admins and the owner hold every permission; subusers need the exact string.
    pub fn can(&self, perm: &str) -> bool {
        self.auth.root_admin || self.is_owner || self.subuser_permissions.iter().any(|p| p == perm)
    }

    pub fn require(&self, perm: &str) -> ApiResult<()> {
        if self.can(perm) {
            Ok(())
        } else {
            Err(ApiError::unauthorized_action())
        }
    }

    /// `user_permissions` / the JWT's `permissions` (§7.4).
    pub fn user_permissions(&self) -> Vec<String> {
        user_permissions(&self.auth, self.is_owner, self.subuser_permissions.clone())
    }

    /// A JWT for this server's node, for the caller (upstream's NodeJWTService with
    /// `identifiedBy(user id . server uuid)`).
    pub fn mint(
        &self,
        st: &AppState,
        node: &nodes::NodeRow,
        ttl_secs: i64,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> ApiResult<String> {
        let uuid = self.auth.user_uuid.to_string();
        Ok(crate::jwt::mint(
            &st.enc.decrypt(&node.daemon_token)?,
            &st.cfg.app_url,
            &servers::node_address(node),
            &format!("{}{}", self.auth.user_id, self.server.uuid),
            ttl_secs,
            claims,
            Some(crate::jwt::TokenUser {
                id: self.auth.user_id,
                uuid: &uuid,
            }),
        ))
    }

    /// A `signed_url` item for `route` on this server's node (15 minutes).
    pub fn signed_url(
        &self,
        st: &AppState,
        route: &str,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> ApiResult<serde_json::Value> {
        let token = self.mint(st, &self.node, 900, claims)?;
        Ok(crate::http::fractal::item(
            "signed_url",
            serde_json::json!({"url": format!("{}{route}?token={token}", servers::node_address(&self.node))}),
            None,
        ))
    }

    pub fn conn(&self, st: &AppState) -> ApiResult<crate::daemon::NodeConn> {
        self.node.conn(st)
    }

    /// An activity event about this server by the caller.
    pub async fn log(&self, st: &AppState, event: &str, properties: serde_json::Value) {
        self.log_with(st, event, properties, &[]).await
    }

    pub async fn log_with(
        &self,
        st: &AppState,
        event: &str,
        properties: serde_json::Value,
        extra: &[crate::activity::Subject<'_>],
    ) {
        let mut subjects = vec![crate::activity::Subject {
            kind: "server",
            id: self.server.id,
        }];
        subjects.extend_from_slice(extra);
        log_as(st, &self.auth, event, properties, &subjects).await
    }
}

/// `user_permissions` / the JWT's `permissions` (§7.4) of a caller with this standing.
pub fn user_permissions(
    auth: &Auth,
    is_owner: bool,
    subuser_permissions: Vec<String>,
) -> Vec<String> {
    if auth.root_admin {
        [
            "*",
            "admin.websocket.errors",
            "admin.websocket.install",
            "admin.websocket.transfer",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else if is_owner {
        vec!["*".into()]
    } else {
        subuser_permissions
    }
}

/// Writes an activity event performed by the authenticated caller (actor, key, ip).
/// A failed write is logged, never turned into a failed request.
pub async fn log_as(
    st: &AppState,
    auth: &Auth,
    event: &str,
    properties: serde_json::Value,
    subjects: &[crate::activity::Subject<'_>],
) {
    let mut e = crate::activity::Event::new(event);
    e.actor_user = Some(auth.user_id);
    e.api_key_id = Some(auth.key_id);
    let ip = auth.ip.map(|ip| ip.to_string());
    e.ip = ip.as_deref();
    e.properties = properties;
    e.subjects = subjects;
    if let Err(err) = crate::activity::log(&st.db, &e).await {
        tracing::warn!(error = %err, event, "could not write an activity log entry");
    }
}

/// `WHERE` clause resolving `{server}`: the 8-char identifier or the full uuid
/// (`$1`); `None` when `raw` can be neither (a 404 without a query).
pub(crate) enum ServerKey {
    Short(String),
    Uuid(uuid::Uuid),
}

impl ServerKey {
    pub(crate) fn parse(raw: &str) -> Option<ServerKey> {
        if raw.len() == 8 {
            Some(ServerKey::Short(raw.to_string()))
        } else {
            raw.parse::<uuid::Uuid>().ok().map(ServerKey::Uuid)
        }
    }

    pub(crate) fn clause(&self) -> &'static str {
        match self {
            ServerKey::Short(_) => "s.uuid_short = $1",
            ServerKey::Uuid(_) => "s.uuid = $1",
        }
    }

    pub(crate) fn bind<'q, O>(
        self,
        q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        match self {
            ServerKey::Short(s) => q.bind(s),
            ServerKey::Uuid(u) => q.bind(u),
        }
    }
}

/// Upstream's access rule once the server is found: an application key is refused
/// (403), then the owner, a subuser (`permissions` is their row's list) or a root
/// admin may see it; anyone else gets a 404. Returns (is owner, subuser permissions).
pub(crate) fn access(
    auth: &Auth,
    owner_id: i64,
    permissions: Option<&serde_json::Value>,
) -> ApiResult<(bool, Vec<String>)> {
    if auth.key_type == crate::http::auth::KEY_TYPE_APPLICATION {
        return Err(crate::http::auth::application_key_refused());
    }
    if owner_id == auth.user_id {
        return Ok((true, Vec::new()));
    }
    match permissions {
        Some(p) => Ok((false, permission_list(p))),
        None if auth.root_admin => Ok((false, Vec::new())),
        None => Err(ApiError::http(
            StatusCode::NOT_FOUND,
            "NotFoundHttpException",
            NO_ACCESS,
        )),
    }
}

/// A subuser's `permissions` JSON array as strings (anything else is none).
pub(crate) fn permission_list(p: &serde_json::Value) -> Vec<String> {
    p.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Loads `{server}` (8-char identifier or full uuid) for the caller, applying the
/// access rule. The state conflict check is left to [`Ctx::active`] callers.
///
/// One statement: the server, its node (without the allocated totals, which no
/// client route shows) and the caller's subuser permissions.
pub async fn load(st: &AppState, auth: &Auth, raw: &str) -> ApiResult<Ctx> {
    struct Loaded(
        app_servers::ServerRow,
        nodes::NodeRow,
        Option<serde_json::Value>,
    );
    impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Loaded {
        fn from_row(r: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
            use sqlx::Row;
            let n = app_servers::ROW_WIDTH;
            Ok(Loaded(
                app_servers::ServerRow::decode_at(r, 0)?,
                nodes::NodeRow::decode_light_at(r, n)?,
                r.try_get(n + nodes::LIGHT_WIDTH)?,
            ))
        }
    }
    let Some(key) = ServerKey::parse(raw) else {
        return Err(ApiError::not_found());
    };
    let sql = format!(
        "SELECT {}, {}, (SELECT su.permissions FROM subusers su WHERE su.server_id = s.id AND su.user_id = $2)
         FROM servers s JOIN nodes n ON n.id = s.node_id JOIN locations l ON l.id = n.location_id
         WHERE {}",
        app_servers::ROW_COLUMNS,
        nodes::LIGHT_COLUMNS,
        key.clause()
    );
    let row: Option<Loaded> = key
        .bind(sqlx::query_as(&sql))
        .bind(auth.user_id)
        .fetch_optional(&st.db)
        .await?;
    let Loaded(server, node, perms) = row.ok_or_else(ApiError::not_found)?;
    let (is_owner, subuser_permissions) = access(auth, server.owner_id, perms.as_ref())?;
    Ok(Ctx {
        auth: auth.clone(),
        server,
        node,
        is_owner,
        subuser_permissions,
    })
}

/// [`load`] plus upstream's `validateCurrentState` (409 when the server is
/// suspended, installing, restoring, transferring or its node is in maintenance).
pub async fn active(st: &AppState, auth: &Auth, raw: &str) -> ApiResult<Ctx> {
    let ctx = load(st, auth, raw).await?;
    crate::http::remote::state_conflict(st, &ctx.server, &ctx.node).await?;
    Ok(ctx)
}

/// A bound child resource that is not the server's: 404 with upstream's text.
pub fn not_for_server() -> ApiError {
    ApiError::http(
        StatusCode::NOT_FOUND,
        "NotFoundHttpException",
        NOT_FOR_SERVER,
    )
}

/// A numeric route parameter; anything else cannot bind (generic 404).
pub fn numeric(raw: &str) -> ApiResult<i64> {
    crate::http::application::id(raw)
}

/// Client timestamps: ATOM in the panel timezone (UTC here).
pub fn atom(t: &chrono::DateTime<chrono::Utc>) -> String {
    openapi::time::utc_iso(t)
}

pub fn atom_opt(t: &Option<chrono::DateTime<chrono::Utc>>) -> serde_json::Value {
    match t {
        Some(t) => serde_json::Value::String(atom(t)),
        None => serde_json::Value::Null,
    }
}
