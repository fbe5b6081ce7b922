//! The `wings` binary against a real panel-api: `configure` fetches the node's
//! configuration from the Application API and writes `config.yml`,
//! `diagnostics` redacts the token, the daemon surviving SIGKILL (restarted, it
//! re-attaches to the running container without restarting it and keeps the
//! console log), and `api.ssl` serving HTTPS.

mod wings_stack;

use ferrodactyl_tests::{Account, Panel};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use wings_stack::ws::Ws;
use wings_stack::{apply_egg, remove_containers, seed, Egg, Spec};

/// The real `wings` binary. A package's integration tests only get `CARGO_BIN_EXE_*`
/// for their own binaries, so this takes the one the workspace test build leaves in
/// `target/<profile>/` (wings' own `tests/binary.rs` makes cargo build it).
fn wings_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<this test>
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().and_then(Path::parent).unwrap().join("wings");
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build -p wings` (the workspace test run builds it)",
            bin.display()
        );
        bin
    })
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_daemon(config: &Path) -> Daemon {
    // The daemon's log goes next to its config so failures can be diagnosed.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_extension("log"))
        .expect("log file");
    Daemon(
        Command::new(wings_bin())
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wings"),
    )
}

fn daemon_log(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
}

async fn wait_http(url: &str, token: &str) -> bool {
    let c = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = c.get(url).bearer_auth(token).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `wings configure --panel-url … --token … --node …` (plus `extra`), off the
/// async runtime.
async fn configure(
    panel: &str,
    token: &str,
    node: i64,
    path: &Path,
    extra: &[&str],
) -> std::process::Output {
    let (panel, token, path) = (panel.to_string(), token.to_string(), path.to_path_buf());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(wings_bin())
            .args(["configure", "--panel-url", &panel, "--token", &token])
            .args(["--node", &node.to_string(), "--config"])
            .arg(&path)
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// A panel with an admin and a node whose daemon listens on a free loopback port
/// (SFTP too): (panel, admin, node id, daemon port).
async fn panel_and_node() -> (Panel, Account, i64, u16) {
    let p = Panel::start().await.expect("panel-api starts");
    let admin = p.admin().await.unwrap();
    let port = ferrodactyl_tests::closed_port();
    let (_, node) = p.node(&admin, port).await.unwrap();
    sqlx::query("UPDATE nodes SET daemon_sftp = $1 WHERE id = $2")
        .bind(ferrodactyl_tests::closed_port() as i32)
        .bind(node)
        .execute(&p.db)
        .await
        .unwrap();
    (p, admin, node, port)
}

/// Configures a node as in production (`wings configure`), then moves its
/// directories into `dir` and binds to loopback. Returns the config path.
async fn configured(p: &Panel, admin: &Account, node: i64, dir: &Path) -> PathBuf {
    let path = dir.join("config.yml");
    let out = configure(&p.url, &admin.key, node, &path, &[]).await;
    assert!(
        out.status.success(),
        "wings configure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = wings::config::Config::load(&path).unwrap();
    wings_stack::local_paths(&mut cfg, dir);
    cfg.api.host = "127.0.0.1".into();
    cfg.system.sftp.bind_address = "127.0.0.1".into();
    cfg.save(&path).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_fetches_the_node_configuration_and_writes_config_yml() {
    let p = Panel::start().await.expect("panel-api starts");
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, 8443).await.unwrap();
    // An HTTPS node with a mount: the panel sends Let's Encrypt paths and the mount.
    sqlx::query("UPDATE nodes SET scheme = 'https', fqdn = 'Node1.Example.com' WHERE id = $1")
        .bind(node)
        .execute(&p.db)
        .await
        .unwrap();
    let mount: i64 = sqlx::query_scalar(
        "INSERT INTO mounts (uuid, name, source, target) VALUES ($1, 'shared', '/srv/shared', '/shared') RETURNING id",
    )
    .bind(uuid::Uuid::new_v4())
    .fetch_one(&p.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO mount_node (node_id, mount_id) VALUES ($1, $2)")
        .bind(node)
        .bind(mount)
        .execute(&p.db)
        .await
        .unwrap();
    let conf = p
        .get(
            &format!("/api/application/nodes/{node}/configuration"),
            &admin.key,
        )
        .await
        .unwrap()
        .json;
    assert_eq!(conf["allowed_mounts"], json!(["/srv/shared"]), "{conf}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let out = configure(
        &p.url,
        "ptla_wrongwrongwrongwrongwrongwrongwrongwrongwrong",
        node,
        &path,
        &[],
    )
    .await;
    assert!(!out.status.success(), "a wrong key is refused");
    assert!(!path.exists());
    let out = configure(&p.url, &admin.key, node + 1000, &path, &[]).await;
    assert!(!out.status.success(), "an unknown node is refused");
    assert!(!path.exists());
    let out = configure(&p.url, &admin.key, node, &path, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = wings::config::Config::load(&path).unwrap();
    let (uuid, token_id): (uuid::Uuid, String) =
        sqlx::query_as("SELECT uuid, daemon_token_id FROM nodes WHERE id = $1")
            .bind(node)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!(cfg.uuid, uuid.to_string());
    assert_eq!(cfg.token_id, token_id);
    assert_eq!(cfg.token, conf["token"].as_str().unwrap());
    assert_eq!(cfg.token.len(), 64);
    assert_eq!(cfg.api.port, 8443);
    assert!(cfg.api.ssl.enabled, "https node");
    assert_eq!(
        cfg.api.ssl.key, "/etc/letsencrypt/live/node1.example.com/privkey.pem",
        "configure keeps the panel's paths"
    );
    assert_eq!(
        cfg.api.ssl.cert,
        "/etc/letsencrypt/live/node1.example.com/fullchain.pem"
    );
    assert_eq!(cfg.remote, p.url);
    assert_eq!(cfg.system.sftp.bind_port, 2022);
    assert!(
        cfg.allowed_mounts.is_empty(),
        "allowed_mounts is not taken from the panel"
    );
    assert_eq!(
        cfg.docker.network.name, "pterodactyl_nw",
        "defaults materialised"
    );
    // A second configure refuses to overwrite without --override.
    let before = std::fs::read(&path).unwrap();
    let out = configure(&p.url, &admin.key, node, &path, &[]).await;
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    sqlx::query("UPDATE nodes SET daemon_listen = 8444 WHERE id = $1")
        .bind(node)
        .execute(&p.db)
        .await
        .unwrap();
    let out = configure(&p.url, &admin.key, node, &path, &["--override"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wings::config::Config::load(&path).unwrap().api.port, 8444);

    // diagnostics never prints the token.
    let out = Command::new(wings_bin())
        .args(["diagnostics", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("{redacted}"));
    assert!(!text.contains(&cfg.token));
    assert!(text.contains("Docker"));
}

/// Removes the containers of `uuids` when dropped (after the daemon guard, which
/// is declared later, has stopped the daemon).
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        remove_containers(self.0.clone());
    }
}

fn docker_started_at(name: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.StartedAt}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_daemon_reattaches_without_restarting_or_losing_logs() {
    wings_stack::ensure_image();
    let (p, admin, node, port) = panel_and_node().await;
    let (_, egg) = p.egg().await.unwrap();
    apply_egg(
        &p,
        egg,
        &Egg {
            done: vec!["regex:^Done$".into()],
            stop: Some("^SIGKILL".into()),
            ..Default::default()
        },
    )
    .await;
    let srv = seed(
        &p,
        admin.id,
        node,
        egg,
        &Spec::new(
            "cli-sigkill",
            r#"sh -c 'echo Done; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1; done'"#,
        ),
    )
    .await;
    let uuid = srv.uuid.clone();
    let _containers = Containers(vec![uuid.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let path = configured(&p, &admin, node, dir.path()).await;
    let token = wings::config::Config::load(&path).unwrap().token;
    let base = format!("http://127.0.0.1:{port}");

    let mut daemon = spawn_daemon(&path);
    assert!(
        wait_http(&format!("{base}/api/system"), &token).await,
        "daemon serves: {}",
        daemon_log(&path)
    );
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/api/servers/{uuid}/power"))
        .bearer_auth(&token)
        .json(&json!({"action": "start"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the server came from the panel");
    let mut running = false;
    for _ in 0..150 {
        let v: Value = c
            .get(format!("{base}/api/servers/{uuid}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "running" {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(running, "{}", daemon_log(&path));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = docker_started_at(&uuid);
    assert!(!started.is_empty());

    // SIGKILL the daemon (Child::kill sends SIGKILL) and start it again.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    drop(daemon);
    let _daemon = spawn_daemon(&path);
    assert!(
        wait_http(&format!("{base}/api/system"), &token).await,
        "daemon serves again: {}",
        daemon_log(&path)
    );
    let v: Value = c
        .get(format!("{base}/api/servers/{uuid}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "running", "re-attached");
    assert_eq!(docker_started_at(&uuid), started, "container not restarted");
    let v: Value = c
        .get(format!("{base}/api/servers/{uuid}/logs?size=100"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lines: Vec<String> = serde_json::from_value(v["data"].clone()).unwrap();
    assert!(
        lines.iter().any(|l| l == "Done"),
        "log from before the kill kept: {lines:?}"
    );
    assert!(lines.iter().any(|l| l == "tick 1"));
    // The console still flows to websocket clients after re-attaching, with the
    // token the panel mints (for a client key) for the socket it names.
    let root = p.account("root", true, 1).await.unwrap();
    let r = p
        .get(
            &format!("/api/client/servers/{}/websocket", srv.short),
            &root.key,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let socket = r.json["data"]["socket"].as_str().unwrap();
    assert_eq!(
        socket,
        format!("ws://127.0.0.1:{port}/api/servers/{uuid}/ws")
    );
    let mut ws = Ws::connect(socket, Some(&p.url)).await.unwrap();
    ws.send("auth", json!([r.json["data"]["token"]])).await;
    ws.wait_for(Duration::from_secs(10), |e, a| {
        e == "console output" && a[0].starts_with("tick ")
    })
    .await
    .expect("live console after re-attach");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_ssl_serves_https_with_the_configured_certificate() {
    let (p, admin, node, port) = panel_and_node().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ferrodactyl_tests::self_signed_cert(dir.path());
    let path = configured(&p, &admin, node, dir.path()).await;
    let mut cfg = wings::config::Config::load(&path).unwrap();
    cfg.api.ssl.enabled = true;
    cfg.api.ssl.cert = cert.to_string_lossy().into();
    cfg.api.ssl.key = key.to_string_lossy().into();
    cfg.save(&path).unwrap();
    let token = cfg.token.clone();
    let _daemon = spawn_daemon(&path);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let mut ok = false;
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("https://127.0.0.1:{port}/api/system"))
            .bearer_auth(&token)
            .send()
            .await
        {
            assert_eq!(r.status(), 200);
            assert!(r.headers().contains_key("x-request-id"));
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "https endpoint never answered: {}", daemon_log(&path));
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/api/system"))
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true));
}
