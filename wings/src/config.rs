//! `config.yml`: upstream's keys and defaults (reference §9), loading, saving (mode
//! 0600), the `/api/update` merge (§1.4) and the redacted diagnostics view.

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/pterodactyl/config.yml";

macro_rules! defaults {
    ($t:ty, $($field:ident : $val:expr),* $(,)?) => {
        impl Default for $t {
            fn default() -> Self {
                Self { $($field: $val),* }
            }
        }
    };
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    pub debug: bool,
    pub app_name: String,
    pub uuid: String,
    pub token_id: String,
    pub token: String,
    pub api: ApiConfig,
    pub system: SystemConfig,
    pub docker: DockerConfig,
    pub throttles: Throttles,
    pub remote: String,
    pub remote_query: RemoteQuery,
    pub allowed_mounts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub allow_cors_private_network: bool,
    pub ignore_panel_config_updates: bool,
}

defaults!(Config,
    debug: false,
    app_name: "Pterodactyl".into(),
    uuid: String::new(),
    token_id: String::new(),
    token: String::new(),
    api: ApiConfig::default(),
    system: SystemConfig::default(),
    docker: DockerConfig::default(),
    throttles: Throttles::default(),
    remote: String::new(),
    remote_query: RemoteQuery::default(),
    allowed_mounts: Vec::new(),
    allowed_origins: Vec::new(),
    allow_cors_private_network: false,
    ignore_panel_config_updates: false,
);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiConfig {
    pub host: String,
    pub port: u16,
    pub ssl: SslConfig,
    pub disable_remote_download: bool,
    pub upload_limit: i64,
    pub trusted_proxies: Vec<String>,
    /// Ferrodactyl: addresses or CIDR ranges that remote file pulls may reach even
    /// though they are loopback, private, link-local or metadata addresses (all of
    /// which are refused by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_download_allowed_ips: Vec<String>,
}

defaults!(ApiConfig,
    host: "0.0.0.0".into(),
    port: 8080,
    ssl: SslConfig::default(),
    disable_remote_download: false,
    upload_limit: 100,
    trusted_proxies: Vec::new(),
    remote_download_allowed_ips: Vec::new(),
);

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SslConfig {
    pub enabled: bool,
    pub cert: String,
    pub key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SystemConfig {
    pub root_directory: String,
    pub log_directory: String,
    pub data: String,
    pub archive_directory: String,
    pub backup_directory: String,
    pub tmp_directory: String,
    pub username: String,
    pub timezone: String,
    pub user: SystemUser,
    pub disk_check_interval: i64,
    pub activity_send_interval: i64,
    pub activity_send_count: i64,
    pub check_permissions_on_boot: bool,
    pub enable_log_rotate: bool,
    pub websocket_log_count: usize,
    pub sftp: SftpConfig,
    pub crash_detection: CrashDetection,
    pub backups: Backups,
    pub transfers: Transfers,
    pub openat_mode: String,
}

defaults!(SystemConfig,
    root_directory: "/var/lib/pterodactyl".into(),
    log_directory: "/var/log/pterodactyl".into(),
    data: "/var/lib/pterodactyl/volumes".into(),
    archive_directory: "/var/lib/pterodactyl/archives".into(),
    backup_directory: "/var/lib/pterodactyl/backups".into(),
    tmp_directory: "/tmp/pterodactyl".into(),
    username: "pterodactyl".into(),
    timezone: String::new(),
    user: SystemUser::default(),
    disk_check_interval: 150,
    activity_send_interval: 60,
    activity_send_count: 100,
    check_permissions_on_boot: true,
    enable_log_rotate: true,
    websocket_log_count: 150,
    sftp: SftpConfig::default(),
    crash_detection: CrashDetection::default(),
    backups: Backups::default(),
    transfers: Transfers::default(),
    openat_mode: "auto".into(),
);

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SystemUser {
    pub rootless: Rootless,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Rootless {
    pub enabled: bool,
    pub container_uid: u32,
    pub container_gid: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SftpConfig {
    pub bind_address: String,
    pub bind_port: u16,
    pub read_only: bool,
}

defaults!(SftpConfig, bind_address: "0.0.0.0".into(), bind_port: 2022, read_only: false);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CrashDetection {
    pub enabled: bool,
    pub detect_clean_exit_as_crash: bool,
    pub timeout: i64,
}

defaults!(CrashDetection, enabled: true, detect_clean_exit_as_crash: true, timeout: 60);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Backups {
    pub write_limit: i64,
    pub compression_level: String,
}

defaults!(Backups, write_limit: 0, compression_level: "best_speed".into());

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Transfers {
    pub download_limit: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DockerConfig {
    pub network: DockerNetwork,
    pub domainname: String,
    pub registries: IndexMap<String, RegistryAuth>,
    pub tmpfs_size: i64,
    pub container_pid_limit: i64,
    pub installer_limits: InstallerLimits,
    pub overhead: Overhead,
    pub use_performant_inspect: bool,
    pub userns_mode: String,
    pub log_config: LogConfig,
}

defaults!(DockerConfig,
    network: DockerNetwork::default(),
    domainname: String::new(),
    registries: IndexMap::new(),
    tmpfs_size: 100,
    container_pid_limit: 512,
    installer_limits: InstallerLimits::default(),
    overhead: Overhead::default(),
    use_performant_inspect: true,
    userns_mode: String::new(),
    log_config: LogConfig::default(),
);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DockerNetwork {
    pub interface: String,
    pub dns: Vec<String>,
    pub name: String,
    pub ispn: bool,
    pub driver: String,
    pub network_mode: String,
    pub is_internal: bool,
    pub enable_icc: bool,
    pub network_mtu: i64,
    pub interfaces: NetworkInterfaces,
}

defaults!(DockerNetwork,
    interface: "172.18.0.1".into(),
    dns: vec!["1.1.1.1".into(), "1.0.0.1".into()],
    name: "pterodactyl_nw".into(),
    ispn: false,
    driver: "bridge".into(),
    network_mode: "pterodactyl_nw".into(),
    is_internal: false,
    enable_icc: true,
    network_mtu: 1500,
    interfaces: NetworkInterfaces::default(),
);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NetworkInterfaces {
    pub v4: Subnet,
    pub v6: Subnet,
}

defaults!(NetworkInterfaces,
    v4: Subnet { subnet: "172.18.0.0/16".into(), gateway: "172.18.0.1".into() },
    v6: Subnet { subnet: "fdba:17c8:6c94::/64".into(), gateway: "fdba:17c8:6c94::1011".into() },
);

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Subnet {
    pub subnet: String,
    pub gateway: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct InstallerLimits {
    pub memory: i64,
    pub cpu: i64,
}

defaults!(InstallerLimits, memory: 1024, cpu: 100);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Overhead {
    #[serde(rename = "override")]
    pub override_: bool,
    pub default_multiplier: f64,
    pub multipliers: IndexMap<i64, f64>,
}

defaults!(Overhead, override_: false, default_multiplier: 1.05, multipliers: IndexMap::new());

impl Overhead {
    /// The memory overhead multiplier for a limit in MB (§6.7).
    pub fn multiplier(&self, memory_mb: i64) -> f64 {
        if !self.override_ {
            return if memory_mb <= 2048 {
                1.15
            } else if memory_mb <= 4096 {
                1.10
            } else {
                1.05
            };
        }
        self.multipliers
            .iter()
            .filter(|(k, _)| **k >= memory_mb)
            .min_by_key(|(k, _)| **k)
            .map(|(_, v)| *v)
            .unwrap_or(self.default_multiplier)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub config: IndexMap<String, String>,
}

defaults!(LogConfig,
    kind: "local".into(),
    config: [("max-size", "5m"), ("max-file", "1"), ("compress", "false"), ("mode", "non-blocking")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Throttles {
    pub enabled: bool,
    pub lines: u64,
    pub line_reset_interval: u64,
}

defaults!(Throttles, enabled: true, lines: 2000, line_reset_interval: 100);

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RemoteQuery {
    pub timeout: u64,
    pub boot_servers_per_page: u64,
}

defaults!(RemoteQuery, timeout: 30, boot_servers_per_page: 50);

impl Config {
    /// Reads `config.yml`. Missing keys take upstream's defaults.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read configuration file {}", path.display()))?;
        let cfg: Config = serde_norway::from_str(&text)
            .with_context(|| format!("could not parse configuration file {}", path.display()))?;
        Ok(cfg)
    }

    /// Writes the configuration as YAML with mode 0600, creating the parent folder.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let text = serde_norway::to_string(self)?;
        let tmp = path.with_extension("yml.tmp");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("could not write {}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The Panel base URL without trailing slash.
    pub fn panel_url(&self) -> String {
        self.remote.trim_end_matches('/').to_string()
    }

    /// Applies `POST /api/update` JSON on top of this configuration: absent keys keep
    /// their values, `allowed_mounts` is ignored, and Let's Encrypt default paths never
    /// override the configured ones (which upstream lower-cases in that case).
    pub fn merged_with_panel(&self, body: &serde_json::Value) -> Result<Config> {
        self.merge_panel_json(body, true)
    }

    /// `wings configure`: the Panel's node configuration on top of the defaults, with
    /// its certificate paths taken as they are.
    pub fn from_panel(body: &serde_json::Value) -> Result<Config> {
        Config::default().merge_panel_json(body, false)
    }

    fn merge_panel_json(&self, body: &serde_json::Value, keep_ssl_paths: bool) -> Result<Config> {
        let mut current = serde_json::to_value(self)?;
        let mut incoming = body.clone();
        if let Some(obj) = incoming.as_object_mut() {
            obj.remove("allowed_mounts");
        }
        let new_key = incoming
            .pointer("/api/ssl/key")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        merge_json(&mut current, incoming);
        let mut merged: Config = serde_json::from_value(current)
            .context("the data passed in the request was not in a parsable format")?;
        if keep_ssl_paths
            && new_key
                .as_deref()
                .is_some_and(|k| k.starts_with("/etc/letsencrypt/live/"))
        {
            merged.api.ssl.key = self.api.ssl.key.to_lowercase();
            merged.api.ssl.cert = self.api.ssl.cert.to_lowercase();
        }
        Ok(merged)
    }

    /// A copy safe to print: secrets replaced.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if !c.token.is_empty() {
            c.token = "{redacted}".into();
        }
        if !c.token_id.is_empty() {
            c.token_id = "{redacted}".into();
        }
        for auth in c.docker.registries.values_mut() {
            auth.password = "{redacted}".into();
        }
        c
    }

    /// Fills runtime values upstream derives at boot: the timezone.
    pub fn fill_runtime_defaults(&mut self) {
        if self.system.timezone.is_empty() {
            self.system.timezone = detect_timezone();
        }
        self.system
            .timezone
            .retain(|c| c.is_ascii_alphabetic() || c == '_' || c == '/');
        if self.system.timezone.is_empty() {
            self.system.timezone = "UTC".into();
        }
    }

    /// Looks up (or, as upstream does, creates) the system user and records its
    /// uid/gid.
    pub fn ensure_system_user(&mut self) -> Result<()> {
        if let Some((uid, gid)) = lookup_user(&self.system.username) {
            self.system.user.uid = uid;
            self.system.user.gid = gid;
            return Ok(());
        }
        let status = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&self.system.username)
            .status()
            .context("could not run useradd")?;
        anyhow::ensure!(status.success(), "useradd {} failed", self.system.username);
        let (uid, gid) = lookup_user(&self.system.username)
            .context("system user still missing after useradd")?;
        self.system.user.uid = uid;
        self.system.user.gid = gid;
        Ok(())
    }

    /// The `uid:gid` the server containers run as.
    pub fn container_user(&self) -> String {
        if self.system.user.rootless.enabled {
            format!(
                "{}:{}",
                self.system.user.rootless.container_uid, self.system.user.rootless.container_gid
            )
        } else {
            format!("{}:{}", self.system.user.uid, self.system.user.gid)
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.system.data)
    }
}

fn merge_json(target: &mut serde_json::Value, incoming: serde_json::Value) {
    match (target, incoming) {
        (serde_json::Value::Object(t), serde_json::Value::Object(i)) => {
            for (k, v) in i {
                // Go decodes untagged fields case-insensitively; match keys the same way.
                let existing = t.keys().find(|tk| tk.eq_ignore_ascii_case(&k)).cloned();
                match existing {
                    Some(key) => merge_json(t.get_mut(&key).expect("key exists"), v),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, i) => {
            if !i.is_null() {
                *t = i;
            }
        }
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

fn detect_timezone() -> String {
    if let Ok(tz) = std::env::var("TZ") {
        if !tz.is_empty() {
            return tz;
        }
    }
    if let Ok(tz) = std::fs::read_to_string("/etc/timezone") {
        let tz = tz.trim();
        if !tz.is_empty() {
            return tz.to_string();
        }
    }
    "UTC".into()
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_upstream_defaults() {
        let c: Config = serde_norway::from_str("{}").unwrap();
        assert_eq!(c.api.port, 8080);
        assert_eq!(c.system.data, "/var/lib/pterodactyl/volumes");
        assert_eq!(c.docker.network.name, "pterodactyl_nw");
        assert_eq!(c.docker.container_pid_limit, 512);
        assert_eq!(c.throttles.lines, 2000);
        assert_eq!(c.remote_query.boot_servers_per_page, 50);
        assert_eq!(c.docker.log_config.config["max-size"], "5m");
        assert_eq!(c.system.crash_detection.timeout, 60);
    }

    #[test]
    fn overhead_multiplier_follows_upstream_steps() {
        let o = Overhead::default();
        assert_eq!(o.multiplier(1024), 1.15);
        assert_eq!(o.multiplier(2048), 1.15);
        assert_eq!(o.multiplier(4096), 1.10);
        assert_eq!(o.multiplier(8192), 1.05);
        let o = Overhead {
            override_: true,
            default_multiplier: 1.2,
            multipliers: [(1024, 1.5), (4096, 1.3)].into_iter().collect(),
        };
        assert_eq!(o.multiplier(512), 1.5);
        assert_eq!(o.multiplier(2000), 1.3);
        assert_eq!(o.multiplier(9000), 1.2);
    }

    #[test]
    fn panel_update_merges_and_keeps_manual_ssl_paths_and_mounts() {
        let mut c = Config::default();
        c.allowed_mounts = vec!["/srv".into()];
        c.api.ssl.key = "/My/key.pem".into();
        c.api.ssl.cert = "/my/cert.pem".into();
        let body = serde_json::json!({"token":"new","api":{"port":9090,"ssl":{"enabled":true,
            "cert":"/etc/letsencrypt/live/x/fullchain.pem","key":"/etc/letsencrypt/live/x/privkey.pem"}},
            "allowed_mounts":[],"system":{"data":"/data","sftp":{"bind_port":2023}}});
        let m = c.merged_with_panel(&body).unwrap();
        assert_eq!(m.token, "new");
        assert_eq!(m.api.port, 9090);
        assert!(m.api.ssl.enabled);
        assert_eq!(m.api.ssl.key, "/my/key.pem");
        assert_eq!(m.allowed_mounts, vec!["/srv".to_string()]);
        assert_eq!(m.system.sftp.bind_port, 2023);
        assert_eq!(m.system.root_directory, "/var/lib/pterodactyl");
    }
}
