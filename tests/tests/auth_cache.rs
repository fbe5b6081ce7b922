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

/// Revokes `key` through the Client API with the key itself (204).
async fn revoke(p: &Panel, key: &str) {
    let r = p
        .send(
            Method::DELETE,
            &format!("/api/client/account/api-keys/{}", &key[..16]),
            key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
}

/// Runs `sql` with `$1` bound to `arg` on the panel's database.
async fn exec<T>(p: &Panel, sql: &str, arg: T)
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    sqlx::query(sql).bind(arg).execute(&p.db).await.unwrap();
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
    revoke(&p, &u.key).await;
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
    let second = panel_api::apikeys::create(&p.db, admin.id, 2, "second", &[])
        .await
        .unwrap()
        .token();
    until_listening(&p, true).await;
    for key in [&admin.key, &second] {
        assert_eq!(
            p.get("/api/application/users", key).await.unwrap().status,
            200
        );
        assert!(p.state.auth_cache.get(&key[..16]).is_some());
    }
    // An operator demotes the admin by hand: both of their keys lose it.
    exec(
        &p,
        "UPDATE users SET root_admin = false WHERE id = $1",
        admin.id,
    )
    .await;
    p.settle().await;
    for key in [&admin.key, &second] {
        assert!(p.state.auth_cache.get(&key[..16]).is_none());
        let r = p.get("/api/application/users", key).await.unwrap();
        r.assert_envelope(403, "AccessDeniedHttpException");
    }
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
    revoke(&b, &u.key).await;
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
    // A request while the cache is off reads the row but must not store it: the
    // change below would never be heard of.
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    assert_eq!(r.status, 200);
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

#[tokio::test]
async fn an_expiry_or_a_deleted_user_set_in_psql_ends_a_cached_key() {
    let p = Panel::start().await.unwrap();
    let a = client_account(&p, "expiring").await;
    let b = client_account(&p, "leaving").await;
    cached(&p, &a.key).await;
    cached(&p, &b.key).await;
    exec(
        &p,
        "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE identifier = $1",
        &a.key[..16],
    )
    .await;
    // The user goes; their keys go with them (ON DELETE CASCADE fires the key trigger).
    exec(&p, "DELETE FROM users WHERE id = $1", b.id).await;
    p.settle().await;
    for key in [&a.key, &b.key] {
        let r = p.get("/api/client/account", key).await.unwrap();
        r.assert_envelope(401, "AuthenticationException");
    }
}

/// The PostgreSQL backend serving the panel's listening connection.
async fn listener_backend(p: &Panel) -> i32 {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %ferrodactyl_auth%'",
    )
    .fetch_one(&p.db)
    .await
    .unwrap()
}

/// A backend stopped with SIGSTOP (it keeps its connection but sends nothing),
/// resumed when dropped, whatever the test did.
struct Frozen(i32);

impl Frozen {
    fn new(pid: i32) -> Frozen {
        // SAFETY: kill(2) on a PostgreSQL backend of the tests' own cluster.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[tokio::test]
async fn a_listener_that_silently_stops_hearing_stops_the_cache_within_its_lease() {
    let p = Panel::start().await.unwrap();
    let u = client_account(&p, "unheard").await;
    let v = client_account(&p, "revokes").await;
    cached(&p, &u.key).await;
    cached(&p, &v.key).await;
    let frozen = Frozen::new(listener_backend(&p).await);
    let frozen_at = Instant::now();
    // Its own revocation reaches this process without the listener.
    revoke(&p, &v.key).await;
    if p.state.auth_cache.is_listening() {
        assert!(
            p.state.auth_cache.get(&v.key[..16]).is_none(),
            "forgotten by the process that revoked it"
        );
    }
    let r = p.get("/api/client/account", &v.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
    // Another writer's revocation cannot be heard now, but the lease runs out.
    exec(
        &p,
        "DELETE FROM api_keys WHERE identifier = $1",
        &u.key[..16],
    )
    .await;
    loop {
        let r = p.get("/api/client/account", &u.key).await.unwrap();
        if r.status == 401 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            frozen_at.elapsed() < panel_api::authcache::LEASE + Duration::from_millis(500),
            "a revoked key was still served {:?} after the listener went quiet",
            frozen_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!p.state.auth_cache.is_listening());
    drop(frozen);
}

#[tokio::test]
async fn the_cache_stays_off_while_a_trigger_is_disabled() {
    let p = Panel::start().await.unwrap();
    let u = client_account(&p, "untriggered").await;
    cached(&p, &u.key).await;
    sqlx::query("ALTER TABLE api_keys DISABLE TRIGGER api_keys_auth_cache_delete")
        .execute(&p.db)
        .await
        .unwrap();
    // A new listening session checks the triggers before it serves.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(listener_backend(&p).await)
        .execute(&p.db)
        .await
        .unwrap();
    until_listening(&p, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !p.state.auth_cache.is_listening(),
        "no lease without every trigger"
    );
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(p.state.auth_cache.is_empty());
    // With the delete trigger off, nothing would tell a cache; none is used.
    exec(
        &p,
        "DELETE FROM api_keys WHERE identifier = $1",
        &u.key[..16],
    )
    .await;
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
}
