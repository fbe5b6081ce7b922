//! Wings HTTP API bodies (Panel → Wings and browser → Wings): reference
//! `wings-protocol.md` §1–§3, §5. Owned by the daemon-protocol work.

use crate::remote::{Allocations, BuildSettings, EggSettings, Mount, ServerMeta};
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Every Wings error body: `{"error": "..."}`, plus `request_id` when the error went
/// through the capture middleware.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

// ---------------------------------------------------------------------------------
// System (§1.4)

/// `GET /api/system`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemInformation {
    pub architecture: String,
    pub cpu_count: i64,
    pub kernel_version: String,
    pub os: String,
    pub version: String,
}

/// `GET /api/system?v=2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemInformationV2 {
    pub version: String,
    pub docker: DockerInformation,
    pub system: HostInformation,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DockerInformation {
    pub version: String,
    pub cgroups: DockerCgroups,
    pub containers: DockerContainers,
    pub storage: DockerStorage,
    pub runc: DockerRunc,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DockerCgroups {
    pub driver: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DockerContainers {
    pub total: i64,
    pub running: i64,
    pub paused: i64,
    pub stopped: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DockerStorage {
    pub driver: String,
    pub filesystem: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DockerRunc {
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostInformation {
    pub architecture: String,
    pub cpu_threads: i64,
    pub memory_bytes: i64,
    pub kernel_version: String,
    /// `PRETTY_NAME` from os-release.
    pub os: String,
    pub os_type: String,
}

/// `POST /api/update` response. The request body is the Panel's node configuration
/// ([`crate::application::NodeConfiguration`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateConfigurationResponse {
    pub applied: bool,
}

// ---------------------------------------------------------------------------------
// Servers (§1.5)

/// One element of `GET /api/servers`, or `GET /api/servers/{uuid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerDetails {
    /// `offline|starting|running|stopping`.
    pub state: String,
    pub is_suspended: bool,
    pub utilization: ResourceUsage,
    pub configuration: ServerConfiguration,
}

/// Wings' re-encoding of the Panel's `settings` (§6.1), in Wings' key order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerConfiguration {
    pub uuid: String,
    pub meta: ServerMeta,
    pub suspended: bool,
    pub invocation: String,
    pub skip_egg_scripts: bool,
    #[schema(value_type = Object)]
    pub environment: IndexMap<String, serde_json::Value>,
    #[schema(value_type = Object)]
    pub labels: IndexMap<String, String>,
    pub allocations: Allocations,
    pub build: BuildSettings,
    pub crash_detection_enabled: bool,
    pub mounts: Vec<Mount>,
    pub egg: EggSettings,
    pub container: ServerConfigurationContainer,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerConfigurationContainer {
    pub image: String,
}

/// `utilization` of [`ServerDetails`], and the JSON inside the websocket `stats`
/// event. `uptime` is in milliseconds; `cpu_absolute` is 100 per fully used core.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub cpu_absolute: f64,
    pub network: NetworkUsage,
    pub uptime: i64,
    pub state: String,
    pub disk_bytes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkUsage {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `POST /api/servers`. `uuid` must be a UUID v4.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateServerRequest {
    pub uuid: String,
    #[serde(default)]
    pub start_on_completion: bool,
}

/// `POST /api/servers/{uuid}/power`. `action` is `start|stop|restart|kill`;
/// `wait_seconds` outside 0..=300 becomes 30.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PowerRequest {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<i64>,
}

/// `POST /api/servers/{uuid}/commands`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandsRequest {
    pub commands: Vec<String>,
}

/// `GET /api/servers/{uuid}/logs?size=N`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogsResponse {
    pub data: Vec<String>,
}

/// `POST /api/servers/{uuid}/ws/deny`: `jtis` = `md5(user.id . server.uuid)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DenyJtisRequest {
    pub jtis: Vec<String>,
}

// ---------------------------------------------------------------------------------
// Websocket (§3)

/// A websocket frame, both directions: `{"event":"…","args":["…"]}`. Outbound `args`
/// is omitted when empty; inbound `null` elements decode to `""` (the Panel UI sends
/// `args:[null]`), and so do non-string scalars' absence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebsocketMessage {
    pub event: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_tolerant_strings"
    )]
    pub args: Vec<String>,
}

impl WebsocketMessage {
    pub fn new(event: impl Into<String>, args: Vec<String>) -> Self {
        WebsocketMessage {
            event: event.into(),
            args,
        }
    }
}

/// Websocket event names (§3.5, §3.6).
pub mod events {
    pub const AUTH: &str = "auth";
    pub const SET_STATE: &str = "set state";
    pub const SEND_COMMAND: &str = "send command";
    pub const SEND_LOGS: &str = "send logs";
    pub const SEND_STATS: &str = "send stats";

    pub const AUTH_SUCCESS: &str = "auth success";
    pub const TOKEN_EXPIRING: &str = "token expiring";
    pub const TOKEN_EXPIRED: &str = "token expired";
    pub const JWT_ERROR: &str = "jwt error";
    pub const DAEMON_ERROR: &str = "daemon error";
    pub const STATUS: &str = "status";
    pub const STATS: &str = "stats";
    pub const CONSOLE_OUTPUT: &str = "console output";
    pub const INSTALL_OUTPUT: &str = "install output";
    pub const INSTALL_STARTED: &str = "install started";
    pub const INSTALL_COMPLETED: &str = "install completed";
    pub const DAEMON_MESSAGE: &str = "daemon message";
    pub const BACKUP_COMPLETED: &str = "backup completed";
    pub const BACKUP_RESTORE_COMPLETED: &str = "backup restore completed";
    pub const TRANSFER_LOGS: &str = "transfer logs";
    pub const TRANSFER_STATUS: &str = "transfer status";
    pub const DELETED: &str = "deleted";
}

// ---------------------------------------------------------------------------------
// JWT claims (§2)

/// Claims of every Panel-minted JWT (websocket, upload, download, backup download,
/// transfer). Dates are integer Unix seconds; `aud` is an array or a string.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_uuid: Option<String>,
}

fn null_tolerant_strings<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|v| match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_args_accept_null_and_are_omitted_when_empty() {
        let m: WebsocketMessage =
            serde_json::from_str(r#"{"event":"send logs","args":[null]}"#).unwrap();
        assert_eq!(m.args, vec![String::new()]);
        let m: WebsocketMessage = serde_json::from_str(r#"{"event":"send stats"}"#).unwrap();
        assert!(m.args.is_empty());
        let out = serde_json::to_string(&WebsocketMessage::new("auth success", vec![])).unwrap();
        assert_eq!(out, r#"{"event":"auth success"}"#);
    }

    #[test]
    fn claims_accept_array_audience() {
        let c: TokenClaims = serde_json::from_str(
            r#"{"iss":"http://panel","aud":["http://node:8080"],"jti":"x","iat":1,"nbf":1,"exp":2,
                "unique_id":"abc","user_uuid":"u","user_id":1,"server_uuid":"s","permissions":["*"]}"#,
        )
        .unwrap();
        assert_eq!(c.permissions.unwrap(), vec!["*".to_string()]);
    }
}

// ---------------------------------------------------------------------------------
// Files (§1.6)

/// Upstream's file stat object (`wings: server/filesystem/stat.go`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileObject {
    pub name: String,
    pub created: String,
    pub modified: String,
    pub mode: String,
    pub mode_bits: String,
    pub size: i64,
    pub directory: bool,
    pub file: bool,
    pub symlink: bool,
    pub mime: String,
}

fn default_root() -> String {
    "/".into()
}

/// `GET /api/servers/{uuid}/files/contents?file=…&download=…`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileQuery {
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub download: String,
}

/// `GET /api/servers/{uuid}/files/list-directory?directory=…`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DirQuery {
    #[serde(default)]
    pub directory: String,
}

/// One move of a [`RenameRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RenamePair {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

/// `PUT /api/servers/{uuid}/files/rename`: paths relative to `root` (default `/`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RenameRequest {
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default)]
    pub files: Vec<RenamePair>,
}

/// `POST /api/servers/{uuid}/files/copy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CopyRequest {
    #[serde(default)]
    pub location: String,
}

/// `POST /api/servers/{uuid}/files/create-directory`: `name` inside `path`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateDirectoryRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub path: String,
}

/// `POST /api/servers/{uuid}/files/delete` and `/files/compress`: names relative to `root` (default `/`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilesRequest {
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default)]
    pub files: Vec<String>,
}

/// `POST /api/servers/{uuid}/files/decompress`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecompressRequest {
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default)]
    pub file: String,
}

/// One entry of a [`ChmodRequest`]; `mode` is an octal string such as `"644"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChmodFile {
    #[serde(default)]
    pub file: String,
    pub mode: String,
}

/// `POST /api/servers/{uuid}/files/chmod`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChmodRequest {
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default)]
    pub files: Vec<ChmodFile>,
}
