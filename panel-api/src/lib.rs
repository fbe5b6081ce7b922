//! panel-api: Pterodactyl's Application, Client and Remote APIs on PostgreSQL.

pub mod activity;
pub mod apikeys;
pub mod authcache;
pub mod config;
pub mod cron;
pub mod crypto;
pub mod daemon;
pub mod db;
pub mod eggs;
pub mod error;
pub mod hashids;
pub mod http;
pub mod json;
pub mod jwt;
pub mod openapi;
pub mod pool;
pub mod ratelimit;
pub mod s3;
pub mod schedules;
pub mod ssh;
pub mod state;
pub mod totp;
pub mod validate;

use anyhow::Result;
use std::net::SocketAddr;

/// Serves the panel on `listener` until `shutdown` resolves.
pub async fn serve(
    state: state::AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let limiter_state = state.clone();
    let limiter_sweep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter_state.application_limiter.retain_recent();
            limiter_state.client_limiter.retain_recent();
        }
    });
    let runner = state.cfg.run_scheduler.then(|| {
        schedules::spawn_runner(
            state.clone(),
            std::time::Duration::from_millis(state.cfg.scheduler_interval_ms.max(100)),
        )
    });
    let auth_listener = tokio::spawn(state.auth_cache.clone().run(state.db.clone()));
    let svc = http::service(state);
    // Answers go out whole at once: without TCP_NODELAY the tail of a long page
    // can wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served =
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                SocketAddr,
            >(svc),
        )
        .with_graceful_shutdown(shutdown)
        .await;
    auth_listener.abort();
    limiter_sweep.abort();
    if let Some(r) = runner {
        r.abort();
    }
    served?;
    Ok(())
}
