//! A kill that lands while a restart is between its stop and its start wins: the
//! restart does not bring the server back. Runs on the real Docker engine with the
//! busybox test image (`scripts/test-image.sh`), booted against a minimal stand-in
//! for the Panel's Remote API whose server-configuration answer can be slowed down
//! (every start syncs with the Panel first, which holds the restart in its gap).

use super::*;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::AtomicU64;

const IMAGE: &str = "ferrodactyl/test-base";

fn ensure_image() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .output()
        .expect("could not run scripts/test-image.sh");
    assert!(
        out.status.success(),
        "scripts/test-image.sh failed (is Docker running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Removes the container whatever the test's outcome.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[allow(clippy::field_reassign_with_default)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_restart_stop_and_start_is_not_lost() {
    ensure_image();
    let uuid = uuid::Uuid::new_v4().to_string();
    let _cleanup = Cleanup(uuid.clone());
    let server_json = json!({
        "uuid": uuid,
        "settings": {
            "uuid": uuid,
            "meta": {"name": "kill", "description": ""},
            "suspended": false,
            "environment": {},
            "invocation": "sh -c 'echo Done; sleep 1000'",
            "skip_egg_scripts": false,
            "build": {"memory_limit": 128, "swap": 0, "io_weight": 500, "cpu_limit": 0, "threads": null, "disk_space": 0, "oom_disabled": true},
            "container": {"image": IMAGE, "oom_disabled": true, "requires_rebuild": false},
            "allocations": {"force_outgoing_ip": false, "default": {"ip": "127.0.0.1", "port": free_port()}, "mappings": {}},
            "mounts": [],
            "egg": {"id": "egg", "file_denylist": []},
            "labels": {"ferrodactyl.test": "wings-kill-restart"}
        },
        "process_configuration": {
            "startup": {"done": ["regex:^Done$"], "user_interaction": [], "strip_ansi": false},
            "stop": {"type": "signal", "value": "SIGKILL"},
            "configs": []
        }
    });
    let delay_ms = Arc::new(AtomicU64::new(0));
    let (list, one, delay) = (server_json.clone(), server_json.clone(), delay_ms.clone());
    let router = Router::new()
        .route(
            "/api/remote/servers",
            get(move || {
                let list = list.clone();
                async move {
                    Json(json!({
                        "data": [list],
                        "links": {},
                        "meta": {"current_page": 1, "from": 1, "last_page": 1, "per_page": 50, "to": 1, "total": 1}
                    }))
                }
            }),
        )
        .route(
            "/api/remote/servers/reset",
            post(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route(
            "/api/remote/activity",
            post(|| async { axum::http::StatusCode::OK }),
        )
        .route(
            "/api/remote/servers/{uuid}",
            get(move || {
                let (one, delay) = (one.clone(), delay.clone());
                async move {
                    let ms = delay.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Json(json!({
                        "settings": one["settings"].clone(),
                        "process_configuration": one["process_configuration"].clone()
                    }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let panel = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::config::Config::default();
    cfg.uuid = uuid::Uuid::new_v4().to_string();
    cfg.token_id = "abcdefghijklmnop".into();
    cfg.token = "kill-test-token-kill-test-token-kill-test".into();
    cfg.remote = panel;
    cfg.api.host = "127.0.0.1".into();
    let root = dir.path().join("root");
    cfg.system.root_directory = root.to_string_lossy().into();
    cfg.system.data = root.join("volumes").to_string_lossy().into();
    cfg.system.archive_directory = root.join("archives").to_string_lossy().into();
    cfg.system.backup_directory = root.join("backups").to_string_lossy().into();
    cfg.system.log_directory = dir.path().join("log").to_string_lossy().into();
    cfg.system.tmp_directory = dir.path().join("tmp").to_string_lossy().into();
    cfg.system.check_permissions_on_boot = false;
    let mut opts = crate::BootOptions::new(dir.path().join("config.yml"));
    opts.ensure_user = false;
    let app = crate::boot(cfg, opts).await.expect("wings boots");
    let server = app.manager.get(&uuid).expect("the server was loaded");

    let mut state = server.subscribe_state();
    server
        .handle_power(PowerAction::Start, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| *s == State::Running),
    )
    .await
    .expect("the server starts")
    .unwrap();

    // The restart's start half now waits 2 s on the Panel after its stop half.
    delay_ms.store(2000, Ordering::SeqCst);
    let restarting = server.clone();
    let restart = tokio::spawn(async move {
        restarting
            .handle_power(PowerAction::Restart, Some(Duration::from_secs(30)))
            .await
    });
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| *s == State::Offline),
    )
    .await
    .expect("the restart stops the server")
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!restart.is_finished(), "the restart is still in its gap");
    server.handle_power(PowerAction::Kill, None).await.unwrap();

    tokio::time::timeout(Duration::from_secs(30), restart)
        .await
        .expect("the restart returns")
        .unwrap()
        .unwrap();
    // Give a wrongly started container time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.state(), State::Offline);
    assert!(
        !server.is_running().await,
        "the kill was lost: the restart started the server"
    );
}
