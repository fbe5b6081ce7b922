//! Gateway mode: serenity's client receives interactions over the websocket and the
//! same [`Bot::respond`] answers them.

use crate::Bot;
use anyhow::{Context as _, Result};
use serenity::all::{Context, EventHandler, GatewayIntents, Interaction, Ready};
use serenity::async_trait;
use std::sync::Arc;

struct Handler {
    bot: Arc<Bot>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to Discord");
        if self.bot.cfg.register_commands {
            match crate::commands::register(&ctx.http, self.bot.cfg.command_guild_id).await {
                Ok(n) => tracing::info!(commands = n, "commands registered"),
                Err(e) => tracing::error!(error = %e, "command registration failed"),
            }
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let (id, token) = match &interaction {
            Interaction::Command(c) | Interaction::Autocomplete(c) => (c.id, c.token.clone()),
            Interaction::Component(c) => (c.id, c.token.clone()),
            _ => return,
        };
        let resp = self.bot.respond(interaction).await;
        if let Err(e) = ctx
            .http
            .create_interaction_response(id, &token, &resp.to_serenity(), Vec::new())
            .await
        {
            tracing::warn!(error = %e, "could not answer an interaction");
        }
    }
}

/// The serenity HTTP client for our settings (REST base overridable for tests).
pub fn http(bot: &Bot) -> Result<serenity::http::Http> {
    let token = bot
        .cfg
        .discord_token
        .as_deref()
        .context("DISCORD_TOKEN is not set")?;
    let mut b = serenity::http::HttpBuilder::new(token);
    if bot.cfg.discord_api_base != "https://discord.com" {
        b = b
            .proxy(bot.cfg.discord_api_base.clone())
            .ratelimiter_disabled(true);
    }
    if let Some(app) = bot.cfg.application_id {
        b = b.application_id(app.into());
    }
    Ok(b.build())
}

pub async fn run(bot: Arc<Bot>) -> Result<()> {
    bot.cfg
        .discord_token
        .as_deref()
        .context("gateway mode needs DISCORD_TOKEN")?;
    let mut client =
        serenity::all::ClientBuilder::new_with_http(http(&bot)?, GatewayIntents::GUILDS)
            .event_handler(Handler { bot })
            .await
            .context("building the Discord client")?;
    client
        .start_autosharded()
        .await
        .context("Discord gateway")?;
    Ok(())
}
