//! Application API (`/api/application`) bodies: the transformers of reference §8 in
//! their upstream key order, and the request bodies of §6.

use crate::envelope::Relationships;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `user` (§8.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub external_id: Option<String>,
    pub uuid: String,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub language: String,
    pub root_admin: bool,
    #[serde(rename = "2fa")]
    pub two_factor: bool,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `server.limits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerLimits {
    pub memory: i64,
    pub swap: i64,
    pub disk: i64,
    pub io: i64,
    pub cpu: i64,
    pub threads: Option<String>,
    pub oom_disabled: bool,
}

/// `server.feature_limits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeatureLimits {
    pub databases: Option<i64>,
    pub allocations: Option<i64>,
    pub backups: i64,
}

/// `server.container`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerContainer {
    pub startup_command: String,
    pub image: String,
    /// Deprecated upstream: 1 unless the server is installing or failed to install.
    pub installed: i64,
    #[schema(value_type = Object)]
    pub environment: serde_json::Map<String, serde_json::Value>,
}

/// `server` (§8.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Server {
    pub id: i64,
    pub external_id: Option<String>,
    pub uuid: String,
    pub identifier: String,
    pub name: String,
    pub description: String,
    pub status: Option<String>,
    pub suspended: bool,
    pub limits: ServerLimits,
    pub feature_limits: FeatureLimits,
    pub user: i64,
    pub node: i64,
    pub allocation: i64,
    pub nest: i64,
    pub egg: i64,
    pub container: ServerContainer,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `node.allocated_resources`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AllocatedResources {
    pub memory: i64,
    pub disk: i64,
}

/// `node` (§8.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: i64,
    pub uuid: String,
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
    pub daemon_listen: i64,
    pub daemon_sftp: i64,
    pub daemon_base: String,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    /// Only on the deployable-nodes listing (upstream prints numeric strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_disk: Option<String>,
    pub allocated_resources: AllocatedResources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `location` (§8.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Location {
    pub id: i64,
    pub short: String,
    pub long: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `allocation` (§8.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub id: i64,
    pub ip: String,
    pub alias: Option<String>,
    pub port: i64,
    pub notes: Option<String>,
    pub assigned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `nest` (§8.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Nest {
    pub id: i64,
    pub uuid: String,
    pub author: String,
    pub name: String,
    pub description: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `egg.config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EggConfig {
    #[schema(value_type = Object)]
    pub files: serde_json::Value,
    #[schema(value_type = Object)]
    pub startup: serde_json::Value,
    pub stop: Option<String>,
    #[schema(value_type = Object)]
    pub logs: serde_json::Value,
    pub file_denylist: Option<Vec<String>>,
    pub extends: Option<i64>,
}

/// `egg.script`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EggScript {
    pub privileged: bool,
    pub install: Option<String>,
    pub entry: String,
    pub container: String,
    pub extends: Option<i64>,
}

/// `egg` (§8.7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Egg {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub nest: i64,
    pub author: String,
    pub description: Option<String>,
    pub docker_image: String,
    /// label → image; upstream prints `[]` when empty.
    #[schema(value_type = Object)]
    pub docker_images: serde_json::Value,
    pub config: EggConfig,
    pub startup: Option<String>,
    pub script: EggScript,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `egg_variable` (§8.8) and, with `server_value`, `server_variable` (§8.9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EggVariable {
    pub id: i64,
    pub egg_id: i64,
    pub name: String,
    pub description: String,
    pub env_variable: String,
    pub default_value: String,
    pub user_viewable: bool,
    pub user_editable: bool,
    pub rules: Option<String>,
    #[serde(with = "crate::time::micro")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::micro")]
    pub updated_at: DateTime<Utc>,
    /// Present only on `server_variable`.
    #[serde(default, skip_serializing_if = "ServerValue::is_absent")]
    #[schema(value_type = Option<String>)]
    pub server_value: ServerValue,
}

/// A `server_value` that is absent (egg variable), null, or set (server variable).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ServerValue {
    #[default]
    Absent,
    Null,
    Value(String),
}

impl ServerValue {
    pub fn is_absent(&self) -> bool {
        matches!(self, ServerValue::Absent)
    }
}

impl Serialize for ServerValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ServerValue::Value(v) => s.serialize_str(v),
            _ => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for ServerValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            Some(v) => ServerValue::Value(v),
            None => ServerValue::Null,
        })
    }
}

/// `server_database` (§8.10); timestamps in the panel timezone (UTC here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerDatabase {
    pub id: i64,
    pub server: i64,
    pub host: i64,
    pub database: String,
    pub username: String,
    pub remote: String,
    pub max_connections: Option<i64>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `database_password` include.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatabasePassword {
    pub password: String,
}

/// `database_host` (§8.11).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseHost {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: i64,
    pub username: String,
    pub node: Option<i64>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `server_subuser` / `subuser` include (§8.12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Subuser {
    pub id: i64,
    pub user_id: i64,
    pub server_id: i64,
    pub permissions: Vec<String>,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub relationships: Option<Relationships>,
}

/// `GET /nodes/{id}/configuration` (§6.5): the body of Wings' `config.yml` essentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfiguration {
    pub debug: bool,
    pub uuid: String,
    pub token_id: String,
    pub token: String,
    pub api: NodeConfigurationApi,
    pub system: NodeConfigurationSystem,
    pub allowed_mounts: Vec<String>,
    pub remote: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfigurationApi {
    pub host: String,
    pub port: i64,
    pub ssl: NodeConfigurationSsl,
    pub upload_limit: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfigurationSsl {
    pub enabled: bool,
    pub cert: String,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfigurationSystem {
    pub data: String,
    pub sftp: NodeConfigurationSftp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeConfigurationSftp {
    pub bind_port: i64,
}

// ---------------------------------------------------------------------------------
// Request bodies. Upstream validates loosely typed input (numeric strings pass
// `numeric`), so the server validates raw JSON; these types are what clients send.

/// `POST /users`, `PATCH /users/{id}` (§6.4).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct UserRequest {
    pub email: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_admin: Option<bool>,
}

/// `POST /locations`, `PATCH /locations/{id}` (§6.7).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct LocationRequest {
    pub short: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<String>,
}

/// `POST /nodes`, `PATCH /nodes/{id}` (§6.5).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct NodeRequest {
    pub name: String,
    pub location_id: i64,
    pub fqdn: String,
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_proxy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_mode: Option<bool>,
    pub memory: i64,
    pub memory_overallocate: i64,
    pub disk: i64,
    pub disk_overallocate: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_size: Option<i64>,
    pub daemon_listen: i64,
    pub daemon_sftp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_secret: Option<bool>,
}

/// `POST /nodes/{id}/allocations` (§6.6): ports are strings, single or `a-b` ranges.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct AllocationRequest {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub ports: Vec<String>,
}

/// `limits` of a server create / build update.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct LimitsRequest {
    pub memory: i64,
    pub swap: i64,
    pub disk: i64,
    pub io: i64,
    pub cpu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<String>,
}

/// `feature_limits` of a server create / build update.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct FeatureLimitsRequest {
    pub databases: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocations: Option<i64>,
    pub backups: Option<i64>,
}

/// `allocation` of a server create.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ServerAllocationRequest {
    pub default: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional: Vec<i64>,
}

/// `deploy` of a server create: automatic placement.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DeployRequest {
    pub locations: Vec<i64>,
    pub dedicated_ip: bool,
    pub port_range: Vec<String>,
}

/// `POST /servers` (§6.8).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateServerRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub user: i64,
    pub egg: i64,
    pub docker_image: String,
    pub startup: String,
    pub environment: IndexMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_scripts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_on_completion: Option<bool>,
    pub limits: LimitsRequest,
    pub feature_limits: FeatureLimitsRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<ServerAllocationRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployRequest>,
}

/// `PATCH /servers/{id}/details`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ServerDetailsRequest {
    pub name: String,
    pub user: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PATCH /servers/{id}/build`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ServerBuildRequest {
    pub allocation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_allocations: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_allocations: Vec<i64>,
    pub feature_limits: FeatureLimitsRequest,
}

/// `PATCH /servers/{id}/startup`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ServerStartupRequest {
    pub startup: String,
    pub environment: IndexMap<String, serde_json::Value>,
    pub egg: i64,
    pub image: String,
    pub skip_scripts: bool,
}

/// `POST /servers/{id}/databases` (§6.9).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ServerDatabaseRequest {
    pub database: String,
    pub remote: String,
    pub host: i64,
}

/// `server_transfer`: Ferrodactyl's extension route
/// `/api/application/servers/{server}/transfer` (upstream starts transfers only from
/// its admin UI). The columns of upstream's `server_transfers` table; `successful`
/// is `null` while the transfer runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerTransfer {
    pub id: i64,
    pub server_id: i64,
    pub successful: Option<bool>,
    pub old_node: i64,
    pub new_node: i64,
    pub old_allocation: i64,
    pub new_allocation: i64,
    pub old_additional_allocations: Vec<i64>,
    pub new_additional_allocations: Vec<i64>,
    pub archived: bool,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub updated_at: DateTime<Utc>,
}

/// `POST /servers/{server}/transfer` (our extension): upstream's admin form fields.
/// `allocation_id` may be left out, and then the lowest free allocation of the
/// target node is taken.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TransferServerRequest {
    pub node_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocation_additional: Vec<i64>,
}
