//! A live Ferrodactyl stack for third-party clients, built only from the workspace's
//! release-independent binaries and real peers: a private PostgreSQL cluster, the
//! `panel-api` binary on it (seeded by its own `--quickstart`), the `wings` binary
//! configured by its own `configure` command on the real Docker engine, and, on
//! request, a private MariaDB as the database host. Nothing here links panel-api,
//! wings, sqlx or any TLS stack: the client under test brings its own, and the
//! programs under test keep theirs (see `Cargo.toml`).
//!
//! Rows that no API creates (a user's client API key, a database host) are written
//! with `psql` exactly as panel-api stores them (SHA-256 of the key secret; the host
//! password Fernet-encrypted with the panel's `APP_KEY`).

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process stopped (SIGTERM, then SIGKILL) when dropped, and by the kernel
/// when the test process dies first.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        // SAFETY: prctl is async-signal-safe; the child stops if this process dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { name, child, log })
    }

    /// The last lines of its output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own, not yet reaped, child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the workspace's `panel-api` and `wings` binaries are:
/// `FERRO_COMPAT_BIN_DIR`, else the profile folder this test binary was built in.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("FERRO_COMPAT_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("locating the target folder")
}

fn program(name: &str) -> Result<PathBuf> {
    let p = bin_dir()?.join(name);
    ensure!(
        p.exists(),
        "{} not found: build it first (`cargo build -p panel-api -p wings`) or set FERRO_COMPAT_BIN_DIR",
        p.display()
    );
    Ok(p)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The first of `n` consecutive loopback ports that are free now.
fn free_port_range(n: u16) -> Result<u16> {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
    for i in 0..2000u64 {
        let base = 20000
            + ((seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i * 7919))
                % 3900) as u16
                * 10;
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {n} free consecutive ports")
}

fn find_in(dirs: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    for d in dirs {
        for n in names {
            let p = d.join(n);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        found.sort();
        found.reverse();
        dirs.extend(found);
    }
    dirs
}

/// A plain HTTP/1.1 answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub raw: Bytes,
    /// The body as JSON; `Value::Null` when empty or not JSON.
    pub json: Value,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Asserts Pterodactyl's error envelope: status, first error's code and detail.
    pub fn assert_error(&self, status: u16, code: &str, detail: &str) {
        assert_eq!(self.status, status, "status of {}", self.text());
        let e = &self.json["errors"][0];
        assert_eq!(e["code"], code, "code in {}", self.text());
        assert_eq!(e["status"], status.to_string(), "status in {}", self.text());
        assert_eq!(e["detail"], detail, "detail in {}", self.text());
    }
}

/// One request on a fresh loopback connection, with upstream's usual headers.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Result<Answer> {
    let authority = base
        .strip_prefix("http://")
        .context("only http:// is spoken here")?
        .trim_end_matches('/')
        .to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut rb = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority.as_str())
        .header(ACCEPT, "application/json");
    if let Some(k) = key {
        rb = rb.header(AUTHORIZATION, format!("Bearer {k}"));
    }
    let payload = match body {
        Some(b) => {
            rb = rb.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(b)?)
        }
        None => Bytes::new(),
    };
    let resp = sender.send_request(rb.body(Full::new(payload))?).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        raw,
        json,
    })
}

/// A private MariaDB server (Debian's `mariadb-server`) on a loopback port.
pub struct MariaDb {
    pub port: u16,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    pub fn start() -> Result<MariaDb> {
        let sbin = ["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from);
        let install = find_in(&sbin, &["mariadb-install-db", "mysql_install_db"])
            .context("mariadb-install-db not found: install Debian's mariadb-server package")?;
        let server = find_in(&sbin, &["mariadbd", "mysqld"])
            .context("mariadbd not found: install Debian's mariadb-server package")?;
        let dir = tempfile::Builder::new()
            .prefix("ferro-compat-mariadb-")
            .tempdir()?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let ok = Command::new("chown")
                .arg("mysql:mysql")
                .arg(dir.path())
                .status()?;
            ensure!(ok.success(), "chown mysql {}", dir.path().display());
        }
        let data = dir.path().join("data");
        // A private temporary directory: concurrent bootstraps sharing /tmp clashed on
        // their `#sql-temptable-…` files and mariadb-install-db aborted.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp)?;
        if root {
            let ok = Command::new("chown")
                .arg("mysql:mysql")
                .arg(&tmp)
                .status()?;
            ensure!(ok.success(), "chown mysql {}", tmp.display());
        }
        // A bootstrap that still fails (rare, under heavy parallel load) is retried on a
        // clean data directory.
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..3 {
            let _ = std::fs::remove_dir_all(&data);
            let mut c = Command::new(&install);
            c.arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                .env("TMPDIR", &tmp)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if root {
                c.arg("--user=mysql");
            }
            let out = c.output().context("mariadb-install-db")?;
            if out.status.success() {
                ok = true;
                break;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(500));
        }
        ensure!(ok, "mariadb-install-db failed: {last}");
        let port = free_port()?;
        let mut s = Command::new(&server);
        s.env("TMPDIR", &tmp)
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}/sock", dir.path().display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--skip-name-resolve",
            ]);
        if root {
            s.arg("--user=mysql");
        }
        let mut proc = Proc::spawn("mariadbd", s, dir.path().join("server.log"))?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            proc.check_alive()?;
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "MariaDB did not start:\n{}",
                proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(MariaDb {
            port,
            _proc: proc,
            _dir: dir,
        })
    }
}

/// A server created through the Application API and installed by wings.
#[derive(Clone, Debug)]
pub struct Server {
    pub id: i64,
    pub uuid: String,
    pub identifier: String,
}

/// The running stack.
pub struct Stack {
    pub panel_url: String,
    pub wings_url: String,
    /// The quick start admin's `ptla_` key.
    pub application_key: String,
    /// The node's daemon token (wings' `token`).
    pub daemon_token: String,
    pub node_id: i64,
    pub egg_id: i64,
    /// The panel's `APP_KEY` (Fernet).
    pub app_key: String,
    /// The port range of the allocations added for this stack (ten ports).
    pub ports: u16,
    volumes: PathBuf,
    wings: Proc,
    panel: Proc,
    psql: PathBuf,
    cluster: pgcluster::Cluster,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// PostgreSQL, panel-api (quick start seed), then wings configured from the panel.
    pub async fn start() -> Result<Stack> {
        let panel_bin = program("panel-api")?;
        let wings_bin = program("wings")?;
        let pg_dirs = postgres_bin_dirs();
        let psql = find_in(&pg_dirs, &["psql"])
            .context("psql not found: install Debian's postgresql package")?;
        let dir = tempfile::Builder::new().prefix("ferro-compat-").tempdir()?;
        let pg_dir = dir.path().join("pg");
        let cluster = tokio::task::spawn_blocking(move || {
            pgcluster::Cluster::start(
                &pg_dir,
                &pgcluster::Options {
                    fast_unsafe: true,
                    max_connections: 100,
                },
            )
        })
        .await??;

        let panel_port = free_port()?;
        let wings_port = free_port()?;
        let sftp_port = free_port()?;
        let panel_url = format!("http://127.0.0.1:{panel_port}");
        let app_key = fernet::Fernet::generate_key();
        let wings_dir = dir.path().join("wings");
        std::fs::create_dir_all(&wings_dir)?;
        let volumes = wings_dir.join("volumes");
        let ports = free_port_range(10)?;
        let creds = dir.path().join("quickstart.env");
        let mut cmd = Command::new(&panel_bin);
        cmd.args(["serve", "--quickstart", "--credentials-file"])
            .arg(&creds)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", cluster.url("postgres"))
            .env("PANEL_BIND", format!("127.0.0.1:{panel_port}"))
            .env("APP_URL", &panel_url)
            .env("APP_KEY", &app_key)
            .env("PANEL_DATA_DIR", dir.path().join("panel"))
            .env("PANEL_SCHEDULER", "false")
            .env("WINGS_PORT", wings_port.to_string())
            .env("WINGS_SFTP_PORT", sftp_port.to_string())
            .env("WINGS_DATA", &volumes)
            .env("BACKUP_THROTTLE_LIMIT", "100")
            .env("PTERODACTYL_CLIENT_ALLOCATIONS_ENABLED", "true")
            .env(
                "PTERODACTYL_CLIENT_ALLOCATIONS_RANGE_START",
                ports.to_string(),
            )
            .env(
                "PTERODACTYL_CLIENT_ALLOCATIONS_RANGE_END",
                (ports + 9).to_string(),
            );
        let mut panel = Proc::spawn("panel-api", cmd, dir.path().join("panel-api.log"))?;
        let start = Instant::now();
        loop {
            panel.check_alive()?;
            if creds.exists() {
                if let Ok(a) = request(&panel_url, "GET", "/openapi.json", None, None).await {
                    if a.status == 200 {
                        break;
                    }
                }
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "panel-api did not come up:\n{}",
                panel.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let env = std::fs::read_to_string(&creds)?;
        let var = |k: &str| -> Result<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
                .with_context(|| format!("{k} missing from {}", creds.display()))
        };
        let application_key = var("PANEL_APPLICATION_KEY")?;
        let node_id: i64 = var("PANEL_NODE_ID")?.parse()?;

        // wings, configured by its own `configure` from the panel's node
        // configuration, then pointed at this test's folders.
        let config = wings_dir.join("config.yml");
        let out = Command::new(&wings_bin)
            .arg("--config")
            .arg(&config)
            .args(["configure", "--panel-url", &panel_url, "--token"])
            .arg(&application_key)
            .args(["--node", &node_id.to_string(), "--override"])
            .output()?;
        ensure!(
            out.status.success(),
            "wings configure failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut yml: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(&config)?)?;
        let daemon_token = yml["token"]
            .as_str()
            .context("token in config.yml")?
            .to_string();
        let root = wings_dir.join("root");
        let set = |v: &mut serde_norway::Value, path: &[&str], val: serde_norway::Value| {
            let mut cur = v;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[path[path.len() - 1]] = val;
        };
        let s = |p: PathBuf| serde_norway::Value::String(p.to_string_lossy().into_owned());
        set(&mut yml, &["api", "host"], "127.0.0.1".into());
        set(&mut yml, &["system", "root_directory"], s(root.clone()));
        set(&mut yml, &["system", "data"], s(volumes.clone()));
        set(
            &mut yml,
            &["system", "archive_directory"],
            s(root.join("archives")),
        );
        set(
            &mut yml,
            &["system", "backup_directory"],
            s(root.join("backups")),
        );
        set(
            &mut yml,
            &["system", "log_directory"],
            s(wings_dir.join("log")),
        );
        set(
            &mut yml,
            &["system", "tmp_directory"],
            s(wings_dir.join("tmp")),
        );
        set(&mut yml, &["system", "username"], "nobody".into());
        set(
            &mut yml,
            &["system", "sftp", "bind_address"],
            "127.0.0.1".into(),
        );
        std::fs::write(&config, serde_norway::to_string(&yml)?)?;
        let mut cmd = Command::new(&wings_bin);
        cmd.arg("--config").arg(&config);
        let mut wings = Proc::spawn("wings", cmd, wings_dir.join("wings.log"))?;
        let wings_url = format!("http://127.0.0.1:{wings_port}");
        let start = Instant::now();
        loop {
            wings.check_alive()?;
            if let Ok(a) =
                request(&wings_url, "GET", "/api/system", Some(&daemon_token), None).await
            {
                if a.status == 200 {
                    break;
                }
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "wings did not come up:\n{}",
                wings.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let mut st = Stack {
            panel_url,
            wings_url,
            application_key,
            daemon_token,
            node_id,
            egg_id: 0,
            app_key,
            ports,
            volumes,
            wings,
            panel,
            psql,
            cluster,
            dir,
        };
        st.egg_id = st.sql("SELECT id FROM eggs ORDER BY id LIMIT 1")?.parse()?;
        // Allocations on ports nobody else on this machine is using; the quick start's
        // fixed range is removed so that nothing lands there.
        let a = st
            .app(
                "POST",
                &format!("/api/application/nodes/{node_id}/allocations"),
                Some(&json!({"ip": "127.0.0.1", "ports": [format!("{ports}-{}", ports + 9)]})),
            )
            .await?;
        ensure!(a.status == 204, "allocations: {}", a.text());
        st.sql(&format!(
            "DELETE FROM allocations WHERE node_id = {node_id} AND server_id IS NULL AND (port < {ports} OR port > {})",
            ports + 9
        ))?;
        Ok(st)
    }

    /// wings' server data folder (one sub-folder per server uuid).
    pub fn volumes(&self) -> &Path {
        &self.volumes
    }

    /// Runs SQL with psql on the panel's database; returns the unaligned output.
    pub fn sql(&self, q: &str) -> Result<String> {
        let out = Command::new(&self.psql)
            .arg("-h")
            .arg(self.cluster.socket_dir())
            .args(["-p", &self.cluster.port().to_string()])
            .args(["-U", self.cluster.user_name(), "-d", "postgres"])
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", q])
            .output()?;
        ensure!(
            out.status.success(),
            "psql: {}\n{q}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// An Application API call with the admin's key.
    pub async fn app(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        request(
            &self.panel_url,
            method,
            path,
            Some(&self.application_key),
            body,
        )
        .await
    }

    /// A panel call with `key`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        request(&self.panel_url, method, path, Some(key), body).await
    }

    /// A user created through the Application API: (id, uuid).
    pub async fn user(&self, username: &str, password: &str) -> Result<(i64, String)> {
        let a = self
            .app(
                "POST",
                "/api/application/users",
                Some(
                    &json!({"email": format!("{username}@example.com"), "username": username,
                    "first_name": "Compat", "last_name": "Client", "password": password}),
                ),
            )
            .await?;
        ensure!(a.status == 201, "user {username}: {}", a.text());
        Ok((
            a.json["attributes"]["id"].as_i64().context("user id")?,
            a.json["attributes"]["uuid"]
                .as_str()
                .context("user uuid")?
                .to_string(),
        ))
    }

    /// A `ptlc_` key of `user`, stored as panel-api stores one (a key is made in the
    /// web UI upstream, which panel-api does not serve).
    pub fn client_key(&self, user: i64) -> Result<String> {
        let alnum = |n: usize| -> String {
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .chars()
                .chain(uuid::Uuid::new_v4().simple().to_string().chars())
                .take(n)
                .collect()
        };
        let identifier = format!("ptlc_{}", alnum(11));
        let secret = alnum(32);
        self.sql(&format!(
            "INSERT INTO api_keys (user_id, key_type, identifier, token_hash, allowed_ips, memo)
             VALUES ({user}, 1, '{identifier}', sha256(convert_to('{secret}', 'UTF8')), '[]', 'compat')"
        ))?;
        Ok(format!("{identifier}{secret}"))
    }

    /// A server owned by `owner`, created through the Application API (so the panel
    /// asks wings to create and install it), waited for until wings reports the
    /// install done.
    pub async fn server(&self, owner: i64, name: &str) -> Result<Server> {
        let alloc: i64 = self
            .sql(&format!(
                "SELECT id FROM allocations WHERE node_id = {} AND server_id IS NULL ORDER BY port LIMIT 1",
                self.node_id
            ))?
            .parse()
            .context("a free allocation")?;
        let a = self
            .app(
                "POST",
                "/api/application/servers",
                Some(&json!({
                    "name": name, "user": owner, "egg": self.egg_id,
                    "docker_image": "ferrodactyl/test-base:latest", "startup": "sh ./start.sh",
                    "environment": {"SERVER_MESSAGE": "Hello from compat"},
                    "limits": {"memory": 256, "swap": 0, "disk": 512, "io": 500, "cpu": 100},
                    "feature_limits": {"databases": 2, "allocations": 3, "backups": 3},
                    "allocation": {"default": alloc}
                })),
            )
            .await?;
        ensure!(a.status == 201, "server {name}: {}", a.text());
        let attrs = &a.json["attributes"];
        let s = Server {
            id: attrs["id"].as_i64().context("server id")?,
            uuid: attrs["uuid"].as_str().context("uuid")?.to_string(),
            identifier: attrs["identifier"]
                .as_str()
                .context("identifier")?
                .to_string(),
        };
        self.wait_installed(&s).await?;
        Ok(s)
    }

    /// Waits until the panel holds the server as installed (wings reported it).
    pub async fn wait_installed(&self, s: &Server) -> Result<()> {
        let start = Instant::now();
        loop {
            let status = self.sql(&format!(
                "SELECT coalesce(status, 'installed') FROM servers WHERE id = {}",
                s.id
            ))?;
            match status.as_str() {
                "installed" => return Ok(()),
                "installing" => {}
                other => bail!("server {} is {other}:\n{}", s.identifier, self.logs()),
            }
            ensure!(
                start.elapsed() < Duration::from_secs(120),
                "server {} still installing after 120 s:\n{}",
                s.identifier,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A database host on a private MariaDB, linked to the node.
    pub fn database_host(&self, maria: &MariaDb) -> Result<i64> {
        let f = fernet::Fernet::new(&self.app_key).context("APP_KEY")?;
        let password = f.encrypt(b"");
        Ok(self
            .sql(&format!(
                "INSERT INTO database_hosts (name, host, port, username, password, node_id)
                 VALUES ('compat-maria', '127.0.0.1', {}, 'root', '{password}', {}) RETURNING id",
                maria.port, self.node_id
            ))?
            .parse()?)
    }

    /// The panel's and wings' recent output, for failure messages.
    pub fn logs(&self) -> String {
        format!("{}\n{}", self.panel.log_tail(), self.wings.log_tail())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Containers of this stack's servers: wings leaves them behind when it stops.
        if let Ok(uuids) = self.sql("SELECT uuid FROM servers") {
            for u in uuids.lines().filter(|l| !l.is_empty()) {
                let _ = Command::new("docker")
                    .args(["rm", "-f", u])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
