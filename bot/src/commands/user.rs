//! `/user create|list|info|update|delete`: panel users through the Application API,
//! with the caller's application key. Permissions are checked before any panel call.

use super::{is_guild_admin, require_guild_admin};
use crate::panel::{caller, users, KeyKind, Meaning, Panel, PanelUser};
use crate::reply::Reply;
use crate::{done, Bot, CmdResult, Fail, Invocation};
use openapi::application::UserRequest;
use rand::Rng;
use serenity::all::CreateEmbed;

const MEANING: Meaning<'static> = Meaning {
    permission: "users: read & write (application key of a root admin)",
    thing: "panel user",
};

pub async fn run(bot: &Bot, inv: &Invocation, sub: &str) -> CmdResult {
    let cfg = caller(bot, inv.user_id).await?;
    match sub {
        "create" => {
            let allowed = cfg.as_ref().is_some_and(|c| c.can_create_users)
                || is_guild_admin(bot, inv).await?;
            if !allowed {
                return Err(Fail::denied(
                    "You may not create panel users: ask a bot admin for `can_create_users`.",
                ));
            }
        }
        "list" | "info" | "update" | "delete" => require_guild_admin(bot, inv).await?,
        _ => return Err(Fail::invalid("Unknown /user sub-command.")),
    }
    let panel = bot.panel(cfg.as_ref(), KeyKind::Application)?;
    bot.check_cooldown(&panel)?;
    match sub {
        "create" => create(bot, inv, &panel).await,
        "list" => list(bot, inv, &panel).await,
        "info" => info(bot, inv, &panel).await,
        "update" => update(bot, inv, &panel).await,
        _ => delete(bot, inv, &panel).await,
    }
}

/// A strong password: 20 characters from letters, digits and a few symbols.
pub fn generate_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!@#$%^&*-_=+";
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn arg(inv: &Invocation, name: &str) -> Option<String> {
    inv.str(name)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn create(bot: &Bot, inv: &Invocation, panel: &Panel) -> CmdResult {
    let username = arg(inv, "username").unwrap_or_default();
    let target = format!("user:{username}");
    let (password, generated) = match arg(inv, "password") {
        Some(p) => (p, false),
        None => (generate_password(), true),
    };
    let req = UserRequest {
        email: arg(inv, "email").unwrap_or_default(),
        username: username.clone(),
        first_name: arg(inv, "first_name").unwrap_or_default(),
        last_name: arg(inv, "last_name").unwrap_or_default(),
        password: Some(password.clone()),
        ..Default::default()
    };
    let u = users::create(&panel.client, &req)
        .await
        .map_err(|e| bot.panel_error(panel, e, MEANING).target(target.clone()))?
        .attributes;
    let mut msg = format!(
        "Created panel user **{}** (id {}, {}).",
        u.username, u.id, u.email
    );
    if generated {
        msg.push_str(&format!(
            "\nGenerated password (shown only to you, once): ||`{password}`||"
        ));
    }
    done(Reply::private(msg), Some(format!("user:{}", u.id)))
}

async fn list(bot: &Bot, inv: &Invocation, panel: &Panel) -> CmdResult {
    let page = inv.int("page").unwrap_or(1).max(1);
    let l = users::list(&panel.client, &format!("per_page=20&page={page}"))
        .await
        .map_err(|e| bot.panel_error(panel, e, MEANING))?;
    let pag = l.pagination();
    let mut lines: Vec<String> = l
        .data
        .iter()
        .map(|u| {
            let a = &u.attributes;
            format!(
                "`{}` **{}** — {}{}",
                a.id,
                a.username,
                a.email,
                if a.root_admin { " (admin)" } else { "" }
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push("No users on this page.".into());
    }
    let footer = pag
        .map(|p| {
            format!(
                "page {} of {} — {} users",
                p.current_page, p.total_pages, p.total
            )
        })
        .unwrap_or_default();
    let embed = CreateEmbed::new()
        .title("Panel users")
        .description(lines.join("\n"))
        .footer(serenity::all::CreateEmbedFooter::new(footer));
    done(
        Reply::text("").embed(embed).ephemeral(),
        Some(format!("page:{page}")),
    )
}

/// `user` is an id, a username or an e-mail address.
async fn find(bot: &Bot, panel: &Panel, who: &str) -> Result<PanelUser, Fail> {
    let target = format!("user:{who}");
    if let Ok(id) = who.parse::<i64>() {
        return users::get(&panel.client, id)
            .await
            .map(|i| i.attributes)
            .map_err(|e| bot.panel_error(panel, e, MEANING).target(target));
    }
    let field = if who.contains('@') {
        "email"
    } else {
        "username"
    };
    let enc: String = url::form_urlencoded::byte_serialize(who.as_bytes()).collect();
    let l = users::list(&panel.client, &format!("filter[{field}]={enc}&per_page=50"))
        .await
        .map_err(|e| bot.panel_error(panel, e, MEANING).target(target.clone()))?;
    // Filters match partially; only an exact match counts.
    l.data
        .into_iter()
        .map(|i| i.attributes)
        .find(|u| {
            if field == "email" {
                u.email.eq_ignore_ascii_case(who)
            } else {
                u.username.eq_ignore_ascii_case(who)
            }
        })
        .ok_or_else(|| Fail::invalid(format!("Unknown panel user `{who}`.")).target(target))
}

fn describe(u: &PanelUser) -> CreateEmbed {
    let mut e = CreateEmbed::new()
        .title(format!("{} (id {})", u.username, u.id))
        .field("E-mail", u.email.clone(), true);
    let name = format!("{} {}", u.first_name, u.last_name);
    if !name.trim().is_empty() {
        e = e.field("Name", name.trim().to_string(), true);
    }
    e = e
        .field("Admin", super::config::yes(u.root_admin), true)
        .field("2FA", super::config::yes(u.two_factor), true);
    if !u.uuid.is_empty() {
        e = e.field("UUID", u.uuid.clone(), false);
    }
    // Upstream prints ISO-8601 with an offset; anything else is shown as sent.
    if let Some(c) = u.created_at.as_deref() {
        let shown = chrono::DateTime::parse_from_rfc3339(c)
            .map(|t| format!("<t:{}:f>", t.timestamp()))
            .unwrap_or_else(|_| c.to_string());
        e = e.field("Created", shown, true);
    }
    e
}

async fn info(bot: &Bot, inv: &Invocation, panel: &Panel) -> CmdResult {
    let who = arg(inv, "user").unwrap_or_default();
    let u = find(bot, panel, &who).await?;
    done(
        Reply::text("").embed(describe(&u)).ephemeral(),
        Some(format!("user:{}", u.id)),
    )
}

async fn update(bot: &Bot, inv: &Invocation, panel: &Panel) -> CmdResult {
    let who = arg(inv, "user").unwrap_or_default();
    let u = find(bot, panel, &who).await?;
    let target = format!("user:{}", u.id);
    let changes = ["email", "username", "first_name", "last_name", "password"];
    if changes.iter().all(|c| arg(inv, c).is_none()) {
        return Err(Fail::invalid("Nothing to change: give at least one field.").target(target));
    }
    // PATCH takes the full rule set (reference §6.4), so unchanged fields are resent.
    let req = UserRequest {
        email: arg(inv, "email").unwrap_or(u.email.clone()),
        username: arg(inv, "username").unwrap_or(u.username.clone()),
        first_name: arg(inv, "first_name").unwrap_or(u.first_name.clone()),
        last_name: arg(inv, "last_name").unwrap_or(u.last_name.clone()),
        password: arg(inv, "password"),
        ..Default::default()
    };
    let nu = users::update(&panel.client, u.id, &req)
        .await
        .map_err(|e| bot.panel_error(panel, e, MEANING).target(target.clone()))?
        .attributes;
    let mut msg = format!("Updated panel user **{}** (id {}).", nu.username, nu.id);
    if req.password.is_some() {
        msg.push_str(" The password was changed.");
    }
    done(Reply::private(msg).embed(describe(&nu)), Some(target))
}

async fn delete(bot: &Bot, inv: &Invocation, panel: &Panel) -> CmdResult {
    let who = arg(inv, "user").unwrap_or_default();
    if inv.str("confirm") != Some("DELETE") {
        return Err(
            Fail::invalid("Not deleted: `confirm` must be the word DELETE.")
                .target(format!("user:{who}")),
        );
    }
    let u = find(bot, panel, &who).await?;
    let target = format!("user:{}", u.id);
    panel
        .client
        .delete_user(u.id)
        .await
        .map_err(|e| bot.panel_error(panel, e, MEANING).target(target.clone()))?;
    done(
        Reply::private(format!(
            "Deleted panel user **{}** (id {}).",
            u.username, u.id
        )),
        Some(target),
    )
}
