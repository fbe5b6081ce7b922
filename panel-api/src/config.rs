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
    /// `PANEL_DB_POOL` connections (default 4 per CPU core of this machine, at least 4:
    /// PostgreSQL serves most per core with a few busy connections per core, and
    /// requests beyond the pool wait in panel-api, which costs less than a backend).
    /// Size it to the database server's cores when PostgreSQL runs elsewhere.
    pub db_pool: u32,
    /// `GUZZLE_TIMEOUT` seconds for calls to daemons (default 15).
    pub daemon_timeout_secs: u64,
    /// `APP_NAME` (default `Pterodactyl`): the TOTP issuer.
    pub app_name: String,
    /// `APP_2FA_REQUIRED`: 0 nobody, 1 admins, 2 everyone (reference §2.9).
    pub two_factor_required: u8,
    /// `APP_2FA_WINDOW` TOTP steps accepted either side of now (default 4).
    pub two_factor_window: i64,
    /// `HASHIDS_SALT` / `HASHIDS_LENGTH`: client database ids (reference §10.1). Use
    /// the replaced panel's values so existing ids stay valid.
    pub hashids_salt: String,
    pub hashids_length: usize,
    /// `PTERODACTYL_CLIENT_ALLOCATIONS_ENABLED` and the `_RANGE_START`/`_RANGE_END` ports.
    pub client_allocations_enabled: bool,
    pub client_allocations_range: Option<(i64, i64)>,
    /// `PTERODACTYL_CLIENT_DATABASES_ALLOW_RANDOM` (default true).
    pub client_databases_allow_random: bool,
    /// `PTERODACTYL_FILES_MAX_EDIT_SIZE` bytes (default 4 MiB).
    pub files_max_edit_size: u64,
    /// `PTERODACTYL_PER_SCHEDULE_TASK_LIMIT` (default 10).
    pub schedule_task_limit: i64,
    /// `BACKUP_THROTTLE_LIMIT` backups per `BACKUP_THROTTLE_PERIOD` seconds (2 / 600).
    pub backup_throttle_limit: i64,
    pub backup_throttle_period: i64,
    /// `APP_BACKUP_DRIVER` (`wings` or `s3`, default `wings`).
    pub backup_driver: String,
    /// `APP_ACTIVITY_HIDE_ADMIN`: hide root admins' entries from server activity.
    pub activity_hide_admin: bool,
    /// `PANEL_SCHEDULER` (default true): run due schedules in this process.
    pub run_scheduler: bool,
    /// `PANEL_SCHEDULER_INTERVAL_MS` between scans for due schedules (default 10 s).
    pub scheduler_interval_ms: u64,
    /// The S3 disk (`AWS_*` settings) used when `APP_BACKUP_DRIVER=s3`.
    pub s3: Option<crate::s3::S3Config>,
    /// `PANEL_AUTH_CACHE_TTL` seconds an authenticated key is kept in memory
    /// (default 60; 0 turns the cache off: see `crate::authcache`).
    pub auth_cache_ttl_secs: u64,
}

fn default_db_pool() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores * 4).unwrap_or(u32::MAX).max(4)
}

fn env_bool(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Ok(v) => matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        ),
        Err(_) => default,
    }
}

fn allocation_range() -> Option<(i64, i64)> {
    let a: i64 = std::env::var("PTERODACTYL_CLIENT_ALLOCATIONS_RANGE_START")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let b: i64 = std::env::var("PTERODACTYL_CLIENT_ALLOCATIONS_RANGE_END")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (a > 1024 && a <= b && b <= 65535).then_some((a, b))
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
            db_pool: env_or("PANEL_DB_POOL", default_db_pool()),
            daemon_timeout_secs: env_or("GUZZLE_TIMEOUT", 15),
            app_name: std::env::var("APP_NAME").unwrap_or_else(|_| "Pterodactyl".into()),
            two_factor_required: env_or("APP_2FA_REQUIRED", 0),
            two_factor_window: env_or("APP_2FA_WINDOW", 4),
            hashids_salt: std::env::var("HASHIDS_SALT").unwrap_or_default(),
            hashids_length: env_or("HASHIDS_LENGTH", 8),
            client_allocations_enabled: env_bool("PTERODACTYL_CLIENT_ALLOCATIONS_ENABLED", false),
            client_allocations_range: allocation_range(),
            client_databases_allow_random: env_bool(
                "PTERODACTYL_CLIENT_DATABASES_ALLOW_RANDOM",
                true,
            ),
            files_max_edit_size: env_or("PTERODACTYL_FILES_MAX_EDIT_SIZE", 4 * 1024 * 1024),
            schedule_task_limit: env_or("PTERODACTYL_PER_SCHEDULE_TASK_LIMIT", 10),
            backup_throttle_limit: env_or("BACKUP_THROTTLE_LIMIT", 2),
            backup_throttle_period: env_or("BACKUP_THROTTLE_PERIOD", 600),
            backup_driver: std::env::var("APP_BACKUP_DRIVER").unwrap_or_else(|_| "wings".into()),
            activity_hide_admin: env_bool("APP_ACTIVITY_HIDE_ADMIN", false),
            run_scheduler: env_bool("PANEL_SCHEDULER", true),
            scheduler_interval_ms: env_or("PANEL_SCHEDULER_INTERVAL_MS", 10_000),
            s3: crate::s3::S3Config::from_env(),
            auth_cache_ttl_secs: env_or("PANEL_AUTH_CACHE_TTL", 60),
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
            app_name: "Pterodactyl".into(),
            two_factor_required: 0,
            two_factor_window: 4,
            hashids_salt: String::new(),
            hashids_length: 8,
            client_allocations_enabled: false,
            client_allocations_range: None,
            client_databases_allow_random: true,
            files_max_edit_size: 4 * 1024 * 1024,
            schedule_task_limit: 10,
            backup_throttle_limit: 2,
            backup_throttle_period: 600,
            backup_driver: "wings".into(),
            activity_hide_admin: false,
            run_scheduler: true,
            scheduler_interval_ms: 500,
            s3: None,
            auth_cache_ttl_secs: 60,
        }
    }
}
