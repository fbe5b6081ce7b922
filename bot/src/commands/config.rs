//! `/config setup|show|remove`: a Discord user's own panel credentials, validated
//! against the panel before they are stored (encrypted). Every reply is ephemeral.

use crate::crypto::mask_key;
use crate::db;
use crate::panel::{caller, users, Meaning};
use crate::reply::Reply;
use crate::{done, Bot, CmdResult, Fail, Invocation};
use openapi::client::Error;

pub async fn run(bot: &Bot, inv: &Invocation, sub: &str) -> CmdResult {
    match sub {
        "setup" => setup(bot, inv).await,
        "show" => show(bot, inv).await,
        "remove" => remove(bot, inv).await,
        _ => Err(Fail::invalid("Unknown /config sub-command.")),
    }
}

/// `http(s)://host[:port][/path]`, without credentials, query or fragment.
fn normalise_url(raw: &str) -> Result<String, Fail> {
    let bad = || {
        Fail::invalid("`panel_url` must be the panel's address, like `https://panel.example.com`.")
    };
    let u = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https")
        || u.host_str().is_none()
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(bad());
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

fn route_missing(e: &Error) -> bool {
    match e {
        Error::Api {
            status: 404, body, ..
        } => body
            .as_ref()
            .and_then(|b| b.errors.first())
            .is_some_and(|o| o.detail.starts_with("The route")),
        _ => false,
    }
}

async fn setup(bot: &Bot, inv: &Invocation) -> CmdResult {
    let target = Some("panel".to_string());
    let url = normalise_url(inv.str("panel_url").unwrap_or_default())?;
    let key = inv.str("api_key").unwrap_or_default().trim().to_string();
    if key.is_empty() {
        return Err(Fail::invalid("`api_key` is required."));
    }
    let app_key = inv
        .str("application_key")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());

    let panel = bot.panel_for(&url, &key);
    bot.check_cooldown(&panel)?;
    let rejected = |what: &str| {
        Fail::invalid(format!(
            "The panel did not accept this {what} (401); nothing was saved. Check the key and run `/config setup` again."
        ))
    };
    let meaning = Meaning {
        permission: "account access",
        thing: "panel endpoint",
    };
    // The client key is checked on the account endpoint. A panel without the Client
    // API answers that route with a 404; then the key must at least authenticate on
    // the Application API (403 there means "valid key, not an admin").
    let who = match panel.client.account().await {
        Ok(acc) => Some(acc.attributes.username),
        Err(e) if route_missing(&e) => match users::list(&panel.client, "per_page=1").await {
            Ok(_) => None,
            Err(Error::Api { status: 403, .. }) => None,
            Err(Error::Api { status: 401, .. }) => return Err(rejected("API key")),
            Err(e) => return Err(bot.panel_error(&panel, e, meaning)),
        },
        Err(Error::Api { status: 401, .. }) => return Err(rejected("API key")),
        Err(Error::Api { status: 403, .. }) => {
            return Err(Fail::invalid(
                "The panel refused this key on the Client API (403): `api_key` must be a client key (`ptlc_…`), not an application key.",
            ))
        }
        Err(e) => return Err(bot.panel_error(&panel, e, meaning)),
    };
    if let Some(app_key) = &app_key {
        let app = bot.panel_for(&url, app_key);
        match users::list(&app.client, "per_page=1").await {
            Ok(_) => {}
            Err(Error::Api { status: 401, .. }) => return Err(rejected("application key")),
            Err(Error::Api { status: 403, .. }) => {
                return Err(Fail::invalid(
                    "The panel refused the application key (403): it needs read and write access to users. Nothing was saved.",
                ))
            }
            Err(e) => return Err(bot.panel_error(&app, e, meaning)),
        }
    }
    db::save_credentials(
        &bot.db,
        inv.user_id,
        &bot.vault.encrypt(&url),
        &bot.vault.encrypt(&key),
        app_key.as_deref().map(|k| bot.vault.encrypt(k)).as_deref(),
    )
    .await?;
    let mut msg = String::from("Your panel credentials are saved, encrypted.");
    if let Some(who) = who {
        msg.push_str(&format!(" Signed in as **{who}**."));
    }
    msg.push_str(&format!("\nAPI key: `{}`", mask_key(&key)));
    if let Some(k) = &app_key {
        msg.push_str(&format!("\nApplication key: `{}`", mask_key(k)));
    }
    done(Reply::private(msg), target)
}

async fn show(bot: &Bot, inv: &Invocation) -> CmdResult {
    let cfg = caller(bot, inv.user_id).await?;
    let Some(cfg) = cfg.filter(|c| c.has_credentials()) else {
        return done(
            Reply::private("You have no panel configured. Run `/config setup`."),
            None,
        );
    };
    let dec = |v: Option<&str>| -> Result<Option<String>, Fail> {
        v.map(|t| bot.vault.decrypt(t))
            .transpose()
            .map_err(Fail::internal)
    };
    // The host is enough to recognise the panel; the full URL stays private.
    let url = dec(cfg.panel_url_enc.as_deref())?.unwrap_or_default();
    let url = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "(unreadable)".into());
    let key = dec(cfg.api_key_enc.as_deref())?.unwrap_or_default();
    let app = dec(cfg.application_key_enc.as_deref())?;
    let max = cfg
        .max_servers
        .map(|m| m.to_string())
        .unwrap_or_else(|| "unlimited".into());
    let msg = format!(
        "**Your configuration**\nPanel: {url}\nAPI key: `{}`\nApplication key: {}\nMay manage servers: {}\nMay create users: {}\nMax servers: {max}\nUpdated: <t:{}:R>",
        mask_key(&key),
        app.map(|k| format!("`{}`", mask_key(&k))).unwrap_or_else(|| "none".into()),
        yes(cfg.can_manage_servers),
        yes(cfg.can_create_users),
        cfg.updated_at.timestamp(),
    );
    done(Reply::private(msg), None)
}

async fn remove(bot: &Bot, inv: &Invocation) -> CmdResult {
    let removed = db::remove_credentials(&bot.db, inv.user_id).await?;
    let msg = if removed {
        "Your panel credentials are removed."
    } else {
        "You had no panel credentials stored."
    };
    done(Reply::private(msg), Some("panel".into()))
}

pub(crate) fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
