//! The container runtime behind a trait (upstream calls it the environment). The
//! server state machine, console, crash detection and installer only talk to
//! [`Environment`]; [`docker::DockerEnvironment`] (bollard) is the production one.

pub mod docker;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use indexmap::IndexMap;
use std::pin::Pin;
use tokio::io::AsyncWrite;

pub type Result<T> = std::result::Result<T, anyhow::Error>;

/// A runtime-neutral container definition (reference §6.5, §6.10).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub hostname: String,
    pub domainname: String,
    pub image: String,
    /// `uid:gid`, or `None` for the image default.
    pub user: Option<String>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: IndexMap<String, String>,
    pub ports: Vec<PortBinding>,
    pub mounts: Vec<BindMount>,
    pub tmpfs: IndexMap<String, String>,
    pub resources: Resources,
    pub dns: Vec<String>,
    pub log_driver: String,
    pub log_options: IndexMap<String, String>,
    pub security_opt: Vec<String>,
    pub readonly_rootfs: bool,
    pub cap_drop: Vec<String>,
    pub network_mode: String,
    pub userns_mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortBinding {
    pub host_ip: String,
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Docker resource fields (§6.7). `None` = do not send.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub memory: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub blkio_weight: Option<u16>,
    pub oom_kill_disable: Option<bool>,
    pub pids_limit: Option<i64>,
}

/// What the runtime knows about a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerStatus {
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// RFC3339 start time.
    pub started_at: Option<String>,
}

/// An attached console: raw TTY output and stdin.
pub struct Attached {
    pub output: BoxStream<'static, Result<Bytes>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// One resource sample (§6.8 Stats).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSample {
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub cpu_absolute: f64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Result of ensuring the server network (§6.4).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkReport {
    pub created: bool,
    /// The driver of the existing network (empty when it was just created, as upstream).
    pub driver: String,
}

#[async_trait]
pub trait Environment: Send + Sync + 'static {
    /// Creates the configured network if missing.
    async fn ensure_network(&self, cfg: &crate::config::DockerNetwork) -> Result<NetworkReport>;
    /// Creates the `ip-<ip>` bridge used when a server forces its outgoing IP.
    async fn ensure_outgoing_ip_network(&self, name: &str, ip: &str) -> Result<()>;
    /// Pulls the image (unless it starts with `~`); a failed pull is tolerated when the
    /// image exists locally. Progress lines go to `progress`.
    async fn ensure_image(
        &self,
        image: &str,
        registries: &IndexMap<String, crate::config::RegistryAuth>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<()>;
    /// `None` when the container does not exist.
    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>>;
    async fn create(&self, spec: &ContainerSpec) -> Result<()>;
    /// Force-removes the container and its volumes; a missing container is fine.
    async fn remove(&self, name: &str) -> Result<()>;
    async fn start(&self, name: &str) -> Result<()>;
    async fn attach(&self, name: &str) -> Result<Attached>;
    /// Sends a signal by Docker name (`SIGINT`, `SIGKILL`, …).
    async fn signal(&self, name: &str, signal: &str) -> Result<()>;
    /// Native `docker stop`; `None` = the engine's default timeout.
    async fn stop(&self, name: &str, timeout_secs: Option<i64>) -> Result<()>;
    /// Waits until the container is not running; returns its exit code.
    async fn wait(&self, name: &str) -> Result<i64>;
    fn stats(&self, name: &str) -> BoxStream<'static, Result<StatsSample>>;
    /// The last `tail` lines of the container log.
    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>>;
    /// Applies resource limits to an existing container (`docker update`).
    async fn update_resources(&self, name: &str, resources: &Resources) -> Result<()>;
    async fn info(&self) -> Result<openapi::wings::DockerInformation>;
}

/// Docker's name for an egg stop signal value (§6.8): `C` → `SIGINT`, bare names get
/// a `SIG` prefix, anything empty or unknown becomes `SIGKILL`.
pub fn docker_signal_name(value: &str) -> String {
    let v = value.trim().trim_start_matches('^').to_ascii_uppercase();
    let bare = v.strip_prefix("SIG").unwrap_or(&v);
    let known = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    match bare {
        "C" => "SIGINT".into(),
        "Z" => "SIGTSTP".into(),
        "\\" => "SIGQUIT".into(),
        b if known.contains(&b) => format!("SIG{b}"),
        _ => "SIGKILL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::docker_signal_name;

    #[test]
    fn caret_c_is_sigint_and_names_are_normalised() {
        assert_eq!(docker_signal_name("C"), "SIGINT");
        assert_eq!(docker_signal_name("^C"), "SIGINT");
        assert_eq!(docker_signal_name("SIGTERM"), "SIGTERM");
        assert_eq!(docker_signal_name("term"), "SIGTERM");
        assert_eq!(docker_signal_name("SIGABRT"), "SIGABRT");
        assert_eq!(docker_signal_name(""), "SIGKILL");
        assert_eq!(docker_signal_name("nonsense"), "SIGKILL");
    }
}
