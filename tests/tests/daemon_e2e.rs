//! Both sides of the daemon protocol together: panel-api (Application + Remote API)
//! drives a real wings on the real Docker engine. A server's life: created through
//! the Application API, installed by the egg's script in an installer container,
//! started and stopped through panel-api's daemon client, deleted with its files.

use ferrodactyl_tests::Panel;
use reqwest::Method;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn ensure_image() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .output()
        .expect("run scripts/test-image.sh");
    assert!(
        out.status.success(),
        "scripts/test-image.sh failed (is Docker running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

struct Stack {
    p: Panel,
    admin: ferrodactyl_tests::Account,
    node: i64,
    egg: i64,
    wings_url: String,
    wings_token: String,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    ensure_image();
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
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
        .expect("wings boots against panel-api");
    tokio::spawn(wings::serve(app, listener));
    Stack {
        p,
        admin,
        node,
        egg,
        wings_url: format!("http://127.0.0.1:{port}"),
        wings_token: conf["token"].as_str().unwrap().into(),
        data: root.join("volumes"),
        _dir: dir,
    }
}

#[tokio::test]
async fn a_servers_life_through_the_application_api_and_a_real_wings() {
    let s = stack().await;
    let p = &s.p;
    let alloc: i64 =
        sqlx::query_scalar("SELECT id FROM allocations WHERE node_id = $1 ORDER BY id LIMIT 1")
            .bind(s.node)
            .fetch_one(&p.db)
            .await
            .unwrap();
    let body = json!({
        "name": "life", "user": s.admin.id, "egg": s.egg, "docker_image": "ferrodactyl/test-base:latest",
        "startup": "sh ./start.sh", "environment": {"SERVER_MESSAGE": "hello e2e"},
        "limits": {"memory": 128, "swap": 0, "disk": 512, "io": 500, "cpu": 50},
        "feature_limits": {"databases": 0, "backups": 0}, "allocation": {"default": alloc}
    });
    let r = p
        .send(
            Method::POST,
            "/api/application/servers",
            &s.admin.key,
            &body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json["attributes"]["id"].as_i64().unwrap();
    let uuid = r.json["attributes"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(r.json["attributes"]["status"], "installing");

    // The installer container runs the egg's script; its result reaches the panel.
    let installed = eventually(Duration::from_secs(90), || async {
        let st: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
            .bind(id)
            .fetch_one(&p.db)
            .await
            .unwrap();
        st.is_none()
    })
    .await;
    assert!(installed, "install status never reached the panel");
    let dir = s.data.join(&uuid);
    assert!(
        dir.join("start.sh").exists(),
        "the install script wrote into the server's directory"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".installed"))
            .unwrap()
            .trim(),
        "installed"
    );

    // Power through panel-api's daemon client, as the Client API will.
    let node = panel_api::http::application::nodes::find(&p.state, s.node)
        .await
        .unwrap();
    let conn = node.conn(&p.state).unwrap();
    p.state
        .daemon
        .power(&conn, &uuid, "start")
        .await
        .expect("start");
    let running = eventually(Duration::from_secs(60), || async {
        p.state
            .daemon
            .server_details(&conn, &uuid)
            .await
            .map(|d| d["state"] == "running")
            .unwrap_or(false)
    })
    .await;
    assert!(running, "the server reached running from its done string");
    p.state
        .daemon
        .commands(&conn, &uuid, &["ping".to_string()])
        .await
        .expect("command");
    p.state
        .daemon
        .power(&conn, &uuid, "stop")
        .await
        .expect("stop");
    let stopped = eventually(Duration::from_secs(60), || async {
        p.state
            .daemon
            .server_details(&conn, &uuid)
            .await
            .map(|d| d["state"] == "offline")
            .unwrap_or(false)
    })
    .await;
    assert!(stopped, "the stop command stopped the server");

    // Suspend and unsuspend sync with the daemon.
    for (path, suspended) in [("suspend", true), ("unsuspend", false)] {
        let r = p
            .call(p.req(
                Method::POST,
                &format!("/api/application/servers/{id}/{path}"),
                Some(&s.admin.key),
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text());
        let d = p.state.daemon.server_details(&conn, &uuid).await.unwrap();
        assert_eq!(d["is_suspended"], suspended, "{d}");
    }

    // Delete: the daemon removes the server and its files; the panel forgets it.
    let r = p
        .call(p.req(
            Method::DELETE,
            &format!("/api/application/servers/{id}"),
            Some(&s.admin.key),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let gone = eventually(Duration::from_secs(30), || async { !dir.exists() }).await;
    assert!(gone, "server files removed");
    let r = reqwest::Client::new()
        .get(format!("{}/api/servers/{uuid}", s.wings_url))
        .bearer_auth(&s.wings_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
