//! Test harness for the bot: the bot on its own fresh database in the shared test
//! cluster, its interactions endpoint on a loopback port, signed requests (a test
//! Ed25519 key), and a local stand-in for Discord's REST API that records what the
//! bot sent it.

#![allow(dead_code)]

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::{Json, Router};
use bot::config::Config;
use bot::crypto::Vault;
use bot::Bot;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const APP_ID: &str = "1000000000000000001";
pub const GUILD: u64 = 4_000_000_000_000_001;
pub const ADMIN_ROLE: u64 = 5_000_000_000_000_001;
/// Discord's permission bits.
pub const ADMINISTRATOR: u64 = 1 << 3;
pub const MANAGE_GUILD: u64 = 1 << 5;

/// What the bot sent to the Discord stand-in.
#[derive(Clone, Debug)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Discord {
    pub sent: Arc<Mutex<Vec<Sent>>>,
}

impl Discord {
    pub async fn start() -> (Discord, String) {
        let d = Discord::default();
        let app = Router::new().fallback(record).with_state(d.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (d, url)
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits until a request matching `f` arrives.
    pub async fn wait_for(&self, f: impl Fn(&Sent) -> bool) -> Option<Sent> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(s) = self.sent().into_iter().find(&f) {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

async fn record(
    State(d): State<Discord>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Json<Value> {
    let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
    d.sent.lock().unwrap().push(Sent {
        method: method.to_string(),
        path: uri.path().to_string(),
        body: parsed,
    });
    // Bulk-overwrite answers a list of commands; a webhook edit a message (unread).
    if method == Method::PUT {
        Json(json!([]))
    } else {
        Json(json!({}))
    }
}

/// A fresh database for the bot, migrated.
pub async fn bot_database() -> PgPool {
    let cluster = ferrodactyl_tests::cluster_url();
    let admin = bot::db::connect_url(&cluster, 1).await.unwrap();
    let name = format!("bot_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = match cluster.rfind('/') {
        Some(i) => format!("{}/{name}", &cluster[..i]),
        None => cluster,
    };
    let pool = bot::db::connect_url(&url, 4).await.unwrap();
    bot::db::migrate(&pool).await.unwrap();
    pool
}

pub struct TestBot {
    pub bot: Arc<Bot>,
    pub url: String,
    pub db: PgPool,
    pub discord: Discord,
    pub discord_url: String,
    pub signer: SigningKey,
    pub http: reqwest::Client,
    next: AtomicU64,
}

pub fn signer() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

impl TestBot {
    pub async fn start() -> TestBot {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestBot {
        let (discord, discord_url) = Discord::start().await;
        let signer = signer();
        let mut cfg = Config::for_tests(
            Vault::generate_key(),
            discord_url.clone(),
            hex::encode(signer.verifying_key().to_bytes()),
        );
        tweak(&mut cfg);
        let db = bot_database().await;
        let bot = Arc::new(Bot::new(cfg, db.clone()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/interactions", listener.local_addr().unwrap());
        let b = bot.clone();
        tokio::spawn(async move {
            let _ = bot::interactions::serve(b, listener, std::future::pending()).await;
        });
        TestBot {
            bot,
            url,
            db,
            discord,
            discord_url,
            signer,
            http: reqwest::Client::new(),
            next: AtomicU64::new(1),
        }
    }

    fn id(&self) -> u64 {
        9_000_000_000_000_000 + self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Posts `body` signed with the test key; returns (status, JSON body).
    pub async fn post_signed(&self, body: &Value) -> (u16, Value) {
        let raw = serde_json::to_vec(body).unwrap();
        let ts = chrono::Utc::now().timestamp().to_string();
        let mut msg = ts.as_bytes().to_vec();
        msg.extend_from_slice(&raw);
        let sig = self.signer.sign(&msg);
        let r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-signature-ed25519", hex::encode(sig.to_bytes()))
            .header("x-signature-timestamp", ts)
            .body(raw)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// An interaction of `kind` (2 = command, 3 = component, 4 = autocomplete) by
    /// `user` in the test guild with Discord permission bits `perms` and `roles`.
    pub fn interaction(&self, kind: u8, user: &Actor, data: Value) -> Value {
        let id = self.id();
        json!({
            "id": id.to_string(),
            "application_id": APP_ID,
            "type": kind,
            "token": format!("token-{id}"),
            "version": 1,
            "data": data,
            "guild_id": GUILD.to_string(),
            "channel_id": "6000000000000000001",
            "member": {
                "user": {"id": user.id.to_string(), "username": user.name, "discriminator": "0", "global_name": null, "avatar": null},
                "roles": user.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "joined_at": "2025-01-01T00:00:00.000000+00:00",
                "deaf": false, "mute": false, "flags": 0, "pending": false,
                "permissions": user.perms.to_string(),
            },
            "app_permissions": "0",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0,
            "attachment_size_limit": 8388608
        })
    }

    /// Runs `/name sub options…` and returns the whole interaction response.
    pub async fn cmd(
        &self,
        user: &Actor,
        name: &str,
        sub: Option<&str>,
        options: Vec<Value>,
    ) -> Value {
        let options = match sub {
            Some(s) => vec![json!({"name": s, "type": 1, "options": options})],
            None => options,
        };
        let data =
            json!({"id": "7000000000000000001", "name": name, "type": 1, "options": options});
        let (status, body) = self.post_signed(&self.interaction(2, user, data)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The audit rows, oldest first: (user, command, target, result, detail).
    pub async fn audit(&self) -> Vec<(i64, String, Option<String>, String, Option<String>)> {
        sqlx::query_as(
            "SELECT discord_user_id, command, target, result, detail FROM audit_logs ORDER BY id",
        )
        .fetch_all(&self.db)
        .await
        .unwrap()
    }

    pub async fn last_audit(&self) -> (i64, String, Option<String>, String, Option<String>) {
        self.audit().await.pop().expect("an audit row")
    }

    /// Every text value stored in the bot's tables, one string.
    pub async fn all_stored_text(&self) -> String {
        let mut out = String::new();
        for t in [
            "guild_configs",
            "user_configs",
            "server_configs",
            "audit_logs",
        ] {
            let rows: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT row_to_json(t)::text FROM {t} t"))
                    .fetch_all(&self.db)
                    .await
                    .unwrap();
            for r in rows {
                out.push_str(&r.0);
                out.push('\n');
            }
        }
        out
    }
}

/// A Discord user in the test guild.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: u64,
    pub name: String,
    pub perms: u64,
    pub roles: Vec<u64>,
}

pub fn discord_admin() -> Actor {
    Actor {
        id: 1_100_000_000_000_001,
        name: "owner".into(),
        perms: ADMINISTRATOR,
        roles: vec![],
    }
}
pub fn member(n: u64) -> Actor {
    Actor {
        id: 1_200_000_000_000_000 + n,
        name: format!("member{n}"),
        perms: 0,
        roles: vec![],
    }
}

pub fn so(name: &str, v: &str) -> Value {
    json!({"name": name, "type": 3, "value": v})
}
pub fn io(name: &str, v: i64) -> Value {
    json!({"name": name, "type": 4, "value": v})
}
pub fn bo(name: &str, v: bool) -> Value {
    json!({"name": name, "type": 5, "value": v})
}
pub fn uo(name: &str, id: u64) -> Value {
    json!({"name": name, "type": 6, "value": id.to_string()})
}
pub fn ro(name: &str, id: u64) -> Value {
    json!({"name": name, "type": 8, "value": id.to_string()})
}

/// The reply's text: content plus embed titles, descriptions and fields.
pub fn text(resp: &Value) -> String {
    let d = &resp["data"];
    let mut out = d["content"].as_str().unwrap_or_default().to_string();
    for e in d["embeds"].as_array().cloned().unwrap_or_default() {
        for k in ["title", "description"] {
            if let Some(t) = e[k].as_str() {
                out.push('\n');
                out.push_str(t);
            }
        }
        for f in e["fields"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "\n{}: {}",
                f["name"].as_str().unwrap_or_default(),
                f["value"].as_str().unwrap_or_default()
            ));
        }
        if let Some(t) = e["footer"]["text"].as_str() {
            out.push('\n');
            out.push_str(t);
        }
    }
    out
}

pub fn is_ephemeral(resp: &Value) -> bool {
    resp["data"]["flags"].as_u64().unwrap_or(0) & 64 != 0
}

/// `/config setup` for `who` against `panel_url` with `key` (and `app_key`).
pub async fn configure(
    t: &TestBot,
    who: &Actor,
    panel_url: &str,
    key: &str,
    app_key: Option<&str>,
) -> Value {
    let mut opts = vec![so("panel_url", panel_url), so("api_key", key)];
    if let Some(k) = app_key {
        opts.push(so("application_key", k));
    }
    t.cmd(who, "config", Some("setup"), opts).await
}

/// A client key (`ptlc_…`) for an existing panel user: upstream refuses application
/// keys on the Client API (403), so `/config setup`'s `api_key` is always one of these.
pub async fn client_key(p: &ferrodactyl_tests::Panel, user_id: i64) -> String {
    panel_api::apikeys::create(&p.db, user_id, 1, "bot", &[])
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .token()
}
