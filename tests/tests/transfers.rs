//! Transfers between two real wings nodes on one panel-api (reference §1.9, §8.3):
//! the source streams the archive with the panel's JWT, the destination checks
//! the checksum, the panel moves the server and the old node deletes it; a
//! refused transfer leaves the source server and its files intact.

mod wings_stack;

use serde_json::json;
use std::time::Duration;
use wings_stack::{eventually, second_node, stack, tree_hash, Options, Srv, Stack};

async fn begin_transfer(st: &Stack, s: &Srv, new_node: i64) {
    let (old_node, old_alloc): (i64, i64) =
        sqlx::query_as("SELECT node_id, allocation_id FROM servers WHERE id = $1")
            .bind(s.id)
            .fetch_one(&st.p.db)
            .await
            .unwrap();
    let new_alloc: i64 = sqlx::query_scalar(
        "SELECT id FROM allocations WHERE node_id = $1 AND server_id IS NULL ORDER BY id LIMIT 1",
    )
    .bind(new_node)
    .fetch_one(&st.p.db)
    .await
    .unwrap();
    sqlx::query("UPDATE allocations SET server_id = $1 WHERE id = $2")
        .bind(s.id)
        .bind(new_alloc)
        .execute(&st.p.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO server_transfers (server_id, old_node, new_node, old_allocation, new_allocation, old_additional_allocations, new_additional_allocations)
         VALUES ($1, $2, $3, $4, $5, '[]', '[]')",
    )
    .bind(s.id)
    .bind(old_node)
    .bind(new_node)
    .bind(old_alloc)
    .bind(new_alloc)
    .execute(&st.p.db)
    .await
    .unwrap();
}

fn transfer_token(s: &Srv, secret: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    wings::jwt::sign(
        &json!({"iss": "panel", "sub": s.uuid, "jti": "t", "iat": now, "nbf": now - 300, "exp": now + 900, "unique_id": "abcdefabcdefabcd"}),
        secret,
    )
    .unwrap()
}

async fn transfer_state(st: &Stack, s: &Srv) -> Option<bool> {
    sqlx::query_scalar(
        "SELECT successful FROM server_transfers WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(s.id)
    .fetch_one(&st.p.db)
    .await
    .unwrap()
}

async fn transfer_via_api(
    st: &Stack,
    s: &Srv,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r =
        st.p.send(
            reqwest::Method::POST,
            &format!("/api/application/servers/{}/transfer", s.id),
            &st.admin.key,
            &body,
        )
        .await
        .unwrap();
    (r.status, r.json)
}

async fn node_of(st: &Stack, s: &Srv) -> i64 {
    sqlx::query_scalar("SELECT node_id FROM servers WHERE id = $1")
        .bind(s.id)
        .fetch_one(&st.p.db)
        .await
        .unwrap()
}

/// Files, settings and allocations arrive on the new node, the old node forgets the
/// server, and the transfer is readable through the extension route.
async fn assert_moved(st: &Stack, s: &Srv, dest: &wings_stack::Node, before: &str) {
    let done = eventually(Duration::from_secs(60), || async {
        transfer_state(st, s).await.is_some()
    })
    .await;
    assert!(done, "the transfer finished");
    assert_eq!(transfer_state(st, s).await, Some(true));
    assert_eq!(node_of(st, s).await, dest.id, "the panel moved the server");
    let moved = dest
        .app
        .manager
        .get(&s.uuid)
        .expect("the destination has the server");
    assert!(!moved.is_transferring());
    assert_eq!(
        tree_hash(&dest.data.join(&s.uuid)),
        before,
        "files arrived intact"
    );
    assert_eq!(
        moved.settings().build.disk_space,
        1024,
        "settings came from the panel"
    );
    let src_dir = st.server_dir(s);
    let gone = eventually(Duration::from_secs(30), || async {
        st.app.manager.get(&s.uuid).is_none() && !src_dir.exists()
    })
    .await;
    assert!(gone, "the old node deleted the server");
    let allocs: Vec<i64> =
        sqlx::query_scalar("SELECT node_id FROM allocations WHERE server_id = $1")
            .bind(s.id)
            .fetch_all(&st.p.db)
            .await
            .unwrap();
    assert!(
        !allocs.is_empty() && allocs.iter().all(|n| *n == dest.id),
        "only the new node's allocations are the server's: {allocs:?}"
    );
}

fn seed_files(st: &Stack, s: &Srv) -> String {
    let src_dir = st.server_dir(s);
    std::fs::create_dir_all(src_dir.join("world/region")).unwrap();
    std::fs::write(src_dir.join("world/level.dat"), vec![5u8; 200_000]).unwrap();
    std::fs::write(src_dir.join("world/region/r.0.0.mca"), b"region").unwrap();
    std::fs::write(src_dir.join("server.properties"), "motd=moving\n").unwrap();
    tree_hash(&src_dir)
}

#[tokio::test]
async fn the_transfer_route_moves_files_settings_and_allocations_to_the_new_node() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let before = seed_files(&st, s);
    let dest = second_node(&st).await;
    let r =
        st.p.get(
            &format!("/api/application/servers/{}/transfer", s.id),
            &st.admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "no transfer yet: {:?}", r.json);

    let extra: i64 = sqlx::query_scalar(
        "SELECT id FROM allocations WHERE node_id = $1 AND server_id IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(dest.id)
    .fetch_one(&st.p.db)
    .await
    .unwrap();
    // Two requests at once: the server row is locked, so exactly one starts.
    let body = json!({"node_id": dest.id, "allocation_additional": [extra]});
    let (a, b) = tokio::join!(
        transfer_via_api(&st, s, body.clone()),
        transfer_via_api(&st, s, body)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let (ok, conflict) = if a.0 == 202 { (a, b) } else { (b, a) };
    assert_eq!(
        conflict.1["errors"][0]["code"], "ServerStateConflictException",
        "{conflict:?}"
    );
    assert_eq!(
        conflict.1["errors"][0]["detail"],
        "This server is currently being transferred to a new machine, please try again later."
    );
    let t = &ok.1;
    assert_eq!(t["object"], "server_transfer");
    let at = &t["attributes"];
    assert_eq!(at["server_id"], s.id);
    assert_eq!(at["old_node"], st.node);
    assert_eq!(at["new_node"], dest.id);
    assert!(at["new_allocation"].is_i64());
    assert_eq!(at["new_additional_allocations"], json!([extra]));
    assert_eq!(at["old_additional_allocations"], json!([]));
    assert!(at["successful"].is_null());
    assert_eq!(at["archived"], false);
    assert!(at["created_at"].as_str().unwrap().ends_with("+00:00"));

    assert_moved(&st, s, &dest, &before).await;
    let r =
        st.p.get(
            &format!("/api/application/servers/{}/transfer", s.id),
            &st.admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json["attributes"]["successful"], true);
    assert_eq!(r.json["attributes"]["id"], at["id"]);
    let _ = dest.app.shared.env.remove(&s.uuid).await;
}

/// `panel-api server transfer` runs the same service as the route; `--wait`
/// returns once the destination reported success.
#[tokio::test]
async fn the_operator_cli_transfers_a_server_and_waits_for_it() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let before = seed_files(&st, s);
    let dest = second_node(&st).await;
    let out = tokio::process::Command::from(cli(
        &st,
        &[
            "server",
            "transfer",
            &s.id.to_string(),
            "--node",
            &dest.id.to_string(),
            "--wait",
        ],
    ))
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("started") && stdout.contains("finished"),
        "{stdout}"
    );
    assert_moved(&st, s, &dest, &before).await;

    let status = cli(&st, &["server", "transfer-status", &s.id.to_string()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("successful"));

    // The same checks as the route: it is already there.
    let again = cli(
        &st,
        &[
            "server",
            "transfer",
            &s.id.to_string(),
            "--node",
            &dest.id.to_string(),
        ],
    )
    .output()
    .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already on the selected node"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let _ = dest.app.shared.env.remove(&s.uuid).await;
}

/// The panel-api CLI on the test's database and application key, with nothing else
/// from this process's environment.
fn cli(st: &Stack, args: &[&str]) -> std::process::Command {
    let cfg = &st.p.state.cfg;
    let mut c = std::process::Command::new(panel_bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", cfg.database_url.as_deref().unwrap())
        .env("APP_KEY", cfg.app_key.as_deref().unwrap())
        .env("APP_URL", &cfg.app_url);
    c
}

/// The panel-api binary of this build. The README's test command
/// (`cargo nextest run --workspace`) builds it beside this test; a partial run needs
/// `cargo build -p panel-api` first. Building it from here would wait on the build
/// lock and, with another package's feature set, rebuild the dependencies.
fn panel_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("panel-api");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p panel-api` (the workspace test run builds it)",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn the_transfer_route_refuses_bad_requests_and_leaves_nothing_behind() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    // A node whose daemon is not running, and a server on it.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, dead) = st.p.node(&st.admin, dead_port).await.unwrap();

    let err = |j: &serde_json::Value| {
        (
            j["errors"][0]["code"].as_str().unwrap_or("").to_string(),
            j["errors"][0]["detail"].as_str().unwrap_or("").to_string(),
            j["errors"][0]["meta"]["source_field"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    let (c, j) = transfer_via_api(&st, s, json!({})).await;
    assert_eq!(c, 422);
    assert_eq!(
        err(&j),
        (
            "ValidationException".into(),
            "The node id field is required.".into(),
            "node_id".into()
        )
    );
    let (c, j) = transfer_via_api(&st, s, json!({"node_id": "x"})).await;
    assert_eq!(c, 422);
    assert_eq!(err(&j).1, "The node id must be an integer.");
    let (c, j) = transfer_via_api(&st, s, json!({"node_id": 999_999})).await;
    assert_eq!(c, 422);
    assert_eq!(err(&j).1, "The selected node id is invalid.");
    let (c, j) = transfer_via_api(&st, s, json!({"node_id": st.node})).await;
    assert_eq!(c, 422);
    assert_eq!(err(&j).1, "The server is already on the selected node.");
    let (c, j) = transfer_via_api(
        &st,
        s,
        json!({"node_id": dead, "allocation_additional": ["a"]}),
    )
    .await;
    assert_eq!(c, 422);
    assert_eq!(err(&j).2, "allocation_additional.0");
    // The server's own allocation is on the source node, not on the target.
    let own: i64 = sqlx::query_scalar("SELECT allocation_id FROM servers WHERE id = $1")
        .bind(s.id)
        .fetch_one(&st.p.db)
        .await
        .unwrap();
    let (c, j) = transfer_via_api(&st, s, json!({"node_id": dead, "allocation_id": own})).await;
    assert_eq!(c, 422, "{j}");
    assert_eq!(err(&j).1, "The selected allocation id is invalid.");
    // A target node too small for the server.
    sqlx::query("UPDATE nodes SET memory = 100 WHERE id = $1")
        .bind(dead)
        .execute(&st.p.db)
        .await
        .unwrap();
    let (c, j) = transfer_via_api(&st, s, json!({"node_id": dead})).await;
    assert_eq!(c, 400, "{j}");
    assert_eq!(
        err(&j).1,
        "The node you selected does not have the required disk space or memory available to accommodate this server."
    );
    sqlx::query("UPDATE nodes SET memory = 4096 WHERE id = $1")
        .bind(dead)
        .execute(&st.p.db)
        .await
        .unwrap();
    // A server still installing cannot move.
    sqlx::query("UPDATE servers SET status = 'installing' WHERE id = $1")
        .bind(s.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    let (c, j) = transfer_via_api(&st, s, json!({"node_id": dead})).await;
    assert_eq!(c, 409);
    assert_eq!(err(&j).0, "ServerStateConflictException");
    sqlx::query("UPDATE servers SET status = NULL WHERE id = $1")
        .bind(s.id)
        .execute(&st.p.db)
        .await
        .unwrap();

    // Keys: none, a wrong one, a non-admin's client key; an unknown server.
    let r =
        st.p.call(
            st.p.req(
                reqwest::Method::POST,
                &format!("/api/application/servers/{}/transfer", s.id),
                None,
            )
            .json(&json!({"node_id": dead})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let user = st.p.account("plain", false, 1).await.unwrap();
    let r =
        st.p.send(
            reqwest::Method::POST,
            &format!("/api/application/servers/{}/transfer", s.id),
            &user.key,
            &json!({"node_id": dead}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r =
        st.p.send(
            reqwest::Method::POST,
            "/api/application/servers/999999/transfer",
            &st.admin.key,
            &json!({"node_id": dead}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // A server on the dead node: its daemon cannot be told, so the answer is the
    // daemon error and neither the transfer row nor the reservation stays.
    let stranded =
        st.p.seed_server(st.admin.id, dead, st.egg, "stranded")
            .await
            .unwrap();
    let r =
        st.p.send(
            reqwest::Method::POST,
            &format!("/api/application/servers/{stranded}/transfer"),
            &st.admin.key,
            &json!({"node_id": st.node}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{:?}", r.json);
    assert_eq!(err(&r.json).0, "DaemonConnectionException");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM server_transfers")
        .fetch_one(&st.p.db)
        .await
        .unwrap();
    assert_eq!(rows, 0, "no transfer left behind");
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM allocations WHERE server_id = $1 AND node_id = $2",
    )
    .bind(stranded)
    .bind(st.node)
    .fetch_one(&st.p.db)
    .await
    .unwrap();
    assert_eq!(held, 0, "the reserved allocation was freed");
    assert_eq!(node_of(&st, s).await, st.node);
}

#[tokio::test]
async fn a_refused_transfer_leaves_the_source_intact() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let src_dir = st.server_dir(s);
    std::fs::write(src_dir.join("important.txt"), "keep me").unwrap();
    let before = tree_hash(&src_dir);
    let dest = second_node(&st).await;
    begin_transfer(&st, s, dest.id).await;

    // A token signed with the wrong secret: the destination refuses it.
    let r = st
        .post(
            &format!("/api/servers/{}/transfer", s.uuid),
            json!({"server_id": s.uuid, "url": format!("{}/api/transfers", dest.url),
                   "token": format!("Bearer {}", transfer_token(s, "not-the-destination-secret")),
                   "server": {"uuid": s.uuid, "start_on_completion": false}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let done = eventually(Duration::from_secs(60), || async {
        transfer_state(&st, s).await.is_some()
    })
    .await;
    assert!(done, "the failure reached the panel");
    assert_eq!(transfer_state(&st, s).await, Some(false));
    let src = st
        .app
        .manager
        .get(&s.uuid)
        .expect("the source keeps the server");
    let cleared = eventually(Duration::from_secs(10), || async { !src.is_transferring() }).await;
    assert!(cleared);
    assert_eq!(tree_hash(&src_dir), before);
    assert!(dest.app.manager.get(&s.uuid).is_none());
    let node: i64 = sqlx::query_scalar("SELECT node_id FROM servers WHERE id = $1")
        .bind(s.id)
        .fetch_one(&st.p.db)
        .await
        .unwrap();
    assert_eq!(node, st.node);

    // Bad requests to the transfer routes.
    let r = st
        .post(
            &format!("/api/servers/{}/transfer", s.uuid),
            json!({"url": ""}),
        )
        .await;
    r.assert_error(400, "");
    let r = st
        .send(st.req(
            reqwest::Method::DELETE,
            &format!("/api/servers/{}/transfer", s.uuid),
        ))
        .await;
    r.assert_error(409, "Server is not currently being transferred.");
}
