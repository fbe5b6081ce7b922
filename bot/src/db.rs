//! The bot's database: `DATABASE_URL`, or the embedded default cluster (as panel-api
//! does), and the queries on its four tables.

use crate::config::Config;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<pgcluster::Cluster>,
}

pub async fn connect_url(url: &str, max: u32) -> Result<PgPool> {
    let opts =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .context("connecting to PostgreSQL")
}

/// Connects to `DATABASE_URL`, or starts the embedded cluster and creates `bot` in it.
pub async fn open(cfg: &Config) -> Result<Database> {
    if let Some(url) = &cfg.database_url {
        return Ok(Database {
            pool: connect_url(url, 8).await?,
            cluster: None,
        });
    }
    let dir = cfg.data_dir.join("postgres");
    let cluster =
        tokio::task::spawn_blocking(move || pgcluster::Cluster::start(&dir, &Default::default()))
            .await??;
    let admin = connect_url(&cluster.url("postgres"), 1).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'bot')")
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query("CREATE DATABASE bot").execute(&admin).await?;
    }
    admin.close().await;
    let pool = connect_url(&cluster.url("bot"), 8).await?;
    Ok(Database {
        pool,
        cluster: Some(cluster),
    })
}

pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("running the bot's migrations")
}

/// Discord snowflakes are u64; PostgreSQL has i64. The bit pattern is kept.
pub fn sf(id: u64) -> i64 {
    id as i64
}
pub fn unsf(id: i64) -> u64 {
    id as u64
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GuildConfig {
    pub guild_id: i64,
    pub admin_role_id: Option<i64>,
    pub configured_by: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserConfig {
    pub discord_user_id: i64,
    pub panel_url_enc: Option<String>,
    pub api_key_enc: Option<String>,
    pub application_key_enc: Option<String>,
    pub can_manage_servers: bool,
    pub can_create_users: bool,
    pub max_servers: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserConfig {
    pub fn has_credentials(&self) -> bool {
        self.panel_url_enc.is_some() && self.api_key_enc.is_some()
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub guild_id: Option<i64>,
    pub discord_user_id: i64,
    pub command: String,
    pub target: Option<String>,
    pub result: String,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn guild_config(pool: &PgPool, guild: u64) -> Result<Option<GuildConfig>> {
    Ok(sqlx::query_as(
        "SELECT guild_id, admin_role_id, configured_by, updated_at FROM guild_configs WHERE guild_id = $1",
    )
    .bind(sf(guild))
    .fetch_optional(pool)
    .await?)
}

pub async fn upsert_guild_config(
    pool: &PgPool,
    guild: u64,
    admin_role: Option<u64>,
    by: u64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO guild_configs (guild_id, admin_role_id, configured_by) VALUES ($1, $2, $3)
         ON CONFLICT (guild_id) DO UPDATE SET admin_role_id = EXCLUDED.admin_role_id,
             configured_by = EXCLUDED.configured_by, updated_at = now()",
    )
    .bind(sf(guild))
    .bind(admin_role.map(sf))
    .bind(sf(by))
    .execute(pool)
    .await?;
    Ok(())
}

const USER_COLS: &str = "discord_user_id, panel_url_enc, api_key_enc, application_key_enc, can_manage_servers, can_create_users, max_servers, created_at, updated_at";

pub async fn user_config(pool: &PgPool, user: u64) -> Result<Option<UserConfig>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLS} FROM user_configs WHERE discord_user_id = $1"
    ))
    .bind(sf(user))
    .fetch_optional(pool)
    .await?)
}

pub async fn save_credentials(
    pool: &PgPool,
    user: u64,
    url_enc: &str,
    key_enc: &str,
    app_key_enc: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO user_configs (discord_user_id, panel_url_enc, api_key_enc, application_key_enc)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (discord_user_id) DO UPDATE SET panel_url_enc = EXCLUDED.panel_url_enc,
             api_key_enc = EXCLUDED.api_key_enc, application_key_enc = EXCLUDED.application_key_enc,
             updated_at = now()",
    )
    .bind(sf(user))
    .bind(url_enc)
    .bind(key_enc)
    .bind(app_key_enc)
    .execute(pool)
    .await?;
    // Servers cached under the old panel no longer mean anything.
    sqlx::query("DELETE FROM server_configs WHERE discord_user_id = $1")
        .bind(sf(user))
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets the credentials (and the server cache); permissions set by an admin stay.
pub async fn remove_credentials(pool: &PgPool, user: u64) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE user_configs SET panel_url_enc = NULL, api_key_enc = NULL, application_key_enc = NULL,
             updated_at = now() WHERE discord_user_id = $1 AND panel_url_enc IS NOT NULL",
    )
    .bind(sf(user))
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM server_configs WHERE discord_user_id = $1")
        .bind(sf(user))
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// `/admin reset`: everything about the user goes, permissions included.
pub async fn reset_user(pool: &PgPool, user: u64) -> Result<bool> {
    let r = sqlx::query("DELETE FROM user_configs WHERE discord_user_id = $1")
        .bind(sf(user))
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn set_permissions(
    pool: &PgPool,
    user: u64,
    can_manage_servers: Option<bool>,
    can_create_users: Option<bool>,
    max_servers: Option<Option<i32>>,
) -> Result<UserConfig> {
    let (set_max, max) = match max_servers {
        Some(v) => (true, v),
        None => (false, None),
    };
    Ok(sqlx::query_as(&format!(
        "INSERT INTO user_configs (discord_user_id, can_manage_servers, can_create_users, max_servers)
         VALUES ($1, COALESCE($2, TRUE), COALESCE($3, FALSE), $5)
         ON CONFLICT (discord_user_id) DO UPDATE SET
             can_manage_servers = COALESCE($2, user_configs.can_manage_servers),
             can_create_users = COALESCE($3, user_configs.can_create_users),
             max_servers = CASE WHEN $4 THEN $5 ELSE user_configs.max_servers END,
             updated_at = now()
         RETURNING {USER_COLS}"
    ))
    .bind(sf(user))
    .bind(can_manage_servers)
    .bind(can_create_users)
    .bind(set_max)
    .bind(max)
    .fetch_one(pool)
    .await?)
}

pub async fn configured_users(pool: &PgPool, limit: i64) -> Result<Vec<UserConfig>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLS} FROM user_configs ORDER BY created_at, discord_user_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub struct Stats {
    pub guilds: i64,
    pub users: i64,
    pub users_with_credentials: i64,
    pub servers: i64,
    pub audit_entries: i64,
    pub commands_last_day: i64,
}

pub async fn stats(pool: &PgPool) -> Result<Stats> {
    let row: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM guild_configs), (SELECT count(*) FROM user_configs),
                (SELECT count(*) FROM user_configs WHERE panel_url_enc IS NOT NULL),
                (SELECT count(*) FROM server_configs), (SELECT count(*) FROM audit_logs),
                (SELECT count(*) FROM audit_logs WHERE created_at > now() - interval '1 day')",
    )
    .fetch_one(pool)
    .await?;
    Ok(Stats {
        guilds: row.0,
        users: row.1,
        users_with_credentials: row.2,
        servers: row.3,
        audit_entries: row.4,
        commands_last_day: row.5,
    })
}

/// Remembers that `user` manages `identifier`; returns false (and records nothing)
/// when that would exceed `max_servers`.
pub async fn claim_server(
    pool: &PgPool,
    user: u64,
    identifier: &str,
    name: &str,
    max_servers: Option<i32>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // Serialise claims of one user so two concurrent commands cannot both squeeze in.
    sqlx::query("SELECT 1 FROM user_configs WHERE discord_user_id = $1 FOR UPDATE")
        .bind(sf(user))
        .execute(&mut *tx)
        .await?;
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM server_configs WHERE discord_user_id = $1 AND server_identifier = $2)",
    )
    .bind(sf(user))
    .bind(identifier)
    .fetch_one(&mut *tx)
    .await?;
    if !known {
        if let Some(max) = max_servers {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM server_configs WHERE discord_user_id = $1",
            )
            .bind(sf(user))
            .fetch_one(&mut *tx)
            .await?;
            if n >= i64::from(max) {
                return Ok(false);
            }
        }
    }
    sqlx::query(
        "INSERT INTO server_configs (discord_user_id, server_identifier, server_name) VALUES ($1, $2, $3)
         ON CONFLICT (discord_user_id, server_identifier) DO UPDATE SET server_name = EXCLUDED.server_name,
             last_used_at = now()",
    )
    .bind(sf(user))
    .bind(identifier)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether `user` may manage `identifier` under `max_servers` (checked before the panel
/// is asked anything).
pub async fn may_claim(
    pool: &PgPool,
    user: u64,
    identifier: &str,
    max_servers: Option<i32>,
) -> Result<bool> {
    let Some(max) = max_servers else {
        return Ok(true);
    };
    let (known, n): (bool, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM server_configs WHERE discord_user_id = $1 AND server_identifier = $2),
                (SELECT count(*) FROM server_configs WHERE discord_user_id = $1)",
    )
    .bind(sf(user))
    .bind(identifier)
    .fetch_one(pool)
    .await?;
    Ok(known || n < i64::from(max))
}

pub async fn known_servers(pool: &PgPool, user: u64) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT server_identifier, server_name FROM server_configs WHERE discord_user_id = $1
         ORDER BY last_used_at DESC LIMIT 25",
    )
    .bind(sf(user))
    .fetch_all(pool)
    .await?)
}

#[allow(clippy::too_many_arguments)]
pub async fn audit(
    pool: &PgPool,
    guild: Option<u64>,
    user: u64,
    command: &str,
    target: Option<&str>,
    result: &str,
    detail: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_logs (guild_id, discord_user_id, command, target, result, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(guild.map(sf))
    .bind(sf(user))
    .bind(command)
    .bind(target)
    .bind(result)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn audit_entries(
    pool: &PgPool,
    limit: i64,
    user: Option<u64>,
    action: Option<&str>,
) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(
        "SELECT id, guild_id, discord_user_id, command, target, result, detail, created_at
         FROM audit_logs
         WHERE ($2::BIGINT IS NULL OR discord_user_id = $2)
           AND ($3::TEXT IS NULL OR command ILIKE '%' || $3 || '%')
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(user.map(sf))
    .bind(action)
    .fetch_all(pool)
    .await?)
}
