//! The Client API against a real panel-api on PostgreSQL (routes that need no
//! daemon, or whose daemon is unreachable): who may see and do what, the shapes
//! upstream's clients parse, validation, and the activity they leave.

use ferrodactyl_tests::{assert_shape, closed_port, Account, Panel, Resp};
use reqwest::Method;
use serde_json::{json, Value};

struct World {
    p: Panel,
    admin: Account,
    owner: Account,
    stranger: Account,
    node: i64,
    egg: i64,
    server: i64,
    short: String,
    uuid: String,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(tweak: impl FnOnce(&mut panel_api::config::Config)) -> World {
    let p = Panel::start_with(tweak).await.unwrap();
    let admin = p.account("root", true, 1).await.unwrap();
    let app = p.account("appadmin", true, 2).await.unwrap();
    let owner = p.account("owner", false, 1).await.unwrap();
    let stranger = p.account("stranger", false, 1).await.unwrap();
    let (_, node) = p.node(&app, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let server = p.seed_server(owner.id, node, egg, "alpha").await.unwrap();
    let (short, uuid): (String, uuid::Uuid) =
        sqlx::query_as("SELECT uuid_short, uuid FROM servers WHERE id = $1")
            .bind(server)
            .fetch_one(&p.db)
            .await
            .unwrap();
    World {
        p,
        admin,
        owner,
        stranger,
        node,
        egg,
        server,
        short,
        uuid: uuid.to_string(),
    }
}

impl World {
    async fn get(&self, path: &str, key: &str) -> Resp {
        self.p
            .get(&format!("/api/client{path}"), key)
            .await
            .unwrap()
    }
    async fn send(&self, m: Method, path: &str, key: &str, body: Value) -> Resp {
        self.p
            .send(m, &format!("/api/client{path}"), key, &body)
            .await
            .unwrap()
    }
    fn s(&self, rest: &str) -> String {
        format!("/servers/{}{rest}", self.short)
    }
    /// A subuser of the server with `perms`.
    async fn subuser(&self, name: &str, perms: &[&str]) -> Account {
        let a = self.p.account(name, false, 1).await.unwrap();
        sqlx::query("INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, $3)")
            .bind(a.id)
            .bind(self.server)
            .bind(json!(perms))
            .execute(&self.p.db)
            .await
            .unwrap();
        a
    }
    async fn events(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event FROM activity_logs ORDER BY id")
            .fetch_all(&self.p.db)
            .await
            .unwrap()
    }
}

const CLIENT_SERVER_SHAPE: &[(&str, &str)] = &[
    ("server_owner", "bool"),
    ("identifier", "string"),
    ("internal_id", "int"),
    ("uuid", "string"),
    ("name", "string"),
    ("node", "string"),
    ("is_node_under_maintenance", "bool"),
    ("sftp_details", "object"),
    ("description", "string"),
    ("limits", "object"),
    ("invocation", "string"),
    ("docker_image", "string"),
    ("egg_features", "?array"),
    ("feature_limits", "object"),
    ("status", "?string"),
    ("is_suspended", "bool"),
    ("is_installing", "bool"),
    ("is_transferring", "bool"),
];

#[tokio::test]
async fn the_server_list_follows_upstreams_type_rules() {
    let w = world().await;
    let other =
        w.p.seed_server(w.stranger.id, w.node, w.egg, "beta")
            .await
            .unwrap();
    let _ = other;
    let names = |r: &Resp| -> Vec<String> {
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["attributes"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = w.get("", &w.owner.key).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names(&r), ["alpha"]);
    let a = &r.json["data"][0]["attributes"];
    assert_shape(a, CLIENT_SERVER_SHAPE);
    assert_eq!(a["server_owner"], true);
    assert_eq!(a["identifier"], json!(w.short));
    assert_eq!(a["sftp_details"], json!({"ip": "127.0.0.1", "port": 2022}));
    assert_eq!(
        a["relationships"]["allocations"]["data"][0]["attributes"]["is_default"],
        true
    );
    assert_eq!(
        a["relationships"]["variables"]["data"][0]["attributes"]["env_variable"],
        "SERVER_MESSAGE"
    );
    assert_eq!(r.json["meta"]["pagination"]["per_page"], 50);
    // Subusers see the servers they were added to.
    let sub = w.subuser("sub", &["control.console"]).await;
    let r = w.get("", &sub.key).await;
    assert_eq!(names(&r), ["alpha"]);
    assert_eq!(r.json["data"][0]["attributes"]["server_owner"], false);
    // …but not with type=owner.
    assert!(names(&w.get("?type=owner", &sub.key).await).is_empty());
    // Admins: their own by default, the others with type=admin, all with admin-all.
    assert!(names(&w.get("", &w.admin.key).await).is_empty());
    assert_eq!(
        names(&w.get("?type=admin", &w.admin.key).await),
        ["alpha", "beta"]
    );
    assert_eq!(
        names(&w.get("?type=admin-all", &w.admin.key).await),
        ["alpha", "beta"]
    );
    // A non-admin asking for the admin views gets an empty list, not an error.
    let r = w.get("?type=admin-all", &w.owner.key).await;
    assert_eq!(r.status, 200);
    assert!(names(&r).is_empty());
    // filter[*] by name and by ip:port; per_page is capped at 100; links keep the query.
    assert_eq!(
        names(&w.get("?type=admin-all&filter[*]=bet", &w.admin.key).await),
        ["beta"]
    );
    let port: i32 = sqlx::query_scalar("SELECT MIN(port) FROM allocations")
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    let prefix = &port.to_string()[..4];
    let r = w
        .get(
            &format!("?type=admin-all&filter[*]=127.0.0.1:{prefix}"),
            &w.admin.key,
        )
        .await;
    assert_eq!(names(&r).len(), 2);
    let r = w.get("?type=admin-all&per_page=1", &w.admin.key).await;
    assert_eq!(r.json["meta"]["pagination"]["total_pages"], 2);
    let next = r.json["meta"]["pagination"]["links"]["next"]
        .as_str()
        .unwrap();
    assert!(
        next.contains("type=admin-all") && next.contains("per_page=1") && next.ends_with("page=2"),
        "{next}"
    );
    assert_eq!(
        w.get("?per_page=500", &w.owner.key).await.json["meta"]["pagination"]["per_page"],
        100
    );
}

#[tokio::test]
async fn a_server_the_caller_cannot_see_is_a_404_and_application_keys_are_refused() {
    let w = world().await;
    let r = w.get(&w.s(""), &w.stranger.key).await;
    r.assert_envelope(404, "NotFoundHttpException");
    assert_eq!(
        r.error_detail(),
        "The requested resource does not exist on this server."
    );
    let r = w.get("/servers/nope1234", &w.owner.key).await;
    r.assert_envelope(404, "NotFoundHttpException");
    // The admin sees it, with the admin pseudo-permissions.
    let r = w.get(&w.s(""), &w.admin.key).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["meta"]["is_server_owner"], false);
    assert_eq!(r.json["meta"]["user_permissions"][0], "*");
    assert_eq!(
        r.json["meta"]["user_permissions"].as_array().unwrap().len(),
        4
    );
    // The full uuid works as well as the identifier.
    let r = w.get(&format!("/servers/{}", w.uuid), &w.owner.key).await;
    assert_eq!(r.json["meta"]["user_permissions"], json!(["*"]));
    // An application key: 404 for an unknown server, 403 otherwise.
    let app = w.p.account("app2", true, 2).await.unwrap();
    w.get("/servers/nope1234", &app.key)
        .await
        .assert_envelope(404, "NotFoundHttpException");
    let r = w.get(&w.s(""), &app.key).await;
    r.assert_envelope(403, "AccessDeniedHttpException");
    assert!(r.error_detail().contains("application API key"));
    w.get("/account", &app.key)
        .await
        .assert_envelope(403, "AccessDeniedHttpException");
    assert!(w
        .get("/account", &w.owner.key)
        .await
        .headers
        .contains_key("x-ratelimit-limit"));
}

#[tokio::test]
async fn subusers_hold_exactly_their_permissions() {
    let w = world().await;
    let sub = w
        .subuser("limited", &["websocket.connect", "startup.read"])
        .await;
    let r = w.get(&w.s(""), &sub.key).await;
    assert_eq!(
        r.json["meta"]["user_permissions"],
        json!(["websocket.connect", "startup.read"])
    );
    // Without allocation.read only the primary allocation shows, without notes.
    let allocs = &r.json["attributes"]["relationships"]["allocations"]["data"];
    assert_eq!(allocs.as_array().unwrap().len(), 1);
    // Denied routes answer 403 with upstream's text.
    for (m, path, body) in [
        (Method::POST, "/command", json!({"command": "x"})),
        (Method::GET, "/schedules", json!({})),
        (Method::GET, "/users", json!({})),
        (Method::GET, "/backups", json!({})),
        (Method::GET, "/network/allocations", json!({})),
        (Method::POST, "/settings/rename", json!({"name": "x"})),
        (Method::GET, "/activity", json!({})),
        (Method::GET, "/files/list", json!({})),
        (Method::GET, "/databases", json!({})),
    ] {
        let r = w.send(m.clone(), &w.s(path), &sub.key, body).await;
        r.assert_envelope(403, "AccessDeniedHttpException");
        assert_eq!(r.error_detail(), "This action is unauthorized.", "{path}");
    }
    // Power: the permission comes from the signal; an unknown signal is a 403 for a
    // subuser but a 422 for the owner.
    let r = w
        .send(
            Method::POST,
            &w.s("/power"),
            &sub.key,
            json!({"signal": "bogus"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = w
        .send(
            Method::POST,
            &w.s("/power"),
            &w.owner.key,
            json!({"signal": "bogus"}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    // Allowed: the startup listing, where hidden variables never appear.
    let r = w.get(&w.s("/startup"), &sub.key).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["meta"]["raw_startup_command"], "sh ./start.sh");
    assert_eq!(
        r.json["meta"]["docker_images"],
        json!({"Busybox": "ferrodactyl/test-base:latest"})
    );
}

#[tokio::test]
async fn a_suspended_or_installing_server_is_a_409_except_its_details() {
    let w = world().await;
    for status in ["suspended", "installing", "restoring_backup"] {
        sqlx::query("UPDATE servers SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(w.server)
            .execute(&w.p.db)
            .await
            .unwrap();
        // A write from outside the panel reaches its cached server view with the
        // triggers' notice; wait for it, as the details are read below.
        w.p.settle().await;
        w.get(&w.s("/resources"), &w.owner.key)
            .await
            .assert_envelope(409, "ServerStateConflictException");
        w.get(&w.s("/schedules"), &w.owner.key)
            .await
            .assert_envelope(409, "ServerStateConflictException");
        let r = w.get(&w.s(""), &w.owner.key).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json["attributes"]["status"], status);
    }
    // The websocket: admins may watch an installing server, owners may not.
    sqlx::query("UPDATE servers SET status = 'installing' WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    assert_eq!(w.get(&w.s("/websocket"), &w.owner.key).await.status, 409);
    assert_eq!(w.get(&w.s("/websocket"), &w.admin.key).await.status, 200);
    sqlx::query("UPDATE servers SET status = 'reinstall_failed' WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    assert_eq!(w.get(&w.s("/schedules"), &w.owner.key).await.status, 200);
}

fn decode_jwt(token: &str, secret: &str) -> Value {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .expect("signed with the node token")
    .claims
}

async fn node_token(w: &World) -> String {
    let n = panel_api::http::application::nodes::find(&w.p.state, w.node)
        .await
        .unwrap();
    n.conn(&w.p.state).unwrap().token
}

#[tokio::test]
async fn websocket_and_signed_url_tokens_are_minted_as_upstream() {
    let w = world().await;
    let secret = node_token(&w).await;
    let r = w.get(&w.s("/websocket"), &w.owner.key).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let socket = r.json["data"]["socket"].as_str().unwrap();
    assert!(socket.starts_with("ws://127.0.0.1:"), "{socket}");
    assert!(socket.ends_with(&format!("/api/servers/{}/ws", w.uuid)));
    assert!(
        r.text().contains("ws:\\/\\/"),
        "slashes are escaped as PHP does"
    );
    let c = decode_jwt(r.json["data"]["token"].as_str().unwrap(), &secret);
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "iss",
            "aud",
            "jti",
            "iat",
            "nbf",
            "exp",
            "server_uuid",
            "permissions",
            "user_uuid",
            "user_id",
            "unique_id"
        ]
    );
    assert_eq!(c["server_uuid"], json!(w.uuid));
    assert_eq!(c["permissions"], json!(["*"]));
    assert_eq!(c["user_id"], w.owner.id);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert!(c["aud"].is_array());
    assert_eq!(
        c["jti"],
        json!(panel_api::http::application::servers::jti(
            w.owner.id,
            &w.uuid.parse().unwrap()
        ))
    );
    // A subuser without websocket.connect cannot get one.
    let sub = w.subuser("nows", &["control.console"]).await;
    let r = w.get(&w.s("/websocket"), &sub.key).await;
    r.assert_envelope(403, "HttpForbiddenException");
    // Signed download and upload URLs.
    let r = w
        .get(&w.s("/files/download?file=%2Fa%20b.txt"), &w.owner.key)
        .await;
    assert_eq!(r.json["object"], "signed_url");
    let url = r.json["attributes"]["url"].as_str().unwrap();
    assert!(url.contains("/download/file?token="));
    let c = decode_jwt(url.split("token=").nth(1).unwrap(), &secret);
    assert_eq!(c["file_path"], "/a b.txt");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let r = w.get(&w.s("/files/upload"), &w.owner.key).await;
    let url = r.json["attributes"]["url"].as_str().unwrap();
    assert!(url.contains("/upload/file?token="));
    let c = decode_jwt(url.split("token=").nth(1).unwrap(), &secret);
    assert_eq!(c["server_uuid"], json!(w.uuid));
    assert!(c.get("file_path").is_none());
}

#[tokio::test]
async fn account_details_email_and_password() {
    let w = world().await;
    let r = w.get("/account", &w.owner.key).await;
    assert_shape(
        &r.json["attributes"],
        &[
            ("id", "int"),
            ("admin", "bool"),
            ("username", "string"),
            ("email", "string"),
            ("first_name", "string"),
            ("last_name", "string"),
            ("language", "string"),
        ],
    );
    // Wrong password first, before field validation.
    let r = w
        .send(
            Method::PUT,
            "/account/email",
            &w.owner.key,
            json!({"email": "not-an-email", "password": "nope"}),
        )
        .await;
    r.assert_envelope(400, "InvalidPasswordProvidedException");
    let r = w
        .send(
            Method::PUT,
            "/account/email",
            &w.owner.key,
            json!({"email": "not-an-email", "password": "password123"}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    let r = w
        .send(
            Method::PUT,
            "/account/email",
            &w.owner.key,
            json!({"email": "STRANGER@example.com", "password": "password123"}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    let r = w
        .send(
            Method::PUT,
            "/account/email",
            &w.owner.key,
            json!({"email": "new@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.raw.is_empty());
    assert_eq!(
        w.get("/account", &w.owner.key).await.json["attributes"]["email"],
        "new@example.com"
    );
    // Password: confirmation and length; the API key keeps working afterwards.
    let r = w
        .send(Method::PUT, "/account/password", &w.owner.key,
              json!({"current_password": "password123", "password": "longenough1", "password_confirmation": "different"}))
        .await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(r.json["errors"][0]["meta"]["rule"], "confirmed");
    let r = w
        .send(Method::PUT, "/account/password", &w.owner.key,
              json!({"current_password": "password123", "password": "longenough1", "password_confirmation": "longenough1"}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let hash: String = sqlx::query_scalar("SELECT password FROM users WHERE id = $1")
        .bind(w.owner.id)
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    assert!(panel_api::crypto::verify_password("longenough1", &hash));
    assert_eq!(w.get("/account", &w.owner.key).await.status, 200);
    // The account's activity shows both changes, newest first, ips visible to the actor.
    let r = w.get("/account/activity", &w.owner.key).await;
    let events: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "user:account.password-changed",
            "user:account.email-changed"
        ]
    );
    let e = &r.json["data"][1]["attributes"];
    assert_eq!(
        e["properties"],
        json!({"old": "owner@example.com", "new": "new@example.com"})
    );
    assert_eq!(e["is_api"], true);
    assert_eq!(e["has_additional_metadata"], false);
    assert_eq!(e["id"].as_str().unwrap().len(), 40);
    assert!(e["ip"].is_string());
    let r = w
        .get(
            "/account/activity?filter[event]=email&include=actor",
            &w.owner.key,
        )
        .await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["actor"]["attributes"]["username"],
        "owner"
    );
}

#[tokio::test]
async fn two_factor_enrolment_with_recovery_tokens() {
    let w = world().await;
    let r = w.get("/account/two-factor", &w.owner.key).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json["data"]["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    let url = r.json["data"]["image_url_data"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "otpauth://totp/Pterodactyl:owner%40example.com?secret={secret}&issuer=Pterodactyl"
        )
    );
    let step = (chrono::Utc::now().timestamp() / 30) as u64;
    let code = panel_api::totp::code_at(&secret, step).unwrap();
    let r = w
        .send(
            Method::POST,
            "/account/two-factor",
            &w.owner.key,
            json!({"code": code, "password": "wrong"}),
        )
        .await;
    r.assert_envelope(400, "BadRequestHttpException");
    let r = w
        .send(
            Method::POST,
            "/account/two-factor",
            &w.owner.key,
            json!({"code": "000000", "password": "password123"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "TwoFactorAuthenticationTokenInvalid");
    let r = w
        .send(
            Method::POST,
            "/account/two-factor",
            &w.owner.key,
            json!({"code": code, "password": "password123"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["object"], "recovery_tokens");
    assert_eq!(r.json["attributes"]["tokens"].as_array().unwrap().len(), 10);
    assert_eq!(w.get("/account/two-factor", &w.owner.key).await.status, 400);
    let r = w
        .send(
            Method::POST,
            "/account/two-factor/disable",
            &w.owner.key,
            json!({"password": "password123"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let on: bool = sqlx::query_scalar("SELECT use_totp FROM users WHERE id = $1")
        .bind(w.owner.id)
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    assert!(!on);
    assert!(w
        .events()
        .await
        .contains(&"user:two-factor.create".to_string()));
}

#[tokio::test]
async fn required_two_factor_blocks_everything_but_enrolment() {
    let p = Panel::start_with(|c| c.two_factor_required = 2)
        .await
        .unwrap();
    let u = p.account("twofa", false, 1).await.unwrap();
    let r = p.get("/api/client", &u.key).await.unwrap();
    r.assert_envelope(400, "TwoFactorAuthRequiredException");
    assert_eq!(
        p.get("/api/client/account", &u.key).await.unwrap().status,
        200
    );
    assert_eq!(
        p.get("/api/client/account/two-factor", &u.key)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn client_api_keys_are_shown_once_limited_and_scoped() {
    let w = world().await;
    let r = w
        .send(
            Method::POST,
            "/account/api-keys",
            &w.owner.key,
            json!({"description": "ci", "allowed_ips": ["10.0.0.0/8", "bogus"]}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(r.json["errors"][0]["meta"]["source_field"], "allowed_ips.1");
    assert_eq!(
        r.error_detail(),
        "\"bogus\" is not a valid IP address or CIDR range."
    );
    let r = w
        .send(
            Method::POST,
            "/account/api-keys",
            &w.owner.key,
            json!({"description": "ci"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_shape(
        &r.json["attributes"],
        &[
            ("identifier", "string"),
            ("description", "string"),
            ("allowed_ips", "array"),
            ("last_used_at", "?string"),
            ("created_at", "string"),
        ],
    );
    let id = r.json["attributes"]["identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = r.json["meta"]["secret_token"].as_str().unwrap();
    assert!(id.starts_with("ptlc_") && id.len() == 16 && secret.len() == 32);
    let key = format!("{id}{secret}");
    assert_eq!(w.get("/account", &key).await.status, 200);
    let list = w.get("/account/api-keys", &w.owner.key).await;
    assert!(
        !list.text().contains(secret),
        "the secret is never listed again"
    );
    // 25 per user.
    for i in 0..23 {
        let r = w
            .send(
                Method::POST,
                "/account/api-keys",
                &w.owner.key,
                json!({"description": format!("k{i}")}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = w
        .send(
            Method::POST,
            "/account/api-keys",
            &w.owner.key,
            json!({"description": "one too many"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error_detail(),
        "You have reached the account limit for number of API keys."
    );
    // Another user's key identifier is a 404; deleting one's own revokes it.
    assert_eq!(
        w.send(
            Method::DELETE,
            &format!("/account/api-keys/{id}"),
            &w.stranger.key,
            json!({})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        w.send(
            Method::DELETE,
            &format!("/account/api-keys/{id}"),
            &w.owner.key,
            json!({})
        )
        .await
        .status,
        204
    );
    assert_eq!(w.get("/account", &key).await.status, 401);
}

#[tokio::test]
async fn ssh_keys_are_parsed_fingerprinted_and_soft_deleted() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(ok.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let fp = String::from_utf8(
        std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(path.with_extension("pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let fp = fp
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("SHA256:")
        .to_string();
    let r = w
        .send(
            Method::POST,
            "/account/ssh-keys",
            &w.owner.key,
            json!({"name": "laptop", "public_key": public}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json["attributes"]["fingerprint"],
        json!(fp),
        "matches OpenSSH's own fingerprint"
    );
    assert!(r.json["attributes"]["public_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----\r\n"));
    let r = w
        .send(
            Method::POST,
            "/account/ssh-keys",
            &w.owner.key,
            json!({"name": "again", "public_key": public}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        r.error_detail(),
        "The public key provided already exists on your account."
    );
    let r = w
        .send(
            Method::POST,
            "/account/ssh-keys",
            &w.owner.key,
            json!({"name": "bad", "public_key": "ssh-dss AAAAB3NzaC1kc3MAAACBAP=="}),
        )
        .await;
    assert_eq!(r.error_detail(), "DSA keys are not supported.");
    let r = w
        .send(
            Method::POST,
            "/account/ssh-keys",
            &w.owner.key,
            json!({"name": "bad", "public_key": "hello"}),
        )
        .await;
    assert_eq!(r.error_detail(), "The public key provided is not valid.");
    assert_eq!(
        w.get("/account/ssh-keys", &w.owner.key).await.json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = w
        .send(
            Method::POST,
            "/account/ssh-keys/remove",
            &w.owner.key,
            json!({"fingerprint": fp}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(w.get("/account/ssh-keys", &w.owner.key).await.json["data"]
        .as_array()
        .unwrap()
        .is_empty());
    // Removing something that does not exist is still a 204.
    let r = w
        .send(
            Method::POST,
            "/account/ssh-keys/remove",
            &w.owner.key,
            json!({"fingerprint": "nothing"}),
        )
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn subusers_cannot_escalate_or_edit_themselves() {
    let w = world().await;
    let manager = w
        .subuser(
            "manager",
            &[
                "user.create",
                "user.read",
                "user.update",
                "user.delete",
                "control.console",
            ],
        )
        .await;
    let r = w
        .send(
            Method::POST,
            &w.s("/users"),
            &manager.key,
            json!({"email": "friend@example.com", "permissions": ["control.start"]}),
        )
        .await;
    r.assert_envelope(403, "HttpForbiddenException");
    assert_eq!(
        r.error_detail(),
        "Cannot assign permissions to a subuser that your account does not actively possess."
    );
    // Unknown strings are not the manager's to give either.
    let r = w
        .send(
            Method::POST,
            &w.s("/users"),
            &manager.key,
            json!({"email": "friend@example.com", "permissions": ["made.up"]}),
        )
        .await;
    assert_eq!(r.status, 403);
    // A new email creates an account; duplicates go; websocket.connect is added.
    let r = w
        .send(Method::POST, &w.s("/users"), &manager.key,
              json!({"email": "friend@example.com", "permissions": ["control.console", "control.console"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["object"], "server_subuser");
    assert_eq!(
        r.json["attributes"]["permissions"],
        json!(["control.console", "websocket.connect"])
    );
    let friend_uuid = r.json["attributes"]["uuid"].as_str().unwrap().to_string();
    let name: String = sqlx::query_scalar(
        "SELECT name_first || ' ' || name_last FROM users WHERE email = 'friend@example.com'",
    )
    .fetch_one(&w.p.db)
    .await
    .unwrap();
    assert_eq!(name, "Server Subuser");
    // Twice: 400; the owner: 400.
    let r = w
        .send(
            Method::POST,
            &w.s("/users"),
            &w.owner.key,
            json!({"email": "friend@example.com", "permissions": ["file.read"]}),
        )
        .await;
    assert_eq!(r.error_code(), "ServerSubuserExistsException");
    let r = w
        .send(
            Method::POST,
            &w.s("/users"),
            &w.owner.key,
            json!({"email": "owner@example.com", "permissions": ["file.read"]}),
        )
        .await;
    assert_eq!(r.error_code(), "UserIsServerOwnerException");
    // Nobody edits themselves.
    let r = w
        .send(
            Method::POST,
            &w.s(&format!("/users/{}", manager.uuid)),
            &manager.key,
            json!({"permissions": ["user.read"]}),
        )
        .await;
    r.assert_envelope(403, "AccessDeniedHttpException");
    // The owner updates (unknown strings dropped) and removes.
    let r = w
        .send(
            Method::POST,
            &w.s(&format!("/users/{friend_uuid}")),
            &w.owner.key,
            json!({"permissions": ["file.read", "made.up"]}),
        )
        .await;
    assert_eq!(
        r.json["attributes"]["permissions"],
        json!(["file.read", "websocket.connect"])
    );
    assert_eq!(
        w.get(&w.s("/users"), &w.owner.key).await.json["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = w
        .send(
            Method::DELETE,
            &w.s(&format!("/users/{friend_uuid}")),
            &w.owner.key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        w.get(&w.s(&format!("/users/{friend_uuid}")), &w.owner.key)
            .await
            .error_detail(),
        "The requested resource was not found for this server."
    );
    let events = w.events().await;
    for e in [
        "server:subuser.create",
        "server:subuser.update",
        "server:subuser.delete",
    ] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
    // The permission catalog.
    let r = w.get("/permissions", &w.owner.key).await;
    let groups: Vec<&str> = r.json["attributes"]["permissions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        groups,
        [
            "websocket",
            "control",
            "user",
            "file",
            "backup",
            "allocation",
            "startup",
            "database",
            "schedule",
            "settings",
            "activity"
        ]
    );
    let total: usize = r.json["attributes"]["permissions"]
        .as_object()
        .unwrap()
        .values()
        .map(|g| g["keys"].as_object().unwrap().len())
        .sum();
    assert_eq!(total, 40);
}

#[tokio::test]
async fn schedules_and_tasks_validate_and_keep_their_order() {
    let w = world().await;
    let base = json!({"name": "nightly", "minute": "0", "hour": "4", "day_of_month": "*", "month": "*", "day_of_week": "*", "is_active": true});
    // Missing month: upstream answers 500; we answer 422.
    let mut no_month = base.clone();
    no_month.as_object_mut().unwrap().remove("month");
    let r = w
        .send(Method::POST, &w.s("/schedules"), &w.owner.key, no_month)
        .await;
    r.assert_envelope(422, "ValidationException");
    for (field, value) in [
        ("minute", "61"),
        ("hour", "*/0"),
        ("day_of_month", "32"),
        ("month", "JANUARY"),
        ("day_of_week", "8"),
    ] {
        let mut bad = base.clone();
        bad[field] = json!(value);
        let r = w
            .send(Method::POST, &w.s("/schedules"), &w.owner.key, bad)
            .await;
        r.assert_envelope(422, "ValidationException");
        assert_eq!(
            r.error_detail(),
            "The cron data provided does not evaluate to a valid expression."
        );
        assert_eq!(r.json["errors"][0]["meta"]["source_field"], field);
    }
    let r = w
        .send(Method::POST, &w.s("/schedules"), &w.owner.key, base.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = &r.json["attributes"];
    assert_eq!(r.json["object"], "server_schedule");
    assert_eq!(
        a["cron"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["day_of_week", "day_of_month", "month", "hour", "minute"]
    );
    assert!(a["next_run_at"]
        .as_str()
        .unwrap()
        .ends_with("T04:00:00+00:00"));
    assert_eq!(a["relationships"]["tasks"]["data"], json!([]));
    let sid = a["id"].as_i64().unwrap();
    let t = |body: Value| {
        let w = &w;
        async move {
            w.send(
                Method::POST,
                &w.s(&format!("/schedules/{sid}/tasks")),
                &w.owner.key,
                body,
            )
            .await
        }
    };
    let r = t(json!({"action": "command", "time_offset": 0})).await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        r.error_detail(),
        "The payload field is required unless action is in backup."
    );
    let r = t(json!({"action": "backup", "time_offset": 0})).await;
    r.assert_envelope(403, "HttpForbiddenException");
    assert_eq!(
        t(json!({"action": "command", "payload": "a", "time_offset": 0}))
            .await
            .status,
        200
    );
    assert_eq!(
        t(json!({"action": "command", "payload": "b", "time_offset": 5}))
            .await
            .status,
        200
    );
    // Inserting at 1 shifts the others.
    let r = t(json!({"action": "power", "payload": "restart", "time_offset": 0, "sequence_id": 1}))
        .await;
    assert_eq!(r.json["attributes"]["sequence_id"], 1);
    let r = w
        .get(&w.s(&format!("/schedules/{sid}")), &w.owner.key)
        .await;
    let order: Vec<(i64, String)> = r.json["attributes"]["relationships"]["tasks"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["attributes"]["sequence_id"].as_i64().unwrap(),
                t["attributes"]["payload"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [(1, "restart".into()), (2, "a".into()), (3, "b".into())]
    );
    // Deleting renumbers.
    let first = r.json["attributes"]["relationships"]["tasks"]["data"][0]["attributes"]["id"]
        .as_i64()
        .unwrap();
    let r = w
        .send(
            Method::DELETE,
            &w.s(&format!("/schedules/{sid}/tasks/{first}")),
            &w.owner.key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = w
        .get(&w.s(&format!("/schedules/{sid}")), &w.owner.key)
        .await;
    let seqs: Vec<i64> = r.json["attributes"]["relationships"]["tasks"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["attributes"]["sequence_id"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2]);
    // Another server's schedule is not reachable through this one.
    let other =
        w.p.seed_server(w.owner.id, w.node, w.egg, "other")
            .await
            .unwrap();
    let short: String = sqlx::query_scalar("SELECT uuid_short FROM servers WHERE id = $1")
        .bind(other)
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    assert_eq!(
        w.get(&format!("/servers/{short}/schedules/{sid}"), &w.owner.key)
            .await
            .status,
        404
    );
    // Updating and deleting.
    let mut upd = base.clone();
    upd["name"] = json!("renamed");
    upd["is_active"] = json!(false);
    let r = w
        .send(
            Method::POST,
            &w.s(&format!("/schedules/{sid}")),
            &w.owner.key,
            upd,
        )
        .await;
    assert_eq!(r.json["attributes"]["name"], "renamed");
    assert_eq!(r.json["attributes"]["is_active"], false);
    assert_eq!(
        w.send(
            Method::DELETE,
            &w.s(&format!("/schedules/{sid}")),
            &w.owner.key,
            json!({})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        w.get(&w.s("/schedules"), &w.owner.key).await.json["data"],
        json!([])
    );
}

#[tokio::test]
async fn network_allocations_follow_the_limit_and_primary_rules() {
    let p = Panel::start_with(|c| {
        c.client_allocations_enabled = true;
        c.client_allocations_range = Some((31000, 31001));
    })
    .await
    .unwrap();
    let app = p.account("app", true, 2).await.unwrap();
    let owner = p.account("owner", false, 1).await.unwrap();
    let (_, node) = p.node(&app, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(owner.id, node, egg, "net").await.unwrap();
    let short: String = sqlx::query_scalar("SELECT uuid_short FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let base = format!("/api/client/servers/{short}/network/allocations");
    // No limit set: nothing may be added.
    let r = p
        .send(Method::POST, &base, &owner.key, &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error_detail(),
        "Cannot assign additional allocations to this server: limit has been reached."
    );
    sqlx::query("UPDATE servers SET allocation_limit = 13 WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    // Free allocations on the primary IP first (9 exist), then the configured range (2), then none.
    for _ in 0..11 {
        let r = p
            .send(Method::POST, &base, &owner.key, &json!({}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json["attributes"]["is_default"], false);
    }
    let r = p
        .send(Method::POST, &base, &owner.key, &json!({}))
        .await
        .unwrap();
    assert_eq!(r.error_code(), "NoAutoAllocationSpaceAvailableException");
    let list = p.get(&base, &owner.key).await.unwrap();
    let items = list.json["data"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    let ports: Vec<i64> = items
        .iter()
        .map(|a| a["attributes"]["port"].as_i64().unwrap())
        .collect();
    assert!(ports.contains(&31000) && ports.contains(&31001));
    let primary = items
        .iter()
        .find(|a| a["attributes"]["is_default"] == true)
        .unwrap()["attributes"]["id"]
        .as_i64()
        .unwrap();
    let other = items
        .iter()
        .find(|a| a["attributes"]["is_default"] == false)
        .unwrap()["attributes"]["id"]
        .as_i64()
        .unwrap();
    let r = p
        .send(
            Method::DELETE,
            &format!("{base}/{primary}"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.error_detail(),
        "You cannot delete the primary allocation for this server."
    );
    let r = p
        .send(
            Method::POST,
            &format!("{base}/{other}"),
            &owner.key,
            &json!({"notes": "game port"}),
        )
        .await
        .unwrap();
    assert_eq!(r.json["attributes"]["notes"], "game port");
    let r = p
        .send(
            Method::POST,
            &format!("{base}/{other}"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let r = p
        .send(
            Method::POST,
            &format!("{base}/{other}/primary"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.json["attributes"]["is_default"], true);
    let r = p
        .send(
            Method::DELETE,
            &format!("{base}/{primary}"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let gone: Option<i64> = sqlx::query_scalar("SELECT server_id FROM allocations WHERE id = $1")
        .bind(primary)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn startup_variables_and_settings() {
    let w = world().await;
    // A hidden variable and a read-only one.
    sqlx::query("INSERT INTO egg_variables (egg_id, name, env_variable, default_value, user_viewable, user_editable, rules)
                 VALUES ($1, 'Secret', 'SECRET', 's3cr3t', FALSE, FALSE, 'string'), ($1, 'Fixed', 'FIXED', 'x', TRUE, FALSE, 'string')")
        .bind(w.egg)
        .execute(&w.p.db)
        .await
        .unwrap();
    sqlx::query("UPDATE servers SET startup = 'run {{SERVER_MEMORY}} {{SERVER_PORT}} {{SERVER_MESSAGE}} {{SECRET}}' WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    let port: i32 = sqlx::query_scalar(
        "SELECT a.port FROM allocations a JOIN servers s ON s.allocation_id = a.id WHERE s.id = $1",
    )
    .bind(w.server)
    .fetch_one(&w.p.db)
    .await
    .unwrap();
    let r = w.get(&w.s("/startup"), &w.owner.key).await;
    assert_eq!(r.status, 200);
    let envs: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["attributes"]["env_variable"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["SERVER_MESSAGE", "FIXED"]);
    assert_eq!(
        r.json["meta"]["startup_command"],
        format!("run 512 {port} Hello from Ferrodactyl [hidden]")
    );
    let var_path = w.s("/startup/variable");
    let put = |body: Value| w.send(Method::PUT, &var_path, &w.owner.key, body);
    assert_eq!(
        put(json!({"key": "SECRET", "value": "x"}))
            .await
            .error_detail(),
        "The environment variable you are trying to edit does not exist."
    );
    assert_eq!(
        put(json!({"key": "NOPE", "value": "x"})).await.status,
        400,
        "upstream's 500 is a 400 here"
    );
    assert_eq!(
        put(json!({"key": "FIXED", "value": "y"}))
            .await
            .error_detail(),
        "The environment variable you are trying to edit is read-only."
    );
    let r = put(json!({"key": "SERVER_MESSAGE", "value": "x".repeat(65)})).await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(r.json["errors"][0]["meta"]["source_field"], "value");
    let r = put(json!({"key": "SERVER_MESSAGE", "value": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["attributes"]["server_value"], "hi");
    assert_eq!(
        r.json["meta"]["startup_command"],
        format!("run 512 {port} hi [hidden]")
    );
    // Rename keeps the description unless sent; null clears it.
    sqlx::query("UPDATE servers SET description = 'desc' WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    let r = w
        .send(
            Method::POST,
            &w.s("/settings/rename"),
            &w.owner.key,
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let (name, desc): (String, String) =
        sqlx::query_as("SELECT name, description FROM servers WHERE id = $1")
            .bind(w.server)
            .fetch_one(&w.p.db)
            .await
            .unwrap();
    assert_eq!((name.as_str(), desc.as_str()), ("renamed", "desc"));
    w.send(
        Method::POST,
        &w.s("/settings/rename"),
        &w.owner.key,
        json!({"name": "renamed", "description": null}),
    )
    .await;
    let desc: String = sqlx::query_scalar("SELECT description FROM servers WHERE id = $1")
        .bind(w.server)
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    assert_eq!(desc, "");
    // Docker image: from the egg's list only; a manually set image cannot be changed.
    let r = w
        .send(
            Method::PUT,
            &w.s("/settings/docker-image"),
            &w.owner.key,
            json!({"docker_image": "evil/image"}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    let r = w
        .send(
            Method::PUT,
            &w.s("/settings/docker-image"),
            &w.owner.key,
            json!({"docker_image": "ferrodactyl/test-base:latest"}),
        )
        .await;
    assert_eq!(r.status, 204);
    sqlx::query("UPDATE servers SET image = 'custom/admin:1' WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    let r = w
        .send(
            Method::PUT,
            &w.s("/settings/docker-image"),
            &w.owner.key,
            json!({"docker_image": "ferrodactyl/test-base:latest"}),
        )
        .await;
    r.assert_envelope(400, "BadRequestHttpException");
    // Reinstall with the node down: 504 and the status is rolled back.
    let r = w
        .send(
            Method::POST,
            &w.s("/settings/reinstall"),
            &w.owner.key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 504);
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
        .bind(w.server)
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    assert_eq!(status, None);
    // Server activity lists what was done here.
    let r = w.get(&w.s("/activity"), &w.owner.key).await;
    let events: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["event"].as_str().unwrap())
        .collect();
    for e in [
        "server:startup.edit",
        "server:settings.rename",
        "server:settings.description",
    ] {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
}

#[tokio::test]
async fn backups_limits_and_locks_without_a_daemon() {
    let w = world().await;
    let r = w
        .send(Method::POST, &w.s("/backups"), &w.owner.key, json!({}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "TooManyBackupsException");
    sqlx::query("UPDATE servers SET backup_limit = 2 WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    // The node is down: 504 and no half-made backup row.
    let r = w
        .send(
            Method::POST,
            &w.s("/backups"),
            &w.owner.key,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, 504, "{}", r.text());
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backups")
        .fetch_one(&w.p.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // A finished, locked backup: listed, counted, not deletable until unlocked.
    let uuid = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO backups (server_id, uuid, name, disk, is_successful, is_locked, checksum, bytes, completed_at)
                 VALUES ($1, $2, 'done', 'wings', TRUE, TRUE, 'sha1:abc', 10, now())")
        .bind(w.server).bind(uuid).execute(&w.p.db).await.unwrap();
    // A failed backup is listed but not counted (nor held against the limit).
    sqlx::query("INSERT INTO backups (server_id, uuid, name, disk, is_successful, completed_at) VALUES ($1, $2, 'failed', 'wings', FALSE, now())")
        .bind(w.server).bind(uuid::Uuid::new_v4()).execute(&w.p.db).await.unwrap();
    let r = w.get(&w.s("/backups"), &w.owner.key).await;
    assert_eq!(r.json["meta"]["backup_count"], 1);
    assert_eq!(r.json["meta"]["pagination"]["total"], 2);
    assert_eq!(
        r.json["meta"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["backup_count", "pagination"]
    );
    assert_shape(
        &r.json["data"][0]["attributes"],
        &[
            ("uuid", "string"),
            ("is_successful", "bool"),
            ("is_locked", "bool"),
            ("name", "string"),
            ("ignored_files", "array"),
            ("checksum", "?string"),
            ("bytes", "int"),
            ("created_at", "string"),
            ("completed_at", "?string"),
        ],
    );
    let r = w
        .send(
            Method::DELETE,
            &w.s(&format!("/backups/{uuid}")),
            &w.owner.key,
            json!({}),
        )
        .await;
    assert_eq!(r.error_code(), "BackupLockedException");
    let r = w
        .send(
            Method::POST,
            &w.s(&format!("/backups/{uuid}/lock")),
            &w.owner.key,
            json!({}),
        )
        .await;
    assert_eq!(r.json["attributes"]["is_locked"], false);
    // Restoring needs `truncate`, and a server in no special state.
    let r = w
        .send(
            Method::POST,
            &w.s(&format!("/backups/{uuid}/restore")),
            &w.owner.key,
            json!({}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        w.get(&w.s("/backups/not-a-uuid"), &w.owner.key)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn client_databases_need_a_host() {
    let w = world().await;
    sqlx::query("UPDATE servers SET database_limit = 1 WHERE id = $1")
        .bind(w.server)
        .execute(&w.p.db)
        .await
        .unwrap();
    let r = w
        .send(
            Method::POST,
            &w.s("/databases"),
            &w.owner.key,
            json!({"database": "x", "remote": "%"}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    let r = w
        .send(
            Method::POST,
            &w.s("/databases"),
            &w.owner.key,
            json!({"database": "main", "remote": "bad host!"}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    let r = w
        .send(
            Method::POST,
            &w.s("/databases"),
            &w.owner.key,
            json!({"database": "main", "remote": "%"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "NoSuitableDatabaseHostException");
}

#[tokio::test]
async fn two_replicas_claim_each_due_schedule_once() {
    // The panel's own background runner would be a third claimer racing the two
    // ticks below; the test counts only what the two replicas claim.
    let w = world_with(|c| c.run_scheduler = false).await;
    // A second panel-api on the same database, as a second replica would be.
    let other = panel_api::state::AppState::new(
        w.p.db.clone(),
        w.p.state.cfg.clone(),
        panel_api::crypto::Encrypter::new(w.p.state.cfg.app_key.as_deref().unwrap()).unwrap(),
    )
    .unwrap();
    // Each runs hourly, half an hour from now: its next run, set when claimed, is
    // in the future whenever the checks below run (with `*` it was the next minute
    // boundary, which a slow run could pass between the claim and the checks).
    let minute = (chrono::Timelike::minute(&chrono::Utc::now()) + 30) % 60;
    for i in 0..20 {
        let sid: i64 = sqlx::query_scalar(
            "INSERT INTO schedules (server_id, name, cron_day_of_week, cron_month, cron_day_of_month, cron_hour, cron_minute, next_run_at)
             VALUES ($1, $2, '*', '*', '*', '*', $3, now() - interval '1 minute') RETURNING id",
        )
        .bind(w.server)
        .bind(format!("s{i}"))
        .bind(minute.to_string())
        .fetch_one(&w.p.db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO tasks (schedule_id, sequence_id, action, payload, time_offset) VALUES ($1, 1, 'command', 'x', 0)")
            .bind(sid)
            .execute(&w.p.db)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        panel_api::schedules::tick(&w.p.state, 50),
        panel_api::schedules::tick(&other, 50)
    );
    assert_eq!(
        a.unwrap() + b.unwrap(),
        20,
        "every due schedule claimed exactly once"
    );
    let (a, b) = tokio::join!(
        panel_api::schedules::tick(&w.p.state, 50),
        panel_api::schedules::tick(&other, 50)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 0, "nothing is claimed twice");
    let future: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM schedules WHERE next_run_at > now()")
            .fetch_one(&w.p.db)
            .await
            .unwrap();
    assert_eq!(future, 20);
}

#[tokio::test]
async fn the_client_rate_limit_is_per_user_with_headers() {
    let p = Panel::start_with(|c| c.client_rate_limit = 3)
        .await
        .unwrap();
    let u = p.account("limited", false, 1).await.unwrap();
    let remaining: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            let r = p.get("/api/client/account", &u.key).await.unwrap();
            assert_eq!(r.headers["x-ratelimit-limit"], "3");
            out.push(
                r.headers["x-ratelimit-remaining"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        }
        out
    };
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = p.get("/api/client/account", &u.key).await.unwrap();
    r.assert_envelope(429, "ThrottleRequestsException");
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let p = Panel::start_with(|c| c.max_body_bytes = 1024)
        .await
        .unwrap();
    let u = p.account("big", false, 1).await.unwrap();
    // Declared too large: refused on the Content-Length alone.
    let r = p
        .call(
            p.req(Method::PUT, "/api/client/account/email", Some(&u.key))
                .header("Content-Type", "application/json")
                .body(format!("{{\"email\":\"{}@x.io\"}}", "a".repeat(4096))),
        )
        .await
        .unwrap();
    r.assert_envelope(413, "PostTooLargeException");
    // Streamed without a length: cut off at the limit.
    let chunks = futures::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(bytes_of(&"a".repeat(1024)))),
    );
    let r = p
        .call(
            p.req(Method::PUT, "/api/client/account/email", Some(&u.key))
                .header("Content-Type", "application/json")
                .body(reqwest::Body::wrap_stream(chunks)),
        )
        .await
        .unwrap();
    r.assert_envelope(413, "PostTooLargeException");
    // The account is untouched.
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(u.id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(email, "big@example.com");
}

fn bytes_of(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}
