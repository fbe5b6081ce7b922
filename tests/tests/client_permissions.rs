//! The Client API permission matrix (reference §7.1, §7.2, §10): one row per routed
//! Client API route (per power signal for `/power`), each run through five cases
//! against a real panel-api, a real wings on Docker and a real MariaDB host:
//!
//! 1. no key: 401 `AuthenticationException`;
//! 2. an application (`ptla_`) key of a root admin: 403 `AccessDeniedHttpException`;
//! 3. a stranger (no access to the server): 404 `NotFoundHttpException`
//!    "The requested resource does not exist on this server." (server routes);
//! 4. a subuser holding every permission except the route's: 403 with upstream's
//!    envelope (server routes that need a permission);
//! 5. a subuser holding exactly the route's permission(s) (account routes: a plain
//!    user): the route's success status, the request really carried out.
//!
//! The table is checked against panel-api's routing list and its OpenAPI document,
//! so a routed Client API path missing here fails the test. Rows run in table order:
//! destructive ones (deletes, restore) come last, the reinstall very last.

mod wings_stack;

use ferrodactyl_tests::mariadb::MariaDb;
use ferrodactyl_tests::{Account, Resp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use wings_stack::{eventually, stack, Options, Srv, Stack};

const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDbVHz2Wrc8hrV9KH+7aFhwHFdR4IbcxMlcQoD4SPFRh perm";

/// Who the route belongs to.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Acts on the caller's own account (no server, no subuser permission).
    Account,
    /// `/servers/{server}/…`: the access rule and the subuser permission apply.
    Server,
}

#[derive(Clone, Copy)]
enum Body {
    None,
    /// JSON text; `{var}` placeholders are substituted before parsing.
    Json(&'static str),
    /// A raw `text/plain` body (`files/write`).
    Raw(&'static str),
}

/// What a subuser lacking the permission gets.
#[derive(Clone, Copy)]
enum Denied {
    /// 403 `AccessDeniedHttpException` "This action is unauthorized." (§3.4).
    Unauthorized,
    /// 403 `HttpForbiddenException` with this detail (§7.2 rows 17 and 47).
    Forbidden(&'static str),
}

/// What to do once the success case answered.
#[derive(Clone, Copy)]
enum Then {
    Nothing,
    /// Store the string (or number) at this JSON pointer of the answer as `{var}`.
    Capture(&'static str, &'static str),
    /// Wait for wings to report the server in this state.
    State(&'static str),
    /// Wait until no backup of the server is still in progress.
    Backups,
    /// Wait until the restore finished (the server's status is back to null).
    Restored,
}

struct Route {
    method: &'static str,
    /// The path after `/api/client`, with panel-api's parameter names.
    path: &'static str,
    /// Query string (with `?`), `{var}` placeholders substituted.
    query: &'static str,
    /// Which fixture fills each path parameter (others: the parameter's own name).
    bind: &'static [(&'static str, &'static str)],
    scope: Scope,
    /// The permission(s) a subuser needs (empty: any user with access).
    perms: &'static [&'static str],
    body: Body,
    ok: u16,
    denied: Denied,
    then: Then,
}

const fn starts_with(s: &str, prefix: &str) -> bool {
    let (s, p) = (s.as_bytes(), prefix.as_bytes());
    if s.len() < p.len() {
        return false;
    }
    let mut i = 0;
    while i < p.len() {
        if s[i] != p[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn route(
    method: &'static str,
    path: &'static str,
    perms: &'static [&'static str],
    ok: u16,
) -> Route {
    Route {
        method,
        path,
        query: "",
        bind: &[],
        scope: if starts_with(path, "/servers/") {
            Scope::Server
        } else {
            Scope::Account
        },
        perms,
        body: Body::None,
        ok,
        denied: Denied::Unauthorized,
        then: Then::Nothing,
    }
}

impl Route {
    const fn q(mut self, query: &'static str) -> Route {
        self.query = query;
        self
    }
    const fn json(mut self, body: &'static str) -> Route {
        self.body = Body::Json(body);
        self
    }
    const fn raw(mut self, body: &'static str) -> Route {
        self.body = Body::Raw(body);
        self
    }
    const fn bind(mut self, bind: &'static [(&'static str, &'static str)]) -> Route {
        self.bind = bind;
        self
    }
    const fn denied(mut self, detail: &'static str) -> Route {
        self.denied = Denied::Forbidden(detail);
        self
    }
    const fn then(mut self, then: Then) -> Route {
        self.then = then;
        self
    }
}

const SCHEDULE_BODY: &str = r#"{"name": "nightly", "minute": "0", "hour": "0", "day_of_month": "1", "month": "1", "day_of_week": "*", "is_active": true}"#;

/// Every Client API route (reference §7.2), in the order the test runs them.
const ROUTES: &[Route] = &[
    // ---- account routes (any authenticated user; the caller's own account)
    route("GET", "/", &[], 200),
    route("GET", "/permissions", &[], 200),
    route("GET", "/account", &[], 200),
    route("GET", "/account/two-factor", &[], 200).then(Then::Capture("totp_secret", "/data/secret")),
    route("POST", "/account/two-factor", &[], 200).json(r#"{"code": "{totp}", "password": "password123"}"#),
    route("POST", "/account/two-factor/disable", &[], 204).json(r#"{"password": "password123"}"#),
    route("PUT", "/account/email", &[], 204).json(r#"{"email": "acct-new@example.com", "password": "password123"}"#),
    route("PUT", "/account/password", &[], 204)
        .json(r#"{"current_password": "password123", "password": "password123", "password_confirmation": "password123"}"#),
    route("GET", "/account/activity", &[], 200),
    route("GET", "/account/api-keys", &[], 200),
    route("POST", "/account/api-keys", &[], 200).json(r#"{"description": "made", "allowed_ips": []}"#),
    route("DELETE", "/account/api-keys/{identifier}", &[], 204),
    route("GET", "/account/ssh-keys", &[], 200),
    route("POST", "/account/ssh-keys", &[], 200)
        .json(r#"{"name": "laptop", "public_key": "{ssh_key}"}"#)
        .then(Then::Capture("fingerprint", "/attributes/fingerprint")),
    route("POST", "/account/ssh-keys/remove", &[], 204).json(r#"{"fingerprint": "{fingerprint}"}"#),
    // ---- the server, its websocket, resources, activity
    route("GET", "/servers/{server}", &[], 200),
    route("GET", "/servers/{server}/websocket", &["websocket.connect"], 200)
        .denied("You do not have permission to connect to this server's websocket."),
    route("GET", "/servers/{server}/resources", &[], 200),
    route("GET", "/servers/{server}/activity", &["activity.read"], 200),
    // ---- power and console (the permission follows the signal)
    route("POST", "/servers/{server}/power", &["control.start"], 204)
        .json(r#"{"signal": "start"}"#)
        .then(Then::State("running")),
    route("POST", "/servers/{server}/command", &["control.console"], 204).json(r#"{"command": "hello"}"#),
    route("POST", "/servers/{server}/power", &["control.stop"], 204)
        .json(r#"{"signal": "stop"}"#)
        .then(Then::State("offline")),
    route("POST", "/servers/{server}/power", &["control.restart"], 204)
        .json(r#"{"signal": "restart"}"#)
        .then(Then::State("running")),
    route("POST", "/servers/{server}/power", &["control.stop"], 204)
        .json(r#"{"signal": "kill"}"#)
        .then(Then::State("offline")),
    // ---- files
    route("POST", "/servers/{server}/files/write", &["file.create"], 204).q("?file=%2Fperm.txt").raw("hello\n"),
    route("GET", "/servers/{server}/files/list", &["file.read"], 200).q("?directory=%2F"),
    route("GET", "/servers/{server}/files/contents", &["file.read-content"], 200).q("?file=%2Fperm.txt"),
    route("GET", "/servers/{server}/files/download", &["file.read-content"], 200).q("?file=%2Fperm.txt"),
    route("POST", "/servers/{server}/files/copy", &["file.create"], 204).json(r#"{"location": "/perm.txt"}"#),
    route("PUT", "/servers/{server}/files/rename", &["file.update"], 204)
        .json(r#"{"root": "/", "files": [{"from": "perm copy.txt", "to": "renamed.txt"}]}"#),
    route("POST", "/servers/{server}/files/create-folder", &["file.create"], 204).json(r#"{"root": "/", "name": "made"}"#),
    route("POST", "/servers/{server}/files/chmod", &["file.update"], 204)
        .json(r#"{"root": "/", "files": [{"file": "renamed.txt", "mode": "644"}]}"#),
    route("POST", "/servers/{server}/files/compress", &["file.archive"], 200)
        .json(r#"{"root": "/", "files": ["renamed.txt"]}"#)
        .then(Then::Capture("archive", "/attributes/name")),
    route("POST", "/servers/{server}/files/decompress", &["file.create"], 204).json(r#"{"root": "/", "file": "{archive}"}"#),
    route("POST", "/servers/{server}/files/pull", &["file.create"], 204)
        .json(r#"{"url": "{panel}/openapi.json", "directory": "/made", "filename": "pulled.json"}"#),
    route("GET", "/servers/{server}/files/upload", &["file.create"], 200),
    // ---- schedules and tasks
    route("GET", "/servers/{server}/schedules", &["schedule.read"], 200),
    route("POST", "/servers/{server}/schedules", &["schedule.create"], 200).json(SCHEDULE_BODY),
    route("GET", "/servers/{server}/schedules/{schedule}", &["schedule.read"], 200),
    route("POST", "/servers/{server}/schedules/{schedule}", &["schedule.update"], 200).json(SCHEDULE_BODY),
    route("POST", "/servers/{server}/schedules/{schedule}/tasks", &["schedule.update"], 200)
        .json(r#"{"action": "command", "payload": "second", "time_offset": 0}"#)
        .then(Then::Capture("task2", "/attributes/id")),
    route("POST", "/servers/{server}/schedules/{schedule}/tasks/{task}", &["schedule.update"], 200)
        .json(r#"{"action": "command", "payload": "first, changed", "time_offset": 0}"#),
    route("POST", "/servers/{server}/schedules/{schedule}/execute", &["schedule.update"], 202),
    // ---- network allocations
    route("GET", "/servers/{server}/network/allocations", &["allocation.read"], 200),
    route("POST", "/servers/{server}/network/allocations", &["allocation.create"], 200),
    route("POST", "/servers/{server}/network/allocations/{allocation}", &["allocation.update"], 200)
        .bind(&[("allocation", "alloc_a")])
        .json(r#"{"notes": "game port"}"#),
    route("POST", "/servers/{server}/network/allocations/{allocation}/primary", &["allocation.update"], 200)
        .bind(&[("allocation", "alloc_a")]),
    // ---- subusers (acting on another subuser)
    route("GET", "/servers/{server}/users", &["user.read"], 200),
    route("POST", "/servers/{server}/users", &["user.create"], 200)
        .json(r#"{"email": "invited@example.com", "permissions": ["user.create"]}"#),
    route("GET", "/servers/{server}/users/{user}", &["user.read"], 200),
    route("POST", "/servers/{server}/users/{user}", &["user.update"], 200).json(r#"{"permissions": ["user.update"]}"#),
    // ---- backups
    route("GET", "/servers/{server}/backups", &["backup.read"], 200),
    route("POST", "/servers/{server}/backups", &["backup.create"], 200)
        .json(r#"{"name": "made"}"#)
        .then(Then::Backups),
    route("GET", "/servers/{server}/backups/{backup}", &["backup.read"], 200).bind(&[("backup", "backup_a")]),
    route("GET", "/servers/{server}/backups/{backup}/download", &["backup.download"], 200).bind(&[("backup", "backup_a")]),
    route("POST", "/servers/{server}/backups/{backup}/lock", &["backup.delete"], 200).bind(&[("backup", "backup_b")]),
    // ---- startup and settings
    route("GET", "/servers/{server}/startup", &["startup.read"], 200),
    route("PUT", "/servers/{server}/startup/variable", &["startup.update"], 200)
        .json(r#"{"key": "SERVER_MESSAGE", "value": "hi there"}"#),
    route("PUT", "/servers/{server}/settings/docker-image", &["startup.docker-image"], 204)
        .json(r#"{"docker_image": "ferrodactyl/test-base:latest"}"#),
    route("POST", "/servers/{server}/settings/rename", &["settings.rename"], 204).json(r#"{"name": "renamed"}"#),
    // ---- databases (on the MariaDB host)
    route("GET", "/servers/{server}/databases", &["database.read"], 200),
    route("POST", "/servers/{server}/databases", &["database.create"], 200).json(r#"{"database": "made", "remote": "%"}"#),
    route("POST", "/servers/{server}/databases/{database}/rotate-password", &["database.update"], 200),
    // ---- destructive routes last
    route("POST", "/servers/{server}/files/delete", &["file.delete"], 204).json(r#"{"root": "/", "files": ["renamed.txt"]}"#),
    route("POST", "/servers/{server}/backups/{backup}/restore", &["backup.restore"], 204)
        .bind(&[("backup", "backup_a")])
        .json(r#"{"truncate": false}"#)
        .then(Then::Restored),
    route("DELETE", "/servers/{server}/backups/{backup}", &["backup.delete"], 204).bind(&[("backup", "backup_a")]),
    route("DELETE", "/servers/{server}/databases/{database}", &["database.delete"], 204),
    route("DELETE", "/servers/{server}/network/allocations/{allocation}", &["allocation.delete"], 204)
        .bind(&[("allocation", "alloc_b")]),
    route("DELETE", "/servers/{server}/schedules/{schedule}/tasks/{task}", &["schedule.update"], 204)
        .bind(&[("task", "task2")])
        .denied("You do not have permission to perform this action."),
    route("DELETE", "/servers/{server}/schedules/{schedule}", &["schedule.delete"], 204),
    route("DELETE", "/servers/{server}/users/{user}", &["user.delete"], 204),
    route("POST", "/servers/{server}/settings/reinstall", &["settings.reinstall"], 202),
];

/// The 40 assignable permission strings, from panel-api's catalog (§10).
fn all_permissions() -> Vec<String> {
    panel_api::http::client::PERMISSIONS
        .iter()
        .flat_map(|(g, _, keys)| keys.iter().map(move |(k, _)| format!("{g}.{k}")))
        .collect()
}

#[test]
fn the_table_covers_every_routed_client_path() {
    let routed: BTreeSet<(String, String)> = panel_api::http::client::METHODS
        .iter()
        .flat_map(|(p, ms)| ms.iter().map(move |m| (m.to_string(), p.to_string())))
        .collect();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routed Client API routes missing from the table: {missing:?}"
    );
    let stale: Vec<_> = table.difference(&routed).collect();
    assert!(
        stale.is_empty(),
        "table rows that are not routed: {stale:?}"
    );
    assert_eq!(all_permissions().len(), 40);
    for r in ROUTES {
        for p in r.perms {
            assert!(panel_api::http::client::is_known_permission(p), "{p}");
        }
        assert!(r.scope == Scope::Server || r.perms.is_empty());
    }
}

/// The OpenAPI document panel-api serves lists no Client API operation the table lacks.
#[tokio::test]
async fn the_openapi_document_has_no_client_route_missing_from_the_table() {
    let p = ferrodactyl_tests::Panel::start().await.unwrap();
    let r = p
        .call(p.req(Method::GET, "/openapi.json", None))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let mut documented = 0;
    let mut missing = Vec::new();
    for (path, ops) in r.json["paths"].as_object().expect("paths") {
        let Some(rest) = path.strip_prefix("/api/client") else {
            continue;
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        for m in ops.as_object().unwrap().keys() {
            let m = m.to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) {
                continue;
            }
            documented += 1;
            if !table.contains(&(m.clone(), rest.to_string())) {
                missing.push(format!("{m} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented Client API routes missing from the table: {missing:?}"
    );
    assert!(
        documented >= 60,
        "the document lists the Client API ({documented} operations)"
    );
}

struct World {
    st: Stack,
    srv: Srv,
    owner: Account,
    stranger: Account,
    lacking: Account,
    exact: Account,
    acct: Account,
    vars: HashMap<String, String>,
    _maria: MariaDb,
}

impl World {
    async fn set_perms(&self, who: &Account, perms: &[String]) {
        sqlx::query("UPDATE subusers SET permissions = $3 WHERE user_id = $1 AND server_id = $2")
            .bind(who.id)
            .bind(self.srv.id)
            .bind(json!(perms))
            .execute(&self.st.p.db)
            .await
            .unwrap();
        // The cached server view hears of it through the triggers' notice.
        self.st.p.settle().await;
    }

    fn subst(&self, s: &str) -> String {
        let mut out = s.to_string();
        if out.contains("{totp}") {
            let secret = &self.vars["totp_secret"];
            let step = (chrono::Utc::now().timestamp() / 30) as u64;
            out = out.replace("{totp}", &panel_api::totp::code_at(secret, step).unwrap());
        }
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    fn url(&self, r: &Route) -> String {
        let mut path = r.path.to_string();
        for (param, var) in r.bind {
            path = path.replace(&format!("{{{param}}}"), &format!("{{{var}}}"));
        }
        format!("/api/client{}{}", self.subst(&path), self.subst(r.query))
    }

    async fn call(&self, r: &Route, key: Option<&str>) -> Resp {
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let mut rb = self.st.p.req(method, &self.url(r), key);
        match r.body {
            Body::None => {}
            Body::Json(t) => {
                let v: Value = serde_json::from_str(&self.subst(t))
                    .unwrap_or_else(|e| panic!("body of {} {}: {e}", r.method, r.path));
                rb = rb.json(&v);
            }
            Body::Raw(t) => rb = rb.header("Content-Type", "text/plain").body(t),
        }
        self.st.p.call(rb).await.unwrap()
    }

    async fn state(&self) -> String {
        self.st
            .get(&format!("/api/servers/{}", self.srv.uuid))
            .await
            .json["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn wait_backups(&self) -> bool {
        eventually(Duration::from_secs(60), || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM backups WHERE server_id = $1 AND completed_at IS NULL",
            )
            .bind(self.srv.id)
            .fetch_one(&self.st.p.db)
            .await
            .unwrap();
            n == 0
        })
        .await
    }

    /// The owner calls a route while setting up; answers must succeed.
    async fn owner_send(&self, m: Method, rest: &str, body: Value) -> Resp {
        let r = self
            .st
            .p
            .send(
                m,
                &format!("/api/client/servers/{}{rest}", self.srv.short),
                &self.owner.key,
                &body,
            )
            .await
            .unwrap();
        assert!(r.status < 300, "fixture {rest}: {}", r.text());
        r
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("cannot capture {other}"),
    }
}

async fn world() -> World {
    let maria = MariaDb::start()
        .expect("MariaDB (Debian's mariadb-server) must be installed for this test");
    let (st, mut servers) = stack(Options {
        panel: Box::new(|c| {
            c.backup_throttle_limit = 100;
            c.client_allocations_enabled = true;
        }),
        // `files/pull` downloads from the panel on loopback.
        tweak: Box::new(|c| c.api.remote_download_allowed_ips = vec!["127.0.0.1/32".into()]),
        ..Default::default()
    })
    .await;
    let srv = servers.remove(0);
    let p = &st.p;
    let owner = p.account("owner", false, 1).await.unwrap();
    let stranger = p.account("stranger", false, 1).await.unwrap();
    let lacking = p.account("lacking", false, 1).await.unwrap();
    let exact = p.account("exact", false, 1).await.unwrap();
    let target = p.account("target", false, 1).await.unwrap();
    let acct = p.account("acct", false, 1).await.unwrap();
    sqlx::query(
        "UPDATE servers SET owner_id = $1, backup_limit = 10, database_limit = 5, allocation_limit = 5 WHERE id = $2",
    )
    .bind(owner.id)
    .bind(srv.id)
    .execute(&p.db)
    .await
    .unwrap();
    for (who, perms) in [
        (&lacking, json!([])),
        (&exact, json!([])),
        (&target, json!(["control.console"])),
    ] {
        sqlx::query("INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, $3)")
            .bind(who.id)
            .bind(srv.id)
            .bind(perms)
            .execute(&p.db)
            .await
            .unwrap();
    }
    // The server's files: its start script, world-writable for the container user.
    st.write_start_script(&srv);
    // A MariaDB database host on the server's node.
    sqlx::query(
        "INSERT INTO database_hosts (name, host, port, username, password, node_id) VALUES ('maria', '127.0.0.1', $1, 'root', $2, $3)",
    )
    .bind(maria.port as i32)
    .bind(p.state.enc.encrypt(""))
    .bind(st.node)
    .execute(&p.db)
    .await
    .unwrap();
    // Two extra allocations on the server.
    let extra: Vec<i64> = sqlx::query_scalar(
        "UPDATE allocations SET server_id = $1 WHERE id IN
           (SELECT id FROM allocations WHERE node_id = $2 AND server_id IS NULL ORDER BY id LIMIT 2) RETURNING id",
    )
    .bind(srv.id)
    .bind(st.node)
    .fetch_all(&p.db)
    .await
    .unwrap();
    assert_eq!(extra.len(), 2);
    // A spare key of the account-routes user, to delete.
    let spare = panel_api::apikeys::create(&p.db, acct.id, 1, "spare", &[])
        .await
        .unwrap();
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("server".into(), srv.short.clone());
    vars.insert("user".into(), target.uuid.clone());
    vars.insert("alloc_a".into(), extra[0].to_string());
    vars.insert("alloc_b".into(), extra[1].to_string());
    vars.insert("identifier".into(), spare.identifier.clone());
    vars.insert("ssh_key".into(), SSH_KEY.into());
    vars.insert("panel".into(), p.url.clone());
    let mut w = World {
        st,
        srv,
        owner,
        stranger,
        lacking,
        exact,
        acct,
        vars,
        _maria: maria,
    };
    // Made by the owner: a database, a schedule with a task, two finished backups.
    let r = w
        .owner_send(
            Method::POST,
            "/databases",
            json!({"database": "fixture", "remote": "%"}),
        )
        .await;
    w.vars
        .insert("database".into(), str_of(&r.json["attributes"]["id"]));
    let r = w
        .owner_send(
            Method::POST,
            "/schedules",
            serde_json::from_str(SCHEDULE_BODY).unwrap(),
        )
        .await;
    let schedule = str_of(&r.json["attributes"]["id"]);
    let r = w
        .owner_send(
            Method::POST,
            &format!("/schedules/{schedule}/tasks"),
            json!({"action": "command", "payload": "first", "time_offset": 0}),
        )
        .await;
    w.vars
        .insert("task".into(), str_of(&r.json["attributes"]["id"]));
    w.vars.insert("schedule".into(), schedule);
    for (var, name) in [("backup_a", "first"), ("backup_b", "second")] {
        let r = w
            .owner_send(Method::POST, "/backups", json!({"name": name}))
            .await;
        w.vars
            .insert(var.into(), str_of(&r.json["attributes"]["uuid"]));
    }
    assert!(w.wait_backups().await, "the fixture backups completed");
    w
}

#[tokio::test]
async fn every_client_route_answers_its_five_cases() {
    let mut w = world().await;
    let all = all_permissions();
    let app_key = w.st.admin.key.clone();
    for r in ROUTES {
        let what = format!(
            "{} {}{} {:?}",
            r.method,
            r.path,
            r.query,
            match r.body {
                Body::Json(b) => b,
                _ => "",
            }
        );
        // 1. No credentials.
        let resp = w.call(r, None).await;
        assert_eq!(resp.status, 401, "{what}: no key: {}", resp.text());
        resp.assert_envelope(401, "AuthenticationException");
        // 2. An application key is refused on the Client API.
        let resp = w.call(r, Some(&app_key)).await;
        assert_eq!(resp.status, 403, "{what}: application key: {}", resp.text());
        resp.assert_envelope(403, "AccessDeniedHttpException");
        assert_eq!(
            resp.error_detail(),
            "You are attempting to use an application API key on an endpoint that requires a client API key.",
            "{what}"
        );
        let key = if r.scope == Scope::Server {
            // 3. A user with no access to the server.
            let resp = w.call(r, Some(&w.stranger.key)).await;
            assert_eq!(resp.status, 404, "{what}: stranger: {}", resp.text());
            resp.assert_envelope(404, "NotFoundHttpException");
            assert_eq!(
                resp.error_detail(),
                "The requested resource does not exist on this server.",
                "{what}"
            );
            // 4. A subuser with every permission but the route's.
            if !r.perms.is_empty() {
                let others: Vec<String> = all
                    .iter()
                    .filter(|p| !r.perms.contains(&p.as_str()))
                    .cloned()
                    .collect();
                w.set_perms(&w.lacking, &others).await;
                let resp = w.call(r, Some(&w.lacking.key)).await;
                let (code, detail) = match r.denied {
                    Denied::Unauthorized => {
                        ("AccessDeniedHttpException", "This action is unauthorized.")
                    }
                    Denied::Forbidden(d) => ("HttpForbiddenException", d),
                };
                assert_eq!(
                    resp.status,
                    403,
                    "{what}: lacking {:?}: {}",
                    r.perms,
                    resp.text()
                );
                resp.assert_envelope(403, code);
                assert_eq!(resp.error_detail(), detail, "{what}");
            }
            // 5. A subuser with exactly the route's permission(s).
            let exact: Vec<String> = r.perms.iter().map(|p| p.to_string()).collect();
            w.set_perms(&w.exact, &exact).await;
            w.exact.key.clone()
        } else {
            w.acct.key.clone()
        };
        let resp = w.call(r, Some(&key)).await;
        assert_eq!(
            resp.status,
            r.ok,
            "{what}: with {:?}: {}",
            r.perms,
            resp.text()
        );
        match r.ok {
            204 => assert!(resp.raw.is_empty(), "{what}: 204 has no body"),
            202 => assert_eq!(resp.text(), "[]", "{what}"),
            _ => {}
        }
        match r.then {
            Then::Nothing => {}
            Then::Capture(var, ptr) => {
                let v = resp
                    .json
                    .pointer(ptr)
                    .unwrap_or_else(|| panic!("{what}: no {ptr} in {}", resp.text()));
                w.vars.insert(var.into(), str_of(v));
            }
            Then::State(want) => {
                let ok = eventually(Duration::from_secs(60), || async {
                    w.state().await == want
                })
                .await;
                assert!(ok, "{what}: the server reached {want}");
            }
            Then::Backups => assert!(w.wait_backups().await, "{what}: the backup completed"),
            Then::Restored => {
                let ok = eventually(Duration::from_secs(60), || async {
                    let s: Option<String> =
                        sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
                            .bind(w.srv.id)
                            .fetch_one(&w.st.p.db)
                            .await
                            .unwrap();
                    s.is_none()
                })
                .await;
                assert!(ok, "{what}: the restore finished");
            }
        }
    }
    // The successes really happened.
    let dir = w.st.server_dir(&w.srv);
    assert_eq!(
        std::fs::read_to_string(dir.join("perm.txt")).unwrap(),
        "hello\n"
    );
    assert!(dir.join(&w.vars["archive"]).exists(), "compressed");
    assert!(!dir.join("renamed.txt").exists(), "deleted");
    let db = &w.st.p.db;
    let (name, image, status): (String, String, Option<String>) =
        sqlx::query_as("SELECT name, image, status FROM servers WHERE id = $1")
            .bind(w.srv.id)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(name, "renamed");
    assert_eq!(image, "ferrodactyl/test-base:latest");
    // The reinstall is under way (or already reported back by wings).
    assert!(
        matches!(status.as_deref(), None | Some("installing")),
        "{status:?}"
    );
    let subusers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subusers WHERE server_id = $1")
        .bind(w.srv.id)
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(
        subusers, 3,
        "lacking, exact and the invited one; the target was deleted"
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE server_id = $1")
        .bind(w.srv.id)
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(
        left, 1,
        "the fixture database was deleted, the made one remains"
    );
    let mut events: Vec<String> = sqlx::query_scalar("SELECT DISTINCT event FROM activity_logs")
        .fetch_all(db)
        .await
        .unwrap();
    events.sort();
    for e in [
        "server:power.start",
        "server:power.kill",
        "server:console.command",
        "server:file.pull",
        "server:task.delete",
        "server:schedule.delete",
        "server:allocation.delete",
        "server:subuser.delete",
        "server:backup.restore",
        "server:database.delete",
        "server:reinstall",
        "user:ssh-key.delete",
        "user:api-key.delete",
    ] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
}
