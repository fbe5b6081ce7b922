//! The database: the configured server, or the embedded default cluster.

use crate::config::Config;
pub use crate::pool::{Db, DbConn, DbTx};
use anyhow::{Context, Result};
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A connected pool, plus the embedded cluster when we started one (stopped on drop).
pub struct Database {
    pub pool: Db,
    pub cluster: Option<pgcluster::Cluster>,
}

/// A pool of at most `max` connections to `url`, with one connection opened now.
pub async fn connect_url(url: &str, max: u32) -> Result<Db> {
    let pool = lazy_url(url, max)?;
    pool.warm().await.context("connecting to PostgreSQL")?;
    Ok(pool)
}

/// A pool that connects on first use.
pub fn lazy_url(url: &str, max: u32) -> Result<Db> {
    let opts =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    Ok(Db::new(opts, max, Duration::from_secs(10)))
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

pub async fn migrate(pool: &Db) -> Result<()> {
    let mut conn = pool.acquire().await.context("connecting to PostgreSQL")?;
    MIGRATOR
        .run(&mut *conn)
        .await
        .context("running migrations")?;
    Ok(())
}
