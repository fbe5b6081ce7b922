//! The Docker implementation of [`Environment`] through bollard (Docker Engine API
//! over the local socket, version negotiated so older engines work).

use super::{
    Attached, ContainerSpec, ContainerStatus, Environment, NetworkReport, Resources, Result,
    StatsSample,
};
use crate::config::{DockerNetwork, RegistryAuth};
use anyhow::Context;
use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HostConfig, HostConfigLogConfig, Ipam, IpamConfig,
    Mount, MountType, NetworkCreateRequest, PortBinding as DockerPortBinding,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    InspectContainerOptions, InspectNetworkOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures::stream::BoxStream;
use futures::StreamExt;
use indexmap::IndexMap;
use std::collections::HashMap;

pub struct DockerEnvironment {
    docker: Docker,
}

fn not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerEnvironment {
    /// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`) and
    /// negotiates the API version.
    pub async fn connect() -> Result<DockerEnvironment> {
        let docker = Docker::connect_with_local_defaults()
            .context("could not connect to the Docker engine")?
            .negotiate_version()
            .await
            .context("could not negotiate the Docker API version (is dockerd running?)")?;
        docker
            .ping()
            .await
            .context("the Docker engine does not answer")?;
        Ok(DockerEnvironment { docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Removes every container carrying `label=value` (test cleanup, shutdown).
    pub async fn remove_labelled(&self, label: &str, value: &str) -> Result<usize> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{label}={value}")]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        let mut n = 0;
        for c in list {
            if let Some(id) = c.id {
                self.remove(&id).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn to_update(r: &Resources) -> ContainerUpdateBody {
    ContainerUpdateBody {
        memory: Some(r.memory),
        memory_reservation: Some(r.memory_reservation),
        memory_swap: Some(r.memory_swap),
        cpu_quota: r.cpu_quota,
        cpu_period: r.cpu_period,
        cpu_shares: r.cpu_shares,
        cpuset_cpus: r.cpuset_cpus.clone(),
        blkio_weight: r.blkio_weight,
        pids_limit: r.pids_limit,
        ..Default::default()
    }
}

fn credentials_for(
    image: &str,
    registries: &IndexMap<String, RegistryAuth>,
) -> Option<DockerCredentials> {
    registries
        .iter()
        .find(|(prefix, _)| image.starts_with(prefix.as_str()))
        .map(|(prefix, auth)| DockerCredentials {
            username: Some(auth.username.clone()),
            password: Some(auth.password.clone()),
            serveraddress: Some(prefix.clone()),
            ..Default::default()
        })
}

#[async_trait]
impl Environment for DockerEnvironment {
    async fn ensure_network(&self, cfg: &DockerNetwork) -> Result<NetworkReport> {
        match self
            .docker
            .inspect_network(&cfg.name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => {
                return Ok(NetworkReport {
                    created: false,
                    driver: n.driver.unwrap_or_default(),
                })
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let options: HashMap<String, String> = [
            ("encryption", "false".to_string()),
            ("com.docker.network.bridge.default_bridge", "false".into()),
            (
                "com.docker.network.bridge.enable_icc",
                cfg.enable_icc.to_string(),
            ),
            (
                "com.docker.network.bridge.enable_ip_masquerade",
                "true".into(),
            ),
            (
                "com.docker.network.bridge.host_binding_ipv4",
                "0.0.0.0".into(),
            ),
            ("com.docker.network.bridge.name", "pterodactyl0".into()),
            ("com.docker.network.driver.mtu", cfg.network_mtu.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let request = NetworkCreateRequest {
            name: cfg.name.clone(),
            driver: Some(cfg.driver.clone()),
            internal: Some(cfg.is_internal),
            enable_ipv6: Some(true),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![
                    IpamConfig {
                        subnet: Some(cfg.interfaces.v4.subnet.clone()),
                        gateway: Some(cfg.interfaces.v4.gateway.clone()),
                        ..Default::default()
                    },
                    IpamConfig {
                        subnet: Some(cfg.interfaces.v6.subnet.clone()),
                        gateway: Some(cfg.interfaces.v6.gateway.clone()),
                        ..Default::default()
                    },
                ]),
                options: None,
            }),
            options: Some(options),
            ..Default::default()
        };
        if let Err(e) = self.docker.create_network(request).await {
            // Created concurrently by someone else (409, or 403 "pool overlaps"): it
            // exists now.
            for _ in 0..25 {
                if let Ok(n) = self
                    .docker
                    .inspect_network(&cfg.name, None::<InspectNetworkOptions>)
                    .await
                {
                    return Ok(NetworkReport {
                        created: false,
                        driver: n.driver.unwrap_or_default(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            return Err(anyhow::Error::new(e)
                .context(format!("could not create docker network {}", cfg.name)));
        }
        Ok(NetworkReport {
            created: true,
            driver: String::new(),
        })
    }

    async fn ensure_outgoing_ip_network(&self, name: &str, ip: &str) -> Result<()> {
        if self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let options: HashMap<String, String> = [
            ("encryption", "false"),
            ("com.docker.network.bridge.default_bridge", "false"),
            ("com.docker.network.host_ipv4", ip),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(options),
            ..Default::default()
        };
        if let Err(e) = self.docker.create_network(request).await {
            if self
                .docker
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
                .is_err()
            {
                return Err(anyhow::Error::new(e)
                    .context(format!("could not create docker network {name}")));
            }
        }
        Ok(())
    }

    async fn ensure_image(
        &self,
        image: &str,
        registries: &IndexMap<String, RegistryAuth>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<()> {
        if image.starts_with('~') {
            return Ok(());
        }
        let (repo, tag) = match image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (image.to_string(), "latest".to_string()),
        };
        let mut stream = self.docker.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(&repo)
                    .tag(&tag)
                    .build(),
            ),
            None,
            credentials_for(image, registries),
        );
        let mut pull_error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let status = info.status.unwrap_or_default();
                    let prog = info
                        .progress_detail
                        .map(|_| String::new())
                        .unwrap_or_default();
                    if !status.is_empty() {
                        progress(format!("{status} {prog}").trim_end().to_string());
                    }
                }
                Err(e) => {
                    pull_error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = pull_error {
            let local = format!("{repo}:{tag}");
            if self.docker.inspect_image(&local).await.is_ok() {
                tracing::warn!(image, error = %e, "image pull failed; using the local image");
                return Ok(());
            }
            return Err(anyhow::Error::new(e).context(format!("could not pull image {image}")));
        }
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>> {
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => {
                let s = c.state.unwrap_or_default();
                Ok(Some(ContainerStatus {
                    running: s.running.unwrap_or(false),
                    exit_code: s.exit_code.unwrap_or(0),
                    oom_killed: s.oom_killed.unwrap_or(false),
                    started_at: s.started_at,
                }))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<()> {
        let mut port_bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
        let mut exposed: Vec<String> = Vec::new();
        for p in &spec.ports {
            let key = format!("{}/{}", p.port, p.proto);
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(DockerPortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.port.to_string()),
                });
        }
        let mounts = spec
            .mounts
            .iter()
            .map(|m| Mount {
                target: Some(m.target.clone()),
                source: Some(m.source.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let r = &spec.resources;
        let host = HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(mounts),
            tmpfs: Some(spec.tmpfs.clone().into_iter().collect()),
            memory: Some(r.memory),
            memory_reservation: Some(r.memory_reservation),
            memory_swap: Some(r.memory_swap),
            cpu_quota: r.cpu_quota,
            cpu_period: r.cpu_period,
            cpu_shares: r.cpu_shares,
            cpuset_cpus: r.cpuset_cpus.clone(),
            blkio_weight: r.blkio_weight,
            oom_kill_disable: r.oom_kill_disable,
            pids_limit: r.pids_limit,
            dns: Some(spec.dns.clone()),
            log_config: Some(HostConfigLogConfig {
                typ: Some(spec.log_driver.clone()),
                config: Some(spec.log_options.clone().into_iter().collect()),
            }),
            security_opt: Some(spec.security_opt.clone()),
            readonly_rootfs: Some(spec.readonly_rootfs),
            cap_drop: Some(spec.cap_drop.clone()),
            network_mode: Some(spec.network_mode.clone()),
            userns_mode: Some(spec.userns_mode.clone()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            hostname: Some(spec.hostname.clone()),
            domainname: Some(spec.domainname.clone()),
            user: spec.user.clone(),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            tty: Some(true),
            exposed_ports: Some(exposed),
            image: Some(spec.image.trim_start_matches('~').to_string()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(spec.labels.clone().into_iter().collect()),
            host_config: Some(host),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&spec.name)
                        .build(),
                ),
                body,
            )
            .await
            .with_context(|| format!("could not create container {}", spec.name))?;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                name,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .with_context(|| format!("could not start container {name}"))?;
        Ok(())
    }

    async fn attach(&self, name: &str) -> Result<Attached> {
        let res = self
            .docker
            .attach_container(
                name,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stdin(true)
                        .stdout(true)
                        .stderr(true)
                        .stream(true)
                        .build(),
                ),
            )
            .await
            .with_context(|| format!("could not attach to container {name}"))?;
        let output = res
            .output
            .map(|item| item.map(LogOutput::into_bytes).map_err(anyhow::Error::from))
            .boxed();
        Ok(Attached {
            output,
            input: res.input,
        })
    }

    async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        match self
            .docker
            .kill_container(
                name,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal(signal)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            // Not running / gone: nothing to signal.
            Err(BollardError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn stop(&self, name: &str, timeout_secs: Option<i64>) -> Result<()> {
        let mut b = StopContainerOptionsBuilder::default();
        if let Some(t) = timeout_secs {
            b = b.t(t as i32);
        }
        match self.docker.stop_container(name, Some(b.build())).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn wait(&self, name: &str) -> Result<i64> {
        let mut s = self.docker.wait_container(
            name,
            Some(
                WaitContainerOptionsBuilder::default()
                    .condition("not-running")
                    .build(),
            ),
        );
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) if not_found(&e) => Ok(0),
            Some(Err(e)) => Err(e.into()),
            None => Ok(0),
        }
    }

    fn stats(&self, name: &str) -> BoxStream<'static, Result<StatsSample>> {
        let stream = self.docker.stats(
            name,
            Some(StatsOptionsBuilder::default().stream(true).build()),
        );
        stream
            .map(|item| {
                let s = item?;
                let mem = s.memory_stats.unwrap_or_default();
                let usage = mem.usage.unwrap_or(0);
                let inactive = mem
                    .stats
                    .as_ref()
                    .and_then(|m| {
                        m.get("total_inactive_file")
                            .or_else(|| m.get("inactive_file"))
                            .copied()
                    })
                    .unwrap_or(0);
                let memory_bytes = if inactive < usage {
                    usage - inactive
                } else {
                    usage
                };
                let cpu = s.cpu_stats.unwrap_or_default();
                let pre = s.precpu_stats.unwrap_or_default();
                let total = |c: &bollard::models::ContainerCpuStats| {
                    c.cpu_usage
                        .as_ref()
                        .and_then(|u| u.total_usage)
                        .unwrap_or(0) as f64
                };
                let cpu_delta = total(&cpu) - total(&pre);
                let sys_delta = cpu.system_cpu_usage.unwrap_or(0) as f64
                    - pre.system_cpu_usage.unwrap_or(0) as f64;
                let cpus = cpu.online_cpus.unwrap_or(0) as f64;
                let cpu_absolute = if cpu_delta > 0.0 && sys_delta > 0.0 {
                    ((cpu_delta / sys_delta) * cpus * 100.0 * 1000.0).round() / 1000.0
                } else {
                    0.0
                };
                let (mut rx, mut tx) = (0, 0);
                for n in s.networks.unwrap_or_default().values() {
                    rx += n.rx_bytes.unwrap_or(0);
                    tx += n.tx_bytes.unwrap_or(0);
                }
                Ok(StatsSample {
                    memory_bytes,
                    memory_limit_bytes: mem.limit.unwrap_or(0),
                    cpu_absolute,
                    rx_bytes: rx,
                    tx_bytes: tx,
                })
            })
            .boxed()
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        let tail = tail.to_string();
        let mut s = self.docker.logs(
            name,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail(&tail)
                    .build(),
            ),
        );
        let mut buf = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(chunk) => buf.extend_from_slice(&chunk.into_bytes()),
                Err(e) if not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text
            .split('\n')
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn update_resources(&self, name: &str, resources: &Resources) -> Result<()> {
        match self
            .docker
            .update_container(name, to_update(resources))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn info(&self) -> Result<openapi::wings::DockerInformation> {
        use openapi::wings::*;
        let version = self.docker.version().await?;
        let info = self.docker.info().await?;
        let enum_str = |v: String| v.trim_matches('"').to_string();
        let filesystem = info
            .driver_status
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|kv| {
                kv.first()
                    .map(|k| k == "Backing Filesystem")
                    .unwrap_or(false)
            })
            .and_then(|kv| kv.get(1).cloned())
            .unwrap_or_default();
        Ok(DockerInformation {
            version: version.version.unwrap_or_default(),
            cgroups: DockerCgroups {
                driver: info
                    .cgroup_driver
                    .map(|d| enum_str(serde_json::to_string(&d).unwrap_or_default()))
                    .unwrap_or_default(),
                version: info
                    .cgroup_version
                    .map(|d| enum_str(serde_json::to_string(&d).unwrap_or_default()))
                    .unwrap_or_default(),
            },
            containers: DockerContainers {
                total: info.containers.unwrap_or(0),
                running: info.containers_running.unwrap_or(0),
                paused: info.containers_paused.unwrap_or(0),
                stopped: info.containers_stopped.unwrap_or(0),
            },
            storage: DockerStorage {
                driver: info.driver.unwrap_or_default(),
                filesystem,
            },
            runc: DockerRunc {
                version: info.runc_commit.and_then(|c| c.id).unwrap_or_default(),
            },
        })
    }
}
