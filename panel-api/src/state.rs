//! Shared state of the HTTP handlers: the pool, the settings, the application key,
//! the rate limiters, the daemon client and the key cache. Nothing else lives in
//! memory, and the key cache hears of every change from PostgreSQL, so any number
//! of replicas can run behind a load balancer.

use crate::config::Config;
use crate::crypto::Encrypter;
use crate::daemon::DaemonClient;
use crate::db::Db;
use crate::ratelimit::Limiter;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub cfg: Config,
    pub enc: Encrypter,
    pub application_limiter: Limiter,
    pub client_limiter: Limiter,
    /// `throttle:10,5` on the remote-download route.
    pub pull_limiter: Limiter,
    pub daemon: DaemonClient,
    /// The S3 backup disk, when `APP_BACKUP_DRIVER=s3`.
    pub s3: Option<crate::s3::S3>,
    /// Authenticated keys, kept while `serve` listens for their changes.
    pub auth_cache: crate::authcache::AuthCache,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(db: Db, cfg: Config, enc: Encrypter) -> anyhow::Result<AppState> {
        let daemon = DaemonClient::new(cfg.daemon_timeout_secs)?;
        let s3 = if cfg.backup_driver == "s3" {
            let c = cfg.s3.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "APP_BACKUP_DRIVER=s3 needs AWS_BACKUPS_BUCKET (and AWS_ENDPOINT, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
                )
            })?;
            Some(crate::s3::S3::new(c)?)
        } else {
            None
        };
        Ok(AppState(Arc::new(Inner {
            application_limiter: Limiter::per_minute(cfg.application_rate_limit),
            client_limiter: Limiter::per_minute(cfg.client_rate_limit),
            pull_limiter: Limiter::per_period(10, std::time::Duration::from_secs(300)),
            auth_cache: crate::authcache::AuthCache::new(std::time::Duration::from_secs(
                cfg.auth_cache_ttl_secs,
            )),
            db,
            cfg,
            enc,
            daemon,
            s3,
        })))
    }
}
