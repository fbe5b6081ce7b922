//! Ferrodactyl wings: a drop-in replacement for Pterodactyl's Wings daemon. Same
//! `config.yml`, same HTTP/websocket protocol towards the Panel, real Docker
//! containers through the Docker Engine API.
//!
//! Entry points: [`daemon::boot`] builds an [`App`] from a [`config::Config`] (fetching
//! servers from the Panel, restoring states, re-attaching running containers) and
//! [`daemon::serve`] runs the HTTP API on a listener.

pub mod activity;
pub mod backup;
pub mod config;
pub mod daemon;
pub mod environment;
pub mod events;
pub mod filesystem;
pub mod http;
pub mod jwt;
pub mod pull;
pub mod remote;
pub mod server;
pub mod sftp;
pub mod system;
pub mod transfer;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use daemon::{boot, serve, BootOptions};

/// What every server needs: the node configuration, the container runtime and the
/// Panel client.
pub struct Shared {
    config: RwLock<Arc<config::Config>>,
    remote: RwLock<remote::RemoteClient>,
    pub env: Arc<dyn environment::Environment>,
}

impl Shared {
    pub fn new(
        cfg: config::Config,
        env: Arc<dyn environment::Environment>,
    ) -> anyhow::Result<Arc<Shared>> {
        let remote = remote::RemoteClient::new(&cfg)?;
        Ok(Arc::new(Shared {
            config: RwLock::new(Arc::new(cfg)),
            remote: RwLock::new(remote),
            env,
        }))
    }

    /// A snapshot of the current configuration.
    pub fn config(&self) -> Arc<config::Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn remote(&self) -> remote::RemoteClient {
        self.remote
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps the configuration in memory (after `/api/update`).
    pub fn replace_config(&self, cfg: config::Config) -> anyhow::Result<()> {
        let remote = remote::RemoteClient::new(&cfg)?;
        *self.remote.write().unwrap_or_else(|e| e.into_inner()) = remote;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        Ok(())
    }
}

/// The running daemon: shared state, servers, websocket token state.
pub struct App {
    pub shared: Arc<Shared>,
    pub manager: server::manager::Manager,
    pub jwt: jwt::JwtState,
    /// Where `config.yml` lives (rewritten by `/api/update`).
    pub config_path: PathBuf,
    /// How often sockets check token expiry (upstream: 30 s).
    pub ws_expiry_tick: Duration,
    /// Activity queue sent to the Panel.
    pub activity: activity::ActivityLog,
    /// Remote file downloads in flight.
    pub downloads: pull::Downloads,
    /// Outgoing transfers in flight, by server.
    pub transfers:
        std::sync::Mutex<std::collections::HashMap<String, tokio_util::sync::CancellationToken>>,
    /// Live websockets and their message handlers.
    pub ws: http::ws::Counts,
}

impl App {
    pub fn config(&self) -> Arc<config::Config> {
        self.shared.config()
    }

    pub fn states_path(&self) -> PathBuf {
        PathBuf::from(&self.config().system.root_directory).join("states.json")
    }
}
