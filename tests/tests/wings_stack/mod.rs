//! A real panel-api (fresh PostgreSQL database) and an in-process wings on the
//! real Docker engine, with its HTTP API and SFTP server on loopback ports, for
//! the file, SFTP and backup tests. Servers are seeded in the panel before wings
//! boots, so wings loads them from the Remote API exactly as in production.
#![allow(dead_code)]

use ferrodactyl_tests::{Account, Panel};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Servers to seed before wings boots: (name, disk MiB, owner override).
    pub servers: Vec<(&'static str, i64)>,
    pub denylist: Option<Value>,
    pub tweak: Box<dyn FnOnce(&mut wings::config::Config) + Send>,
    /// Changes to panel-api's configuration before it starts.
    pub panel: Box<dyn FnOnce(&mut panel_api::config::Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            servers: vec![("files", 1024)],
            denylist: None,
            tweak: Box::new(|_| {}),
            panel: Box::new(|_| {}),
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
    let root = dir.path().join("root");
    cfg.system.root_directory = root.to_string_lossy().into();
    cfg.system.data = root.join("volumes").to_string_lossy().into();
    cfg.system.archive_directory = root.join("archives").to_string_lossy().into();
    cfg.system.backup_directory = root.join("backups").to_string_lossy().into();
    cfg.system.log_directory = dir.path().join("log").to_string_lossy().into();
    cfg.system.tmp_directory = dir.path().join("tmp").to_string_lossy().into();
    cfg.system.username = "nobody".into();
    cfg.system.sftp.bind_address = "127.0.0.1".into();
    cfg.system.sftp.bind_port = sftp_port;
    (opts.tweak)(&mut cfg);
    let token = cfg.token.clone();
    let app = wings::boot(cfg, wings::BootOptions::new(dir.path().join("config.yml")))
        .await
        .expect("wings boots against panel-api");
    tokio::spawn(wings::serve(app.clone(), listener));
    tokio::spawn(wings::sftp::serve(app.clone(), sftp_listener));
    let data = PathBuf::from(&app.config().system.data);
    let st = Stack {
        p,
        admin,
        node,
        egg,
        app,
        url: format!("http://127.0.0.1:{port}"),
        sftp_port,
        token,
        data,
        backups: root.join("backups"),
        http: reqwest::Client::new(),
        dir,
    };
    (st, servers)
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
