//! `/setup`: a Discord administrator sets the guild's bot admin role.

use crate::db;
use crate::reply::Reply;
use crate::{done, Bot, CmdResult, Fail, Invocation};
use serenity::all::Permissions;

pub async fn run(bot: &Bot, inv: &Invocation) -> CmdResult {
    let Some(guild) = inv.guild_id else {
        return Err(Fail::denied("`/setup` only works in a server (guild)."));
    };
    if !inv
        .permissions
        .intersects(Permissions::ADMINISTRATOR | Permissions::MANAGE_GUILD)
    {
        return Err(Fail::denied(
            "Only members with Discord's Administrator or Manage Server permission can run `/setup`.",
        )
        .target(format!("guild:{guild}")));
    }
    let role = inv.role("admin_role");
    db::upsert_guild_config(&bot.db, guild, role, inv.user_id).await?;
    let msg = match role {
        Some(r) => format!(
            "The bot is set up. Bot admins: members with <@&{r}> and Discord administrators."
        ),
        None => "The bot is set up. Bot admins: Discord administrators.".to_string(),
    };
    done(Reply::private(msg), Some(format!("guild:{guild}")))
}
