//! The database: the configured server, or the embedded default cluster.

use crate::config::Config;
use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A connected pool, plus the embedded cluster when we started one (stopped on drop).
pub struct Database {
    pub pool: PgPool,
    pub cluster: Option<pgcluster::Cluster>,
}

pub async fn connect_url(url: &str, max: u32) -> Result<PgPool> {
    let opts =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        // sqlx discards connections that fail; a ping before every query would add a
        // round trip to each of a request's statements.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
        .context("connecting to PostgreSQL")?;
    Ok(pool)
}

/// Connects to `DATABASE_URL`, or starts the embedded default cluster and creates
/// the `panel` database in it.
pub async fn open(cfg: &Config) -> Result<Database> {
    if let Some(url) = &cfg.database_url {
        return Ok(Database {
            pool: connect_url(url, cfg.db_pool).await?,
            cluster: None,
        });
    }
    let dir = cfg.data_dir.join("postgres");
    let cluster =
        tokio::task::spawn_blocking(move || pgcluster::Cluster::start(&dir, &Default::default()))
            .await??;
    let admin = connect_url(&cluster.url("postgres"), 1).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'panel')")
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query("CREATE DATABASE panel").execute(&admin).await?;
    }
    admin.close().await;
    let pool = connect_url(&cluster.url("panel"), cfg.db_pool).await?;
    Ok(Database {
        pool,
        cluster: Some(cluster),
    })
}

pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await.context("running migrations")?;
    Ok(())
}
