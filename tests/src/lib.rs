//! The end-to-end test harness: a real PostgreSQL cluster (one per test run, shared
//! through `FERRO_TEST_PG_URL`, or one per test process when run by hand), a fresh
//! database per test cloned from a migrated template, and panel-api served on a
//! loopback port exactly as in production.

use anyhow::{Context, Result};
use panel_api::config::Config;
use panel_api::crypto::Encrypter;
use panel_api::db::Db;
use panel_api::state::AppState;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub mod mariadb;

static CLUSTER: OnceLock<String> = OnceLock::new();

/// The admin connection URL of the test cluster (`…/postgres`).
pub fn cluster_url() -> String {
    CLUSTER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("FERRO_TEST_PG_URL") {
                return url;
            }
            // Run by hand: a private cluster for this process, stopped when it exits.
            let dir = std::env::temp_dir().join(format!("ferro-test-pg-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let cluster = pgcluster::Cluster::start(
                &dir,
                &pgcluster::Options {
                    fast_unsafe: true,
                    max_connections: 200,
                },
            )
            .expect("start a PostgreSQL test cluster (install Debian's postgresql package)");
            let url = cluster.url("postgres");
            // The cluster lives as long as the test process.
            std::mem::forget(cluster);
            url
        })
        .clone()
}

fn url_for(db: &str) -> String {
    let base = cluster_url();
    match base.rfind('/') {
        Some(i) => format!("{}/{db}", &base[..i]),
        None => base,
    }
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> Result<(String, Db)> {
    let admin = panel_api::db::connect_url(&cluster_url(), 2).await?;
    // The template is built once per migration set, under a lock, by whichever test
    // gets there first.
    let tmpl = format!(
        "ferro_tmpl_{}",
        panel_api::db::MIGRATOR
            .iter()
            .map(|m| m.version)
            .sum::<i64>()
    );
    let mut conn = admin.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut *conn)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&tmpl)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        let building = format!("{tmpl}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut *conn)
            .await?;
        {
            let p = panel_api::db::connect_url(&url_for(&building), 1).await?;
            panel_api::db::migrate(&p).await?;
            p.close().await;
        }
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {tmpl}"))
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut *conn)
        .await?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {tmpl}"))
        .execute(&mut *conn)
        .await?;
    drop(conn);
    admin.close().await;
    let url = url_for(&name);
    let pool = panel_api::db::connect_url(&url, 8).await?;
    Ok((url, pool))
}

/// A running panel-api on its own database.
pub struct Panel {
    pub url: String,
    pub state: AppState,
    pub db: Db,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Panel {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A user and a key of theirs.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: i64,
    pub uuid: String,
    pub username: String,
    pub key: String,
}

impl Panel {
    pub async fn start() -> Result<Panel> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Result<Panel> {
        let (db_url, db) = fresh_database().await?;
        Self::serve_on(db_url, db, None, tweak).await
    }

    /// A second panel-api process on this one's database (another replica behind the
    /// same load balancer): same settings and application key, its own pool, cache
    /// and HTTP port.
    pub async fn replica(&self) -> Result<Panel> {
        let cfg = self.state.cfg.clone();
        let db_url = cfg.database_url.clone().context("test database url")?;
        let db = panel_api::db::connect_url(&db_url, cfg.db_pool).await?;
        Self::serve_on(db_url, db, Some(cfg), |_| {}).await
    }

    async fn serve_on(
        db_url: String,
        db: Db,
        base: Option<Config>,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Panel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut cfg = match base {
            Some(c) => c,
            None => Config::for_tests(db_url, url.clone()),
        };
        tweak(&mut cfg);
        let enc = Encrypter::new(cfg.app_key.as_deref().context("test key")?)?;
        let state = AppState::new(db.clone(), cfg, enc)?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        tokio::spawn(async move {
            let _ = panel_api::serve(st, listener, async move {
                let _ = rx.await;
            })
            .await;
        });
        let http = reqwest::Client::builder().build()?;
        Ok(Panel {
            url,
            state,
            db,
            http,
            shutdown: Some(tx),
        })
    }

    /// Creates a user directly through the service layer, with a key of `key_type`
    /// (1 = `ptlc_`, 2 = `ptla_`).
    pub async fn account(&self, username: &str, admin: bool, key_type: i16) -> Result<Account> {
        let body = panel_api::http::input::Body(json!({
            "email": format!("{username}@example.com"), "username": username, "first_name": "Test", "last_name": "User",
            "password": "password123", "root_admin": admin
        }));
        let u = panel_api::http::application::users::create(&self.state, &body)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let key = panel_api::apikeys::create(&self.db, u.id, key_type, "test", &[])
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Account {
            id: u.id,
            uuid: u.uuid.to_string(),
            username: u.username,
            key: key.token(),
        })
    }

    /// Waits until every change to users and keys committed so far (for example by a
    /// test's own SQL) has reached this panel's key cache.
    pub async fn settle(&self) {
        self.state
            .auth_cache
            .settle(&self.db)
            .await
            .expect("the key cache's listener answers");
    }

    /// An admin with an application key.
    pub async fn admin(&self) -> Result<Account> {
        self.account("admin", true, 2).await
    }

    /// The typed client with `key`.
    pub fn client(&self, key: &str) -> openapi::client::Client {
        openapi::client::Client::with_http(self.http.clone(), &self.url, key)
    }

    /// A raw request with upstream's usual headers.
    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("Accept", "application/json");
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb
    }

    /// Sends a request and returns status, headers and the body parsed as JSON
    /// (`Value::Null` for an empty body).
    pub async fn call(&self, rb: reqwest::RequestBuilder) -> Result<Resp> {
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await?;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Resp {
            status,
            headers,
            json,
            raw: bytes.to_vec(),
        })
    }

    pub async fn get(&self, path: &str, key: &str) -> Result<Resp> {
        self.call(self.req(reqwest::Method::GET, path, Some(key)))
            .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: &Value,
    ) -> Result<Resp> {
        self.call(self.req(method, path, Some(key)).json(body))
            .await
    }

    /// A location, a node whose daemon is at `daemon` (host:port), and ten
    /// allocations on 127.0.0.1 at a randomly chosen free port range (so servers of
    /// tests running side by side never fight over a host port). Returns
    /// (location id, node id).
    pub async fn node(&self, admin: &Account, daemon_port: u16) -> Result<(i64, i64)> {
        let base = free_port_range(10);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM locations")
            .fetch_one(&self.db)
            .await?;
        let short = format!("loc{}", n + 1);
        let loc = self
            .send(
                reqwest::Method::POST,
                "/api/application/locations",
                &admin.key,
                &json!({"short": short, "long": "Test"}),
            )
            .await?;
        anyhow::ensure!(loc.status == 201, "location: {:?}", loc.json);
        let loc_id = loc.json["attributes"]["id"]
            .as_i64()
            .context("location id")?;
        let node = self
            .send(
                reqwest::Method::POST,
                "/api/application/nodes",
                &admin.key,
                &json!({"name": format!("node{}", n + 1), "location_id": loc_id, "fqdn": "127.0.0.1", "scheme": "http", "memory": 4096,
                    "memory_overallocate": 0, "disk": 10000, "disk_overallocate": 0, "daemon_listen": daemon_port, "daemon_sftp": 2022}),
            )
            .await?;
        anyhow::ensure!(node.status == 201, "node: {:?}", node.json);
        let node_id = node.json["attributes"]["id"].as_i64().context("node id")?;
        let a = self
            .send(
                reqwest::Method::POST,
                &format!("/api/application/nodes/{node_id}/allocations"),
                &admin.key,
                &json!({"ip": "127.0.0.1", "ports": [format!("{base}-{}", base + 9)]}),
            )
            .await?;
        anyhow::ensure!(a.status == 204, "allocations: {:?}", a.json);
        Ok((loc_id, node_id))
    }

    /// Imports the generic egg; returns (nest id, egg id).
    pub async fn egg(&self) -> Result<(i64, i64)> {
        let egg = panel_api::eggs::import(
            &self.db,
            panel_api::eggs::NestRef::Name("Test Nest".into()),
            panel_api::eggs::GENERIC_EGG,
        )
        .await?;
        let nest: i64 = sqlx::query_scalar("SELECT nest_id FROM eggs WHERE id = $1")
            .bind(egg)
            .fetch_one(&self.db)
            .await?;
        Ok((nest, egg))
    }

    /// A server row inserted directly (for routes that need an existing server while
    /// no daemon runs): owned by `owner`, on `node`, using the first free allocation.
    pub async fn seed_server(&self, owner: i64, node: i64, egg: i64, name: &str) -> Result<i64> {
        let (nest,): (i64,) = sqlx::query_as("SELECT nest_id FROM eggs WHERE id = $1")
            .bind(egg)
            .fetch_one(&self.db)
            .await?;
        let alloc: i64 = sqlx::query_scalar("SELECT id FROM allocations WHERE node_id = $1 AND server_id IS NULL ORDER BY id LIMIT 1")
            .bind(node)
            .fetch_one(&self.db)
            .await?;
        let uuid = uuid::Uuid::new_v4();
        let mut tx = self.db.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO servers (uuid, uuid_short, node_id, name, owner_id, memory, swap, disk, io, cpu, allocation_id, nest_id, egg_id, startup, image)
             VALUES ($1, $2, $3, $4, $5, 512, 0, 1024, 500, 100, $6, $7, $8, 'sh ./start.sh', 'ferrodactyl/test-base:latest') RETURNING id",
        )
        .bind(uuid)
        .bind(&uuid.to_string()[..8])
        .bind(node)
        .bind(name)
        .bind(owner)
        .bind(alloc)
        .bind(nest)
        .bind(egg)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE allocations SET server_id = $1 WHERE id = $2")
            .bind(id)
            .bind(alloc)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }
}

/// A response as the tests see it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn error_code(&self) -> &str {
        self.json["errors"][0]["code"].as_str().unwrap_or("")
    }
    pub fn error_detail(&self) -> &str {
        self.json["errors"][0]["detail"].as_str().unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).to_string()
    }
    /// Asserts the error envelope: every element has string code/status/detail.
    pub fn assert_envelope(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status of {}", self.text());
        let errs = self.json["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array in {}", self.text()));
        assert!(!errs.is_empty());
        for e in errs {
            assert_eq!(
                e["status"],
                Value::String(status.to_string()),
                "status is a string: {e}"
            );
            assert!(e["detail"].is_string());
        }
        assert_eq!(self.error_code(), code, "code of {}", self.text());
    }
}

/// The first of `n` consecutive loopback ports that are free now, picked at random
/// between 20000 and 59990.
pub fn free_port_range(n: u16) -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        let base: u16 = rng.gen_range(2000..5999) * 10;
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

/// A loopback port with nothing listening (an unreachable daemon).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Asserts an object's keys, in order, with their JSON types: `int`, `string`,
/// `bool`, `object`, `array`, `number`, a leading `?` for nullable.
pub fn assert_shape(obj: &Value, spec: &[(&str, &str)]) {
    let map = obj
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {obj}"));
    let keys: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "relationships")
        .collect();
    let want: Vec<&str> = spec.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, want, "keys (in order) of {obj}");
    for (k, t) in spec {
        let v = &map[*k];
        let (nullable, t) = match t.strip_prefix('?') {
            Some(t) => (true, t),
            None => (false, *t),
        };
        if v.is_null() {
            assert!(nullable, "{k} is null but not nullable in {obj}");
            continue;
        }
        let ok = match t {
            "int" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "bool" => v.is_boolean(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            "any" => true,
            other => panic!("unknown type {other}"),
        };
        assert!(ok, "{k} should be {t}: {v}");
    }
}

/// Asserts an upstream UTC-ISO timestamp (`YYYY-MM-DDTHH:MM:SS+00:00`).
pub fn assert_utc_iso(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    assert_eq!(s.len(), 25, "{s}");
    assert!(s.ends_with("+00:00"), "{s}");
    assert!(chrono::DateTime::parse_from_rfc3339(s).is_ok(), "{s}");
}

pub const USER_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("external_id", "?string"),
    ("uuid", "string"),
    ("username", "string"),
    ("email", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("language", "string"),
    ("root_admin", "bool"),
    ("2fa", "bool"),
    ("created_at", "string"),
    ("updated_at", "string"),
];

pub const SERVER_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("external_id", "?string"),
    ("uuid", "string"),
    ("identifier", "string"),
    ("name", "string"),
    ("description", "string"),
    ("status", "?string"),
    ("suspended", "bool"),
    ("limits", "object"),
    ("feature_limits", "object"),
    ("user", "int"),
    ("node", "int"),
    ("allocation", "int"),
    ("nest", "int"),
    ("egg", "int"),
    ("container", "object"),
    ("updated_at", "string"),
    ("created_at", "string"),
];

pub const NODE_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("uuid", "string"),
    ("public", "bool"),
    ("name", "string"),
    ("description", "?string"),
    ("location_id", "int"),
    ("fqdn", "string"),
    ("scheme", "string"),
    ("behind_proxy", "bool"),
    ("maintenance_mode", "bool"),
    ("memory", "int"),
    ("memory_overallocate", "int"),
    ("disk", "int"),
    ("disk_overallocate", "int"),
    ("upload_size", "int"),
    ("daemon_listen", "int"),
    ("daemon_sftp", "int"),
    ("daemon_base", "string"),
    ("created_at", "string"),
    ("updated_at", "string"),
    ("allocated_resources", "object"),
];

pub const LOCATION_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("short", "string"),
    ("long", "?string"),
    ("updated_at", "string"),
    ("created_at", "string"),
];

pub const ALLOCATION_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("ip", "string"),
    ("alias", "?string"),
    ("port", "int"),
    ("notes", "?string"),
    ("assigned", "bool"),
];

pub const NEST_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("uuid", "string"),
    ("author", "string"),
    ("name", "string"),
    ("description", "?string"),
    ("created_at", "string"),
    ("updated_at", "string"),
];

pub const EGG_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("uuid", "string"),
    ("name", "string"),
    ("nest", "int"),
    ("author", "string"),
    ("description", "?string"),
    ("docker_image", "string"),
    ("docker_images", "any"),
    ("config", "object"),
    ("startup", "?string"),
    ("script", "object"),
    ("created_at", "string"),
    ("updated_at", "string"),
];

pub const EGG_VARIABLE_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("egg_id", "int"),
    ("name", "string"),
    ("description", "string"),
    ("env_variable", "string"),
    ("default_value", "string"),
    ("user_viewable", "bool"),
    ("user_editable", "bool"),
    ("rules", "?string"),
    ("created_at", "string"),
    ("updated_at", "string"),
];

/// A self-signed certificate for `localhost` and 127.0.0.1 (an end-entity
/// certificate, as rustls clients require), made by `openssl` in `dir`:
/// `(cert.pem, key.pem)`.
pub fn self_signed_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
