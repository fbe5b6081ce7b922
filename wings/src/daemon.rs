//! Boot (reference §6.3) and serving the HTTP API.

use crate::config::Config;
use crate::environment::Environment;
use crate::events::State;
use crate::server::manager::{read_states, Manager};
use crate::server::{PowerAction, Server};
use crate::{App, Shared};
use anyhow::Context;
use futures::StreamExt;
use openapi::remote::ServerConfigurationResponse;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct BootOptions {
    /// Where `config.yml` is (re)written.
    pub config_path: PathBuf,
    /// The container runtime; `None` connects to the local Docker engine.
    pub env: Option<Arc<dyn Environment>>,
    /// Look up / create `system.username` and record its uid/gid (upstream does this
    /// at every boot). Tests that set `system.user` themselves turn it off.
    pub ensure_user: bool,
    /// How often websockets check token expiry (upstream: 30 s).
    pub ws_expiry_tick: Duration,
}

impl BootOptions {
    pub fn new(config_path: impl Into<PathBuf>) -> BootOptions {
        BootOptions {
            config_path: config_path.into(),
            env: None,
            ensure_user: true,
            ws_expiry_tick: Duration::from_secs(30),
        }
    }
}

/// Boots the daemon: directories, system user, servers from the Panel, the Docker
/// network, saved states and re-attachment, the `states.json` cron and the
/// `/servers/reset` report.
pub async fn boot(mut cfg: Config, opts: BootOptions) -> anyhow::Result<Arc<App>> {
    cfg.fill_runtime_defaults();
    for dir in [
        &cfg.system.root_directory,
        &cfg.system.data,
        &cfg.system.archive_directory,
        &cfg.system.backup_directory,
        &cfg.system.log_directory,
        &cfg.system.tmp_directory,
    ] {
        std::fs::create_dir_all(dir).with_context(|| format!("could not create {dir}"))?;
    }
    if let Ok(real) = std::fs::canonicalize(&cfg.system.data) {
        cfg.system.data = real.to_string_lossy().into_owned();
    }
    if opts.ensure_user {
        cfg.ensure_system_user()?;
    }
    let env: Arc<dyn Environment> = match opts.env {
        Some(e) => e,
        None => Arc::new(crate::environment::docker::DockerEnvironment::connect().await?),
    };

    let shared = Shared::new(cfg.clone(), env.clone())?;
    let manager = Manager::default();
    let raw = shared
        .remote()
        .get_servers(cfg.remote_query.boot_servers_per_page.max(1))
        .await
        .context("failed to load servers from the panel")?;
    for r in raw {
        let settings = serde_json::from_value(r.settings);
        let process = serde_json::from_value(r.process_configuration);
        match (settings, process) {
            (Ok(settings), Ok(process_configuration)) => {
                let mut settings: openapi::remote::ServerSettings = settings;
                if settings.uuid.is_empty() {
                    settings.uuid = r.uuid.clone();
                }
                manager.add(Server::new(
                    shared.clone(),
                    ServerConfigurationResponse {
                        settings,
                        process_configuration,
                    },
                ));
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(server = %r.uuid, error = %e, "skipping server with an unreadable configuration")
            }
        }
    }
    tracing::info!(count = manager.len(), "loaded servers from the panel");

    let report = env.ensure_network(&cfg.docker.network).await?;
    if report.created {
        cfg.docker.network.interface = cfg.docker.network.interfaces.v4.gateway.clone();
    }
    cfg.docker.network.driver = report.driver.clone();
    match report.driver.as_str() {
        "host" => {
            cfg.docker.network.interface = "127.0.0.1".into();
            cfg.docker.network.ispn = false;
        }
        "overlay" | "weavemesh" => {
            cfg.docker.network.interface = String::new();
            cfg.docker.network.ispn = true;
        }
        _ => cfg.docker.network.ispn = false,
    }
    if let Err(e) = cfg.save(&opts.config_path) {
        tracing::warn!(error = %e, "could not write the configuration file");
    }
    shared.replace_config(cfg.clone())?;

    let app = Arc::new(App {
        shared,
        manager,
        jwt: crate::jwt::JwtState::new(),
        config_path: opts.config_path,
        ws_expiry_tick: opts.ws_expiry_tick,
        activity: crate::activity::ActivityLog::open(
            PathBuf::from(&cfg.system.root_directory).join("activity.jsonl"),
        ),
        downloads: crate::pull::Downloads::default(),
        transfers: Default::default(),
        ws: Default::default(),
    });

    let states = read_states(&app.states_path());
    futures::stream::iter(app.manager.all())
        .for_each_concurrent(4, |s| {
            let saved = states.get(&s.uuid).copied();
            async move { restore(s, saved).await }
        })
        .await;

    let cron = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = cron.manager.persist_states(&cron.states_path()) {
                tracing::warn!(error = %e, "could not write states.json");
            }
        }
    });
    let cron = app.clone();
    let interval = Duration::from_secs(cfg.system.activity_send_interval.max(1) as u64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let max = cron.config().system.activity_send_count.max(1) as usize;
            if let Err(e) = cron.activity.flush(&cron.shared.remote(), max).await {
                tracing::warn!(error = %e, "could not send activity to the panel");
            }
        }
    });
    // Before serving, as upstream: done in the background, a server created right
    // after boot could be marked installed by this reset while its install runs.
    if let Err(e) = app.shared.remote().reset_servers_state().await {
        tracing::error!(error = %e, "failed to reset server states on the panel");
    }
    Ok(app)
}

async fn restore(s: Arc<Server>, saved: Option<State>) {
    let _ = tokio::fs::create_dir_all(s.data_path()).await;
    let running = tokio::time::timeout(Duration::from_secs(30), s.is_running())
        .await
        .unwrap_or(false);
    if running {
        tracing::info!(server = %s.uuid, "detected server is running, re-attaching to process");
        if let Err(e) = s.reattach().await {
            tracing::error!(server = %s.uuid, error = %e, "could not re-attach to the running container");
            return;
        }
        if let Err(e) = s.sync().await {
            tracing::warn!(server = %s.uuid, error = %e, "could not sync re-attached server");
        }
    } else if matches!(saved, Some(State::Running | State::Starting)) {
        tracing::info!(server = %s.uuid, "starting server that was running before the daemon stopped");
        if let Err(e) = s
            .handle_power(PowerAction::Start, Some(Duration::from_secs(30)))
            .await
        {
            tracing::error!(server = %s.uuid, error = %e, "failed to restore server state");
        }
    } else {
        s.set_state(State::Offline);
    }
}

/// Unsent bytes an HTTP connection's socket may hold before a write waits
/// (`TCP_NOTSENT_LOWAT`). Without a bound the kernel grows a socket's send
/// buffer to megabytes and wakes a blocked writer only when half of it has
/// drained: a console socket whose client reads slowly but steadily then looks
/// stuck to the console bus for half a second at a time and loses lines. The
/// bound covers only bytes not yet sent, so the congestion window (how fast a
/// download can go) stays the kernel's.
pub const CONNECTION_NOTSENT_LOWAT: libc::c_int = 128 * 1024;

/// Sets the options of an accepted HTTP connection ([`CONNECTION_NOTSENT_LOWAT`]).
pub fn tune_connection(tcp: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let value: libc::c_int = CONNECTION_NOTSENT_LOWAT;
    // SAFETY: the descriptor belongs to `tcp`, which outlives the call; the
    // option value is a c_int read by the kernel during the call only.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not set TCP_NOTSENT_LOWAT");
    }
}

/// Serves the HTTP API until the listener fails.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let router = crate::http::router(app);
    axum::serve(
        listener.tap_io(|tcp| tune_connection(tcp)),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// Builds the TLS acceptor for `api.ssl` (TLS 1.2–1.3, HTTP/1.1 so websockets
/// upgrade as they do with upstream).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("could not read certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("could not parse certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("could not read private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves the HTTP API over TLS until the listener fails.
pub async fn serve_tls(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    let router = crate::http::router(app);
    loop {
        let (tcp, peer) = listener.accept().await?;
        tune_connection(&tcp);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notsent_lowat(tcp: &tokio::net::TcpStream) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the descriptor belongs to `tcp`; value and len are valid for
        // the kernel to write during the call.
        let rc = unsafe {
            libc::getsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        value
    }

    #[tokio::test]
    async fn accepted_connections_get_the_unsent_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        assert_ne!(notsent_lowat(&tcp), CONNECTION_NOTSENT_LOWAT);
        tune_connection(&tcp);
        assert_eq!(notsent_lowat(&tcp), CONNECTION_NOTSENT_LOWAT);
    }
}
