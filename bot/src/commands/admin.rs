//! `/admin status|users|audit|permissions|reset`: bot administration for the guild's
//! bot admins. Touches only the bot's own tables.

use super::config::yes;
use super::require_guild_admin;
use crate::db::{self, unsf};
use crate::reply::Reply;
use crate::{done, Bot, CmdResult, Fail, Invocation};
use serenity::all::CreateEmbed;

pub async fn run(bot: &Bot, inv: &Invocation, sub: &str) -> CmdResult {
    require_guild_admin(bot, inv).await?;
    match sub {
        "status" => status(bot).await,
        "users" => users(bot).await,
        "audit" => audit(bot, inv).await,
        "permissions" => permissions(bot, inv).await,
        "reset" => reset(bot, inv).await,
        _ => Err(Fail::invalid("Unknown /admin sub-command.")),
    }
}

async fn status(bot: &Bot) -> CmdResult {
    let s = db::stats(&bot.db).await?;
    let up = bot.uptime().as_secs();
    let embed = CreateEmbed::new()
        .title("Bot status")
        .field("Version", env!("CARGO_PKG_VERSION"), true)
        .field("Mode", format!("{:?}", bot.cfg.mode).to_lowercase(), true)
        .field(
            "Uptime",
            format!("{}h {}m {}s", up / 3600, (up / 60) % 60, up % 60),
            true,
        )
        .field("Configured guilds", s.guilds.to_string(), true)
        .field("Users", s.users.to_string(), true)
        .field(
            "Users with a panel",
            s.users_with_credentials.to_string(),
            true,
        )
        .field("Managed servers", s.servers.to_string(), true)
        .field("Commands (24 h)", s.commands_last_day.to_string(), true)
        .field("Audit entries", s.audit_entries.to_string(), true);
    done(Reply::text("").embed(embed).ephemeral(), None)
}

async fn users(bot: &Bot) -> CmdResult {
    let rows = db::configured_users(&bot.db, 50).await?;
    let mut lines: Vec<String> = rows
        .iter()
        .map(|u| {
            format!(
                "<@{}> — panel: {}, servers: {}, create users: {}, max servers: {}",
                unsf(u.discord_user_id),
                yes(u.has_credentials()),
                yes(u.can_manage_servers),
                yes(u.can_create_users),
                u.max_servers
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push("Nobody has configured the bot yet.".into());
    }
    let embed = CreateEmbed::new()
        .title(format!("Configured users ({})", rows.len()))
        .description(lines.join("\n"));
    done(Reply::text("").embed(embed).ephemeral(), None)
}

async fn audit(bot: &Bot, inv: &Invocation) -> CmdResult {
    let limit = inv.int("limit").unwrap_or(10).clamp(1, 50);
    let rows = db::audit_entries(
        &bot.db,
        limit,
        inv.user("user"),
        inv.str("action").filter(|a| !a.trim().is_empty()),
    )
    .await?;
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "`#{}` <t:{}:f> <@{}> `/{}`{} — **{}**{}",
                r.id,
                r.created_at.timestamp(),
                unsf(r.discord_user_id),
                r.command,
                r.target
                    .as_deref()
                    .map(|t| format!(" on `{t}`"))
                    .unwrap_or_default(),
                r.result,
                r.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push("No matching entries.".into());
    }
    // An embed description holds 4096 characters.
    let mut text = String::new();
    for l in lines {
        if text.len() + l.len() + 1 > 4000 {
            break;
        }
        text.push_str(&l);
        text.push('\n');
    }
    let embed = CreateEmbed::new().title("Audit log").description(text);
    done(Reply::text("").embed(embed).ephemeral(), None)
}

async fn permissions(bot: &Bot, inv: &Invocation) -> CmdResult {
    let Some(user) = inv.user("user") else {
        return Err(Fail::invalid("`user` is required."));
    };
    let max = inv.int("max_servers").map(|m| {
        if m < 0 {
            None
        } else {
            Some(i32::try_from(m).unwrap_or(i32::MAX))
        }
    });
    let u = db::set_permissions(
        &bot.db,
        user,
        inv.bool("can_manage_servers"),
        inv.bool("can_create_users"),
        max,
    )
    .await?;
    let msg = format!(
        "Permissions of <@{user}>: manage servers: {}, create users: {}, max servers: {}.",
        yes(u.can_manage_servers),
        yes(u.can_create_users),
        u.max_servers
            .map(|m| m.to_string())
            .unwrap_or_else(|| "unlimited".into())
    );
    done(Reply::private(msg), Some(format!("discord:{user}")))
}

async fn reset(bot: &Bot, inv: &Invocation) -> CmdResult {
    let Some(user) = inv.user("user") else {
        return Err(Fail::invalid("`user` is required."));
    };
    let target = format!("discord:{user}");
    if inv.str("confirm") != Some("RESET") {
        return Err(Fail::invalid("Not reset: `confirm` must be the word RESET.").target(target));
    }
    let had = db::reset_user(&bot.db, user).await?;
    let msg = if had {
        format!("The configuration of <@{user}> is reset: credentials, permissions and servers are gone.")
    } else {
        format!("<@{user}> had no configuration.")
    };
    done(Reply::private(msg), Some(target))
}
