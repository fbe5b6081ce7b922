//! Installs and reinstalls (reference §6.10): the egg script runs in a separate
//! `<uuid>_installer` container with the script at `/mnt/install` and the server
//! files at `/mnt/server`; the output is streamed and kept in an install log.

use super::{spec, Server, ServerError};
use crate::events::{Event, State};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

impl Server {
    /// Runs the install process and reports the outcome to the Panel. Only one
    /// install runs at a time per server.
    pub async fn install(self: &Arc<Self>, reinstall: bool) -> Result<(), ServerError> {
        if self.set_installing(true) {
            return Err(ServerError::Installing);
        }
        let result = self.run_install().await;
        self.set_installing(false);
        if let Err(e) = &result {
            tracing::error!(server = %self.uuid, error = %e, "installation failed");
        }
        if let Err(e) = self
            .shared()
            .remote()
            .set_installation_status(&self.uuid, result.is_ok(), reinstall)
            .await
        {
            tracing::error!(server = %self.uuid, error = %e, "could not report installation status to the panel");
        }
        self.set_state(State::Offline);
        self.publish(Event::InstallCompleted);
        result
    }

    /// Reinstall (§1.5): stop (10 s, then kill) if not offline, sync, install.
    pub async fn reinstall(self: &Arc<Self>) -> Result<(), ServerError> {
        if self.state() != State::Offline {
            self.wait_for_stop(Duration::from_secs(10), true).await?;
        }
        self.sync().await?;
        self.install(true).await
    }

    async fn run_install(self: &Arc<Self>) -> Result<(), ServerError> {
        let settings = self.settings();
        if settings.skip_egg_scripts {
            return Ok(());
        }
        self.publish(Event::InstallStarted);
        let shared = self.shared().clone();
        let cfg = shared.config();
        let script = shared
            .remote()
            .get_installation_script(&self.uuid)
            .await
            .map_err(anyhow::Error::from)?;

        let install_dir = std::path::Path::new(&cfg.system.tmp_directory).join(&self.uuid);
        tokio::fs::create_dir_all(&install_dir)
            .await
            .map_err(anyhow::Error::from)?;
        let body = script
            .script
            .clone()
            .unwrap_or_default()
            .replace("\r\n", "\n");
        tokio::fs::write(install_dir.join("install.sh"), body)
            .await
            .map_err(anyhow::Error::from)?;
        tokio::fs::create_dir_all(self.data_path())
            .await
            .map_err(anyhow::Error::from)?;

        let result = self
            .run_installer_container(&cfg, &script, &install_dir)
            .await;
        let _ = tokio::fs::remove_dir_all(&install_dir).await;
        result
    }

    async fn run_installer_container(
        self: &Arc<Self>,
        cfg: &crate::config::Config,
        script: &openapi::remote::InstallationScript,
        install_dir: &std::path::Path,
    ) -> Result<(), ServerError> {
        let env = self.shared().env.clone();
        let me = self.clone();
        env.ensure_image(
            &script.container_image,
            &cfg.docker.registries,
            &move |line| me.publish(Event::InstallOutput(line)),
        )
        .await?;
        let spec = spec::installer_container(
            &self.settings(),
            cfg,
            &script.container_image,
            &script.entrypoint,
            install_dir,
        );
        let name = spec.name.clone();
        env.remove(&name).await?;
        env.create(&spec).await?;

        let outcome: Result<Vec<String>, ServerError> = async {
            let attached = env.attach(&name).await?;
            self.publish(Event::DaemonMessage(
                "Starting installation process, this could take a few minutes...".into(),
            ));
            env.start(&name).await?;
            let mut output = attached.output;
            let mut pending: Vec<u8> = Vec::new();
            let mut lines = Vec::new();
            let cancel = self.cancelled();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        return Err(ServerError::Other(anyhow::anyhow!("server deleted during installation")));
                    }
                    chunk = output.next() => {
                        let Some(Ok(chunk)) = chunk else { break };
                        pending.extend_from_slice(&chunk);
                        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                            let raw: Vec<u8> = pending.drain(..=pos).collect();
                            let line = String::from_utf8_lossy(&raw[..raw.len() - 1])
                                .trim_end_matches('\r')
                                .to_string();
                            self.publish(Event::InstallOutput(line.clone()));
                            lines.push(line);
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let line = String::from_utf8_lossy(&pending).trim_end_matches('\r').to_string();
                self.publish(Event::InstallOutput(line.clone()));
                lines.push(line);
            }
            env.wait(&name).await?;
            Ok(lines)
        }
        .await;

        let log_dir = std::path::Path::new(&cfg.system.log_directory).join("install");
        let mut log = format!(
            "Pterodactyl Server Installation Log\n\n|\n| Details\n| ------------------------------\n  Server UUID:          {}\n  Container Image:      {}\n  Container Entrypoint: {}\n\n|\n| Environment Variables\n| ------------------------------\n",
            self.uuid, script.container_image, script.entrypoint
        );
        for v in &spec.env {
            log.push_str(&format!("  {v}\n"));
        }
        log.push_str("\n|\n| Script Output\n| ------------------------------\n");
        if let Ok(lines) = &outcome {
            for l in lines {
                log.push_str(l);
                log.push('\n');
            }
        }
        if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
            tracing::warn!(error = %e, "could not create install log directory");
        } else if let Err(e) =
            tokio::fs::write(log_dir.join(format!("{}.log", self.uuid)), log).await
        {
            tracing::warn!(error = %e, "could not write install log");
        }
        env.remove(&name).await?;
        outcome.map(|_| ())
    }
}
