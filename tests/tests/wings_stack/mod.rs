//! A real panel-api (fresh PostgreSQL database) and an in-process wings on the
//! real Docker engine, with its HTTP API and SFTP server on loopback ports, for
//! the daemon, file, SFTP and backup tests. Servers are seeded in the panel before
//! wings boots, so wings loads them from the Remote API exactly as in production;
//! their containers are removed when the stack is dropped, pass or fail.
#![allow(dead_code)]

pub mod ws;

use ferrodactyl_tests::{Account, Panel};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A console that announces readiness, echoes what it reads and exits on `stop`.
pub const START_SH: &str = "#!/bin/sh\necho \"${SERVER_MESSAGE}\"\necho \"Server is ready\"\nwhile read -r line; do\n  [ \"$line\" = stop ] && echo Stopping && exit 0\n  echo \"you said: $line\"\ndone\n";

pub const IMAGE: &str = "ferrodactyl/test-base:latest";

pub fn ensure_image() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .output()
        .expect("run scripts/test-image.sh");
    assert!(
        out.status.success(),
        "scripts/test-image.sh failed (is Docker running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The egg's process definition, set on the stack's egg in the panel (as an admin
/// would through the egg editor): `None`/empty fields keep the generic egg's.
#[derive(Clone, Debug, Default)]
pub struct Egg {
    /// The egg's default startup command.
    pub startup: Option<String>,
    /// `config.startup.done`.
    pub done: Vec<String>,
    /// `config.stop` in the panel's syntax: a command, or `^C` / `^SIGKILL` for a
    /// signal.
    pub stop: Option<String>,
    /// `config.files` (`{"file": {"parser": …, "find": {…}}}`).
    pub files: Option<Value>,
    /// The install script (run with `sh` in the test image).
    pub install: Option<String>,
    /// Extra egg variables: (env variable, default value).
    pub variables: Vec<(String, String)>,
}

/// A server row as an admin would create it: its own startup command and limits.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub startup: String,
    pub memory: i64,
    pub swap: i64,
    pub disk: i64,
    pub io: i64,
    pub cpu: i64,
    /// `servers.status` (`installing`, `suspended`, …).
    pub status: Option<String>,
}

impl Spec {
    pub fn new(name: &str, startup: &str) -> Spec {
        Spec {
            name: name.into(),
            startup: startup.into(),
            memory: 512,
            swap: 0,
            disk: 1024,
            io: 500,
            cpu: 100,
            status: None,
        }
    }
}

/// Applies `egg` to the egg row `id`.
pub async fn apply_egg(p: &Panel, id: i64, egg: &Egg) {
    let done = (!egg.done.is_empty()).then(|| json!({"done": egg.done}).to_string());
    sqlx::query(
        "UPDATE eggs SET startup = COALESCE($2, startup), config_startup = COALESCE($3, config_startup),
            config_stop = COALESCE($4, config_stop), config_files = COALESCE($5, config_files),
            script_install = COALESCE($6, script_install), script_container = $7, script_entry = 'sh',
            updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&egg.startup)
    .bind(done)
    .bind(&egg.stop)
    .bind(egg.files.as_ref().map(Value::to_string))
    .bind(&egg.install)
    .bind(IMAGE)
    .execute(&p.db)
    .await
    .unwrap();
    for (env, default) in &egg.variables {
        sqlx::query(
            "INSERT INTO egg_variables (egg_id, name, env_variable, default_value, user_viewable, user_editable, rules)
             VALUES ($1, $2, $2, $3, TRUE, TRUE, 'required|string')",
        )
        .bind(id)
        .bind(env)
        .bind(default)
        .execute(&p.db)
        .await
        .unwrap();
    }
}

/// Inserts a server row for `spec` on `node` (owned by `owner`).
pub async fn seed(p: &Panel, owner: i64, node: i64, egg: i64, spec: &Spec) -> Srv {
    let id = p.seed_server(owner, node, egg, &spec.name).await.unwrap();
    let (uuid, short): (uuid::Uuid, String) = sqlx::query_as(
        "UPDATE servers SET startup = $2, memory = $3, swap = $4, disk = $5, io = $6, cpu = $7, status = $8
         WHERE id = $1 RETURNING uuid, uuid_short",
    )
    .bind(id)
    .bind(&spec.startup)
    .bind(spec.memory)
    .bind(spec.swap)
    .bind(spec.disk)
    .bind(spec.io)
    .bind(spec.cpu)
    .bind(&spec.status)
    .fetch_one(&p.db)
    .await
    .unwrap();
    Srv {
        id,
        uuid: uuid.to_string(),
        short,
    }
}

pub struct Stack {
    pub p: Panel,
    pub admin: Account,
    pub node: i64,
    pub egg: i64,
    pub app: Arc<wings::App>,
    pub url: String,
    pub sftp_port: u16,
    pub token: String,
    pub data: PathBuf,
    pub backups: PathBuf,
    pub http: reqwest::Client,
    /// The configuration wings booted with (before its runtime defaults).
    pub cfg: wings::config::Config,
    pub dir: tempfile::TempDir,
}

/// A server seeded in the panel: (panel id, uuid, 8-char identifier).
#[derive(Clone, Debug)]
pub struct Srv {
    pub id: i64,
    pub uuid: String,
    pub short: String,
}

pub struct Options {
    /// Servers to seed before wings boots with the generic egg: (name, disk MiB).
    pub servers: Vec<(&'static str, i64)>,
    pub denylist: Option<Value>,
    pub tweak: Box<dyn FnOnce(&mut wings::config::Config) + Send>,
    /// Changes to panel-api's configuration before it starts.
    pub panel: Box<dyn FnOnce(&mut panel_api::config::Config) + Send>,
    /// The egg's process definition, applied before anything is seeded.
    pub egg: Option<Egg>,
    /// More servers to seed before wings boots, after `servers`.
    pub specs: Vec<Spec>,
    /// How often websockets check token expiry (upstream's 30 s when `None`).
    pub ws_expiry_tick: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            servers: vec![("files", 1024)],
            denylist: None,
            tweak: Box::new(|_| {}),
            panel: Box::new(|_| {}),
            egg: None,
            specs: Vec::new(),
            ws_expiry_tick: None,
        }
    }
}

pub async fn stack(opts: Options) -> (Stack, Vec<Srv>) {
    ensure_image();
    let p = Panel::start_with(opts.panel)
        .await
        .expect("panel-api starts");
    let admin = p.admin().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sftp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sftp_port = sftp_listener.local_addr().unwrap().port();
    let (_, node) = p.node(&admin, port).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    if let Some(d) = &opts.denylist {
        sqlx::query("UPDATE eggs SET file_denylist = $1 WHERE id = $2")
            .bind(d)
            .bind(egg)
            .execute(&p.db)
            .await
            .unwrap();
    }
    if let Some(e) = &opts.egg {
        apply_egg(&p, egg, e).await;
    }
    let mut servers = Vec::new();
    for (name, disk) in &opts.servers {
        let id = p.seed_server(admin.id, node, egg, name).await.unwrap();
        sqlx::query("UPDATE servers SET disk = $1 WHERE id = $2")
            .bind(disk)
            .bind(id)
            .execute(&p.db)
            .await
            .unwrap();
        let (uuid, short): (uuid::Uuid, String) =
            sqlx::query_as("SELECT uuid, uuid_short FROM servers WHERE id = $1")
                .bind(id)
                .fetch_one(&p.db)
                .await
                .unwrap();
        servers.push(Srv {
            id,
            uuid: uuid.to_string(),
            short,
        });
    }
    for spec in &opts.specs {
        servers.push(seed(&p, admin.id, node, egg, spec).await);
    }
    let conf = p
        .get(
            &format!("/api/application/nodes/{node}/configuration"),
            &admin.key,
        )
        .await
        .unwrap()
        .json;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = wings::config::Config {
        uuid: conf["uuid"].as_str().unwrap().into(),
        token_id: conf["token_id"].as_str().unwrap().into(),
        token: conf["token"].as_str().unwrap().into(),
        remote: conf["remote"].as_str().unwrap().into(),
        ..Default::default()
    };
    cfg.api.host = "127.0.0.1".into();
    cfg.api.port = port;
    local_paths(&mut cfg, dir.path());
    cfg.system.sftp.bind_address = "127.0.0.1".into();
    cfg.system.sftp.bind_port = sftp_port;
    (opts.tweak)(&mut cfg);
    let token = cfg.token.clone();
    let mut boot = wings::BootOptions::new(dir.path().join("config.yml"));
    if let Some(t) = opts.ws_expiry_tick {
        boot.ws_expiry_tick = t;
    }
    let app = wings::boot(cfg.clone(), boot)
        .await
        .expect("wings boots against panel-api");
    // HTTPS when the tweak turned `api.ssl` on, as the binary does.
    let scheme = if cfg.api.ssl.enabled {
        let acceptor = wings::daemon::tls_acceptor(
            std::path::Path::new(&cfg.api.ssl.cert),
            std::path::Path::new(&cfg.api.ssl.key),
        )
        .expect("api.ssl certificate and key");
        tokio::spawn(wings::daemon::serve_tls(app.clone(), listener, acceptor));
        "https"
    } else {
        tokio::spawn(wings::serve(app.clone(), listener));
        "http"
    };
    tokio::spawn(wings::sftp::serve(app.clone(), sftp_listener));
    let data = PathBuf::from(&app.config().system.data);
    let root = dir.path().join("root");
    let st = Stack {
        p,
        admin,
        node,
        egg,
        app,
        url: format!("{scheme}://127.0.0.1:{port}"),
        sftp_port,
        token,
        data,
        backups: root.join("backups"),
        http: reqwest::Client::new(),
        cfg,
        dir,
    };
    (st, servers)
}

/// Points every directory of a node's configuration into `dir` and runs the
/// daemon's files as `nobody`.
pub fn local_paths(cfg: &mut wings::config::Config, dir: &std::path::Path) {
    let root = dir.join("root");
    cfg.system.root_directory = root.to_string_lossy().into();
    cfg.system.data = root.join("volumes").to_string_lossy().into();
    cfg.system.archive_directory = root.join("archives").to_string_lossy().into();
    cfg.system.backup_directory = root.join("backups").to_string_lossy().into();
    cfg.system.log_directory = dir.join("log").to_string_lossy().into();
    cfg.system.tmp_directory = dir.join("tmp").to_string_lossy().into();
    cfg.system.username = "nobody".into();
}

impl Drop for Stack {
    /// The containers of this node's servers (and their installers) go with the
    /// stack, whether the test passed or not. Servers are marked stopping first so
    /// wings does not take the removal for a crash and start them again.
    fn drop(&mut self) {
        let mut names: Vec<String> = Vec::new();
        for s in self.app.manager.all() {
            s.set_state(wings::events::State::Stopping);
            names.push(s.uuid.clone());
        }
        if let Ok(rd) = std::fs::read_dir(&self.data) {
            names.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        remove_containers(names);
    }
}

/// `docker rm -f` of the server containers `uuids` and their installers.
pub fn remove_containers(uuids: impl IntoIterator<Item = String>) {
    let mut names: Vec<String> = Vec::new();
    for u in uuids {
        if u.parse::<uuid::Uuid>().is_ok() && !names.contains(&u) {
            names.push(format!("{u}_installer"));
            names.push(u);
        }
    }
    if !names.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&names)
            .output();
    }
}

/// A response from wings.
#[derive(Debug)]
pub struct W {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub raw: Vec<u8>,
}

impl W {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Asserts upstream's `{"error": …}` envelope with `status` (and `msg` if not
    /// empty).
    pub fn assert_error(&self, status: u16, msg: &str) {
        assert_eq!(self.status, status, "status of {}", self.text());
        let e = self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error envelope in {}", self.text()));
        if !msg.is_empty() {
            assert_eq!(e, msg);
        }
    }
}

impl Stack {
    pub fn server_dir(&self, s: &Srv) -> PathBuf {
        self.data.join(&s.uuid)
    }

    /// Gives `s` the console script of the client tests ([`START_SH`]): its folder
    /// world-writable for the container user, the script executable.
    pub fn write_start_script(&self, s: &Srv) {
        self.write_console_script(s, START_SH);
    }

    /// Gives `s` `script` as its `start.sh` (the generic egg runs `sh ./start.sh`),
    /// its folder world-writable for the container user.
    pub fn write_console_script(&self, s: &Srv, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.server_dir(s);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("start.sh"), script).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(dir.join("start.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> W {
        let r = rb.send().await.expect("wings answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let raw = r.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        W {
            status,
            headers,
            json,
            raw,
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> W {
        self.send(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> W {
        self.send(self.req(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> W {
        self.send(self.req(reqwest::Method::PUT, path).json(&body))
            .await
    }

    /// A signed-URL token as the panel mints it (HS256 with the node secret).
    pub fn mint(&self, extra: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.p.url, "aud": [self.url], "jti": "j", "iat": now, "nbf": now - 300,
            "exp": now + 900, "unique_id": uuid::Uuid::new_v4().simple().to_string()[..16],
            "user_uuid": self.admin.uuid, "user_id": self.admin.id,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        wings::jwt::sign(&claims, &self.token).unwrap()
    }
}

/// The daemon-side helpers of the lifecycle, websocket and HTTP tests.
impl Stack {
    /// Seeds a server in the panel after wings booted (wings learns of it when it
    /// is created on the node, as through the panel).
    pub async fn seed(&self, spec: &Spec) -> Srv {
        seed(&self.p, self.admin.id, self.node, self.egg, spec).await
    }

    /// Changes the stack's egg.
    pub async fn set_egg(&self, egg: &Egg) {
        apply_egg(&self.p, self.egg, egg).await;
    }

    /// `servers.status` and `servers.installed_at` in the panel's database.
    pub async fn install_state(
        &self,
        s: &Srv,
    ) -> (Option<String>, Option<chrono::DateTime<chrono::Utc>>) {
        sqlx::query_as("SELECT status, installed_at FROM servers WHERE id = $1")
            .bind(s.id)
            .fetch_one(&self.p.db)
            .await
            .unwrap()
    }

    /// Makes `user` the owner of `s` (a non-admin owner gets upstream's `*`
    /// websocket permissions, an admin also gets the `admin.websocket.*` ones).
    pub async fn give(&self, s: &Srv, user: &Account) {
        sqlx::query("UPDATE servers SET owner_id = $1 WHERE id = $2")
            .bind(user.id)
            .bind(s.id)
            .execute(&self.p.db)
            .await
            .unwrap();
    }

    /// The websocket credentials the panel hands `key`'s user for `s`
    /// (`GET /api/client/servers/{id}/websocket`): (token, socket URL).
    pub async fn panel_ws(&self, s: &Srv, key: &str) -> (String, String) {
        let r = self
            .p
            .get(&format!("/api/client/servers/{}/websocket", s.short), key)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "websocket credentials: {}", r.text());
        (
            r.json["data"]["token"].as_str().unwrap().to_string(),
            r.json["data"]["socket"].as_str().unwrap().to_string(),
        )
    }

    /// A websocket token minted with the panel's JWT code for `user` on
    /// `server_uuid`, signed with `key` (the node's token for a valid one), living
    /// `ttl` seconds; `extra` claims replace the panel's (e.g. an older `iat`).
    pub fn ws_jwt(
        &self,
        key: &str,
        user: &Account,
        server_uuid: &str,
        perms: &[&str],
        ttl: i64,
        extra: Value,
    ) -> String {
        let mut claims = serde_json::Map::new();
        claims.insert("server_uuid".into(), server_uuid.into());
        claims.insert("permissions".into(), json!(perms));
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            claims.insert(k, v);
        }
        panel_api::jwt::mint(
            key,
            &self.p.url,
            &self.url,
            &format!("{}{}", user.id, server_uuid),
            ttl,
            claims,
            Some(panel_api::jwt::TokenUser {
                id: user.id,
                uuid: &user.uuid,
            }),
        )
    }

    /// A websocket to `s` on this node, with the panel's URL as `Origin`.
    pub async fn ws(&self, s: &Srv) -> ws::Ws {
        ws::Ws::connect(
            &format!("{}/api/servers/{}/ws", self.url, s.uuid),
            Some(&self.p.url),
        )
        .await
        .expect("ws upgrade")
    }

    /// A websocket for `key`'s user, authenticated with the token the panel
    /// minted, once `auth success` arrived.
    pub async fn ws_as(&self, s: &Srv, key: &str) -> ws::Ws {
        let (token, socket) = self.panel_ws(s, key).await;
        let mut w = ws::Ws::connect(&socket, Some(&self.p.url))
            .await
            .expect("ws upgrade at the panel's socket URL");
        w.send("auth", json!([token])).await;
        let (e, a) = w.next(Duration::from_secs(30)).await.expect("auth answer");
        assert_eq!(e, "auth success", "{a:?}");
        w
    }

    /// `docker inspect` of a container (`Null` when there is none).
    pub async fn inspect(&self, name: &str) -> Value {
        docker_inspect(name).await
    }
}

pub async fn docker_inspect(name: &str) -> Value {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", name])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.get(0).cloned().unwrap_or(Value::Null)
}

pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// SHA-256 over every regular file (path + content) and symlink below `dir`.
pub fn tree_hash(dir: &std::path::Path) -> String {
    use std::collections::BTreeMap;
    fn walk(base: &std::path::Path, d: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(base, &p, out);
            } else if m.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    let mut s = String::new();
    for (k, v) in m {
        s.push_str(&format!("{k}:{}\n", md5_hex(&v)));
    }
    s
}

fn md5_hex(b: &[u8]) -> String {
    // A cheap content fingerprint (FNV-1a 64) is enough to compare two trees.
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}:{}", b.len())
}

/// A second wings node on the same panel (for transfers).
pub struct Node {
    pub id: i64,
    pub app: Arc<wings::App>,
    pub url: String,
    pub token: String,
    pub data: PathBuf,
    pub dir: tempfile::TempDir,
}

pub async fn second_node(st: &Stack) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_, node) = st.p.node(&st.admin, port).await.unwrap();
    let conf =
        st.p.get(
            &format!("/api/application/nodes/{node}/configuration"),
            &st.admin.key,
        )
        .await
        .unwrap()
        .json;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = wings::config::Config {
        uuid: conf["uuid"].as_str().unwrap().into(),
        token_id: conf["token_id"].as_str().unwrap().into(),
        token: conf["token"].as_str().unwrap().into(),
        remote: conf["remote"].as_str().unwrap().into(),
        ..Default::default()
    };
    cfg.api.host = "127.0.0.1".into();
    cfg.api.port = port;
    let root = dir.path().join("root");
    cfg.system.root_directory = root.to_string_lossy().into();
    cfg.system.data = root.join("volumes").to_string_lossy().into();
    cfg.system.archive_directory = root.join("archives").to_string_lossy().into();
    cfg.system.backup_directory = root.join("backups").to_string_lossy().into();
    cfg.system.log_directory = dir.path().join("log").to_string_lossy().into();
    cfg.system.tmp_directory = dir.path().join("tmp").to_string_lossy().into();
    cfg.system.username = "nobody".into();
    let token = cfg.token.clone();
    let app = wings::boot(cfg, wings::BootOptions::new(dir.path().join("config.yml")))
        .await
        .expect("second wings boots");
    tokio::spawn(wings::serve(app.clone(), listener));
    let data = PathBuf::from(&app.config().system.data);
    Node {
        id: node,
        app,
        url: format!("http://127.0.0.1:{port}"),
        token,
        data,
        dir,
    }
}
