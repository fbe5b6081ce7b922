//! The `wings` binary: `configure` against a panel, `diagnostics` redaction, and the
//! daemon surviving SIGKILL: restarted, it re-attaches to the running container
//! without restarting it and keeps the console log.

mod common;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_wings");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_daemon(config: &std::path::Path) -> Daemon {
    // The daemon's log goes next to its config so failures can be diagnosed.
    let log = std::fs::File::create(config.with_extension("log")).expect("log file");
    Daemon(
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wings"),
    )
}

async fn wait_http(url: &str, token: &str) -> bool {
    let c = reqwest::Client::new();
    for _ in 0..150 {
        if let Ok(r) = c.get(url).bearer_auth(token).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_fetches_the_node_configuration_and_writes_config_yml() {
    // Stand-in for the panel's Application API node configuration endpoint.
    let app = Router::new().route(
        "/api/application/nodes/7/configuration",
        get(|h: HeaderMap| async move {
            let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer ptla_key")
                && h.get("accept").and_then(|v| v.to_str().ok()) == Some("application/vnd.pterodactyl.v1+json");
            if !ok {
                return (axum::http::StatusCode::FORBIDDEN, Json(json!({"errors": []})));
            }
            (
                axum::http::StatusCode::OK,
                Json(json!({"debug": false, "uuid": "node-uuid", "token_id": "abcdefghijklmnop", "token": "t".repeat(64),
                    "api": {"host": "0.0.0.0", "port": 8443, "ssl": {"enabled": true, "cert": "/etc/letsencrypt/live/n/fullchain.pem", "key": "/etc/letsencrypt/live/n/privkey.pem"}, "upload_limit": 100},
                    "system": {"data": "/var/lib/pterodactyl/volumes", "sftp": {"bind_port": 2022}},
                    "allowed_mounts": ["/ignored"], "remote": "https://panel.example.com"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let run = |token: &str| {
        let (path, token) = (path.clone(), token.to_string());
        let url = format!("http://{addr}");
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args([
                    "configure",
                    "--panel-url",
                    &url,
                    "--token",
                    &token,
                    "--node",
                    "7",
                    "--config",
                ])
                .arg(&path)
                .output()
                .unwrap()
        })
    };
    let out = run("wrong").await.unwrap();
    assert!(!out.status.success());
    assert!(!path.exists());
    let out = run("ptla_key").await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = wings::config::Config::load(&path).unwrap();
    assert_eq!(cfg.uuid, "node-uuid");
    assert_eq!(cfg.token, "t".repeat(64));
    assert_eq!(cfg.api.port, 8443);
    assert!(cfg.api.ssl.enabled);
    assert_eq!(
        cfg.api.ssl.key, "/etc/letsencrypt/live/n/privkey.pem",
        "configure keeps the panel's paths"
    );
    assert_eq!(cfg.remote, "https://panel.example.com");
    assert!(
        cfg.allowed_mounts.is_empty(),
        "allowed_mounts is not taken from the panel"
    );
    assert_eq!(
        cfg.docker.network.name, "pterodactyl_nw",
        "defaults materialised"
    );
    // A second configure refuses to overwrite without --override.
    let out = run("ptla_key").await.unwrap();
    assert!(!out.status.success());

    // diagnostics never prints the token.
    let out = Command::new(BIN)
        .args(["diagnostics", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("{redacted}"));
    assert!(!text.contains(&"t".repeat(64)));
    assert!(text.contains("Docker"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_daemon_reattaches_without_restarting_or_losing_logs() {
    ensure_image();
    let test = "cli-sigkill";
    let cfg = server_config(
        test,
        r#"sh -c 'echo Done; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1; done'"#,
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let token = random_token();
    let panel = FakePanel::start(TOKEN_ID, &token).await;
    panel.add_server(cfg);
    let dir = tempfile::tempdir().unwrap();
    let mut node_cfg = node_config(dir.path(), &panel.url, &token);
    let port = free_port();
    node_cfg.api.port = port;
    let path = dir.path().join("config.yml");
    node_cfg.save(&path).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _guard = LabelGuard(test.to_string());

    let mut daemon = spawn_daemon(&path);
    assert!(
        wait_http(&format!("{base}/api/system"), &token).await,
        "daemon serves"
    );
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/api/servers/{uuid}/power"))
        .bearer_auth(&token)
        .json(&json!({"action": "start"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut running = false;
    for _ in 0..100 {
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
    assert!(running);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = docker_started_at(&uuid);

    // SIGKILL the daemon (Child::kill sends SIGKILL) and start it again.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    drop(daemon);
    let _daemon = spawn_daemon(&path);
    assert!(
        wait_http(&format!("{base}/api/system"), &token).await,
        "daemon serves again"
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
    // The console still flows to websocket clients after re-attaching.
    let mut ws = Ws::connect(&format!("{base}/api/servers/{uuid}/ws"), Some(&panel.url))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.send("auth", json!([mint(&token, &uuid, &["*"], 1, 600, "j")]))
        .await;
    ws.wait_for(Duration::from_secs(10), |e, a| {
        e == "console output" && a[0].starts_with("tick ")
    })
    .await
    .expect("live console after re-attach");
}

struct LabelGuard(String);

impl Drop for LabelGuard {
    fn drop(&mut self) {
        remove_labelled_sync(&self.0);
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
async fn api_ssl_serves_https_with_the_configured_certificate() {
    let token = random_token();
    let panel = FakePanel::start(TOKEN_ID, &token).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = node_config(dir.path(), &panel.url, &token);
    let port = free_port();
    cfg.api.port = port;
    cfg.api.ssl.enabled = true;
    cfg.api.ssl.cert = cert.to_string_lossy().into();
    cfg.api.ssl.key = key.to_string_lossy().into();
    let path = dir.path().join("config.yml");
    cfg.save(&path).unwrap();
    let _daemon = spawn_daemon(&path);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let mut ok = false;
    for _ in 0..150 {
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
    assert!(
        ok,
        "https endpoint never answered: {}",
        std::fs::read_to_string(path.with_extension("log")).unwrap_or_default()
    );
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/api/system"))
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true));
}
