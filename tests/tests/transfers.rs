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

#[tokio::test]
async fn a_transfer_moves_files_and_settings_to_the_new_node() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let src_dir = st.server_dir(s);
    std::fs::create_dir_all(src_dir.join("world/region")).unwrap();
    std::fs::write(src_dir.join("world/level.dat"), vec![5u8; 200_000]).unwrap();
    std::fs::write(src_dir.join("world/region/r.0.0.mca"), b"region").unwrap();
    std::fs::write(src_dir.join("server.properties"), "motd=moving\n").unwrap();
    let before = tree_hash(&src_dir);
    let dest = second_node(&st).await;
    begin_transfer(&st, s, dest.id).await;

    let r = st
        .post(
            &format!("/api/servers/{}/transfer", s.uuid),
            json!({"server_id": s.uuid, "url": format!("{}/api/transfers", dest.url),
                   "token": format!("Bearer {}", transfer_token(s, &dest.token)),
                   "server": {"uuid": s.uuid, "start_on_completion": false}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let done = eventually(Duration::from_secs(60), || async {
        transfer_state(&st, s).await.is_some()
    })
    .await;
    assert!(done, "the transfer finished");
    assert_eq!(transfer_state(&st, s).await, Some(true));
    let node: i64 = sqlx::query_scalar("SELECT node_id FROM servers WHERE id = $1")
        .bind(s.id)
        .fetch_one(&st.p.db)
        .await
        .unwrap();
    assert_eq!(node, dest.id, "the panel moved the server");
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
    let gone = eventually(Duration::from_secs(30), || async {
        st.app.manager.get(&s.uuid).is_none() && !src_dir.exists()
    })
    .await;
    assert!(gone, "the old node deleted the server");
    let _ = dest.app.shared.env.remove(&s.uuid).await;
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
