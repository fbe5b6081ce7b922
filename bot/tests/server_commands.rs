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
    wings: std::sync::Arc<wings::App>,
    _container: Container,
    _dir: tempfile::TempDir,
}

/// The server's container outlives the in-process wings; it goes with the test.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

async fn stack() -> Stack {
    // wings' and panel-api's logs show up when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,wings=info".into()),
        )
        .with_test_writer()
        .try_init();
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
    tokio::spawn(wings::serve(app.clone(), listener));

    // A port of our own: the harness's 30000-30009 are shared with every other
    // daemon test running at the same time on this Docker engine.
    let game_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = p
        .send(
            reqwest::Method::POST,
            &format!("/api/application/nodes/{node}/allocations"),
            &admin.key,
            &json!({"ip": "127.0.0.1", "ports": [game_port.to_string()]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let alloc: i64 =
        sqlx::query_scalar("SELECT id FROM allocations WHERE node_id = $1 AND port = $2")
            .bind(node)
            .bind(i32::from(game_port))
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
    let container = Container(uuid.clone());
    let identifier = r.json["attributes"]["identifier"]
        .as_str()
        .unwrap()
        .to_string();
    // Installed on both sides. The panel's status alone is not enough: wings clears
    // every `installing` status on the panel in a background task after it boots
    // (upstream does that before serving), which can land while this install runs.
    let installed = eventually(Duration::from_secs(90), || async {
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
            .bind(id)
            .fetch_one(&p.db)
            .await
            .unwrap();
        st.is_none()
            && app.manager.get(&uuid).is_some_and(|s| !s.is_installing())
            && root.join("volumes").join(&uuid).join("start.sh").exists()
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
        wings: app,
        _container: container,
        _dir: dir,
    }
}

/// The properties of the panel's activity entries of `event`, oldest first.
async fn panel_events(s: &Stack, event: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar("SELECT properties FROM activity_logs WHERE event = $1 ORDER BY id")
        .bind(event)
        .fetch_all(&s.p.db)
        .await
        .unwrap()
}

/// A click on a power button of `/server info`.
fn button(s: &Stack, signal: &str) -> serde_json::Value {
    let mut body = s.t.interaction(
        3,
        &s.who,
        json!({"custom_id": format!("power:{signal}:{}", s.identifier), "component_type": 2}),
    );
    body["message"] = json!({
        "id": "8000000000000000001", "channel_id": "6000000000000000001",
        "author": {"id": APP_ID, "username": "bot", "discriminator": "0", "global_name": null, "avatar": null, "bot": true},
        "content": "", "timestamp": "2025-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []
    });
    body
}

async fn raw_resources(s: &Stack) -> String {
    let path = format!("/api/client/servers/{}/resources", s.identifier);
    let panel = match s.p.get(&path, &s.owner.key).await {
        Ok(r) => format!("{} {}", r.status, r.text()),
        Err(e) => format!("{e:#}"),
    };
    format!("wings: {}; panel: {panel}", state(s).await)
}

/// The server's state as wings has it (the panel's `/resources` is cached for 20 s,
/// as upstream's is, so it lags behind).
async fn state(s: &Stack) -> String {
    s.wings
        .manager
        .get(&s.uuid)
        .map(|x| x.state().as_str().to_string())
        .unwrap_or_default()
}

/// When Docker last started the server's container.
fn started_at(s: &Stack) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.StartedAt}}", &s.uuid])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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
        "running: {}",
        raw_resources(&s).await
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
    assert_eq!(
        panel_events(&s, "server:console.command").await,
        vec![json!({"command": "ping"})],
        "the panel sent the command to the server"
    );
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        ("server command", Some(s.identifier.as_str()), "success")
    );

    let first_start = started_at(&s);
    let r = t
        .cmd(
            &s.who,
            "server",
            Some("restart"),
            vec![so("server", &s.identifier)],
        )
        .await;
    assert!(text(&r).contains("Restarting **botsrv**"), "{r}");
    assert_eq!(panel_events(&s, "server:power.restart").await.len(), 1);
    assert_eq!(t.last_audit().await.1, "server restart");
    assert!(
        eventually(Duration::from_secs(60), || async {
            started_at(&s) != first_start && state(&s).await == "running"
        })
        .await,
        "running again after the restart: {}",
        raw_resources(&s).await
    );

    let r = t
        .cmd(
            &s.who,
            "server",
            Some("kill"),
            vec![so("server", &s.identifier)],
        )
        .await;
    assert!(text(&r).contains("Killing **botsrv**"), "{r}");
    assert_eq!(panel_events(&s, "server:power.kill").await.len(), 1);
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        ("server kill", Some(s.identifier.as_str()), "success")
    );
    assert!(
        eventually(Duration::from_secs(60), || async {
            state(&s).await == "offline"
        })
        .await,
        "killed: {}",
        raw_resources(&s).await
    );

    // The Start and Stop buttons of /server info.
    let (_, r) = t.post_signed(&button(&s, "start")).await;
    assert!(text(&r).contains("Starting **botsrv**"), "{r}");
    assert!(
        eventually(Duration::from_secs(60), || async {
            state(&s).await == "running"
        })
        .await,
        "started by the button: {}",
        raw_resources(&s).await
    );
    let (_, r) = t.post_signed(&button(&s, "stop")).await;
    assert!(text(&r).contains("Stopping **botsrv**"), "{r}");
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        ("server stop", Some(s.identifier.as_str()), "success")
    );
    assert!(
        eventually(Duration::from_secs(60), || async {
            state(&s).await == "offline"
        })
        .await,
        "stopped: {}",
        raw_resources(&s).await
    );
    assert_eq!(panel_events(&s, "server:power.start").await.len(), 2);
    assert_eq!(panel_events(&s, "server:power.stop").await.len(), 1);

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
    assert!(
        panel_events(&s, "server:power.start").await.is_empty(),
        "the panel was never asked"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(state(&s).await, "running");
}

#[tokio::test]
async fn a_subuser_without_the_power_permission_is_told_which_one_is_missing() {
    let s = stack().await;
    let t = &s.t;
    // A subuser who may only read the console: the panel answers 403 on power.
    let sub = s.p.account("helper", false, 1).await.unwrap();
    let server_id: i64 = sqlx::query_scalar("SELECT id FROM servers WHERE uuid::text = $1")
        .bind(&s.uuid)
        .fetch_one(&s.p.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, '[\"websocket.connect\"]')",
    )
    .bind(sub.id)
    .bind(server_id)
    .execute(&s.p.db)
    .await
    .unwrap();
    let helper = member(2);
    let r = configure(t, &helper, &s.p.url, &sub.key, None).await;
    assert!(text(&r).contains("Signed in as **helper**"), "{r}");

    // The server is theirs to see ...
    let r = t.cmd(&helper, "server", Some("list"), vec![]).await;
    assert!(text(&r).contains("**botsrv**"), "{r}");
    // ... but not to start or to command.
    for (sub_cmd, perm) in [("start", "control.start"), ("command", "control.console")] {
        let r = t
            .cmd(
                &helper,
                "server",
                Some(sub_cmd),
                vec![so("server", &s.identifier), so("command", "say hi")],
            )
            .await;
        let out = text(&r);
        assert!(
            out.contains("403") && out.contains(perm),
            "{sub_cmd}: {out}"
        );
        assert!(is_ephemeral(&r));
        let a = t.last_audit().await;
        assert_eq!(
            (a.3.as_str(), a.4.as_deref()),
            ("error", Some("panel 403")),
            "{sub_cmd}"
        );
    }
    assert!(panel_events(&s, "server:power.start").await.is_empty());
    assert_ne!(state(&s).await, "running");
}
