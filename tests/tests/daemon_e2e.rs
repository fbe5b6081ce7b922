//! Both sides of the daemon protocol together: panel-api (Application + Remote API)
//! drives a real wings on the real Docker engine. A server's life: created through
//! the Application API, installed by the egg's script in an installer container,
//! started and stopped through panel-api's daemon client, deleted with its files.

mod wings_stack;

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wings_stack::eventually;

async fn stack() -> wings_stack::Stack {
    wings_stack::stack(wings_stack::Options {
        servers: vec![],
        ..Default::default()
    })
    .await
    .0
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
        .get(format!("{}/api/servers/{uuid}", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
