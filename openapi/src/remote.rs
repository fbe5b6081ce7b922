//! Remote API bodies (Wings → Panel, `/api/remote`): reference `wings-protocol.md` §4,
//! §6.1–§6.2. Owned by the daemon-protocol work.
//!
//! panel-api serialises these and wings reads them back, so every field upstream's
//! Panel sends is here, in upstream's key order. Decoding is lenient where upstream's
//! Wings is (missing keys take Go's zero values, `startup.done` may be a string or
//! null, env values may be any JSON scalar).

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

// ---------------------------------------------------------------------------------
// Server list and server configuration (§4.2, §4.3, §6.1, §6.2)

/// `GET /api/remote/servers?page=N&per_page=M`: a Laravel resource collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerList {
    pub data: Vec<RawServerData>,
    pub links: PaginationLinks,
    pub meta: PaginationMeta,
}

/// One entry of [`ServerList::data`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RawServerData {
    pub uuid: String,
    pub settings: ServerSettings,
    pub process_configuration: ProcessConfiguration,
}

/// Laravel's `links` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaginationLinks {
    pub first: Option<String>,
    pub last: Option<String>,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// Laravel's `meta` block. Wings reads `current_page, from, last_page, per_page, to,
/// total` as unsigned integers (`per_page` must be a number, `from`/`to` may be null).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaginationMeta {
    pub current_page: u64,
    pub from: Option<u64>,
    pub last_page: u64,
    #[serde(default)]
    pub links: Vec<PaginationMetaLink>,
    #[serde(default)]
    pub path: String,
    pub per_page: u64,
    pub to: Option<u64>,
    pub total: u64,
}

/// An entry of Laravel's `meta.links` (the page buttons).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaginationMetaLink {
    pub url: Option<String>,
    pub label: String,
    pub active: bool,
}

/// `GET /api/remote/servers/{uuid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerConfigurationResponse {
    pub settings: ServerSettings,
    pub process_configuration: ProcessConfiguration,
}

/// `settings` (§6.1), as `ServerConfigurationStructureService` builds it. Wings'
/// own `GET /api/servers/{uuid}` re-encodes the same structure as its
/// `configuration`, adding `labels` and `crash_detection_enabled`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerSettings {
    pub uuid: String,
    pub meta: ServerMeta,
    pub suspended: bool,
    /// Egg variables plus `STARTUP`, `P_SERVER_LOCATION`, `P_SERVER_UUID`,
    /// `P_SERVER_ALLOCATION_LIMIT`; values may be strings, numbers, booleans or null.
    #[schema(value_type = Object)]
    pub environment: IndexMap<String, serde_json::Value>,
    pub invocation: String,
    pub skip_egg_scripts: bool,
    pub build: BuildSettings,
    pub container: ContainerSettings,
    pub allocations: Allocations,
    pub mounts: Vec<Mount>,
    pub egg: EggSettings,
    /// Not sent by the Panel; Wings adds these to the container labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<IndexMap<String, String>>,
    /// Not sent by the Panel; defaults to `system.crash_detection.enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_detection_enabled: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ServerMeta {
    pub name: String,
    pub description: String,
}

/// `settings.build`: memory/swap/disk in MB, `cpu_limit` in % of one core (0 =
/// unlimited), `swap` −1 = unlimited, `threads` = cpuset string.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct BuildSettings {
    pub memory_limit: i64,
    pub swap: i64,
    pub io_weight: u16,
    pub cpu_limit: i64,
    pub threads: Option<String>,
    pub disk_space: i64,
    pub oom_disabled: bool,
}

/// `settings.container`. Wings only uses `image` (a leading `~` = local image, never
/// pulled).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ContainerSettings {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires_rebuild: Option<bool>,
}

/// `settings.allocations`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Allocations {
    pub force_outgoing_ip: bool,
    pub default: AllocationDefault,
    /// `ip → [ports]`.
    #[schema(value_type = Object)]
    pub mappings: IndexMap<String, Vec<i64>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AllocationDefault {
    pub ip: String,
    pub port: i64,
}

/// `settings.mounts[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// `settings.egg`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct EggSettings {
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub file_denylist: Vec<String>,
}

/// `process_configuration` (§6.2), as `EggConfigurationService` builds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ProcessConfiguration {
    pub startup: ProcessStartup,
    pub stop: ProcessStop,
    #[serde(deserialize_with = "null_as_default")]
    pub configs: Vec<ConfigurationFile>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ProcessStartup {
    /// Substring matches, or regular expressions when prefixed `regex:`. The Panel
    /// wraps a single string into an array; null is accepted as empty.
    #[serde(deserialize_with = "string_or_list")]
    pub done: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub user_interaction: Vec<String>,
    pub strip_ansi: bool,
}

/// `stop`: `{"type":"signal","value":"C"}` for `^C`, `{"type":"command","value":"stop"}`,
/// or `{"type":"stop"}` (native docker stop).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ProcessStop {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// One egg configuration file to rewrite before start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConfigurationFile {
    pub file: String,
    /// `file`, `yaml`/`yml`, `properties`, `ini`, `json`, `xml`.
    pub parser: String,
    #[serde(deserialize_with = "null_as_default")]
    pub replace: Vec<ConfigurationReplacement>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConfigurationReplacement {
    #[serde(rename = "match")]
    pub matches: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_value: Option<String>,
    /// Any JSON scalar; the legacy key `value` is accepted.
    #[serde(alias = "value")]
    #[schema(value_type = Object)]
    pub replace_with: serde_json::Value,
}

// ---------------------------------------------------------------------------------
// Installation (§4.2, §6.10)

/// `GET /api/remote/servers/{uuid}/install`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstallationScript {
    pub container_image: String,
    pub entrypoint: String,
    pub script: Option<String>,
}

/// `POST /api/remote/servers/{uuid}/install`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstallStatusRequest {
    pub successful: bool,
    pub reinstall: bool,
}

// ---------------------------------------------------------------------------------
// SFTP (§4.5)

/// `POST /api/remote/sftp/auth` request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SftpAuthRequest {
    /// `password` or `public_key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `<panel username>.<8-char server short id>`.
    pub username: String,
    /// The password, or the `authorized_keys` line (with trailing newline).
    pub password: String,
    /// `ip:port` of the SFTP client; the Panel ignores it.
    pub ip: String,
    /// Base64 of the SSH session id bytes; the Panel ignores it.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Base64 of the client version bytes; the Panel ignores it.
    #[serde(default)]
    pub client_version: Option<String>,
}

/// `POST /api/remote/sftp/auth` success.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SftpAuthResponse {
    pub user: String,
    pub server: String,
    pub permissions: Vec<String>,
}

// ---------------------------------------------------------------------------------
// Activity (§4.4)

/// `POST /api/remote/activity`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActivityBatch {
    pub data: Vec<ActivityEvent>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActivityEvent {
    pub user: Option<String>,
    pub server: String,
    /// Must start with `server:`.
    pub event: String,
    /// Must be present (may be null or empty).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub ip: Option<String>,
    /// UTC RFC3339 with `Z`, e.g. `2024-03-17T20:58:30.123456789Z`.
    pub timestamp: String,
}

// ---------------------------------------------------------------------------------
// Backups (§4.2, §8.1)

/// `GET /api/remote/backups/{uuid}?size=<bytes>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupRemoteUploadResponse {
    pub parts: Vec<String>,
    pub part_size: i64,
}

/// `POST /api/remote/backups/{uuid}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupStatusRequest {
    pub checksum: String,
    pub checksum_type: String,
    pub size: i64,
    pub successful: bool,
    pub parts: Option<Vec<BackupPart>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupPart {
    pub etag: String,
    pub part_number: i64,
}

/// `POST /api/remote/backups/{uuid}/restore`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupRestoreStatusRequest {
    pub successful: bool,
}

// ---------------------------------------------------------------------------------

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_or_list<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_decode_the_reference_example() {
        let json = r#"{
 "uuid":"9a5f5c5e-2f43-4f3b-a5a5-2b1f2e0e5a11",
 "meta":{"name":"My server","description":""},
 "suspended":false,
 "environment":{"SERVER_JARFILE":"server.jar","STARTUP":"java","P_SERVER_LOCATION":"de","P_SERVER_UUID":"x","P_SERVER_ALLOCATION_LIMIT":0},
 "invocation":"java -Xms128M -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}",
 "skip_egg_scripts":false,
 "build":{"memory_limit":1024,"swap":0,"io_weight":500,"cpu_limit":100,"threads":null,"disk_space":5120,"oom_disabled":true},
 "container":{"image":"ghcr.io/x:java_17","oom_disabled":true,"requires_rebuild":false},
 "allocations":{"force_outgoing_ip":false,"default":{"ip":"0.0.0.0","port":25565},"mappings":{"0.0.0.0":[25565,25566]}},
 "mounts":[{"source":"/srv/shared","target":"/mnt/shared","read_only":true}],
 "egg":{"id":"e","file_denylist":["*.jar"]}
}"#;
        let s: ServerSettings = serde_json::from_str(json).unwrap();
        assert_eq!(s.build.memory_limit, 1024);
        assert_eq!(s.allocations.mappings["0.0.0.0"], vec![25565, 25566]);
        assert_eq!(s.mounts[0].target, "/mnt/shared");
        assert!(s.labels.is_none());
        let back = serde_json::to_value(&s).unwrap();
        assert!(back.get("labels").is_none());
        assert_eq!(back["container"]["image"], "ghcr.io/x:java_17");
    }

    #[test]
    fn startup_done_accepts_string_array_and_null() {
        let p: ProcessConfiguration = serde_json::from_str(
            r#"{"startup":{"done":"Done"},"stop":{"type":"signal","value":"C"},"configs":[]}"#,
        )
        .unwrap();
        assert_eq!(p.startup.done, vec!["Done".to_string()]);
        assert_eq!(p.stop.kind, "signal");
        let p: ProcessConfiguration =
            serde_json::from_str(r#"{"startup":{"done":null,"user_interaction":null},"stop":{"type":"command","value":"stop"},"configs":null}"#)
                .unwrap();
        assert!(p.startup.done.is_empty());
        let p: ProcessConfiguration = serde_json::from_str(
            r#"{"startup":{"done":[")! For help","regex:^Done \\("]},"stop":{"type":"command","value":"stop"},
               "configs":[{"file":"server.properties","parser":"properties","replace":[{"match":"server-port","value":25565}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.startup.done.len(), 2);
        assert_eq!(
            p.configs[0].replace[0].replace_with,
            serde_json::json!(25565)
        );
    }

    #[test]
    fn server_list_reads_laravel_meta_with_null_from_to() {
        let json = r#"{"data":[],"links":{"first":"a","last":"b","prev":null,"next":null},
          "meta":{"current_page":1,"from":null,"last_page":1,"links":[],"path":"p","per_page":50,"to":null,"total":0}}"#;
        let l: ServerList = serde_json::from_str(json).unwrap();
        assert_eq!(l.meta.per_page, 50);
        assert_eq!(l.meta.from, None);
    }
}
