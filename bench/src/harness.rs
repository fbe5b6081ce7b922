//! What every panel-api benchmark binary shares: the command-line settings, a private
//! PostgreSQL cluster with a migrated database, the release panel-api process serving
//! it, and one measurement per endpoint (the statements a request issues, captured
//! from PostgreSQL's log; the HTTP load; pgbench on those statements; CPU and memory
//! of each party), printed as the README's tables.

use crate::{load, pgbench, proc, sqllog};
use anyhow::{bail, Context, Result};
use panel_api::db::Db;
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TARGET_RATIO: f64 = 0.70;
pub const TARGET_IDLE_MIB: f64 = 30.0;
pub const TARGET_LOAD_MIB: f64 = 80.0;

/// Settings common to the benchmarks (flattened into each binary's arguments).
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// The panel-api binary; by default `cargo build --release -p panel-api` is run
    /// and the result is taken from this build's target folder.
    #[arg(long)]
    pub panel_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    pub users: i64,
    #[arg(long, default_value_t = 1_000)]
    pub servers: i64,
    /// Concurrent keep-alive HTTP connections, and pgbench clients.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// pgbench worker threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pub pgbench_threads: u32,
    /// Seconds of warm-up before each measured HTTP window.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Seconds measured, per endpoint and round, for the API and for pgbench alike.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// API and pgbench phases alternate this many times per endpoint; the round with
    /// the median API/pgbench ratio is reported (all ratios are listed). On a shared
    /// machine the available CPU drifts between phases; alternating exposes that.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// panel-api's `PANEL_DB_POOL`; unset → panel-api's default.
    #[arg(long)]
    pub db_pool: Option<u32>,
    /// Upper bound on measured requests per endpoint.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_requests: u64,
    /// Exit with status 1 when a target is missed.
    #[arg(long)]
    pub strict: bool,
    /// Only the endpoints whose path contains this text (for profiling one of them).
    #[arg(long)]
    pub only: Option<String>,
    /// panel-api's `PANEL_AUTH_CACHE_TTL` (seconds a key stays in its cache; 0 turns
    /// the cache off, so every request looks its key up); unset → panel-api's default.
    #[arg(long)]
    pub auth_cache_ttl: Option<u64>,
}

/// The panel-api child; killed when dropped, and by the kernel if we die first.
pub struct PanelProcess {
    child: Child,
    log: PathBuf,
}

impl PanelProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for PanelProcess {
    fn drop(&mut self) {
        let _ = kill(self.child.id(), libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill(pid: u32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
    if unsafe { libc::kill(pid as i32, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The release panel-api: `--panel-bin`, or built now beside this binary.
pub fn panel_binary(s: &Settings) -> Result<PathBuf> {
    if let Some(p) = &s.panel_bin {
        return Ok(p.clone());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building panel-api (release)…");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "panel-api"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .with_context(|| format!("running {cargo} build"))?;
    if !status.success() {
        bail!("cargo build --release -p panel-api failed");
    }
    // This binary lives in <target>/<profile>/; the release panel-api beside it.
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target folder")?;
    let bin = target.join("release").join("panel-api");
    if !bin.exists() {
        bail!("{} not found; pass --panel-bin", bin.display());
    }
    Ok(bin)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A private PostgreSQL cluster with a migrated `bench` database, and the
/// panel-api serving it once [`Bench::start_panel`] has run.
pub struct Bench {
    pub settings: Settings,
    pub db: Db,
    pub db_url: String,
    pub app_key: String,
    pub addr: SocketAddr,
    pub panel: Option<PanelProcess>,
    pub idle: Option<proc::Memory>,
    started: Instant,
    panel_bin: PathBuf,
    pgbench_bin: PathBuf,
    log_path: PathBuf,
    postmaster: u32,
    cluster: Option<pgcluster::Cluster>,
    tmp: tempfile::TempDir,
}

impl Bench {
    /// Finds the binaries (building panel-api if needed), starts the cluster and
    /// migrates the database; seeding is the caller's.
    pub async fn start(settings: Settings) -> Result<Bench> {
        let started = Instant::now();
        let panel_bin = {
            let s = settings.clone();
            tokio::task::spawn_blocking(move || panel_binary(&s)).await??
        };
        let pgbench_bin = pgbench::find_binary()?;
        let tmp = tempfile::Builder::new().prefix("ferro-bench-").tempdir()?;
        let pg_dir = tmp.path().join("pg");
        let max_connections =
            (settings.connections as u32 + settings.db_pool.unwrap_or(16) + 40).max(100);
        let cluster = tokio::task::spawn_blocking(move || {
            pgcluster::Cluster::start(
                &pg_dir,
                &pgcluster::Options {
                    fast_unsafe: true,
                    max_connections,
                },
            )
        })
        .await??;
        let log_path = cluster
            .data_dir()
            .parent()
            .context("cluster folder")?
            .join("postgres.log");
        {
            let admin = panel_api::db::connect_url(&cluster.url("postgres"), 1).await?;
            sqlx::raw_sql("CREATE DATABASE bench")
                .execute(&admin)
                .await?;
            admin.close().await;
        }
        let postmaster: u32 = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("reading postmaster.pid")?;
        let db_url = cluster.url("bench");
        let db = panel_api::db::connect_url(&db_url, 2).await?;
        panel_api::db::migrate(&db).await?;
        Ok(Bench {
            settings,
            db,
            db_url,
            app_key: panel_api::crypto::Encrypter::generate_key(),
            addr: format!("127.0.0.1:{}", free_port()?).parse()?,
            panel: None,
            idle: None,
            started,
            panel_bin,
            pgbench_bin,
            log_path,
            postmaster,
            cluster: Some(cluster),
            tmp,
        })
    }

    /// Starts `panel-api serve` on the seeded database, waits until `ready_path`
    /// answers 200 with `key`, and records the idle memory.
    pub async fn start_panel(&mut self, ready_path: &str, key: &str) -> Result<()> {
        let dir = self.tmp.path();
        let log = dir.join("panel-api.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&self.panel_bin);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db_url)
            .env("PANEL_BIND", self.addr.to_string())
            .env("APP_URL", format!("http://{}", self.addr))
            .env("APP_KEY", &self.app_key)
            .env("PANEL_DATA_DIR", dir.join("panel-data"))
            // Upstream's 240 (720) a minute would turn the benchmark into a 429
            // benchmark; the limiters themselves still run on every request.
            .env("APP_API_APPLICATION_RATELIMIT", "1000000000")
            .env("APP_API_CLIENT_RATELIMIT", "1000000000")
            // The schedule runner's poll (every 10 s) would otherwise be caught in a
            // request's statement capture and replayed in every pgbench transaction.
            .env("PANEL_SCHEDULER", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        if let Some(n) = self.settings.db_pool {
            cmd.env("PANEL_DB_POOL", n.to_string());
        }
        if let Some(n) = self.settings.auth_cache_ttl {
            cmd.env("PANEL_AUTH_CACHE_TTL", n.to_string());
        }
        // The allocator's tuning knobs, to compare settings without a rebuild.
        for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")) {
            cmd.env(k, v);
        }
        // tokio's worker count for panel-api alone (this process reads TOKIO_*).
        if let Ok(v) = std::env::var("PANEL_TOKIO_WORKER_THREADS") {
            cmd.env("TOKIO_WORKER_THREADS", v);
        }
        // SAFETY: prctl is async-signal-safe; the panel stops if this process dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.panel_bin.display()))?;
        let mut p = PanelProcess { child, log };
        let start = Instant::now();
        loop {
            if let Some(status) = p.exited()? {
                bail!("panel-api exited ({status}):\n{}", p.log_tail());
            }
            if let Ok((200, _)) = load::get(self.addr, ready_path, key).await {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("panel-api did not answer within 30 s:\n{}", p.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Idle: started, connected, one request served, nothing in flight.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = proc::memory(p.pid())?;
        eprintln!(
            "panel-api pid {} idle: VmRSS {:.1} MiB",
            p.pid(),
            proc::mib(idle.rss_kib)
        );
        self.idle = Some(idle);
        self.panel = Some(p);
        Ok(())
    }

    fn panel(&mut self) -> Result<&mut PanelProcess> {
        self.panel.as_mut().context("panel-api is not started")
    }

    /// Runs `request` with `log_statement = all` and returns what the other
    /// backends executed meanwhile.
    async fn capture_statements<F, T>(&self, request: F) -> Result<(T, Vec<sqllog::Statement>)>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let mut conn = self.db.acquire().await?;
        let me: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?;
        let settings = |on: bool| -> Vec<String> {
            if on {
                vec![
                    "ALTER SYSTEM SET log_statement = 'all'".into(),
                    format!(
                        "ALTER SYSTEM SET log_line_prefix = '{}'",
                        sqllog::LINE_PREFIX
                    ),
                ]
            } else {
                vec![
                    "ALTER SYSTEM RESET log_statement".into(),
                    "ALTER SYSTEM RESET log_line_prefix".into(),
                ]
            }
        };
        for s in settings(true) {
            sqlx::raw_sql(&s).execute(&mut *conn).await?;
        }
        sqlx::raw_sql("SELECT pg_reload_conf()")
            .execute(&mut *conn)
            .await?;
        // Backends pick the new settings up when the postmaster's SIGHUP reaches them.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let from = std::fs::metadata(&self.log_path)?.len();
        let result = request.await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for s in settings(false) {
            sqlx::raw_sql(&s).execute(&mut *conn).await?;
        }
        sqlx::raw_sql("SELECT pg_reload_conf()")
            .execute(&mut *conn)
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bytes = std::fs::read(&self.log_path)?;
        let text = String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).to_string();
        let stmts = sqllog::parse(&text)?
            .into_iter()
            .filter(|s| s.pid != me as u32)
            .collect();
        Ok((result?, stmts))
    }

    /// One request with statement logging on: the handler's SQL, verbatim, minus
    /// what is not a request's steady-state work. The answer is checked.
    async fn request_statements(&self, ep: &Endpoint) -> Result<Vec<sqllog::Statement>> {
        let ((status, body), stmts) = self
            .capture_statements(load::get(self.addr, &ep.path, &ep.bearer))
            .await?;
        if status != 200 {
            bail!(
                "{} answered {status}: {}",
                ep.path,
                String::from_utf8_lossy(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body)?;
        (ep.check)(&v).with_context(|| format!("checking the answer of {}", ep.path))?;
        Ok(stmts
            .into_iter()
            // `last_used_at` is written at most once a second per key, so at
            // thousands of requests a second it is not part of a request's work;
            // nor is the key cache's heartbeat (a NOTIFY and a look at its triggers
            // every second).
            .filter(|s| {
                let sql = s.sql.trim_start();
                !sql.starts_with("UPDATE api_keys")
                    && !sql.contains("pg_notify(")
                    && !sql.contains("FROM pg_trigger")
            })
            .collect())
    }

    /// Measures each endpoint that `--only` selects.
    pub async fn measure_all(&mut self, endpoints: &[Endpoint]) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for ep in endpoints {
            if self
                .settings
                .only
                .as_deref()
                .is_none_or(|o| ep.path.contains(o))
            {
                rows.push(self.measure(ep).await?);
            }
        }
        Ok(rows)
    }

    /// One endpoint: its statements, the HTTP load, then pgbench on those statements.
    pub async fn measure(&mut self, ep: &Endpoint) -> Result<Row> {
        // A request first, so the capture sees what every later request issues: the
        // key is in panel-api's cache from here on (unless the cache is off).
        let (status, _) = load::get(self.addr, &ep.path, &ep.bearer).await?;
        if status != 200 {
            bail!("{} answered {status}", ep.path);
        }
        let mut stmts = self.request_statements(ep).await?;
        // A route that issues nothing once its key (and, for a server's view, the
        // view) is cached has no steady-state SQL to give pgbench; its reference is
        // then the SQL it issues with nothing cached: the key lookup, plus the
        // view's statement. `*` on the cache's channel makes panel-api forget
        // everything, for one cold request.
        let cold_reference = stmts.is_empty();
        if cold_reference {
            sqlx::query("SELECT pg_notify('ferrodactyl_auth', '*')")
                .execute(&self.db)
                .await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            stmts = self.request_statements(ep).await?;
        }
        if stmts.is_empty() {
            bail!(
                "no statements captured for {} (is {} written?)",
                ep.path,
                self.log_path.display()
            );
        }
        let script = pgbench::script(&stmts);
        print_statements(&ep.path, &stmts);
        if cold_reference {
            println!(
                "  (none with the key and view cached: pgbench runs what the request issues with nothing cached)"
            );
        }

        let mut rounds = Vec::new();
        for round in 1..=self.settings.rounds.max(1) {
            let r = self.round(ep, &script).await?;
            eprintln!(
                "{} round {round}: {:.0} req/s, pgbench {:.0} tps, {:.0}%",
                ep.path,
                r.api.rps(),
                r.pg.tps,
                r.ratio() * 100.0
            );
            rounds.push(r);
        }
        let ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
        let errors: u64 = rounds.iter().map(|r| r.api.errors).sum();
        let pg_failed: u64 = rounds.iter().map(|r| r.pg.failed.unwrap_or(0)).sum();
        let peak_sampled_kib = rounds.iter().map(|r| r.peak_sampled_kib).max().unwrap_or(0);
        let mut order: Vec<usize> = (0..rounds.len()).collect();
        order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
        let median = rounds.swap_remove(order[order.len() / 2]);
        Ok(Row {
            path: ep.path.clone(),
            statements: if cold_reference { 0 } else { stmts.len() },
            reference_statements: stmts.len(),
            api: median.api,
            pg: median.pg,
            peak_sampled_kib,
            api_cpu: median.api_cpu,
            pg_cpu: median.pg_cpu,
            ratios,
            errors,
            pg_failed,
        })
    }

    /// One API phase, then one pgbench phase on `script`.
    async fn round(&mut self, ep: &Endpoint, script: &pgbench::Script) -> Result<Round> {
        let addr = self.addr;
        // The API, with the panel's memory sampled while it runs.
        let pid = self.panel()?.pid();
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(m) = proc::memory(pid) {
                        peak.fetch_max(m.rss_kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let s = self.settings.clone();
        let cpu0 = Snapshot::take(pid, self.postmaster)?;
        let api = load::run(load::Plan {
            addr,
            path: ep.path.clone(),
            bearer: ep.bearer.clone(),
            connections: s.connections,
            warmup: Duration::from_secs(s.warmup),
            duration: Duration::from_secs(s.duration),
            max_requests: s.max_requests,
        })
        .await?;
        let cpu1 = Snapshot::take(pid, self.postmaster)?;
        stop.store(true, Ordering::Relaxed);
        sampler.await?;
        if let Some(status) = self.panel()?.exited()? {
            bail!(
                "panel-api exited under load ({status}):\n{}",
                self.panel()?.log_tail()
            );
        }

        // pgbench: same statements, same concurrency, same duration, same database.
        let cluster = self.cluster.as_ref().context("cluster stopped")?;
        let script_path = self.tmp.path().join(format!(
            "endpoint-{}.sql",
            ep.path.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        let run = pgbench::Run {
            binary: &self.pgbench_bin,
            socket_dir: cluster.socket_dir(),
            port: cluster.port(),
            user: cluster.user_name(),
            database: "bench",
            clients: s.connections as u32,
            threads: s.pgbench_threads,
            seconds: s.duration,
        };
        let pg0 = Snapshot::take(pid, self.postmaster)?;
        let pg = tokio::task::block_in_place(|| pgbench::run(&run, script, &script_path))?;
        // pgbench's backends end just after it; their CPU moves to the postmaster's
        // reaped-children total once they are gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pg1 = Snapshot::take(pid, self.postmaster)?;
        Ok(Round {
            api,
            pg,
            peak_sampled_kib: peak.load(Ordering::Relaxed),
            api_cpu: cpu1.since(&cpu0),
            pg_cpu: pg1.since(&pg0),
        })
    }

    /// Stops everything and prints the tables; returns whether every target was met.
    pub async fn finish(mut self, rows: &[Row]) -> Result<bool> {
        let pid = self.panel()?.pid();
        let end = proc::memory(pid)?;
        drop(self.panel.take());
        self.db.close().await;
        drop(self.cluster.take());
        let idle = self.idle.context("no idle figure")?;
        Ok(report(
            &self.settings,
            rows,
            idle,
            end,
            self.started.elapsed(),
        ))
    }
}

/// What the one captured answer of an endpoint must pass.
pub type Check = Box<dyn Fn(&Value) -> Result<()> + Send + Sync>;

/// An endpoint to drive, with the check its one captured answer must pass.
pub struct Endpoint {
    pub path: String,
    pub bearer: String,
    pub check: Check,
}

/// One API phase and the pgbench phase right after it.
struct Round {
    api: load::Outcome,
    pg: pgbench::Outcome,
    peak_sampled_kib: u64,
    api_cpu: Spent,
    pg_cpu: Spent,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.api.rps() / self.pg.tps
    }
}

/// What one endpoint's measurement gave: the median round's figures, every
/// round's ratio, and the errors of all rounds.
pub struct Row {
    pub path: String,
    /// Statements a request issues (with its key cached, when the cache is on).
    pub statements: usize,
    /// Statements of the pgbench script: the same, or the cold request's when a
    /// request issues none.
    pub reference_statements: usize,
    pub api: load::Outcome,
    pub pg: pgbench::Outcome,
    pub peak_sampled_kib: u64,
    pub api_cpu: Spent,
    pub pg_cpu: Spent,
    pub ratios: Vec<f64>,
    pub errors: u64,
    pub pg_failed: u64,
}

/// CPU seconds used by each party, and by the rest of the machine, over a phase.
#[derive(Clone, Copy, Debug)]
pub struct Spent {
    pub wall: f64,
    pub panel: f64,
    pub postgres: f64,
    /// This process (the load generator) during the API phase; pgbench during the
    /// pgbench phase (reaped children).
    pub driver: f64,
    pub other: f64,
}

struct Snapshot {
    at: Instant,
    panel: f64,
    postgres: f64,
    me: proc::Cpu,
    busy: f64,
}

impl Snapshot {
    fn take(panel: u32, postmaster: u32) -> Result<Snapshot> {
        Ok(Snapshot {
            at: Instant::now(),
            panel: proc::cpu(panel)?.own,
            postgres: proc::family_cpu(postmaster),
            me: proc::cpu(std::process::id())?,
            busy: proc::machine_busy()?,
        })
    }

    fn since(&self, before: &Snapshot) -> Spent {
        let panel = self.panel - before.panel;
        let postgres = self.postgres - before.postgres;
        let driver = (self.me.own - before.me.own) + (self.me.children - before.me.children);
        let busy = self.busy - before.busy;
        Spent {
            wall: (self.at - before.at).as_secs_f64(),
            panel,
            postgres,
            driver,
            other: (busy - panel - postgres - driver).max(0.0),
        }
    }
}

fn print_statements(path: &str, stmts: &[sqllog::Statement]) {
    println!("\n{path} issues {} statements:", stmts.len());
    for (i, s) in stmts.iter().enumerate() {
        let one_line: String = s.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let params: Vec<String> = s
            .params
            .iter()
            .map(|p| match p {
                None => "NULL".to_string(),
                Some(v) if v.chars().count() > 40 => format!(
                    "'{}…' ({} chars)",
                    v.chars().take(40).collect::<String>(),
                    v.chars().count()
                ),
                Some(v) => format!("'{v}'"),
            })
            .collect();
        println!("  {}. {one_line}", i + 1);
        if !params.is_empty() {
            println!("     params: {}", params.join(", "));
        }
    }
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn report(
    s: &Settings,
    rows: &[Row],
    idle: proc::Memory,
    end: proc::Memory,
    whole: Duration,
) -> bool {
    let idle_mib = proc::mib(idle.rss_kib);
    // VmHWM covers every instant since start, sampled or not.
    let peak_mib = proc::mib(end.hwm_kib);
    let peak_sampled = rows.iter().map(|r| r.peak_sampled_kib).max().unwrap_or(0);
    let mut all_ok = true;
    println!(
        "\n{} connections; {} rounds per endpoint of {} s warm-up + {} s measured API, then pgbench -c {} -j {} -T {} -M prepared; the round with the median ratio is shown",
        s.connections, s.rounds.max(1), s.warmup, s.duration, s.connections, s.pgbench_threads, s.duration
    );
    println!("| endpoint | req/s | p50 | p99 | errors | SQL/request | pgbench tps (same SQL¹) | API/pgbench | every round | ≥ 70% |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for r in rows {
        let ratio = r.api.rps() / r.pg.tps;
        let ok = ratio >= TARGET_RATIO && r.errors == 0 && r.pg_failed == 0;
        all_ok &= ok;
        let every: Vec<String> = r
            .ratios
            .iter()
            .map(|x| format!("{:.0}%", x * 100.0))
            .collect();
        let reference = if r.statements == r.reference_statements {
            String::new()
        } else {
            format!(" ({} cold¹)", r.reference_statements)
        };
        println!(
            "| `GET {}` | {:.0} | {:.2} ms | {:.2} ms | {} | {}{reference} | {:.0} | {:.0}% | {} | {} |",
            r.path,
            r.api.rps(),
            r.api.percentile_ms(50.0),
            r.api.percentile_ms(99.0),
            r.errors,
            r.statements,
            r.pg.tps,
            ratio * 100.0,
            every.join(", "),
            pass(ok)
        );
        if let Some(e) = &r.api.first_error {
            println!("  first error: {e}");
        }
    }
    println!("\n¹ A route that issues no statement with its key (and view) in panel-api's cache is compared with pgbench on what it issues with nothing cached.");
    println!("\nWhere the CPU went (ms of CPU per request or pgbench transaction; cores = CPU s / wall s):");
    println!("| phase | panel-api | postgres | load generator / pgbench | cores busy (ours) | cores busy (other processes) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let n = (r.api.warmup + r.api.ok + r.api.errors).max(1) as f64;
        let c = r.api_cpu;
        println!(
            "| API `{}` | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.path,
            c.panel * 1000.0 / n,
            c.postgres * 1000.0 / n,
            c.driver * 1000.0 / n,
            (c.panel + c.postgres + c.driver) / c.wall,
            c.other / c.wall
        );
        let t = r.pg.transactions.unwrap_or(0).max(1) as f64;
        let c = r.pg_cpu;
        println!(
            "| pgbench, same SQL | – | {:.2} | {:.2} | {:.2} | {:.2} |",
            c.postgres * 1000.0 / t,
            c.driver * 1000.0 / t,
            (c.postgres + c.driver) / c.wall,
            c.other / c.wall
        );
    }
    let idle_ok = idle_mib < TARGET_IDLE_MIB;
    let peak_ok = peak_mib < TARGET_LOAD_MIB;
    all_ok &= idle_ok && peak_ok;
    println!("\n| panel-api memory | measured | target | |");
    println!("|---|---:|---:|---|");
    println!(
        "| idle RSS (VmRSS after start-up) | {idle_mib:.1} MiB | < {TARGET_IDLE_MIB:.0} MiB | {} |",
        pass(idle_ok)
    );
    println!(
        "| peak RSS under load (VmHWM; sampled VmRSS max {:.1} MiB) | {peak_mib:.1} MiB | < {TARGET_LOAD_MIB:.0} MiB | {} |",
        proc::mib(peak_sampled),
        pass(peak_ok)
    );
    println!(
        "\nRSS after the runs: {:.1} MiB. Whole run: {:.0} s.",
        proc::mib(end.rss_kib),
        whole.as_secs_f64()
    );
    all_ok
}
