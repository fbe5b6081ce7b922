//! The `bot` binary as an operator runs it: it refuses to start without
//! BOT_FERNET_KEY (and says how to make one), `gen-key` makes a usable key, and with
//! no DATABASE_URL it keeps its tables in the embedded PostgreSQL cluster under
//! BOT_DATA_DIR, which outlives a restart and stops with the bot. Discord is the
//! signed-request test double; nothing else is faked.

mod common;

use common::*;
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bot"));
    for v in [
        "BOT_FERNET_KEY",
        "DATABASE_URL",
        "DISCORD_TOKEN",
        "DISCORD_PUBLIC_KEY",
        "RUST_LOG",
    ] {
        c.env_remove(v);
    }
    c
}

#[test]
fn refuses_to_start_without_bot_fernet_key_and_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for key in [None, Some(""), Some("not-a-fernet-key")] {
        let mut c = bin();
        c.env("BOT_DATA_DIR", &data).env("BOT_MODE", "http").env(
            "DISCORD_PUBLIC_KEY",
            hex::encode(signer().verifying_key().to_bytes()),
        );
        if let Some(k) = key {
            c.env("BOT_FERNET_KEY", k);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key:?}: {err}");
        assert!(err.contains("BOT_FERNET_KEY"), "{key:?}: {err}");
        assert!(
            err.contains("bot gen-key"),
            "says how to make one: {key:?}: {err}"
        );
        assert!(
            !data.exists(),
            "refused before touching the data directory ({key:?})"
        );
    }
}

#[test]
fn gen_key_prints_a_fernet_key() {
    let out = bin().arg("gen-key").output().unwrap();
    assert!(out.status.success());
    let k = String::from_utf8(out.stdout).unwrap();
    let k = k.trim();
    assert_eq!(k.len(), 44, "{k}");
    assert!(bot::crypto::Vault::new(Some(k)).is_ok(), "{k}");
    let again = bin().arg("gen-key").output().unwrap().stdout;
    assert_ne!(String::from_utf8(again).unwrap().trim(), k, "random");
}

/// A bot process in HTTP mode on the embedded database.
struct Running {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(
    data: &Path,
    key: &str,
    discord: &str,
    log_name: &str,
    extra: &[(&str, String)],
) -> Running {
    let port = free_port();
    let log = data.parent().unwrap().join(log_name);
    let child = bin()
        .env("BOT_DATA_DIR", data)
        .env("BOT_FERNET_KEY", key)
        .env("BOT_MODE", "http")
        .env("BOT_LISTEN", format!("127.0.0.1:{port}"))
        .env("BOT_REGISTER_COMMANDS", "false")
        .env("DISCORD_API_BASE", discord)
        .env("DISCORD_APPLICATION_ID", APP_ID)
        .env(
            "DISCORD_PUBLIC_KEY",
            hex::encode(signer().verifying_key().to_bytes()),
        )
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut r = Running {
        child,
        url: format!("http://127.0.0.1:{port}/interactions"),
        log,
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return r;
        }
        if let Some(st) = r.child.try_wait().unwrap() {
            panic!(
                "bot exited with {st}: {}",
                std::fs::read_to_string(&r.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the bot did not listen: {}",
        std::fs::read_to_string(&r.log).unwrap_or_default()
    );
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut msg = ts.as_bytes().to_vec();
    msg.extend_from_slice(&raw);
    let sig = signer().sign(&msg);
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-signature-ed25519", hex::encode(sig.to_bytes()))
        .header("x-signature-timestamp", ts)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn command(user: &Actor, name: &str, sub: &str, options: Vec<Value>) -> Value {
    json!({
        "id": "9100000000000000001", "application_id": APP_ID, "type": 2,
        "token": "tok", "version": 1,
        "data": {"id": "7000000000000000001", "name": name, "type": 1,
                 "options": [{"name": sub, "type": 1, "options": options}]},
        "guild_id": GUILD.to_string(), "channel_id": "6000000000000000001",
        "member": {
            "user": {"id": user.id.to_string(), "username": user.name, "discriminator": "0", "global_name": null, "avatar": null},
            "roles": [], "joined_at": "2025-01-01T00:00:00.000000+00:00",
            "deaf": false, "mute": false, "flags": 0, "pending": false,
            "permissions": user.perms.to_string(),
        },
        "app_permissions": "0", "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {}, "context": 0, "attachment_size_limit": 8388608
    })
}

fn postgres_running_in(data: &Path) -> bool {
    let needle = data.join("postgres");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("postgres") && c.contains(needle.to_str().unwrap())
        })
}

#[tokio::test]
async fn without_database_url_it_uses_the_embedded_cluster_which_persists_and_stops_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = bot::crypto::Vault::generate_key();
    let (discord, discord_url) = Discord::start().await;
    // Registered in one guild at start-up, by configuration.
    let bot = start(
        &data,
        &key,
        &discord_url,
        "bot1.log",
        &[
            ("DISCORD_TOKEN", "test-token".into()),
            ("BOT_REGISTER_COMMANDS", "true".into()),
            ("BOT_COMMAND_GUILD_ID", GUILD.to_string()),
        ],
    )
    .await;
    let reg = discord
        .wait_for(|s| s.method == "PUT")
        .await
        .expect("commands registered at start-up");
    assert_eq!(
        reg.path,
        format!("/api/v10/applications/{APP_ID}/guilds/{GUILD}/commands")
    );
    assert_eq!(reg.body.as_array().map(Vec::len), Some(5));
    assert!(postgres_running_in(&data), "the embedded cluster runs");

    let (status, pong) = post(
        &bot.url,
        &json!({"id": "1", "application_id": APP_ID, "type": 1, "token": "t", "version": 1}),
    )
    .await;
    assert_eq!((status, pong), (200, json!({"type": 1})));

    // A secret given to the bot never reaches its log, even when the panel is down.
    let secret_key = "ptlc_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEt1";
    let panel = format!("http://127.0.0.1:{}/secret-path", free_port());
    let (_, r) = post(
        &bot.url,
        &command(
            &member(1),
            "config",
            "setup",
            vec![so("panel_url", &panel), so("api_key", secret_key)],
        ),
    )
    .await;
    assert!(text(&r).contains("Could not reach the panel"), "{r}");
    let (_, r) = post(
        &bot.url,
        &command(&discord_admin(), "admin", "status", vec![]),
    )
    .await;
    // The status counts the rows before its own: the /config setup above.
    assert!(text(&r).contains("Audit entries: 1"), "{r}");

    // Restarted on the same data directory, the rows are still there.
    let log = bot.log.clone();
    let mut bot = bot;
    terminate(bot.child.id());
    let st = bot.child.wait().unwrap();
    assert!(st.success(), "a clean stop on SIGTERM: {st}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.contains(secret_key) && !logged.contains("secret-path") && !logged.contains(&key),
        "{logged}"
    );
    let start_wait = Instant::now();
    while postgres_running_in(&data) && start_wait.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !postgres_running_in(&data),
        "the cluster stopped with the bot"
    );

    // Without a guild id, the second start registers the commands globally.
    let bot2 = start(
        &data,
        &key,
        &discord_url,
        "bot2.log",
        &[
            ("DISCORD_TOKEN", "test-token".into()),
            ("BOT_REGISTER_COMMANDS", "true".into()),
        ],
    )
    .await;
    let global = format!("/api/v10/applications/{APP_ID}/commands");
    assert!(
        discord
            .wait_for(|s| s.method == "PUT" && s.path == global)
            .await
            .is_some(),
        "global registration"
    );
    let (_, r) = post(
        &bot2.url,
        &command(&discord_admin(), "admin", "audit", vec![io("limit", 50)]),
    )
    .await;
    let out = text(&r);
    assert!(
        out.contains("/config setup")
            && out.contains("panel unreachable")
            && out.contains("/admin status"),
        "{out}"
    );
    drop(bot2);
}

fn terminate(pid: u32) {
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}
