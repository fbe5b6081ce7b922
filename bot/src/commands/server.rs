//! `/server list|info|start|stop|restart|kill|command`: the caller's own servers
//! through the Client API with their client key, the power buttons of `/server info`
//! and the `<server>` autocomplete.

use crate::db::{self, UserConfig};
use crate::panel::{caller, KeyKind, Meaning, Panel};
use crate::reply::Reply;
use crate::{done, Bot, CmdResult, Fail, Invocation};
use openapi::client_api::{ClientServer, PowerSignal, Stats};
use serenity::all::{ButtonStyle, CommandInteraction, CreateActionRow, CreateButton, CreateEmbed};

pub async fn run(bot: &Bot, inv: &Invocation, sub: &str) -> CmdResult {
    let cfg = caller(bot, inv.user_id).await?;
    if let Some(c) = &cfg {
        if !c.can_manage_servers {
            return Err(Fail::denied(
                "A bot admin has not allowed you to manage servers (`can_manage_servers`).",
            ));
        }
    }
    let panel = bot.panel(cfg.as_ref(), KeyKind::Client)?;
    bot.check_cooldown(&panel)?;
    match sub {
        "list" => list(bot, &panel).await,
        "info" => info(bot, inv, cfg.as_ref(), &panel).await,
        "command" => command(bot, inv, cfg.as_ref(), &panel).await,
        s => match PowerSignal::parse(s) {
            Some(sig) => power(bot, inv, cfg.as_ref(), &panel, sig).await,
            None => Err(Fail::invalid("Unknown /server sub-command.")),
        },
    }
}

fn server_arg(inv: &Invocation) -> Result<String, Fail> {
    let s = inv.str("server").unwrap_or_default().trim().to_string();
    if s.is_empty() || s.len() > 64 || s.contains('/') {
        return Err(Fail::invalid("`server` must be a server identifier."));
    }
    Ok(s)
}

fn meaning<'a>(permission: &'a str, thing: &'a str) -> Meaning<'a> {
    Meaning { permission, thing }
}

async fn list(bot: &Bot, panel: &Panel) -> CmdResult {
    let l = panel
        .client
        .list_client_servers("per_page=25")
        .await
        .map_err(|e| bot.panel_error(panel, e, meaning("server access", "server list")))?;
    let mut lines: Vec<String> = l.data.iter().map(|s| line(&s.attributes)).collect();
    if lines.is_empty() {
        lines.push("You have no servers on this panel.".into());
    }
    let total = l
        .pagination()
        .map(|p| p.total)
        .unwrap_or(l.data.len() as u64);
    let embed = CreateEmbed::new()
        .title(format!("Your servers ({total})"))
        .description(lines.join("\n"));
    done(Reply::text("").embed(embed), None)
}

fn line(s: &ClientServer) -> String {
    let state = s.status.clone().unwrap_or_else(|| {
        if s.is_suspended {
            "suspended".into()
        } else {
            "ready".into()
        }
    });
    format!(
        "**{}** (`{}`) — {} — node {}",
        s.name, s.identifier, state, s.node
    )
}

/// Looks the server up (404 → unknown) and counts it against `max_servers`.
async fn claim(
    bot: &Bot,
    inv: &Invocation,
    cfg: Option<&UserConfig>,
    panel: &Panel,
    id: &str,
    permission: &str,
) -> Result<ClientServer, Fail> {
    let max = cfg.and_then(|c| c.max_servers);
    let denied = || {
        Fail::denied(format!(
            "You may manage at most {} server(s) through the bot; ask a bot admin to raise `max_servers`.",
            max.unwrap_or_default()
        ))
        .target(id)
    };
    if !db::may_claim(&bot.db, inv.user_id, id, max).await? {
        return Err(denied());
    }
    let thing = format!("server `{id}`");
    let s = panel
        .client
        .client_server(id)
        .await
        .map_err(|e| {
            bot.panel_error(panel, e, meaning(permission, &thing))
                .target(id)
        })?
        .attributes;
    if !db::claim_server(&bot.db, inv.user_id, &s.identifier, &s.name, max).await? {
        return Err(denied());
    }
    Ok(s)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1024.0 / 1024.0)
}
fn of_limit(limit_mib: i64) -> String {
    if limit_mib <= 0 {
        "unlimited".into()
    } else {
        format!("{limit_mib} MiB")
    }
}

pub fn info_embed(s: &ClientServer, st: &Stats) -> CreateEmbed {
    let r = &st.resources;
    let cpu_limit = if s.limits.cpu <= 0 {
        "unlimited".to_string()
    } else {
        format!("{}%", s.limits.cpu)
    };
    CreateEmbed::new()
        .title(format!("{} ({})", s.name, s.identifier))
        .description(s.description.clone().unwrap_or_default())
        .field("State", st.current_state.clone(), true)
        .field("Node", s.node.clone(), true)
        .field(
            "Status",
            s.status.clone().unwrap_or_else(|| "ready".into()),
            true,
        )
        .field(
            "CPU",
            format!("{:.1}% of {cpu_limit}", r.cpu_absolute),
            true,
        )
        .field(
            "Memory",
            format!("{} of {}", mib(r.memory_bytes), of_limit(s.limits.memory)),
            true,
        )
        .field(
            "Disk",
            format!("{} of {}", mib(r.disk_bytes), of_limit(s.limits.disk)),
            true,
        )
        .field("Uptime", format!("{} s", r.uptime / 1000), true)
}

pub fn power_buttons(identifier: &str) -> Vec<CreateActionRow> {
    let b = |sig: &str, label: &str, style: ButtonStyle| {
        CreateButton::new(format!("power:{sig}:{identifier}"))
            .label(label)
            .style(style)
    };
    vec![CreateActionRow::Buttons(vec![
        b("start", "Start", ButtonStyle::Success),
        b("stop", "Stop", ButtonStyle::Secondary),
        b("restart", "Restart", ButtonStyle::Primary),
        b("kill", "Kill", ButtonStyle::Danger),
    ])]
}

/// `power:<signal>:<identifier>` → (`server <signal>`, identifier).
pub fn button_command(custom_id: &str) -> Option<(String, &str)> {
    let mut it = custom_id.splitn(3, ':');
    if it.next()? != "power" {
        return None;
    }
    let sig = PowerSignal::parse(it.next()?)?;
    let id = it.next().filter(|s| !s.is_empty())?;
    Some((format!("server {}", sig.as_str()), id))
}

async fn info(bot: &Bot, inv: &Invocation, cfg: Option<&UserConfig>, panel: &Panel) -> CmdResult {
    let id = server_arg(inv)?;
    let s = claim(bot, inv, cfg, panel, &id, "server access").await?;
    let st = panel
        .client
        .resources(&s.identifier)
        .await
        .map_err(|e| {
            bot.panel_error(
                panel,
                e,
                meaning("server access", &format!("server `{id}`")),
            )
            .target(id.clone())
        })?
        .attributes;
    done(
        Reply::text("")
            .embed(info_embed(&s, &st))
            .components(power_buttons(&s.identifier)),
        Some(s.identifier),
    )
}

async fn power(
    bot: &Bot,
    inv: &Invocation,
    cfg: Option<&UserConfig>,
    panel: &Panel,
    sig: PowerSignal,
) -> CmdResult {
    let id = server_arg(inv)?;
    let perm = match sig {
        PowerSignal::Start => "control.start",
        PowerSignal::Stop | PowerSignal::Kill => "control.stop",
        PowerSignal::Restart => "control.restart",
    };
    let s = claim(bot, inv, cfg, panel, &id, perm).await?;
    panel.client.power(&s.identifier, sig).await.map_err(|e| {
        bot.panel_error(panel, e, meaning(perm, &format!("server `{id}`")))
            .target(id.clone())
    })?;
    let verb = match sig {
        PowerSignal::Start => "Starting",
        PowerSignal::Stop => "Stopping",
        PowerSignal::Restart => "Restarting",
        PowerSignal::Kill => "Killing",
    };
    done(
        Reply::text(format!("{verb} **{}** (`{}`).", s.name, s.identifier)),
        Some(s.identifier),
    )
}

async fn command(
    bot: &Bot,
    inv: &Invocation,
    cfg: Option<&UserConfig>,
    panel: &Panel,
) -> CmdResult {
    let id = server_arg(inv)?;
    let cmd = inv.str("command").unwrap_or_default().trim().to_string();
    if cmd.is_empty() {
        return Err(Fail::invalid("`command` must not be empty.").target(id));
    }
    let s = claim(bot, inv, cfg, panel, &id, "control.console").await?;
    panel
        .client
        .command(&s.identifier, &cmd)
        .await
        .map_err(|e| {
            bot.panel_error(
                panel,
                e,
                meaning("control.console", &format!("server `{id}`")),
            )
            .target(id.clone())
        })?;
    done(
        Reply::text(format!(
            "Sent to **{}**: `{}`",
            s.name,
            cmd.replace('`', "'")
        )),
        Some(s.identifier),
    )
}

/// Choices for the focused `server` option: the caller's servers on the panel, or the
/// ones they used before when the panel cannot be asked.
pub async fn autocomplete(
    bot: &Bot,
    inv: &Invocation,
    ci: &CommandInteraction,
) -> Vec<(String, String)> {
    let typed = ci
        .data
        .autocomplete()
        .map(|a| a.value.to_lowercase())
        .unwrap_or_default();
    let Ok(cfg) = caller(bot, inv.user_id).await else {
        return Vec::new();
    };
    let mut choices: Vec<(String, String)> = Vec::new();
    if let Ok(panel) = bot.panel(cfg.as_ref(), KeyKind::Client) {
        if bot.check_cooldown(&panel).is_ok() {
            let q = if typed.is_empty() {
                "per_page=25".to_string()
            } else {
                let enc: String = url::form_urlencoded::byte_serialize(typed.as_bytes()).collect();
                format!("per_page=25&filter[*]={enc}")
            };
            match panel.client.list_client_servers(&q).await {
                Ok(l) => {
                    choices = l
                        .data
                        .into_iter()
                        .map(|s| {
                            (
                                format!("{} ({})", s.attributes.name, s.attributes.identifier),
                                s.attributes.identifier,
                            )
                        })
                        .collect()
                }
                Err(e) => {
                    let _ = bot.panel_error(&panel, e, meaning("server access", "server list"));
                }
            }
        }
    }
    if choices.is_empty() {
        choices = db::known_servers(&bot.db, inv.user_id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(id, name)| (format!("{name} ({id})"), id))
            .collect();
    }
    choices.retain(|(name, _)| typed.is_empty() || name.to_lowercase().contains(&typed));
    for c in &mut choices {
        if c.0.chars().count() > 100 {
            c.0 = c.0.chars().take(100).collect();
        }
    }
    choices.truncate(25);
    choices
}
