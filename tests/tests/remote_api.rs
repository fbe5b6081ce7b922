//! The Remote API as upstream's Wings calls it (wings-protocol §4): its exact
//! requests — `Bearer <token_id>.<token>`, the vnd.pterodactyl Accept header,
//! `null` bodies, `page=0` first — and the answers it relies on.

use ferrodactyl_tests::{closed_port, Panel};
use reqwest::Method;
use serde_json::{json, Value};

struct Node {
    id: i64,
    bearer: String,
}

async fn node(p: &Panel, admin: &ferrodactyl_tests::Account) -> Node {
    let (_, id) = p.node(admin, closed_port()).await.unwrap();
    let c = p
        .get(
            &format!("/api/application/nodes/{id}/configuration"),
            &admin.key,
        )
        .await
        .unwrap()
        .json;
    Node {
        id,
        bearer: format!(
            "{}.{}",
            c["token_id"].as_str().unwrap(),
            c["token"].as_str().unwrap()
        ),
    }
}

/// A request exactly as Wings sends it.
fn wings(
    p: &Panel,
    n: &Node,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::RequestBuilder {
    p.http
        .request(method, format!("{}/api/remote{path}", p.url))
        .header("Authorization", format!("Bearer {}", n.bearer))
        .header("Accept", "application/vnd.pterodactyl.v1+json")
        .header("Content-Type", "application/json")
        .header("User-Agent", "Pterodactyl Wings/v1.11.11 (id:test)")
        .body(body.map(|b| b.to_string()).unwrap_or_else(|| "null".into()))
}

#[tokio::test]
async fn daemon_authentication_follows_upstream() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let r = p
        .call(p.http.get(format!("{}/api/remote/servers", p.url)))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.json["errors"].is_array());
    let r = p
        .call(
            p.http
                .get(format!("{}/api/remote/servers", p.url))
                .bearer_auth("no-dot-here"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let wrong = format!("{}.{}", &n.bearer[..16], "x".repeat(64));
    let r = p
        .call(
            p.http
                .get(format!("{}/api/remote/servers", p.url))
                .bearer_auth(wrong),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // An application key is not a daemon token.
    let r = p
        .call(
            p.http
                .get(format!("{}/api/remote/servers", p.url))
                .bearer_auth(&admin.key),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        p.call(wings(&p, &n, Method::GET, "/servers", None))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn the_server_list_is_laravel_paginated_from_page_zero() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    for i in 0..3 {
        p.seed_server(admin.id, n.id, egg, &format!("s{i}"))
            .await
            .unwrap();
    }
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            "/servers?page=0&per_page=2",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let m = &r.json["meta"];
    assert_eq!(m["current_page"], 1, "page 0 is page 1");
    assert_eq!(m["last_page"], 2);
    assert_eq!(m["per_page"], 2, "a number, not a string");
    assert_eq!(m["total"], 3);
    assert_eq!(m["from"], 1);
    assert_eq!(m["to"], 2);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2);
    let first = &r.json["data"][0];
    assert_eq!(first["uuid"], first["settings"]["uuid"]);
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            "/servers?page=2&per_page=2",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["meta"]["current_page"], 2);
    // Servers of another node are not listed.
    let other = node(&p, &admin).await;
    let r = p
        .call(wings(
            &p,
            &other,
            Method::GET,
            "/servers?page=0&per_page=50",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["total"], 0);
    assert_eq!(r.json["data"], json!([]));
}

#[tokio::test]
async fn server_configuration_carries_settings_and_process_configuration() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, n.id, egg, "cfg").await.unwrap();
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let port: i32 = sqlx::query_scalar("SELECT a.port FROM allocations a JOIN servers s ON s.allocation_id = a.id WHERE s.uuid = $1")
        .bind(uuid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            &format!("/servers/{uuid}"),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let s = &r.json["settings"];
    assert_eq!(s["uuid"], uuid.to_string());
    assert_eq!(s["meta"], json!({"name": "cfg", "description": ""}));
    assert_eq!(s["suspended"], false);
    assert_eq!(s["invocation"], "sh ./start.sh");
    assert_eq!(s["environment"]["SERVER_MESSAGE"], "Hello from Ferrodactyl");
    assert_eq!(s["environment"]["P_SERVER_UUID"], uuid.to_string());
    assert_eq!(s["build"]["memory_limit"], 512);
    assert_eq!(s["build"]["io_weight"], 500);
    assert_eq!(s["container"]["image"], "ferrodactyl/test-base:latest");
    assert_eq!(
        s["allocations"]["default"],
        json!({"ip": "127.0.0.1", "port": port})
    );
    assert_eq!(s["allocations"]["mappings"], json!({"127.0.0.1": [port]}));
    assert!(s["egg"]["id"].as_str().unwrap().len() == 36);
    let pc = &r.json["process_configuration"];
    assert_eq!(pc["startup"]["done"], json!(["Server is ready"]));
    assert_eq!(pc["stop"], json!({"type": "command", "value": "stop"}));
    assert_eq!(pc["configs"], json!([]));
    // The types Wings decodes read it back.
    let typed: openapi::remote::ServerConfigurationResponse =
        serde_json::from_value(r.json.clone()).unwrap();
    assert_eq!(typed.settings.allocations.default.port as i64, port as i64);
    // Unknown servers are a 404.
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            &format!("/servers/{}", uuid::Uuid::new_v4()),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn egg_config_files_get_their_placeholders_filled() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    sqlx::query("UPDATE eggs SET config_files = $2, config_stop = '^C' WHERE id = $1")
        .bind(egg)
        .bind(r#"{"server.properties":{"parser":"properties","find":{"server-port":"{{server.build.default.port}}","motd":"{{env.SERVER_MESSAGE}}","online-mode":{"true":"false"},"ip":"{{config.docker.interface}}"}}}"#)
        .execute(&p.db)
        .await
        .unwrap();
    let sid = p.seed_server(admin.id, n.id, egg, "cfg").await.unwrap();
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let port: i32 = sqlx::query_scalar("SELECT a.port FROM allocations a JOIN servers s ON s.allocation_id = a.id WHERE s.uuid = $1")
        .bind(uuid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            &format!("/servers/{uuid}"),
            None,
        ))
        .await
        .unwrap();
    let pc = &r.json["process_configuration"];
    assert_eq!(pc["stop"], json!({"type": "signal", "value": "C"}));
    assert_eq!(
        pc["configs"],
        json!([{"file": "server.properties", "parser": "properties", "replace": [
            {"match": "server-port", "replace_with": port.to_string()},
            {"match": "motd", "replace_with": "Hello from Ferrodactyl"},
            {"match": "online-mode", "if_value": "true", "replace_with": "false"},
            {"match": "ip", "replace_with": "{{config.docker.interface}}"}
        ]}])
    );
}

#[tokio::test]
async fn install_script_and_install_status() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, n.id, egg, "inst").await.unwrap();
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            &format!("/servers/{uuid}/install"),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.json["container_image"], "ferrodactyl/test-base:latest");
    assert_eq!(r.json["entrypoint"], "sh");
    assert!(r.json["script"]
        .as_str()
        .unwrap()
        .contains("/mnt/server/start.sh"));
    let status = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT status FROM servers WHERE id = $1")
            .bind(sid)
            .fetch_one(&p.db)
            .await
            .unwrap()
    };
    for (body, want) in [
        (
            json!({"successful": false, "reinstall": false}),
            Some("install_failed"),
        ),
        (
            json!({"successful": false, "reinstall": true}),
            Some("reinstall_failed"),
        ),
        (json!({"successful": true, "reinstall": false}), None),
    ] {
        let r = p
            .call(wings(
                &p,
                &n,
                Method::POST,
                &format!("/servers/{uuid}/install"),
                Some(body),
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(status().await.as_deref(), want);
    }
    // A suspended server stays suspended.
    sqlx::query("UPDATE servers SET status = 'suspended' WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    p.call(wings(
        &p,
        &n,
        Method::POST,
        &format!("/servers/{uuid}/install"),
        Some(json!({"successful": true, "reinstall": true})),
    ))
    .await
    .unwrap();
    assert_eq!(status().await.as_deref(), Some("suspended"));
    // Reset after boot clears installing/restoring states of this node's servers.
    sqlx::query("UPDATE servers SET status = 'installing' WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    assert_eq!(
        p.call(wings(&p, &n, Method::POST, "/servers/reset", None))
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(status().await, None);
}

#[tokio::test]
async fn activity_batches_are_stored_for_this_nodes_servers_only() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, n.id, egg, "act").await.unwrap();
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let body = json!({"data": [
        {"user": admin.uuid, "server": uuid, "event": "server:sftp.write", "metadata": {"files": ["/a.txt"]}, "ip": "203.0.113.5", "timestamp": "2024-03-17T20:58:30.123456789Z"},
        {"user": null, "server": uuid, "event": "server:console.command", "metadata": null, "ip": "", "timestamp": "2024-03-17T20:58:31Z"},
        {"user": null, "server": uuid, "event": "user:account.nope", "metadata": {}, "ip": null, "timestamp": "2024-03-17T20:58:31Z"},
        {"user": null, "server": uuid::Uuid::new_v4(), "event": "server:power.start", "metadata": {}, "ip": null, "timestamp": "2024-03-17T20:58:31Z"}
    ]});
    let r = p
        .call(wings(&p, &n, Method::POST, "/activity", Some(body)))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let rows: Vec<(String, Option<String>, Option<i64>, Value)> =
        sqlx::query_as("SELECT event, ip, actor_id, properties FROM activity_logs ORDER BY id")
            .fetch_all(&p.db)
            .await
            .unwrap();
    assert_eq!(
        rows.len(),
        2,
        "non-server events and other servers are dropped: {rows:?}"
    );
    assert_eq!(rows[0].0, "server:sftp.write");
    assert_eq!(rows[0].1.as_deref(), Some("203.0.113.5"));
    assert_eq!(rows[0].2, Some(admin.id));
    assert_eq!(
        rows[1].1.as_deref(),
        Some("127.0.0.1"),
        "empty ip becomes 127.0.0.1"
    );
    let r = p
        .call(wings(
            &p,
            &n,
            Method::POST,
            "/activity",
            Some(json!({"data": [{"server": "nope", "event": "server:x"}]})),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn sftp_auth_checks_password_keys_permissions_state_and_throttles() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let owner = p.account("owner", false, 1).await.unwrap();
    let helper = p.account("helper", false, 1).await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(owner.id, n.id, egg, "sftp").await.unwrap();
    let (uuid, short): (uuid::Uuid, String) =
        sqlx::query_as("SELECT uuid, uuid_short FROM servers WHERE id = $1")
            .bind(sid)
            .fetch_one(&p.db)
            .await
            .unwrap();
    let auth = |user: &str, password: &str, kind: &str| {
        wings(
            &p,
            &n,
            Method::POST,
            "/sftp/auth",
            Some(
                json!({"type": kind, "username": format!("{user}.{short}"), "password": password,
            "ip": "203.0.113.5:51234", "session_id": "AAEC", "client_version": "U1NILTIuMA=="}),
            ),
        )
    };
    let r = p
        .call(auth("owner", "password123", "password"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json,
        json!({"user": owner.uuid, "server": uuid.to_string(), "permissions": ["*"]})
    );
    // The full UUID works in place of the short identifier, and case does not matter
    // (upstream's MySQL collation); a near miss is refused.
    let by = |server: String| {
        wings(
            &p,
            &n,
            Method::POST,
            "/sftp/auth",
            Some(
                json!({"type": "password", "username": format!("owner.{server}"),
                "password": "password123", "ip": "203.0.113.9:51234"}),
            ),
        )
    };
    for server in [
        uuid.to_string(),
        uuid.to_string().to_uppercase(),
        short.to_uppercase(),
    ] {
        let r = p.call(by(server.clone())).await.unwrap();
        assert_eq!(r.status, 200, "{server}: {}", r.text());
        assert_eq!(r.json["server"], json!(uuid.to_string()), "{server}");
    }
    for server in [uuid.simple().to_string(), format!("{short}0")] {
        let r = p.call(by(server.clone())).await.unwrap();
        assert_eq!(r.status, 403, "{server}: {}", r.text());
    }
    let r = p
        .call(auth("admin", "password123", "password"))
        .await
        .unwrap();
    assert_eq!(
        r.json["permissions"],
        json!([
            "*",
            "admin.websocket.errors",
            "admin.websocket.install",
            "admin.websocket.transfer"
        ])
    );

    // Subusers need file.sftp.
    sqlx::query(
        "INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, '[\"file.read\"]')",
    )
    .bind(helper.id)
    .bind(sid)
    .execute(&p.db)
    .await
    .unwrap();
    let r = p
        .call(auth("helper", "password123", "password"))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json["errors"][0]["detail"],
        "You do not have permission to access SFTP for this server."
    );
    sqlx::query(
        "UPDATE subusers SET permissions = '[\"file.read\", \"file.sftp\"]' WHERE user_id = $1",
    )
    .bind(helper.id)
    .execute(&p.db)
    .await
    .unwrap();
    let r = p
        .call(auth("helper", "password123", "password"))
        .await
        .unwrap();
    assert_eq!(r.json["permissions"], json!(["file.read", "file.sftp"]));

    // Public keys are matched by their SHA-256 fingerprint.
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host\n";
    let fp = panel_api::http::remote::ssh_fingerprint(line).unwrap();
    assert_eq!(fp.len(), 43);
    let r = p.call(auth("owner", line, "public_key")).await.unwrap();
    assert_eq!(r.status, 403);
    sqlx::query("INSERT INTO user_ssh_keys (user_id, name, fingerprint, public_key) VALUES ($1, 'k', $2, 'pem')").bind(owner.id).bind(&fp).execute(&p.db).await.unwrap();
    assert_eq!(
        p.call(auth("owner", line, "public_key"))
            .await
            .unwrap()
            .status,
        200
    );

    // Suspended servers are refused with a state conflict.
    sqlx::query("UPDATE servers SET status = 'suspended' WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    let r = p
        .call(auth("owner", "password123", "password"))
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(r.json["errors"][0]["code"], "ServerStateConflictException");
    sqlx::query("UPDATE servers SET status = NULL WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();

    // No server part → 400. Wrong passwords → 403, then 429 after five.
    let r = p.call(wings(&p, &n, Method::POST, "/sftp/auth", Some(json!({"type": "password", "username": "owner", "password": "x", "ip": "1.2.3.4:1"})))).await.unwrap();
    assert_eq!(r.status, 400);
    for _ in 0..5 {
        let r = p
            .call(auth("owner", "wrong-password", "password"))
            .await
            .unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(
            r.json["errors"][0]["detail"],
            "Authorization credentials were not correct, please try again."
        );
    }
    let r = p
        .call(auth("owner", "password123", "password"))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        429,
        "throttled even with the right password: {}",
        r.text()
    );
    assert!(r.headers.get("retry-after").is_some());
    let fails: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM activity_logs WHERE event = 'auth:sftp.fail'")
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert!(fails >= 5);
}

#[tokio::test]
async fn transfers_backups_and_restores_report_back() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let n = node(&p, &admin).await;
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, n.id, egg, "tb").await.unwrap();
    let uuid: uuid::Uuid = sqlx::query_scalar("SELECT uuid FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    // No transfer in progress: 409 for both verbs.
    for m in [Method::GET, Method::POST] {
        let r = p
            .call(wings(
                &p,
                &n,
                m,
                &format!("/servers/{uuid}/transfer/failure"),
                None,
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 409);
    }
    // A failed transfer frees the allocation reserved on the destination.
    let reserved: i64 = sqlx::query_scalar(
        "SELECT id FROM allocations WHERE server_id IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_one(&p.db)
    .await
    .unwrap();
    sqlx::query("UPDATE allocations SET server_id = $1 WHERE id = $2")
        .bind(sid)
        .bind(reserved)
        .execute(&p.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO server_transfers (server_id, old_node, new_node, old_allocation, new_allocation) SELECT $1, $2, $2, allocation_id, $3 FROM servers WHERE id = $1")
        .bind(sid)
        .bind(n.id)
        .bind(reserved)
        .execute(&p.db)
        .await
        .unwrap();
    let r = p
        .call(wings(
            &p,
            &n,
            Method::POST,
            &format!("/servers/{uuid}/transfer/failure"),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let freed: Option<i64> = sqlx::query_scalar("SELECT server_id FROM allocations WHERE id = $1")
        .bind(reserved)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(freed, None);
    let ok: Option<bool> =
        sqlx::query_scalar("SELECT successful FROM server_transfers WHERE server_id = $1")
            .bind(sid)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!(ok, Some(false));

    // Backups.
    let b = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO backups (server_id, uuid, name, disk) VALUES ($1, $2, 'b1', 'wings')")
        .bind(sid)
        .bind(b)
        .execute(&p.db)
        .await
        .unwrap();
    let r = p
        .call(wings(
            &p,
            &n,
            Method::GET,
            &format!("/backups/{b}?size=100"),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "not an S3 backup");
    let report = json!({"checksum": "abc123", "checksum_type": "sha1", "size": 4096, "successful": true, "parts": null});
    assert_eq!(
        p.call(wings(
            &p,
            &n,
            Method::POST,
            &format!("/backups/{b}"),
            Some(report.clone())
        ))
        .await
        .unwrap()
        .status,
        204
    );
    let (ok, sum, bytes): (bool, Option<String>, i64) =
        sqlx::query_as("SELECT is_successful, checksum, bytes FROM backups WHERE uuid = $1")
            .bind(b)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!(
        (ok, sum.as_deref(), bytes),
        (true, Some("sha1:abc123"), 4096)
    );
    assert_eq!(
        p.call(wings(
            &p,
            &n,
            Method::POST,
            &format!("/backups/{b}"),
            Some(report)
        ))
        .await
        .unwrap()
        .status,
        400,
        "already done"
    );
    let other = node(&p, &admin).await;
    assert_eq!(
        p.call(wings(
            &p,
            &other,
            Method::POST,
            &format!("/backups/{b}/restore"),
            Some(json!({"successful": true}))
        ))
        .await
        .unwrap()
        .status,
        403
    );
    sqlx::query("UPDATE servers SET status = 'restoring_backup' WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    assert_eq!(
        p.call(wings(
            &p,
            &n,
            Method::POST,
            &format!("/backups/{b}/restore"),
            Some(json!({"successful": true}))
        ))
        .await
        .unwrap()
        .status,
        204
    );
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(status, None);
}
