//! Settings from the environment (upstream's `.env` names where one exists).

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`; unset → the embedded default cluster under `data_dir`.
    pub database_url: Option<String>,
    /// `PANEL_DATA_DIR` (default `./.data/panel`): embedded database, application key.
    pub data_dir: PathBuf,
    /// `APP_URL`: the panel's public root URL, no trailing slash.
    pub app_url: String,
    /// `PANEL_BIND` (default `127.0.0.1:8000`).
    pub bind: SocketAddr,
    /// `APP_KEY`: Fernet key (url-safe base64 of 32 bytes) encrypting recoverable secrets.
    pub app_key: Option<String>,
    /// `APP_API_APPLICATION_RATELIMIT` per minute (default 240).
    pub application_rate_limit: u32,
    /// `APP_API_CLIENT_RATELIMIT` per minute (default 720).
    pub client_rate_limit: u32,
    /// `PANEL_MAX_BODY_BYTES` (default 8 MiB; upstream's `post_max_size`).
    pub max_body_bytes: usize,
    /// `PANEL_DB_POOL` connections (default 16).
    pub db_pool: u32,
    /// `GUZZLE_TIMEOUT` seconds for calls to daemons (default 15).
    pub daemon_timeout_secs: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let bind: SocketAddr = env_or("PANEL_BIND", "127.0.0.1:8000".parse()?);
        let app_url = std::env::var("APP_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| format!("http://{bind}"))
            .trim_end_matches('/')
            .to_string();
        Ok(Config {
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            data_dir: std::env::var("PANEL_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(".data/panel")),
            app_url,
            bind,
            app_key: std::env::var("APP_KEY")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            application_rate_limit: env_or("APP_API_APPLICATION_RATELIMIT", 240),
            client_rate_limit: env_or("APP_API_CLIENT_RATELIMIT", 720),
            max_body_bytes: env_or("PANEL_MAX_BODY_BYTES", 8 * 1024 * 1024),
            db_pool: env_or("PANEL_DB_POOL", 16),
            daemon_timeout_secs: env_or("GUZZLE_TIMEOUT", 15),
        })
    }

    /// A configuration for tests: everything explicit, nothing read from the environment.
    pub fn for_tests(database_url: String, app_url: String) -> Config {
        Config {
            database_url: Some(database_url),
            data_dir: std::env::temp_dir(),
            app_url,
            bind: "127.0.0.1:0".parse().expect("static addr"),
            app_key: Some(crate::crypto::Encrypter::generate_key()),
            application_rate_limit: 240,
            client_rate_limit: 720,
            max_body_bytes: 8 * 1024 * 1024,
            db_pool: 8,
            daemon_timeout_secs: 5,
        }
    }
}
