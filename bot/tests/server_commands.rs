//! `/server …` end to end: the bot's interactions endpoint → panel-api's Client API →
//! a real wings on the real Docker engine (image `ferrodactyl/test-base`, built by
//! scripts/test-image.sh).

mod common;

use common::*;
use ferrodactyl_tests::Panel;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// panel-api + wings (Docker) + one installed server owned by a non-admin with a
/// client key, and the bot configured with that key.
struct Stack {
    p: Panel,
    t: TestBot,
    who: Actor,
    owner: ferrodactyl_tests::Account,
    identifier: String,
    uuid: String,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .output()
        .expect("run scripts/test-image.sh");
    assert!(
        out.status.success(),
        "scripts/test-image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let owner = p.account("owner", false, 1).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_, node) = p.node(&admin, port).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let conf = p
        .get(
            &format!("/api/application/nodes/{node}/configuration"),
            &admin.key,
        )
        .await
        .unwrap()
        .json;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = wings::config::Config {
        uuid: conf["uuid"].as_str().unwrap().into(),
        token_id: conf["token_id"].as_str().unwrap().into(),
        token: conf["token"].as_str().unwrap().into(),
        remote: conf["remote"].as_str().unwrap().into(),
        ..Default::default()
    };
    cfg.api.host = "127.0.0.1".into();
    cfg.api.port = port;
    let root = dir.path().join("root");
    cfg.system.root_directory = root.to_string_lossy().into();
    cfg.system.data = root.join("volumes").to_string_lossy().into();
    cfg.system.archive_directory = root.join("archives").to_string_lossy().into();
    cfg.system.backup_directory = root.join("backups").to_string_lossy().into();
    cfg.system.log_directory = dir.path().join("log").to_string_lossy().into();
    cfg.system.tmp_directory = dir.path().join("tmp").to_string_lossy().into();
    cfg.system.username = "nobody".into();
    let app = wings::boot(cfg, wings::BootOptions::new(dir.path().join("config.yml")))
        .await
        .expect("wings boots");
    tokio::spawn(wings::serve(app, listener));

    let alloc: i64 =
        sqlx::query_scalar("SELECT id FROM allocations WHERE node_id = $1 ORDER BY id LIMIT 1")
            .bind(node)
            .fetch_one(&p.db)
            .await
            .unwrap();
    let body = json!({
        "name": "botsrv", "user": owner.id, "egg": egg, "docker_image": "ferrodactyl/test-base:latest",
        "startup": "sh ./start.sh", "environment": {"SERVER_MESSAGE": "hello bot"},
        "limits": {"memory": 128, "swap": 0, "disk": 512, "io": 500, "cpu": 50},
        "feature_limits": {"databases": 0, "backups": 0}, "allocation": {"default": alloc}
    });
    let r = p
        .send(
            reqwest::Method::POST,
            "/api/application/servers",
            &admin.key,
            &body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json["attributes"]["id"].as_i64().unwrap();
    let uuid = r.json["attributes"]["uuid"].as_str().unwrap().to_string();
    let identifier = r.json["attributes"]["identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let installed = eventually(Duration::from_secs(90), || async {
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
            .bind(id)
            .fetch_one(&p.db)
            .await
            .unwrap();
        st.is_none()
    })
    .await;
    assert!(installed, "installed");

    let t = TestBot::start().await;
    let who = member(1);
    let r = configure(&t, &who, &p.url, &owner.key, None).await;
    assert!(text(&r).contains("Signed in as **owner**"), "{r}");
    Stack {
        p,
        t,
        who,
        owner,
        identifier,
        uuid,
        _dir: dir,
    }
}

async fn state(s: &Stack) -> String {
    s.p.client(&s.owner.key)
        .resources(&s.identifier)
        .await
        .map(|r| r.attributes.current_state)
        .unwrap_or_default()
}

#[tokio::test]
async fn server_list_info_power_and_command_through_the_client_api() {
    let s = stack().await;
    let t = &s.t;

    let r = t.cmd(&s.who, "server", Some("list"), vec![]).await;
    let out = text(&r);
    assert!(
        out.contains("**botsrv**") && out.contains(&s.identifier),
        "{out}"
    );
    assert!(!is_ephemeral(&r));
    assert_eq!(t.last_audit().await.3, "success");

    // Autocomplete offers the user's servers.
    let data = json!({"id": "7000000000000000001", "name": "server", "type": 1, "options": [
        {"name": "info", "type": 1, "options": [{"name": "server", "type": 3, "value": "bot", "focused": true}]}]});
    let (status, ac) = t.post_signed(&t.interaction(4, &s.who, data)).await;
    assert_eq!(status, 200);
    assert_eq!(ac["type"], 8, "{ac}");
    assert_eq!(
        ac["data"]["choices"][0]["value"],
        s.identifier.as_str(),
        "{ac}"
    );

    let r = t
        .cmd(
            &s.who,
            "server",
            Some("info"),
            vec![so("server", &s.identifier)],
        )
        .await;
    let out = text(&r);
    assert!(
        out.contains("State:") && out.contains("of 128 MiB") && out.contains("of 50%"),
        "{out}"
    );
    let buttons = &r["data"]["components"][0]["components"];
    assert_eq!(
        buttons[0]["custom_id"],
        format!("power:start:{}", s.identifier)
    );
    assert_eq!(buttons.as_array().unwrap().len(), 4);

    let r = t
        .cmd(
            &s.who,
            "server",
            Some("start"),
            vec![so("server", &s.identifier)],
        )
        .await;
    assert!(text(&r).contains("Starting **botsrv**"), "{r}");
    assert!(
        eventually(Duration::from_secs(60), || async {
            state(&s).await == "running"
        })
        .await,
        "running"
    );
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        ("server start", Some(s.identifier.as_str()), "success")
    );

    let r = t
        .cmd(
            &s.who,
            "server",
            Some("command"),
            vec![so("server", &s.identifier), so("command", "ping")],
        )
        .await;
    assert!(text(&r).contains("Sent to **botsrv**"), "{r}");

    // The Stop button of /server info.
    let mut body = t.interaction(
        3,
        &s.who,
        json!({"custom_id": format!("power:stop:{}", s.identifier), "component_type": 2}),
    );
    body["message"] = json!({
        "id": "8000000000000000001", "channel_id": "6000000000000000001",
        "author": {"id": APP_ID, "username": "bot", "discriminator": "0", "global_name": null, "avatar": null, "bot": true},
        "content": "", "timestamp": "2025-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []
    });
    let (_, r) = t.post_signed(&body).await;
    assert!(text(&r).contains("Stopping **botsrv**"), "{r}");
    assert!(
        eventually(Duration::from_secs(60), || async {
            state(&s).await == "offline"
        })
        .await,
        "stopped"
    );

    let r = t
        .cmd(
            &s.who,
            "server",
            Some("info"),
            vec![so("server", "zzzzzzzz")],
        )
        .await;
    assert!(text(&r).contains("Unknown server `zzzzzzzz`"), "{r}");
    let _ = &s.uuid;
}

#[tokio::test]
async fn max_servers_is_enforced_before_the_power_call() {
    let s = stack().await;
    let t = &s.t;
    t.cmd(
        &discord_admin(),
        "admin",
        Some("permissions"),
        vec![uo("user", s.who.id), io("max_servers", 0)],
    )
    .await;
    let r = t
        .cmd(
            &s.who,
            "server",
            Some("start"),
            vec![so("server", &s.identifier)],
        )
        .await;
    assert!(text(&r).contains("max_servers"), "{r}");
    assert_eq!(t.last_audit().await.3, "denied");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(state(&s).await, "running");
}
