//! Builds the container definitions upstream builds (reference §6.5–§6.7, §6.10)
//! from the Panel's settings and the node configuration. Pure functions, so every
//! number is unit-tested.

use crate::config::Config;
use crate::environment::{BindMount, ContainerSpec, PortBinding, Resources};
use indexmap::IndexMap;
use openapi::remote::{BuildSettings, ServerSettings};
use std::path::{Component, Path, PathBuf};

/// Go's rendering of a JSON value taken from `environment` (§6.6): numbers arrive as
/// float64 and print with `%f`, booleans as `true`/`false`, null as empty.
pub fn env_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => format!("{:.6}", n.as_f64().unwrap_or(0.0)),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `TZ, STARTUP, SERVER_MEMORY, SERVER_IP, SERVER_PORT`, then every `environment` key
/// upper-cased, skipping names already set. `SERVER_IP=127.0.0.1` is rewritten to the
/// Docker interface for the server container (not for the installer).
pub fn environment_variables(
    s: &ServerSettings,
    cfg: &Config,
    rewrite_loopback: bool,
) -> Vec<String> {
    let mut ip = s.allocations.default.ip.clone();
    if rewrite_loopback && ip == "127.0.0.1" {
        ip = cfg.docker.network.interface.clone();
    }
    let mut out: Vec<(String, String)> = vec![
        ("TZ".into(), cfg.system.timezone.clone()),
        ("STARTUP".into(), s.invocation.clone()),
        ("SERVER_MEMORY".into(), s.build.memory_limit.to_string()),
        ("SERVER_IP".into(), ip),
        ("SERVER_PORT".into(), s.allocations.default.port.to_string()),
    ];
    for (k, v) in &s.environment {
        let key = k.to_uppercase();
        if out.iter().any(|(existing, _)| *existing == key) {
            continue;
        }
        out.push((key, env_value(v)));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker resource limits for a build (§6.7).
pub fn resources(b: &BuildSettings, cfg: &Config) -> Resources {
    let memory =
        (b.memory_limit as f64 * cfg.docker.overhead.multiplier(b.memory_limit) * 1_000_000.0)
            .round() as i64;
    let swap = if b.swap < 0 {
        -1
    } else {
        b.swap * 1_000_000 + memory
    };
    let mut r = Resources {
        memory,
        memory_reservation: b.memory_limit * 1_000_000,
        memory_swap: swap,
        blkio_weight: Some(b.io_weight),
        oom_kill_disable: Some(b.oom_disabled),
        pids_limit: Some(cfg.docker.container_pid_limit),
        ..Default::default()
    };
    if b.cpu_limit > 0 {
        r.cpu_quota = Some(b.cpu_limit * 1000);
        r.cpu_period = Some(100_000);
        r.cpu_shares = Some(1024);
    }
    if let Some(t) = b.threads.as_deref().filter(|t| !t.is_empty()) {
        r.cpuset_cpus = Some(t.to_string());
    }
    r
}

/// TCP and UDP bindings for every allocation; `127.0.0.1` goes to the Docker
/// interface, or is dropped when ISPN is on.
pub fn port_bindings(s: &ServerSettings, cfg: &Config) -> Vec<PortBinding> {
    let mut out = Vec::new();
    for (ip, ports) in &s.allocations.mappings {
        let host_ip = if ip == "127.0.0.1" {
            if cfg.docker.network.ispn {
                continue;
            }
            cfg.docker.network.interface.clone()
        } else {
            ip.clone()
        };
        for port in ports {
            if !(1..=65535).contains(port) {
                continue;
            }
            for proto in ["tcp", "udp"] {
                out.push(PortBinding {
                    host_ip: host_ip.clone(),
                    port: *port as u16,
                    proto,
                });
            }
        }
    }
    out
}

fn clean(p: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The data directory at `/home/container` plus every Panel mount whose cleaned
/// source lies under one of `allowed_mounts` (others are skipped with a warning).
pub fn mounts(s: &ServerSettings, cfg: &Config) -> Vec<BindMount> {
    let mut out = vec![BindMount {
        source: data_path(cfg, &s.uuid).to_string_lossy().into_owned(),
        target: "/home/container".into(),
        read_only: false,
    }];
    for m in &s.mounts {
        let source = clean(&m.source);
        let allowed = cfg
            .allowed_mounts
            .iter()
            .any(|a| source.starts_with(clean(a)));
        if !allowed {
            tracing::warn!(server = %s.uuid, source = %m.source, "skipping mount: source is not in allowed_mounts");
            continue;
        }
        out.push(BindMount {
            source: source.to_string_lossy().into_owned(),
            target: m.target.clone(),
            read_only: m.read_only,
        });
    }
    out
}

pub fn data_path(cfg: &Config, uuid: &str) -> PathBuf {
    cfg.data_dir().join(uuid)
}

fn tmpfs(cfg: &Config) -> IndexMap<String, String> {
    [(
        "/tmp".to_string(),
        format!("rw,exec,nosuid,size={}M", cfg.docker.tmpfs_size),
    )]
    .into_iter()
    .collect()
}

/// The network a server container joins (`ip-<ip>` when forcing the outgoing IP).
pub fn network_mode(s: &ServerSettings, cfg: &Config) -> String {
    if s.allocations.force_outgoing_ip {
        format!("ip-{}", s.allocations.default.ip.replace(['.', ':'], "-"))
    } else {
        cfg.docker.network.network_mode.clone()
    }
}

/// The server process container (§6.5).
pub fn server_container(s: &ServerSettings, cfg: &Config) -> ContainerSpec {
    let mut labels: IndexMap<String, String> = s.labels.clone().unwrap_or_default();
    labels.insert("Service".into(), "Pterodactyl".into());
    labels.insert("ContainerType".into(), "server_process".into());
    ContainerSpec {
        name: s.uuid.clone(),
        hostname: s.uuid.clone(),
        domainname: cfg.docker.domainname.clone(),
        image: s.container.image.clone(),
        user: Some(cfg.container_user()),
        cmd: None,
        env: environment_variables(s, cfg, true),
        labels,
        ports: port_bindings(s, cfg),
        mounts: mounts(s, cfg),
        tmpfs: tmpfs(cfg),
        resources: resources(&s.build, cfg),
        dns: cfg.docker.network.dns.clone(),
        log_driver: cfg.docker.log_config.kind.clone(),
        log_options: cfg.docker.log_config.config.clone(),
        security_opt: vec!["no-new-privileges".into()],
        readonly_rootfs: true,
        cap_drop: [
            "setpcap",
            "mknod",
            "audit_write",
            "net_raw",
            "dac_override",
            "fowner",
            "fsetid",
            "net_bind_service",
            "sys_chroot",
            "setfcap",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect(),
        network_mode: network_mode(s, cfg),
        userns_mode: cfg.docker.userns_mode.clone(),
    }
}

/// The `<uuid>_installer` container (§6.10): image default user, no read-only root,
/// no capability drops, no PID limit; memory = max(server, installer limit); CPU
/// unlimited if either limit is 0, else the larger.
pub fn installer_container(
    s: &ServerSettings,
    cfg: &Config,
    image: &str,
    entrypoint: &str,
    install_dir: &Path,
) -> ContainerSpec {
    let mut build = s.build.clone();
    build.memory_limit = build.memory_limit.max(cfg.docker.installer_limits.memory);
    build.cpu_limit = if build.cpu_limit == 0 || cfg.docker.installer_limits.cpu == 0 {
        0
    } else {
        build.cpu_limit.max(cfg.docker.installer_limits.cpu)
    };
    let mut r = resources(&build, cfg);
    r.pids_limit = None;
    let mut labels = IndexMap::new();
    labels.insert("Service".to_string(), "Pterodactyl".to_string());
    labels.insert("ContainerType".to_string(), "server_installer".to_string());
    ContainerSpec {
        name: format!("{}_installer", s.uuid),
        hostname: "installer".into(),
        domainname: String::new(),
        image: image.to_string(),
        user: None,
        cmd: Some(vec![
            entrypoint.to_string(),
            "/mnt/install/install.sh".into(),
        ]),
        env: environment_variables(s, cfg, false),
        labels,
        ports: Vec::new(),
        mounts: vec![
            BindMount {
                source: data_path(cfg, &s.uuid).to_string_lossy().into_owned(),
                target: "/mnt/server".into(),
                read_only: false,
            },
            BindMount {
                source: install_dir.to_string_lossy().into_owned(),
                target: "/mnt/install".into(),
                read_only: false,
            },
        ],
        tmpfs: tmpfs(cfg),
        resources: r,
        dns: cfg.docker.network.dns.clone(),
        log_driver: cfg.docker.log_config.kind.clone(),
        log_options: cfg.docker.log_config.config.clone(),
        security_opt: Vec::new(),
        readonly_rootfs: false,
        cap_drop: Vec::new(),
        network_mode: cfg.docker.network.network_mode.clone(),
        userns_mode: cfg.docker.userns_mode.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn settings() -> ServerSettings {
        serde_json::from_value(serde_json::json!({
            "uuid": "11111111-2222-4333-8444-555555555555",
            "environment": {"SERVER_JARFILE": "server.jar", "STARTUP": "ignored", "P_SERVER_ALLOCATION_LIMIT": 0, "flag": true, "nothing": null},
            "invocation": "java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}",
            "build": {"memory_limit": 1024, "swap": 0, "io_weight": 500, "cpu_limit": 150, "threads": "0-1", "disk_space": 100, "oom_disabled": true},
            "container": {"image": "img"},
            "allocations": {"default": {"ip": "127.0.0.1", "port": 25565}, "mappings": {"127.0.0.1": [25565], "0.0.0.0": [25566, 0, 70000]}},
            "mounts": [{"source": "/srv/shared/../shared/x", "target": "/mnt/x", "read_only": true}, {"source": "/etc", "target": "/mnt/etc"}]
        })).unwrap()
    }

    #[test]
    fn env_order_formatting_and_loopback_rewrite() {
        let mut cfg = Config::default();
        cfg.system.timezone = "Europe/Paris".into();
        let env = environment_variables(&settings(), &cfg, true);
        assert_eq!(env[0], "TZ=Europe/Paris");
        assert_eq!(
            env[1],
            "STARTUP=java -Xmx{{SERVER_MEMORY}}M -jar {{SERVER_JARFILE}}"
        );
        assert_eq!(env[2], "SERVER_MEMORY=1024");
        assert_eq!(env[3], "SERVER_IP=172.18.0.1");
        assert_eq!(env[4], "SERVER_PORT=25565");
        assert!(env.contains(&"P_SERVER_ALLOCATION_LIMIT=0.000000".to_string()));
        assert!(env.contains(&"FLAG=true".to_string()));
        assert!(env.contains(&"NOTHING=".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("STARTUP=")).count(), 1);
        let env = environment_variables(&settings(), &cfg, false);
        assert_eq!(env[3], "SERVER_IP=127.0.0.1");
    }

    #[test]
    fn resources_use_overhead_and_cpu_quota() {
        let cfg = Config::default();
        let r = resources(&settings().build, &cfg);
        assert_eq!(r.memory, 1_177_600_000); // 1024 × 1.15 × 10^6
        assert_eq!(r.memory_reservation, 1_024_000_000);
        assert_eq!(r.memory_swap, r.memory);
        assert_eq!(r.cpu_quota, Some(150_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.cpu_shares, Some(1024));
        assert_eq!(r.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!(r.pids_limit, Some(512));
        let mut b = settings().build;
        b.swap = -1;
        b.cpu_limit = 0;
        let r = resources(&b, &cfg);
        assert_eq!(r.memory_swap, -1);
        assert_eq!(r.cpu_quota, None);
    }

    #[test]
    fn ports_bind_tcp_and_udp_and_skip_invalid() {
        let cfg = Config::default();
        let p = port_bindings(&settings(), &cfg);
        assert_eq!(p.len(), 4);
        assert!(p.contains(&PortBinding {
            host_ip: "172.18.0.1".into(),
            port: 25565,
            proto: "udp"
        }));
        assert!(p.contains(&PortBinding {
            host_ip: "0.0.0.0".into(),
            port: 25566,
            proto: "tcp"
        }));
        let mut cfg = Config::default();
        cfg.docker.network.ispn = true;
        assert_eq!(port_bindings(&settings(), &cfg).len(), 2);
    }

    #[test]
    fn only_allowed_mounts_are_bound() {
        let mut cfg = Config::default();
        cfg.allowed_mounts = vec!["/srv/shared".into()];
        let m = mounts(&settings(), &cfg);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, "/home/container");
        assert_eq!(m[1].source, "/srv/shared/x");
        assert!(m[1].read_only);
    }

    #[test]
    fn installer_has_no_pid_limit_and_uses_larger_limits() {
        let cfg = Config::default();
        let spec = installer_container(&settings(), &cfg, "img", "sh", Path::new("/tmp/x"));
        assert_eq!(spec.name, "11111111-2222-4333-8444-555555555555_installer");
        assert_eq!(spec.resources.pids_limit, None);
        assert_eq!(spec.resources.cpu_quota, Some(150_000));
        assert_eq!(
            spec.cmd,
            Some(vec![
                "sh".to_string(),
                "/mnt/install/install.sh".to_string()
            ])
        );
        assert_eq!(spec.labels["ContainerType"], "server_installer");
        assert!(!spec.readonly_rootfs);
        let server = server_container(&settings(), &cfg);
        assert!(server.readonly_rootfs);
        assert_eq!(server.labels["Service"], "Pterodactyl");
        assert_eq!(server.cap_drop.len(), 10);
    }
}
