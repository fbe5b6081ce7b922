//! Ferrodactyl's Discord bot: slash commands that manage servers and users on any
//! Pterodactyl-compatible panel, served through serenity's gateway client or Discord's
//! HTTP interactions endpoint with the same command code ([`Bot::respond`]).

// `Fail` carries the whole reply; commands return it by value on purpose (it is built
// once per interaction, so boxing would only add noise).
#![allow(clippy::result_large_err)]

pub mod commands;
pub mod config;
pub mod crypto;
pub mod db;
pub mod gateway;
pub mod interactions;
pub mod panel;
pub mod reply;

use crate::config::Config;
use crate::crypto::Vault;
use crate::reply::{Reply, Response};
use anyhow::{Context, Result};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serenity::all::{
    CommandDataOption, CommandDataOptionValue, CommandInteraction, ComponentInteraction,
    Interaction, Permissions,
};
use sqlx::PgPool;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bot: settings, storage, the credential vault and the limiters. Shared by the
/// gateway handler and the interactions endpoint.
pub struct Bot {
    pub cfg: Config,
    pub db: PgPool,
    pub vault: Vault,
    limiter: DefaultKeyedRateLimiter<u64>,
    /// Panels that answered 429: no call to them before the instant (keyed by a hash
    /// of the panel URL, so no URL is kept in memory longer than a call needs it).
    cooldowns: Mutex<HashMap<u64, Instant>>,
    pub(crate) panel_http: reqwest::Client,
    discord_http: reqwest::Client,
    started: Instant,
}

/// Who ran what, where: the parts of an interaction every command needs.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub guild_id: Option<u64>,
    pub user_id: u64,
    pub permissions: Permissions,
    pub roles: Vec<u64>,
    /// `server info`, `config setup`, `setup`.
    pub command: String,
    pub options: HashMap<String, CommandDataOptionValue>,
}

impl Invocation {
    pub fn from_command(ci: &CommandInteraction) -> Invocation {
        let mut command = ci.data.name.clone();
        let mut opts: &[CommandDataOption] = &ci.data.options;
        // Descend through sub-command groups and sub-commands.
        while let Some((name, CommandDataOptionValue::SubCommand(inner)))
        | Some((name, CommandDataOptionValue::SubCommandGroup(inner))) =
            opts.first().map(|o| (&o.name, &o.value))
        {
            command.push(' ');
            command.push_str(name);
            opts = inner;
        }
        let (permissions, roles) = member_bits(ci.member.as_deref());
        Invocation {
            guild_id: ci.guild_id.map(|g| g.get()),
            user_id: ci.user.id.get(),
            permissions,
            roles,
            command,
            options: opts
                .iter()
                .map(|o| (o.name.clone(), o.value.clone()))
                .collect(),
        }
    }

    fn from_component(ci: &ComponentInteraction, command: String) -> Invocation {
        let (permissions, roles) = member_bits(ci.member.as_ref());
        Invocation {
            guild_id: ci.guild_id.map(|g| g.get()),
            user_id: ci.user.id.get(),
            permissions,
            roles,
            command,
            options: HashMap::new(),
        }
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.options.get(name) {
            Some(CommandDataOptionValue::String(s)) => Some(s.as_str()),
            Some(CommandDataOptionValue::Autocomplete { value, .. }) => Some(value.as_str()),
            _ => None,
        }
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.options.get(name) {
            Some(CommandDataOptionValue::Integer(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.options.get(name) {
            Some(CommandDataOptionValue::Boolean(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn user(&self, name: &str) -> Option<u64> {
        match self.options.get(name) {
            Some(CommandDataOptionValue::User(u)) => Some(u.get()),
            _ => None,
        }
    }
    pub fn role(&self, name: &str) -> Option<u64> {
        match self.options.get(name) {
            Some(CommandDataOptionValue::Role(r)) => Some(r.get()),
            _ => None,
        }
    }
}

fn member_bits(m: Option<&serenity::all::Member>) -> (Permissions, Vec<u64>) {
    match m {
        Some(m) => (
            m.permissions.unwrap_or_else(Permissions::empty),
            m.roles.iter().map(|r| r.get()).collect(),
        ),
        None => (Permissions::empty(), Vec::new()),
    }
}

/// The result of one command, for its reply and its audit row.
pub struct Done {
    pub reply: Reply,
    pub target: Option<String>,
}

/// Why a command did not do what was asked.
#[derive(Debug)]
pub struct Fail {
    pub reply: Reply,
    /// `denied`, `invalid`, `rate_limited`, `error`.
    pub result: &'static str,
    /// What goes to the audit log (never a secret).
    pub detail: Option<String>,
    pub target: Option<String>,
}

impl Fail {
    pub fn denied(msg: impl Into<String>) -> Fail {
        let msg = msg.into();
        Fail {
            detail: Some(msg.clone()),
            reply: Reply::private(msg),
            result: "denied",
            target: None,
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Fail {
        let msg = msg.into();
        Fail {
            detail: Some(msg.clone()),
            reply: Reply::private(msg),
            result: "invalid",
            target: None,
        }
    }
    pub fn internal(e: anyhow::Error) -> Fail {
        tracing::error!(error = %format!("{e:#}"), "command failed");
        Fail {
            reply: Reply::private(
                "Something went wrong on the bot's side; the details are in its log.",
            ),
            result: "error",
            detail: Some("internal error".into()),
            target: None,
        }
    }
    pub fn target(mut self, t: impl Into<String>) -> Fail {
        self.target = Some(t.into());
        self
    }
}

impl From<anyhow::Error> for Fail {
    fn from(e: anyhow::Error) -> Fail {
        Fail::internal(e)
    }
}

pub type CmdResult = std::result::Result<Done, Fail>;

/// A command's result with its target.
pub fn done(reply: Reply, target: Option<String>) -> CmdResult {
    Ok(Done { reply, target })
}

impl Bot {
    pub fn new(cfg: Config, db: PgPool) -> Result<Bot> {
        let vault = Vault::new(cfg.fernet_key.as_deref())?;
        let per_minute = NonZeroU32::new(cfg.rate_limit_per_minute.max(1)).context("rate limit")?;
        let panel_http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.panel_timeout_secs.max(1)))
            .user_agent(concat!("ferrodactyl-bot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let discord_http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!(
                "DiscordBot (https://github.com/ferrodactyl, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()?;
        Ok(Bot {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            cfg,
            db,
            vault,
            cooldowns: Mutex::new(HashMap::new()),
            panel_http,
            discord_http,
            started: Instant::now(),
        })
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The per-Discord-user command limit.
    fn allow(&self, user: u64) -> bool {
        self.limiter.check_key(&user).is_ok()
    }

    /// Answers one interaction. Commands that take longer than `defer_after_ms` are
    /// deferred and finished with a follow-up; the caller sends the returned response
    /// (gateway: through serenity's HTTP client; endpoint: as the HTTP body).
    pub async fn respond(self: &Arc<Self>, interaction: Interaction) -> Response {
        match interaction {
            Interaction::Ping(_) => Response::Pong,
            Interaction::Autocomplete(ci) => {
                let inv = Invocation::from_command(&ci);
                if !self.allow(inv.user_id) {
                    return Response::Choices(Vec::new());
                }
                Response::Choices(commands::server::autocomplete(self, &inv, &ci).await)
            }
            Interaction::Command(ci) => {
                let inv = Invocation::from_command(&ci);
                let ephemeral = commands::defers_ephemeral(&inv.command);
                self.run_deferrable(inv, ci.application_id.get(), ci.token.clone(), ephemeral)
                    .await
            }
            Interaction::Component(ci) => {
                match commands::server::button_command(&ci.data.custom_id) {
                    Some((command, server)) => {
                        let mut inv = Invocation::from_component(&ci, command);
                        inv.options.insert(
                            "server".into(),
                            CommandDataOptionValue::String(server.to_string()),
                        );
                        self.run_deferrable(inv, ci.application_id.get(), ci.token.clone(), true)
                            .await
                    }
                    None => Response::Message(Reply::private("That button is not ours.")),
                }
            }
            _ => Response::Message(Reply::private("This kind of interaction is not supported.")),
        }
    }

    async fn run_deferrable(
        self: &Arc<Self>,
        inv: Invocation,
        application_id: u64,
        token: String,
        ephemeral: bool,
    ) -> Response {
        let bot = self.clone();
        let mut task = tokio::spawn(async move { bot.run(inv).await });
        match tokio::time::timeout(Duration::from_millis(self.cfg.defer_after_ms), &mut task).await
        {
            Ok(Ok(reply)) => Response::Message(reply),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "command task failed");
                Response::Message(Reply::private("Something went wrong on the bot's side."))
            }
            Err(_) => {
                let bot = self.clone();
                tokio::spawn(async move {
                    let reply = match task.await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "command task failed");
                            Reply::private("Something went wrong on the bot's side.")
                        }
                    };
                    bot.follow_up(application_id, &token, &reply).await;
                });
                Response::Deferred { ephemeral }
            }
        }
    }

    /// Finishes a deferred interaction: `PATCH /webhooks/{app}/{token}/messages/@original`.
    pub async fn follow_up(&self, application_id: u64, token: &str, reply: &Reply) {
        let url = format!(
            "{}/api/v10/webhooks/{application_id}/{token}/messages/@original",
            self.cfg.discord_api_base.trim_end_matches('/')
        );
        // Discord needs the deferral before the edit; a short grace lets the response
        // that carries it leave first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for attempt in 0..3 {
            match self
                .discord_http
                .patch(&url)
                .json(&reply.to_edit_body())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    tracing::warn!(
                        status = r.status().as_u16(),
                        attempt,
                        "follow-up refused; retrying"
                    );
                }
                Ok(r) => {
                    tracing::warn!(
                        status = r.status().as_u16(),
                        "Discord refused the follow-up"
                    );
                    return;
                }
                Err(e) => tracing::warn!(error = %e.without_url(), attempt, "follow-up failed"),
            }
            tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
        }
    }

    /// Runs a command: rate limit, dispatch, audit row. Never fails: every failure is
    /// a reply.
    pub async fn run(&self, inv: Invocation) -> Reply {
        let outcome = if self.allow(inv.user_id) {
            commands::dispatch(self, &inv).await
        } else {
            Err(Fail {
                reply: Reply::private(
                    "You are sending commands too quickly; wait a little and try again.",
                ),
                result: "rate_limited",
                detail: Some("per-user limit".into()),
                target: None,
            })
        };
        let (reply, target, result, detail) = match outcome {
            Ok(d) => (d.reply, d.target, "success", None),
            Err(f) => (f.reply, f.target, f.result, f.detail),
        };
        if let Err(e) = db::audit(
            &self.db,
            inv.guild_id,
            inv.user_id,
            &inv.command,
            target.as_deref(),
            result,
            detail.as_deref(),
        )
        .await
        {
            tracing::error!(error = %format!("{e:#}"), "could not write the audit row");
        }
        reply
    }

    pub(crate) fn cooldown_left(&self, key: u64) -> Option<Duration> {
        let mut map = self.cooldowns.lock().ok()?;
        let now = Instant::now();
        match map.get(&key) {
            Some(until) if *until > now => Some(*until - now),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn set_cooldown(&self, key: u64, d: Duration) {
        if let Ok(mut map) = self.cooldowns.lock() {
            map.insert(key, Instant::now() + d);
        }
    }
}
