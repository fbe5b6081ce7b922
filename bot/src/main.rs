//! `bot`: runs the Discord bot in gateway or HTTP-interactions mode.

use anyhow::{Context, Result};
use bot::config::{Cli, Cmd, Mode};
use bot::crypto::Vault;
use bot::Bot;
use clap::Parser;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,serenity=warn".into()),
        )
        .init();
    if let Err(e) = real_main().await {
        eprintln!("bot: {e:#}");
        std::process::exit(1);
    }
}

async fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = cli.config;
    match cli.command.clone().unwrap_or(Cmd::Run) {
        Cmd::GenKey => {
            println!("{}", Vault::generate_key());
            return Ok(());
        }
        Cmd::Migrate => {
            let db = bot::db::open(&cfg).await?;
            bot::db::migrate(&db.pool).await?;
            println!("migrations applied");
            return Ok(());
        }
        Cmd::Register | Cmd::Run => {}
    }
    // Refuse to start without the credential key, before touching anything else.
    Vault::new(cfg.fernet_key.as_deref())?;
    let register_only = matches!(cli.command, Some(Cmd::Register));
    let database = bot::db::open(&cfg).await?;
    bot::db::migrate(&database.pool).await?;
    let bot = Arc::new(Bot::new(cfg.clone(), database.pool.clone())?);
    if register_only {
        let http = bot::gateway::http(&bot)?;
        let n = bot::commands::register(&http, cfg.command_guild_id).await?;
        println!("registered {n} commands");
        return Ok(());
    }
    match cfg.mode {
        Mode::Gateway => {
            // The embedded cluster (if any) stops when `database` drops, so a stop
            // signal ends the client instead of killing the process under it.
            tokio::select! {
                r = bot::gateway::run(bot) => r?,
                _ = shutdown_signal() => tracing::info!("stopping"),
            }
        }
        Mode::Http => {
            if cfg.register_commands {
                let http = bot::gateway::http(&bot)?;
                match bot::commands::register(&http, cfg.command_guild_id).await {
                    Ok(n) => tracing::info!(commands = n, "commands registered"),
                    Err(e) => tracing::error!(error = %e, "command registration failed"),
                }
            }
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("binding {}", cfg.listen))?;
            tracing::info!(addr = %listener.local_addr()?, "interactions endpoint listening on /interactions");
            bot::interactions::serve(bot, listener, shutdown_signal()).await?;
        }
    }
    drop(database);
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
