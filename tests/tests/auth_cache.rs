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

/// `key` is refused (401) on its next request to `p`.
async fn refused(p: &Panel, key: &str) {
    let r = p.get("/api/client/account", key).await.unwrap();
    r.assert_envelope(401, "AuthenticationException");
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
    refused(&p, &u.key).await;
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
    refused(&a, &u.key).await;
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
    refused(&p, &u.key).await;
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
    refused(&p, &wrong).await;
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
    refused(&p, &u.key).await;
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
    refused(&p, &v.key).await;
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
    refused(&p, &u.key).await;
}

// ---- server views (`GET /api/client/servers/{server}`) ---------------------------

/// A server (owner + a subuser) on a node whose daemon is unreachable.
struct Views {
    p: Panel,
    owner: Account,
    sub: Account,
    server: i64,
    node: i64,
    egg: i64,
    short: String,
}

async fn views(p: Panel) -> Views {
    let app = p.account("viewadmin", true, 2).await.unwrap();
    let owner = client_account(&p, "viewowner").await;
    let sub = client_account(&p, "viewsub").await;
    let (_, node) = p
        .node(&app, ferrodactyl_tests::closed_port())
        .await
        .unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let server = p.seed_server(owner.id, node, egg, "viewed").await.unwrap();
    sqlx::query("INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, $3)")
        .bind(sub.id)
        .bind(server)
        .bind(json!(["control.console"]))
        .execute(&p.db)
        .await
        .unwrap();
    let short: String = sqlx::query_scalar("SELECT uuid_short FROM servers WHERE id = $1")
        .bind(server)
        .fetch_one(&p.db)
        .await
        .unwrap();
    until_listening(&p, true).await;
    p.settle().await;
    Views {
        p,
        owner,
        sub,
        server,
        node,
        egg,
        short,
    }
}

impl Views {
    /// The server's view (with its egg) as `who` reads it from `p`.
    async fn read(&self, p: &Panel, who: &Account) -> serde_json::Value {
        let r = p
            .get(
                &format!("/api/client/servers/{}?include=egg", self.short),
                &who.key,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json
    }
}

fn views_kept(p: &Panel) -> usize {
    p.state.auth_cache.view_count()
}

#[tokio::test]
async fn a_server_view_is_kept_and_a_change_to_any_table_it_reads_drops_it() {
    let v = views(Panel::start().await.unwrap()).await;
    let first = v.read(&v.p, &v.owner).await;
    assert_eq!(views_kept(&v.p), 1, "the view is kept after a read");
    assert_eq!(
        v.read(&v.p, &v.owner).await,
        first,
        "and read back unchanged"
    );

    // Each table the view reads, changed from outside the panel (as psql or another
    // tool would), and what the owner or the subuser then sees.
    type Check = fn(&serde_json::Value) -> bool;
    let attrs = |j: &serde_json::Value| j["attributes"].clone();
    let steps: Vec<(&str, i64, bool, Check)> = vec![
        ("UPDATE servers SET name = 'renamed in psql' WHERE id = $1", v.server, false,
            |j| j["attributes"]["name"] == "renamed in psql"),
        ("UPDATE nodes SET maintenance_mode = TRUE WHERE id = $1", v.node, false,
            |j| j["attributes"]["is_node_under_maintenance"] == true),
        ("UPDATE locations SET long = 'somewhere' WHERE id = (SELECT location_id FROM nodes WHERE id = $1)", v.node, false,
            |_| true),
        ("UPDATE eggs SET name = 'Egg from psql' WHERE id = $1", v.egg, false,
            |j| j["attributes"]["relationships"]["egg"]["attributes"]["name"] == "Egg from psql"),
        ("UPDATE allocations SET notes = 'noted in psql' WHERE server_id = $1", v.server, false,
            |j| j["attributes"]["relationships"]["allocations"]["data"][0]["attributes"]["notes"] == "noted in psql"),
        ("UPDATE egg_variables SET description = 'described in psql' WHERE egg_id = $1", v.egg, false,
            |j| j["attributes"]["relationships"]["variables"]["data"][0]["attributes"]["description"] == "described in psql"),
        ("INSERT INTO server_variables (server_id, variable_id, variable_value)
          SELECT $1, id, 'valued in psql' FROM egg_variables WHERE env_variable = 'SERVER_MESSAGE'", v.server, false,
            |j| j["attributes"]["relationships"]["variables"]["data"][0]["attributes"]["server_value"] == "valued in psql"),
        ("UPDATE subusers SET permissions = '[\"control.console\", \"control.start\"]' WHERE server_id = $1", v.server, true,
            |j| j["meta"]["user_permissions"] == json!(["control.console", "control.start"])),
        ("INSERT INTO server_transfers (server_id, old_node, new_node, old_allocation, new_allocation)
          SELECT id, node_id, node_id, allocation_id, allocation_id FROM servers WHERE id = $1", v.server, false,
            |j| j["attributes"]["is_transferring"] == true),
    ];
    for (sql, arg, as_sub, check) in steps {
        let who = if as_sub { &v.sub } else { &v.owner };
        v.read(&v.p, who).await;
        assert!(views_kept(&v.p) >= 1, "kept before: {sql}");
        exec(&v.p, sql, arg).await;
        v.p.settle().await;
        assert_eq!(views_kept(&v.p), 0, "every view is dropped after: {sql}");
        let after = v.read(&v.p, who).await;
        assert!(
            check(&after),
            "{sql}: the view shows the change: {}",
            attrs(&after)
        );
        assert!(views_kept(&v.p) >= 1, "kept again after: {sql}");
    }
}

#[tokio::test]
async fn a_change_through_the_api_is_read_back_at_once_here_and_after_settle_on_a_replica() {
    let v = views(Panel::start().await.unwrap()).await;
    let other = v.p.replica().await.unwrap();
    until_listening(&other, true).await;
    let sub_uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM users WHERE id = $1")
        .bind(v.sub.id)
        .fetch_one(&v.p.db)
        .await
        .unwrap();
    v.read(&v.p, &v.owner).await;
    v.read(&v.p, &v.sub).await;
    v.read(&other, &v.owner).await;
    assert_eq!((views_kept(&v.p), views_kept(&other)), (2, 1));
    // The writer's listener is stopped right after a heartbeat came back, so no
    // notice reaches it while the lease still lets its cache serve: only its own
    // drop after a write can show the change.
    let cache = &v.p.state.auth_cache;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.lease_left() < panel_api::authcache::LEASE - Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "no fresh heartbeat");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let frozen = Frozen::new(listener_backend(&v.p).await);
    let r =
        v.p.send(
            Method::POST,
            &format!("/api/client/servers/{}/settings/rename", v.short),
            &v.owner.key,
            &json!({"name": "renamed through the API"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let here = v.read(&v.p, &v.owner).await;
    // Taking the subuser away: their view is gone on their next request.
    v.read(&v.p, &v.sub).await;
    let r =
        v.p.send(
            Method::DELETE,
            &format!("/api/client/servers/{}/users/{sub_uuid}", v.short),
            &v.owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let gone =
        v.p.get(&format!("/api/client/servers/{}", v.short), &v.sub.key)
            .await
            .unwrap();
    assert!(
        cache.views_serve(),
        "everything above was read from a serving cache"
    );
    drop(frozen);
    assert_eq!(here["attributes"]["name"], "renamed through the API");
    gone.assert_envelope(404, "NotFoundHttpException");
    // The other process hears the triggers' notice.
    other.settle().await;
    let there = v.read(&other, &v.owner).await;
    assert_eq!(there["attributes"]["name"], "renamed through the API");
}

/// Disables or enables `servers`' view trigger, then waits (up to 5 s) until the
/// panel's heartbeat has seen it: views off, or on again.
async fn set_servers_trigger(p: &Panel, how: &str) {
    sqlx::query(&format!(
        "ALTER TABLE servers {how} TRIGGER servers_view_cache"
    ))
    .execute(&p.db)
    .await
    .unwrap();
    let want = how == "ENABLE";
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.state.auth_cache.views_serve() != want {
        assert!(
            Instant::now() < deadline,
            "views_serve is not {want} after {how}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_view_trigger_disabled_while_serving_turns_views_off_within_a_heartbeat() {
    let v = views(Panel::start().await.unwrap()).await;
    let cache = &v.p.state.auth_cache;
    v.read(&v.p, &v.owner).await;
    assert_eq!(views_kept(&v.p), 1);
    set_servers_trigger(&v.p, "DISABLE").await;
    assert_eq!(views_kept(&v.p), 0);
    assert!(cache.is_listening(), "keys are still served");
    // A write nothing announces is read at once: views are read from the database.
    exec(
        &v.p,
        "UPDATE servers SET name = 'unannounced' WHERE id = $1",
        v.server,
    )
    .await;
    assert_eq!(
        v.read(&v.p, &v.owner).await["attributes"]["name"],
        "unannounced"
    );
    assert_eq!(views_kept(&v.p), 0);
    // Enabled again, views come back.
    set_servers_trigger(&v.p, "ENABLE").await;
    v.read(&v.p, &v.owner).await;
    assert_eq!(views_kept(&v.p), 1);
}

#[tokio::test]
async fn server_views_are_not_kept_while_a_view_trigger_is_disabled() {
    let v = views(Panel::start().await.unwrap()).await;
    v.read(&v.p, &v.owner).await;
    assert_eq!(views_kept(&v.p), 1);
    sqlx::query("ALTER TABLE server_transfers DISABLE TRIGGER server_transfers_view_cache")
        .execute(&v.p.db)
        .await
        .unwrap();
    // A new listening session checks the triggers before it serves.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(listener_backend(&v.p).await)
        .execute(&v.p.db)
        .await
        .unwrap();
    until_listening(&v.p, false).await;
    until_listening(&v.p, true).await;
    // Keys are still kept (their triggers are all there); views are not.
    v.read(&v.p, &v.owner).await;
    assert!(v.p.state.auth_cache.get(&v.owner.key[..16]).is_some());
    assert_eq!(views_kept(&v.p), 0, "no view is kept without every trigger");
    exec(
        &v.p,
        "INSERT INTO server_transfers (server_id, old_node, new_node, old_allocation, new_allocation)
         SELECT id, node_id, node_id, allocation_id, allocation_id FROM servers WHERE id = $1",
        v.server,
    )
    .await;
    // Nothing told the panel, and nothing needed to.
    let j = v.read(&v.p, &v.owner).await;
    assert_eq!(j["attributes"]["is_transferring"], true);
}
