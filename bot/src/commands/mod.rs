//! The slash commands: their definitions (for registration) and the dispatcher. Each
//! sub-module owns one top-level command; they all work on a plain [`Invocation`] so
//! the gateway and the interactions endpoint share them.

pub mod admin;
pub mod config;
pub mod server;
pub mod setup;
pub mod user;

use crate::db::{self, unsf};
use crate::{Bot, CmdResult, Fail, Invocation};
use serenity::all::{CommandOptionType, CreateCommand, CreateCommandOption, Permissions};

/// Routes an invocation to its command.
pub async fn dispatch(bot: &Bot, inv: &Invocation) -> CmdResult {
    let mut parts = inv.command.splitn(2, ' ');
    let top = parts.next().unwrap_or_default();
    let sub = parts.next().unwrap_or_default();
    match top {
        "setup" => setup::run(bot, inv).await,
        "config" => config::run(bot, inv, sub).await,
        "server" => server::run(bot, inv, sub).await,
        "user" => user::run(bot, inv, sub).await,
        "admin" => admin::run(bot, inv, sub).await,
        _ => Err(Fail::invalid("Unknown command.")),
    }
}

/// Whether a deferred answer to `command` must be ephemeral (decided before the
/// answer exists, so by command).
pub fn defers_ephemeral(command: &str) -> bool {
    !command.starts_with("server ")
}

/// Discord administrators, and members with the guild's configured admin role.
pub async fn is_guild_admin(bot: &Bot, inv: &Invocation) -> Result<bool, Fail> {
    let Some(guild) = inv.guild_id else {
        return Ok(false);
    };
    if inv.permissions.contains(Permissions::ADMINISTRATOR) {
        return Ok(true);
    }
    let cfg = db::guild_config(&bot.db, guild)
        .await
        .map_err(Fail::internal)?;
    Ok(cfg
        .and_then(|c| c.admin_role_id)
        .is_some_and(|r| inv.roles.contains(&unsf(r))))
}

pub async fn require_guild_admin(bot: &Bot, inv: &Invocation) -> Result<(), Fail> {
    if inv.guild_id.is_none() {
        return Err(Fail::denied("This command only works in a server (guild)."));
    }
    if is_guild_admin(bot, inv).await? {
        Ok(())
    } else {
        Err(Fail::denied(
            "You need this server's bot admin role (or Discord's Administrator permission) for this command.",
        ))
    }
}

fn sub(name: &str, desc: &str) -> CreateCommandOption {
    CreateCommandOption::new(CommandOptionType::SubCommand, name, desc)
}
fn opt(kind: CommandOptionType, name: &str, desc: &str, required: bool) -> CreateCommandOption {
    CreateCommandOption::new(kind, name, desc).required(required)
}
fn server_opt() -> CreateCommandOption {
    opt(
        CommandOptionType::String,
        "server",
        "The server (identifier)",
        true,
    )
    .set_autocomplete(true)
}

/// Every command, as registered with Discord.
pub fn definitions() -> Vec<CreateCommand> {
    use CommandOptionType as T;
    let power = |name: &str, desc: &str| sub(name, desc).add_sub_option(server_opt());
    vec![
        CreateCommand::new("setup")
            .description("Configure the bot for this server: the bot admin role")
            .dm_permission(false)
            .add_option(opt(
                T::Role,
                "admin_role",
                "Role whose members administer the bot (default: Discord administrators)",
                false,
            )),
        CreateCommand::new("config")
            .description("Your panel credentials")
            .add_option(
                sub(
                    "setup",
                    "Store your panel URL and API key (validated, encrypted)",
                )
                .add_sub_option(opt(
                    T::String,
                    "panel_url",
                    "The panel's URL, e.g. https://panel.example.com",
                    true,
                ))
                .add_sub_option(opt(
                    T::String,
                    "api_key",
                    "Your client API key (ptlc_…)",
                    true,
                ))
                .add_sub_option(opt(
                    T::String,
                    "application_key",
                    "An application API key (ptla_…) for /user",
                    false,
                )),
            )
            .add_option(sub("show", "Show your configuration (secrets masked)"))
            .add_option(sub("remove", "Forget your panel credentials")),
        CreateCommand::new("server")
            .description("Your game servers")
            .add_option(sub("list", "List your servers"))
            .add_option(power("info", "Details, state and resource usage"))
            .add_option(power("start", "Start the server"))
            .add_option(power("stop", "Stop the server"))
            .add_option(power("restart", "Restart the server"))
            .add_option(power("kill", "Kill the server"))
            .add_option(
                power("command", "Send a console command").add_sub_option(opt(
                    T::String,
                    "command",
                    "The console command",
                    true,
                )),
            ),
        CreateCommand::new("user")
            .description("Panel users (needs an application key)")
            .add_option(
                sub("create", "Create a panel user")
                    .add_sub_option(opt(T::String, "username", "Username", true))
                    .add_sub_option(opt(T::String, "email", "E-mail address", true))
                    .add_sub_option(opt(T::String, "first_name", "First name", true))
                    .add_sub_option(opt(T::String, "last_name", "Last name", true))
                    .add_sub_option(opt(
                        T::String,
                        "password",
                        "Password (default: a strong generated one)",
                        false,
                    )),
            )
            .add_option(
                sub("list", "List panel users")
                    .add_sub_option(opt(T::Integer, "page", "Page", false).min_int_value(1)),
            )
            .add_option(sub("info", "Show a panel user").add_sub_option(opt(
                T::String,
                "user",
                "Id, username or e-mail",
                true,
            )))
            .add_option(
                sub("update", "Update a panel user")
                    .add_sub_option(opt(T::String, "user", "Id, username or e-mail", true))
                    .add_sub_option(opt(T::String, "email", "New e-mail", false))
                    .add_sub_option(opt(T::String, "username", "New username", false))
                    .add_sub_option(opt(T::String, "first_name", "New first name", false))
                    .add_sub_option(opt(T::String, "last_name", "New last name", false))
                    .add_sub_option(opt(T::String, "password", "New password", false)),
            )
            .add_option(
                sub("delete", "Delete a panel user")
                    .add_sub_option(opt(T::String, "user", "Id, username or e-mail", true))
                    .add_sub_option(opt(T::String, "confirm", "Type DELETE to confirm", true)),
            ),
        CreateCommand::new("admin")
            .description("Bot administration")
            .dm_permission(false)
            .add_option(sub("status", "Bot status and statistics"))
            .add_option(sub("users", "Users who configured the bot"))
            .add_option(
                sub("audit", "The audit log")
                    .add_sub_option(
                        opt(T::Integer, "limit", "How many entries (1-50)", false)
                            .min_int_value(1)
                            .max_int_value(50),
                    )
                    .add_sub_option(opt(T::User, "user", "Only this user's commands", false))
                    .add_sub_option(opt(
                        T::String,
                        "action",
                        "Only commands containing this, e.g. `server start`",
                        false,
                    )),
            )
            .add_option(
                sub("permissions", "Set a user's permissions")
                    .add_sub_option(opt(T::User, "user", "The user", true))
                    .add_sub_option(opt(
                        T::Boolean,
                        "can_manage_servers",
                        "May use /server",
                        false,
                    ))
                    .add_sub_option(opt(
                        T::Boolean,
                        "can_create_users",
                        "May use /user create",
                        false,
                    ))
                    .add_sub_option(opt(
                        T::Integer,
                        "max_servers",
                        "Servers they may manage (-1: unlimited)",
                        false,
                    )),
            )
            .add_option(
                sub("reset", "Reset a user's configuration")
                    .add_sub_option(opt(T::User, "user", "The user", true))
                    .add_sub_option(opt(T::String, "confirm", "Type RESET to confirm", true)),
            ),
    ]
}

/// Registers the commands: in one guild (instant) or globally.
pub async fn register(http: &serenity::http::Http, guild: Option<u64>) -> anyhow::Result<usize> {
    let defs = definitions();
    let made = match guild {
        Some(g) => http.create_guild_commands(g.into(), &defs).await?,
        None => http.create_global_commands(&defs).await?,
    };
    Ok(made.len())
}
