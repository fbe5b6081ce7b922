//! Calls to the user's panel: building the typed client from the stored (encrypted)
//! credentials, honouring a panel's 429 `Retry-After`, and turning a panel's errors
//! into replies a Discord user can act on. Panel URLs and keys never reach a reply, a
//! log line or the audit log.

use crate::db::{self, UserConfig};
use crate::reply::Reply;
use crate::{Bot, Fail};
use openapi::client::{Client, Error};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// Which key of the user's configuration a command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// The client key (`ptlc_…`): the user's own servers.
    Client,
    /// The application key (`ptla_…`): panel users.
    Application,
}

/// A ready client for one user's panel.
pub struct Panel {
    pub client: Client,
    key: u64,
}

/// What a 403 or 404 means for the command at hand.
#[derive(Clone, Copy, Debug)]
pub struct Meaning<'a> {
    /// The permission the panel wants, e.g. `control.start`.
    pub permission: &'a str,
    /// What is unknown on a 404, e.g. "server `abcd1234`".
    pub thing: &'a str,
}

fn url_key(url: &str) -> u64 {
    let mut h = DefaultHasher::new();
    url.trim_end_matches('/').hash(&mut h);
    h.finish()
}

impl Bot {
    /// The client for `cfg`'s panel with the `kind` key; a missing configuration or key
    /// is a reply telling the user what to run.
    pub fn panel(&self, cfg: Option<&UserConfig>, kind: KeyKind) -> Result<Panel, Fail> {
        let Some(cfg) = cfg.filter(|c| c.has_credentials()) else {
            return Err(Fail::invalid(
                "You have not configured a panel yet: run `/config setup` first.",
            ));
        };
        let enc_key = match kind {
            KeyKind::Client => cfg.api_key_enc.as_deref(),
            KeyKind::Application => cfg.application_key_enc.as_deref(),
        };
        let Some(enc_key) = enc_key else {
            return Err(Fail::invalid(
                "This command needs an application API key (`ptla_…`): run `/config setup` again with `application_key`.",
            ));
        };
        let url = self
            .vault
            .decrypt(cfg.panel_url_enc.as_deref().unwrap_or_default())
            .map_err(Fail::internal)?;
        let key = self.vault.decrypt(enc_key).map_err(Fail::internal)?;
        Ok(self.panel_for(&url, &key))
    }

    pub fn panel_for(&self, url: &str, key: &str) -> Panel {
        Panel {
            client: Client::with_http(self.panel_http.clone(), url, key),
            key: url_key(url),
        }
    }

    /// Refuses to call a panel that told us to wait.
    pub fn check_cooldown(&self, p: &Panel) -> Result<(), Fail> {
        match self.cooldown_left(p.key) {
            Some(left) => Err(rate_limited(left.as_secs().max(1), "panel cooldown")),
            None => Ok(()),
        }
    }

    /// Turns a panel error into the reply and audit detail; a 429 also starts the
    /// panel's cooldown.
    pub fn panel_error(&self, p: &Panel, e: Error, m: Meaning<'_>) -> Fail {
        match &e {
            Error::Api {
                status,
                body,
                retry_after,
            } => {
                let detail = body
                    .as_ref()
                    .and_then(|b| b.errors.first())
                    .map(|o| o.detail.clone())
                    .unwrap_or_default();
                match *status {
                    401 => fail(
                        "The panel did not accept your API key (401). Run `/config setup` again with a valid key.",
                        "panel 401",
                    ),
                    403 => fail(
                        format!(
                            "The panel refused (403): your key lacks the `{}` permission.{}",
                            m.permission,
                            if detail.is_empty() { String::new() } else { format!(" The panel said: {detail}") }
                        ),
                        "panel 403",
                    ),
                    404 => fail(
                        format!("Unknown {}: the panel has nothing by that name that your key can see (404).", m.thing),
                        "panel 404",
                    ),
                    429 => {
                        let secs = retry_after.unwrap_or(60).max(1);
                        self.set_cooldown(p.key, Duration::from_secs(secs));
                        rate_limited(secs, "panel 429")
                    }
                    s @ (400 | 409 | 422) => {
                        let all: Vec<String> = body
                            .as_ref()
                            .map(|b| b.errors.iter().map(|o| o.detail.clone()).collect())
                            .unwrap_or_default();
                        let mut f = fail(
                            format!("The panel rejected the request ({s}): {}", all.join(" ")),
                            &format!("panel {s}"),
                        );
                        f.result = "invalid";
                        f
                    }
                    s => {
                        tracing::warn!(status = s, detail = %detail, "the panel answered with an error");
                        fail(
                            format!("The panel is having trouble right now (HTTP {s}); try again later."),
                            &format!("panel {s}"),
                        )
                    }
                }
            }
            Error::Transport(t) => {
                tracing::warn!(error = %strip(t), "the panel could not be reached");
                fail(
                    "Could not reach the panel; try again later.",
                    "panel unreachable",
                )
            }
            Error::Decode(d) => {
                tracing::warn!(error = %d, "the panel's answer did not decode");
                fail(
                    "The panel answered with something this bot does not understand.",
                    "panel answer undecodable",
                )
            }
        }
    }
}

/// reqwest's errors carry the URL; the panel URL is a secret here.
fn strip(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut src = std::error::Error::source(e);
    let mut chain = String::new();
    while let Some(s) = src {
        let text = s.to_string();
        if !text.contains("://") {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        src = s.source();
    }
    format!("{kind}{chain}")
}

fn fail(msg: impl Into<String>, detail: &str) -> Fail {
    Fail {
        reply: Reply::private(msg),
        result: "error",
        detail: Some(detail.to_string()),
        target: None,
    }
}

fn rate_limited(secs: u64, detail: &str) -> Fail {
    Fail {
        reply: Reply::private(format!(
            "The panel is rate limiting requests; try again in {secs} s."
        )),
        result: "rate_limited",
        detail: Some(detail.to_string()),
        target: None,
    }
}

/// The caller's configuration row (if any).
pub async fn caller(bot: &Bot, user: u64) -> Result<Option<UserConfig>, Fail> {
    db::user_config(&bot.db, user).await.map_err(Fail::internal)
}

/// A panel user as the bot reads it (`/api/application/users`). The `openapi` type
/// is the strict wire contract of our own panel; other panels leave fields out or
/// send nulls (Pelican has no first/last name and names 2FA differently), so the bot
/// decodes its own lenient view and shows what is there.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct PanelUser {
    #[serde(default, deserialize_with = "null_default")]
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub uuid: String,
    #[serde(default, deserialize_with = "null_default")]
    pub username: String,
    #[serde(default, deserialize_with = "null_default")]
    pub email: String,
    #[serde(default, deserialize_with = "null_default")]
    pub first_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub last_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub root_admin: bool,
    #[serde(
        default,
        rename = "2fa",
        alias = "2fa_enabled",
        deserialize_with = "null_default"
    )]
    pub two_factor: bool,
    #[serde(default)]
    pub created_at: Option<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// The Application API's user routes, decoded leniently ([`PanelUser`]).
pub mod users {
    use super::PanelUser;
    use openapi::application::UserRequest;
    use openapi::client::{Client, Error};
    use openapi::envelope::{Item, List};
    use reqwest::Method;

    pub async fn list(c: &Client, query: &str) -> Result<List<PanelUser>, Error> {
        c.get(&format!("/api/application/users?{query}")).await
    }
    pub async fn get(c: &Client, id: i64) -> Result<Item<PanelUser>, Error> {
        c.get(&format!("/api/application/users/{id}")).await
    }
    pub async fn create(c: &Client, req: &UserRequest) -> Result<Item<PanelUser>, Error> {
        c.send_json(Method::POST, "/api/application/users", req)
            .await
    }
    pub async fn update(c: &Client, id: i64, req: &UserRequest) -> Result<Item<PanelUser>, Error> {
        c.send_json(Method::PATCH, &format!("/api/application/users/{id}"), req)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::PanelUser;

    #[test]
    fn users_of_other_panels_decode() {
        // Pelican: no first/last name, `2fa_enabled`, nulls.
        let u: PanelUser = serde_json::from_value(serde_json::json!({
            "id": 3, "uuid": "u", "username": "p", "email": "p@example.com",
            "root_admin": null, "2fa_enabled": true, "created_at": null, "extra": {}
        }))
        .expect("decode");
        assert_eq!((u.id, u.username.as_str(), u.two_factor), (3, "p", true));
        assert_eq!(u.first_name, "");
        let u: PanelUser = serde_json::from_value(serde_json::json!({
            "id": 1, "username": "a", "2fa": false, "first_name": "A", "last_name": "B",
            "created_at": "2024-01-01T00:00:00+00:00"
        }))
        .expect("decode");
        assert_eq!(u.last_name, "B");
    }
}
