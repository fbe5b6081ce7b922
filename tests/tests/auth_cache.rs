//! panel-api's key cache (`panel_api::authcache`): a key is authenticated from memory
//! only while every change to it, from anywhere, still reaches the process at once.
//! Real PostgreSQL: its triggers, NOTIFY and a LISTEN connection per process.

use ferrodactyl_tests::{Account, Panel};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

/// Waits (up to 15 s) until the panel's cache is, or is not, serving.
async fn until_listening(p: &Panel, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while p.state.auth_cache.is_listening() != want {
        assert!(
            Instant::now() < deadline,
            "the key cache did not become listening={want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Authenticates `key` once, so that `p` holds it in its cache.
async fn cached(p: &Panel, key: &str) {
    until_listening(p, true).await;
    let r = p.get("/api/client/account", key).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        p.state.auth_cache.get(&key[..16]).is_some(),
        "the key is cached after a request"
    );
}

async fn client_account(p: &Panel, name: &str) -> Account {
    p.account(name, false, 1).await.unwrap()
}

/// A change that no trigger sees (the session replays changes, as logical
/// replication or a restore with disabled triggers do).
async fn silently(p: &Panel, sql: &str, identifier: &str) {
    let mut tx = p.db.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql)
        .bind(identifier)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_key_revoked_through_the_api_is_refused_on_the_next_request() {
    let p = Panel::start().await.unwrap();
    let u = client_account(&p, "revoker").await;
    cached(&p, &u.key).await;
    let r = p
        .send(
            Method::DELETE,
            &format!("/api/client/account/api-keys/{}", &u.key[..16]),
            &u.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    // No settle: the process that revoked the key forgets it before answering.
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}

#[tokio::test]
async fn an_email_change_shows_on_the_next_account_read() {
    let p = Panel::start().await.unwrap();
    let u = client_account(&p, "mover").await;
    cached(&p, &u.key).await;
    let r = p
        .send(
            Method::PUT,
            "/api/client/account/email",
            &u.key,
            &json!({"email": "moved@example.com", "password": "password123"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    assert_eq!(r.json["attributes"]["email"], "moved@example.com");
}

#[tokio::test]
async fn a_change_made_in_psql_reaches_a_serving_process() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    until_listening(&p, true).await;
    assert_eq!(
        p.get("/api/application/users", &admin.key)
            .await
            .unwrap()
            .status,
        200
    );
    assert!(p.state.auth_cache.get(&admin.key[..16]).is_some());
    // An operator demotes the admin by hand.
    sqlx::query("UPDATE users SET root_admin = false WHERE id = $1")
        .bind(admin.id)
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    assert!(p.state.auth_cache.get(&admin.key[..16]).is_none());
    let r = p.get("/api/application/users", &admin.key).await.unwrap();
    r.assert_envelope(403, "AccessDeniedHttpException");
    // The refused key was authenticated, so it is cached again; then the operator
    // empties the table: a TRUNCATE reaches the cache too.
    assert!(p.state.auth_cache.get(&admin.key[..16]).is_some());
    sqlx::query("TRUNCATE api_keys")
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    let r = p.get("/api/application/users", &admin.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}

#[tokio::test]
async fn another_replica_refuses_a_key_one_replica_revoked() {
    let a = Panel::start().await.unwrap();
    let b = a.replica().await.unwrap();
    let u = client_account(&a, "twice").await;
    cached(&a, &u.key).await;
    cached(&b, &u.key).await;
    let r = b
        .send(
            Method::DELETE,
            &format!("/api/client/account/api-keys/{}", &u.key[..16]),
            &u.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    a.settle().await;
    let r = a.get("/api/client/account", &u.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}

#[tokio::test]
async fn the_cache_serves_nothing_while_its_listener_is_gone() {
    let p = Panel::start().await.unwrap();
    let u = client_account(&p, "orphan").await;
    cached(&p, &u.key).await;
    // The listening connection dies; whatever is committed before it is back
    // cannot be heard of.
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %ferrodactyl_auth%') t",
    )
    .fetch_one(&p.db)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one listening connection per process");
    until_listening(&p, false).await;
    assert!(p.state.auth_cache.is_empty(), "everything was forgotten");
    silently(
        &p,
        "UPDATE users SET email = 'unheard@example.com' WHERE id = (SELECT user_id FROM api_keys WHERE identifier = $1)",
        &u.key[..16],
    )
    .await;
    // If the listener is already back, the cache holds nothing older than it.
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    assert_eq!(r.json["attributes"]["email"], "unheard@example.com");
    // It reconnects by itself and serves again.
    until_listening(&p, true).await;
    cached(&p, &u.key).await;
}

#[tokio::test]
async fn a_change_no_trigger_sees_lasts_at_most_the_ttl() {
    let p = Panel::start_with(|c| c.auth_cache_ttl_secs = 2)
        .await
        .unwrap();
    let u = client_account(&p, "replayed").await;
    cached(&p, &u.key).await;
    let revoked_at = Instant::now();
    silently(
        &p,
        "DELETE FROM api_keys WHERE identifier = $1",
        &u.key[..16],
    )
    .await;
    p.settle().await;
    // Nothing told the cache, so the key still works from memory...
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    if revoked_at.elapsed() < Duration::from_millis(1500) {
        assert_eq!(r.status, 200, "served from the cache: {}", r.text());
    }
    // ...but not past the entry's lifetime.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(revoked_at.elapsed())).await;
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}

#[tokio::test]
async fn unknown_keys_are_not_remembered() {
    let p = Panel::start().await.unwrap();
    until_listening(&p, true).await;
    for i in 0..50 {
        let key = format!("ptlc_{i:011}{}", "x".repeat(32));
        let r = p.get("/api/client/account", &key).await.unwrap();
        r.assert_envelope(401, "AuthenticationException");
    }
    assert!(p.state.auth_cache.is_empty());
    // A known identifier with a wrong secret is refused although its row is cached.
    let u = client_account(&p, "guessed").await;
    cached(&p, &u.key).await;
    let wrong = format!("{}{}", &u.key[..16], "y".repeat(32));
    let r = p.get("/api/client/account", &wrong).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}

#[tokio::test]
async fn a_cached_key_still_records_last_used_at() {
    let p = Panel::start().await.unwrap();
    let u = client_account(&p, "busy").await;
    cached(&p, &u.key).await;
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE identifier = $1")
            .bind(&u.key[..16])
            .fetch_one(&p.db)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    assert_eq!(r.status, 200);
    let second: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE identifier = $1")
            .bind(&u.key[..16])
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert!(second > first, "{first} -> {second}");
    assert!(
        p.state.auth_cache.get(&u.key[..16]).is_some(),
        "writing last_used_at does not evict the key"
    );
}

#[tokio::test]
async fn a_ttl_of_zero_turns_the_cache_off() {
    let p = Panel::start_with(|c| c.auth_cache_ttl_secs = 0)
        .await
        .unwrap();
    let u = client_account(&p, "uncached").await;
    for _ in 0..3 {
        let r = p.get("/api/client/account", &u.key).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(!p.state.auth_cache.is_listening());
    assert!(p.state.auth_cache.is_empty());
    silently(
        &p,
        "DELETE FROM api_keys WHERE identifier = $1",
        &u.key[..16],
    )
    .await;
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}
