//! Every Application API route refuses a missing key, an invalid key and a
//! non-admin's client key as upstream does (reference §1.2, §2.4): 401 before
//! anything else, 404 for unknown ids even for non-admins (binding runs before the
//! admin check), 403 otherwise.

use ferrodactyl_tests::{closed_port, Panel};
use reqwest::Method;
use serde_json::json;

/// (method, path with `{s}` server / `{n}` node / `{l}` location / `{u}` user /
/// `{a}` allocation / `{e}` nest / `{g}` egg ids).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/application/users"),
    ("GET", "/api/application/users/{u}"),
    ("GET", "/api/application/users/external/ext-user"),
    ("POST", "/api/application/users"),
    ("PATCH", "/api/application/users/{u}"),
    ("DELETE", "/api/application/users/{u}"),
    ("GET", "/api/application/nodes"),
    ("GET", "/api/application/nodes/deployable?memory=1&disk=1"),
    ("GET", "/api/application/nodes/{n}"),
    ("GET", "/api/application/nodes/{n}/configuration"),
    ("POST", "/api/application/nodes"),
    ("PATCH", "/api/application/nodes/{n}"),
    ("DELETE", "/api/application/nodes/{n}"),
    ("GET", "/api/application/nodes/{n}/allocations"),
    ("POST", "/api/application/nodes/{n}/allocations"),
    ("DELETE", "/api/application/nodes/{n}/allocations/{a}"),
    ("GET", "/api/application/locations"),
    ("GET", "/api/application/locations/{l}"),
    ("POST", "/api/application/locations"),
    ("PATCH", "/api/application/locations/{l}"),
    ("DELETE", "/api/application/locations/{l}"),
    ("GET", "/api/application/servers"),
    ("GET", "/api/application/servers/{s}"),
    ("GET", "/api/application/servers/external/ext-server"),
    ("PATCH", "/api/application/servers/{s}/details"),
    ("PATCH", "/api/application/servers/{s}/build"),
    ("PATCH", "/api/application/servers/{s}/startup"),
    ("POST", "/api/application/servers"),
    ("POST", "/api/application/servers/{s}/suspend"),
    ("POST", "/api/application/servers/{s}/unsuspend"),
    ("POST", "/api/application/servers/{s}/reinstall"),
    ("DELETE", "/api/application/servers/{s}"),
    ("DELETE", "/api/application/servers/{s}/force"),
    ("GET", "/api/application/servers/{s}/databases"),
    ("GET", "/api/application/servers/{s}/databases/{d}"),
    ("POST", "/api/application/servers/{s}/databases"),
    (
        "POST",
        "/api/application/servers/{s}/databases/{d}/reset-password",
    ),
    ("DELETE", "/api/application/servers/{s}/databases/{d}"),
    ("GET", "/api/application/nests"),
    ("GET", "/api/application/nests/{e}"),
    ("GET", "/api/application/nests/{e}/eggs"),
    ("GET", "/api/application/nests/{e}/eggs/{g}"),
];

struct Ids {
    s: i64,
    n: i64,
    l: i64,
    u: i64,
    a: i64,
    e: i64,
    g: i64,
    d: i64,
}

fn fill(path: &str, ids: &Ids) -> String {
    path.replace("{s}", &ids.s.to_string())
        .replace("{n}", &ids.n.to_string())
        .replace("{l}", &ids.l.to_string())
        .replace("{u}", &ids.u.to_string())
        .replace("{a}", &ids.a.to_string())
        .replace("{e}", &ids.e.to_string())
        .replace("{g}", &ids.g.to_string())
        .replace("{d}", &ids.d.to_string())
}

async fn setup(p: &Panel) -> Ids {
    let admin = p.admin().await.unwrap();
    let (l, n) = p.node(&admin, closed_port()).await.unwrap();
    let (e, g) = p.egg().await.unwrap();
    let s = p.seed_server(admin.id, n, g, "auth-test").await.unwrap();
    sqlx::query("UPDATE servers SET external_id = 'ext-server' WHERE id = $1")
        .bind(s)
        .execute(&p.db)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET external_id = 'ext-user' WHERE id = $1")
        .bind(admin.id)
        .execute(&p.db)
        .await
        .unwrap();
    let a: i64 = sqlx::query_scalar(
        "SELECT id FROM allocations WHERE server_id IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_one(&p.db)
    .await
    .unwrap();
    let host: i64 = sqlx::query_scalar(
        "INSERT INTO database_hosts (name, host, port, username, password) VALUES ('h', '127.0.0.1', 1, 'root', 'x') RETURNING id",
    )
    .fetch_one(&p.db)
    .await
    .unwrap();
    let d: i64 = sqlx::query_scalar(
        "INSERT INTO databases (server_id, database_host_id, database, username, remote, password) VALUES ($1, $2, 's1_db', 'u1_x', '%', 'x') RETURNING id",
    )
    .bind(s)
    .bind(host)
    .fetch_one(&p.db)
    .await
    .unwrap();
    Ids {
        s,
        n,
        l,
        u: admin.id,
        a,
        e,
        g,
        d,
    }
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

#[tokio::test]
async fn every_route_answers_401_without_a_key() {
    let p = Panel::start().await.unwrap();
    let ids = setup(&p).await;
    for (m, path) in ROUTES {
        let r = p
            .call(p.req(method(m), &fill(path, &ids), None).json(&json!({})))
            .await
            .unwrap();
        r.assert_envelope(401, "AuthenticationException");
        assert_eq!(r.error_detail(), "Unauthenticated.", "{m} {path}");
        assert!(
            r.headers.get("x-ratelimit-limit").is_none(),
            "401 is answered before the limiter"
        );
    }
}

#[tokio::test]
async fn every_route_answers_401_for_an_invalid_key() {
    let p = Panel::start().await.unwrap();
    let ids = setup(&p).await;
    let real = p.account("someone", true, 2).await.unwrap();
    // Right identifier, wrong secret; and a made-up key; and a lowercase scheme.
    let wrong_secret = format!("{}{}", &real.key[..16], "x".repeat(32));
    for (m, path) in ROUTES {
        for key in [
            wrong_secret.as_str(),
            "ptla_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let r = p
                .call(
                    p.req(method(m), &fill(path, &ids), Some(key))
                        .json(&json!({})),
                )
                .await
                .unwrap();
            r.assert_envelope(401, "AuthenticationException");
        }
        let r = p
            .call(
                p.http
                    .request(method(m), format!("{}{}", p.url, fill(path, &ids)))
                    .header("Authorization", format!("bearer {}", real.key)),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 401, "scheme is case-sensitive: {m} {path}");
    }
}

#[tokio::test]
async fn a_non_admin_client_key_gets_403_and_unknown_ids_404() {
    let p = Panel::start().await.unwrap();
    let ids = setup(&p).await;
    let user = p.account("player", false, 1).await.unwrap();
    for (m, path) in ROUTES {
        let r = p
            .call(
                p.req(method(m), &fill(path, &ids), Some(&user.key))
                    .json(&json!({})),
            )
            .await
            .unwrap();
        r.assert_envelope(403, "AccessDeniedHttpException");
        assert_eq!(
            r.error_detail(),
            "This account does not have permission to access the API.",
            "{m} {path}"
        );
        assert_eq!(
            r.headers
                .get("x-ratelimit-limit")
                .and_then(|v| v.to_str().ok()),
            Some("240")
        );
    }
    // Binding runs first: an id that does not exist is a 404 even for a non-admin.
    let missing = Ids {
        s: 999_999,
        n: 999_999,
        l: 999_999,
        u: 999_999,
        a: 999_999,
        e: 999_999,
        g: 999_999,
        d: 999_999,
    };
    for (m, path) in ROUTES.iter().filter(|(_, p)| p.contains('{')) {
        let r = p
            .call(
                p.req(method(m), &fill(path, &missing), Some(&user.key))
                    .json(&json!({})),
            )
            .await
            .unwrap();
        r.assert_envelope(404, "NotFoundHttpException");
        assert_eq!(
            r.error_detail(),
            "The requested resource could not be found on the server.",
            "{m} {path}"
        );
    }
}

#[tokio::test]
async fn an_admins_client_key_has_full_access() {
    let p = Panel::start().await.unwrap();
    let _ids = setup(&p).await;
    let boss = p.account("boss", true, 1).await.unwrap();
    let r = p
        .get("/api/application/users?include=servers", &boss.key)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["servers"]["object"],
        "list"
    );
}

#[tokio::test]
async fn an_application_key_is_limited_by_its_acl_bits() {
    let p = Panel::start().await.unwrap();
    let ids = setup(&p).await;
    let admin = p.account("acl", true, 2).await.unwrap();
    let ident = &admin.key[..16];
    // Read-only users, nothing on servers.
    sqlx::query("UPDATE api_keys SET r_users = 1, r_servers = 0 WHERE identifier = $1")
        .bind(ident)
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    assert_eq!(
        p.get("/api/application/users", &admin.key)
            .await
            .unwrap()
            .status,
        200
    );
    let r = p
        .send(
            Method::POST,
            "/api/application/users",
            &admin.key,
            &json!({}),
        )
        .await
        .unwrap();
    r.assert_envelope(403, "AccessDeniedHttpException");
    assert_eq!(r.error_detail(), "This action is unauthorized.");
    // An include the key may not read renders as a null resource.
    let r = p
        .get(
            &format!("/api/application/users/{}?include=servers", ids.u),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(
        r.json["attributes"]["relationships"]["servers"],
        json!({"object": "null_resource", "attributes": null})
    );
}

#[tokio::test]
async fn allowed_ips_refuse_other_addresses() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    sqlx::query("UPDATE api_keys SET allowed_ips = '[\"10.0.0.0/8\"]' WHERE identifier = $1")
        .bind(&admin.key[..16])
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    let r = p.get("/api/application/users", &admin.key).await.unwrap();
    r.assert_envelope(403, "AccessDeniedHttpException");
    assert_eq!(r.error_detail(), "This IP address (127.0.0.1) does not have permission to access the API using these credentials.");
    sqlx::query("UPDATE api_keys SET allowed_ips = '[\"127.0.0.1\"]' WHERE identifier = $1")
        .bind(&admin.key[..16])
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    assert_eq!(
        p.get("/api/application/users", &admin.key)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn last_used_at_is_recorded_and_only_a_hash_is_stored() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let before: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE identifier = $1")
            .bind(&admin.key[..16])
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert!(before.is_none());
    assert_eq!(
        p.get("/api/application/users", &admin.key)
            .await
            .unwrap()
            .status,
        200
    );
    let (after, hash): (Option<chrono::DateTime<chrono::Utc>>, Vec<u8>) =
        sqlx::query_as("SELECT last_used_at, token_hash FROM api_keys WHERE identifier = $1")
            .bind(&admin.key[..16])
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert!(after.is_some());
    let secret = &admin.key[16..];
    assert_eq!(admin.key.len(), 48);
    assert!(admin.key.starts_with("ptla_"));
    assert!(
        !String::from_utf8_lossy(&hash).contains(secret),
        "the secret is not stored"
    );
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_keys t")
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert!(!dump.contains(secret));
}

#[tokio::test]
async fn the_rate_limit_is_240_per_minute_per_user_with_headers() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    // A second key of the same user shares the budget (the bucket is the user).
    let second = panel_api::apikeys::create(&p.db, admin.id, 2, "second", &[])
        .await
        .unwrap()
        .token();
    let started = std::time::Instant::now();
    let mut last = u32::MAX;
    let mut sent = 0u32;
    let limited = loop {
        let key = if sent.is_multiple_of(2) {
            &admin.key
        } else {
            &second
        };
        let r = p.get("/api/application/locations", key).await.unwrap();
        sent += 1;
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200, "request {sent}");
        assert_eq!(r.headers["x-ratelimit-limit"], "240");
        let remaining: u32 = r.headers["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            remaining <= last.saturating_add(1),
            "remaining never grows by more than the refill"
        );
        last = remaining;
        assert!(sent < 400, "no 429 after {sent} requests");
    };
    // 240 at once, plus the steady refill of 4 a second while the test ran.
    let refill = (started.elapsed().as_secs_f64() * 4.0).ceil() as u32 + 1;
    assert!(
        sent > 240 && sent <= 241 + refill,
        "limited after {sent} requests ({refill} refilled)"
    );
    limited.assert_envelope(429, "ThrottleRequestsException");
    assert_eq!(limited.error_detail(), "Too Many Attempts.");
    assert!(limited.headers.get("retry-after").is_some());
    assert!(limited.headers.get("x-ratelimit-reset").is_some());
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    // 429 bodies are pretty-printed like upstream's HTTP exceptions.
    assert!(limited.text().starts_with("{\n    \"errors\": ["));
    // Another user is not affected.
    let other = p.account("other", true, 2).await.unwrap();
    assert_eq!(
        p.get("/api/application/locations", &other.key)
            .await
            .unwrap()
            .status,
        200
    );
}
