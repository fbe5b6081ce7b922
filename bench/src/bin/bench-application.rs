//! `bench-application`: issue 2's benchmark, in one run.
//!
//! A private PostgreSQL cluster is seeded with 10,000 users and 1,000 servers; the
//! release panel-api binary serves it; a load generator drives
//! `GET /api/application/users?per_page=50` and
//! `GET /api/application/servers?include=allocations` at 32 keep-alive connections;
//! the statements each request issued are captured from the server's log and run by
//! pgbench at the same concurrency. The ratio of the two rates shows what the HTTP
//! layer, the driver and the rendering cost on top of the database, and
//! `/proc/<pid>/status` shows the panel's memory idle and under load.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ferrodactyl_bench::{load, pgbench, proc, seed, sqllog};
use serde_json::Value;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TARGET_RATIO: f64 = 0.70;
const TARGET_IDLE_MIB: f64 = 30.0;
const TARGET_LOAD_MIB: f64 = 80.0;

#[derive(Parser, Debug)]
#[command(about = "panel-api's Application API against pgbench running the same SQL")]
struct Args {
    /// The panel-api binary; by default `cargo build --release -p panel-api` is run
    /// and the result is taken from this build's target folder.
    #[arg(long)]
    panel_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    users: i64,
    #[arg(long, default_value_t = 1_000)]
    servers: i64,
    /// Concurrent keep-alive HTTP connections, and pgbench clients.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// pgbench worker threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pgbench_threads: u32,
    /// Seconds of warm-up before each measured HTTP window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds measured, per endpoint, for the API and for pgbench alike.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// panel-api's `PANEL_DB_POOL`; unset → panel-api's default.
    #[arg(long)]
    db_pool: Option<u32>,
    /// Upper bound on measured requests per endpoint.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Exit with status 1 when a target is missed.
    #[arg(long)]
    strict: bool,
}

/// The panel-api child; killed when dropped, and by the kernel if we die first.
struct PanelProcess {
    child: Child,
    log: PathBuf,
}

impl PanelProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PanelProcess {
    fn drop(&mut self) {
        let _ = nix_kill(self.child.id(), libc::SIGTERM);
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

fn nix_kill(pid: u32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
    if unsafe { libc::kill(pid as i32, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn panel_binary(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.panel_bin {
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

fn start_panel(
    bin: &Path,
    dir: &Path,
    db_url: &str,
    addr: SocketAddr,
    app_key: &str,
    db_pool: Option<u32>,
) -> Result<PanelProcess> {
    let log = dir.join("panel-api.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("PANEL_BIND", addr.to_string())
        .env("APP_URL", format!("http://{addr}"))
        .env("APP_KEY", app_key)
        .env("PANEL_DATA_DIR", dir.join("panel-data"))
        // Upstream's 240/min would turn the benchmark into a 429 benchmark; the
        // limiter itself still runs on every request.
        .env("APP_API_APPLICATION_RATELIMIT", "1000000000")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    if let Some(n) = db_pool {
        cmd.env("PANEL_DB_POOL", n.to_string());
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
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(PanelProcess { child, log })
}

async fn wait_ready(p: &mut PanelProcess, addr: SocketAddr, key: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = p.child.try_wait()? {
            bail!("panel-api exited ({status}):\n{}", p.log_tail());
        }
        if let Ok((200, _)) = load::get(addr, "/api/application/users?per_page=1", key).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("panel-api did not answer within 30 s:\n{}", p.log_tail())
}

/// Runs `request` with `log_statement = all` and returns what the other backends
/// executed meanwhile.
async fn capture_statements<F, T>(
    db: &PgPool,
    log_path: &Path,
    request: F,
) -> Result<(T, Vec<sqllog::Statement>)>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut conn = db.acquire().await?;
    let me: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await?;
    let reload = |on: bool| -> Vec<String> {
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
    for s in reload(true) {
        sqlx::raw_sql(&s).execute(&mut *conn).await?;
    }
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut *conn)
        .await?;
    // Backends pick the new settings up when the postmaster's SIGHUP reaches them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = std::fs::metadata(log_path)?.len();
    let result = request.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in reload(false) {
        sqlx::raw_sql(&s).execute(&mut *conn).await?;
    }
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut *conn)
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = std::fs::read(log_path)?;
    let text = String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).to_string();
    let stmts = sqllog::parse(&text)?
        .into_iter()
        .filter(|s| s.pid != me as u32)
        .collect();
    Ok((result?, stmts))
}

struct Endpoint {
    path: &'static str,
    check: fn(&Value, &seed::Seeded) -> Result<()>,
}

fn check_users(v: &Value, s: &seed::Seeded) -> Result<()> {
    let data = v["data"].as_array().context("users: no data array")?;
    if data.len() != 50 || v["meta"]["pagination"]["total"].as_i64() != Some(s.users) {
        bail!(
            "users: expected 50 of {} users, got {} of {}",
            s.users,
            data.len(),
            v["meta"]["pagination"]["total"]
        );
    }
    Ok(())
}

fn check_servers(v: &Value, s: &seed::Seeded) -> Result<()> {
    let data = v["data"].as_array().context("servers: no data array")?;
    if data.len() != 50 || v["meta"]["pagination"]["total"].as_i64() != Some(s.servers) {
        bail!(
            "servers: expected 50 of {} servers, got {} of {}",
            s.servers,
            data.len(),
            v["meta"]["pagination"]["total"]
        );
    }
    for srv in data {
        let allocs = srv["attributes"]["relationships"]["allocations"]["data"]
            .as_array()
            .context("servers: no relationships.allocations.data")?;
        if allocs.len() != 1 {
            bail!(
                "servers: expected one allocation per server, got {}",
                allocs.len()
            );
        }
    }
    Ok(())
}

struct Row {
    path: &'static str,
    statements: usize,
    api: load::Outcome,
    pg: pgbench::Outcome,
    peak_sampled_kib: u64,
    api_cpu: Spent,
    pg_cpu: Spent,
}

/// CPU seconds used by each party, and by the rest of the machine, over a phase.
#[derive(Clone, Copy, Debug)]
struct Spent {
    wall: f64,
    panel: f64,
    postgres: f64,
    /// This process (the load generator) during the API phase; pgbench during the
    /// pgbench phase (reaped children).
    driver: f64,
    other: f64,
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

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = panel_binary(&args)?;
    let pgbench_bin = pgbench::find_binary()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args, bin, pgbench_bin))
}

async fn run(args: Args, bin: PathBuf, pgbench_bin: PathBuf) -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("ferro-bench-").tempdir()?;
    let pg_dir = tmp.path().join("pg");
    let max_connections = (args.connections as u32 + args.db_pool.unwrap_or(16) + 40).max(100);
    let cluster = {
        let pg_dir = pg_dir.clone();
        tokio::task::spawn_blocking(move || {
            pgcluster::Cluster::start(
                &pg_dir,
                &pgcluster::Options {
                    fast_unsafe: true,
                    max_connections,
                },
            )
        })
        .await??
    };
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
    let app_key = panel_api::crypto::Encrypter::generate_key();
    let t = Instant::now();
    let seeded = seed::seed(&db, &app_key, args.users, args.servers).await?;
    eprintln!(
        "seeded {} users (incl. the admin) and {} servers in {:.1} s",
        seeded.users,
        seeded.servers,
        t.elapsed().as_secs_f64()
    );

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut panel = start_panel(&bin, tmp.path(), &db_url, addr, &app_key, args.db_pool)?;
    let key = seeded.application_key.clone();
    wait_ready(&mut panel, addr, &key).await?;
    // Idle: started, connected, one request served, nothing in flight.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = proc::memory(panel.pid())?;
    eprintln!(
        "panel-api pid {} idle: VmRSS {:.1} MiB",
        panel.pid(),
        proc::mib(idle.rss_kib)
    );

    let endpoints = [
        Endpoint {
            path: "/api/application/users?per_page=50",
            check: check_users,
        },
        Endpoint {
            path: "/api/application/servers?include=allocations",
            check: check_servers,
        },
    ];
    let mut rows = Vec::new();
    for ep in &endpoints {
        // One request with statement logging on: the handler's SQL, verbatim.
        let ((status, body), stmts) =
            capture_statements(&db, &log_path, load::get(addr, ep.path, &key)).await?;
        if status != 200 {
            bail!(
                "{} answered {status}: {}",
                ep.path,
                String::from_utf8_lossy(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body)?;
        (ep.check)(&v, &seeded)?;
        // `last_used_at` is written at most once a second per key, so at thousands of
        // requests a second it is not part of a request's steady-state work.
        let stmts: Vec<sqllog::Statement> = stmts
            .into_iter()
            .filter(|s| !s.sql.trim_start().starts_with("UPDATE api_keys"))
            .collect();
        if stmts.is_empty() {
            bail!(
                "no statements captured for {} (is {} written?)",
                ep.path,
                log_path.display()
            );
        }
        let script = pgbench::script(&stmts);
        println!("\n{} issues {} statements:", ep.path, stmts.len());
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

        // The API, with the panel's memory sampled while it runs.
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (peak, stop, pid) = (peak.clone(), stop.clone(), panel.pid());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(m) = proc::memory(pid) {
                        peak.fetch_max(m.rss_kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let cpu0 = Snapshot::take(panel.pid(), postmaster)?;
        let api = load::run(load::Plan {
            addr,
            path: ep.path.to_string(),
            bearer: key.clone(),
            connections: args.connections,
            warmup: Duration::from_secs(args.warmup),
            duration: Duration::from_secs(args.duration),
            max_requests: args.max_requests,
        })
        .await?;
        let cpu1 = Snapshot::take(panel.pid(), postmaster)?;
        stop.store(true, Ordering::Relaxed);
        sampler.await?;
        if let Some(status) = panel.child.try_wait()? {
            bail!(
                "panel-api exited under load ({status}):\n{}",
                panel.log_tail()
            );
        }
        eprintln!(
            "{}: {} ok, {} errors, {:.0} req/s",
            ep.path,
            api.ok,
            api.errors,
            api.rps()
        );

        // pgbench: same statements, same concurrency, same duration, same database.
        let script_path = tmp.path().join(format!("endpoint-{}.sql", rows.len() + 1));
        let run = pgbench::Run {
            binary: &pgbench_bin,
            socket_dir: cluster.socket_dir(),
            port: cluster.port(),
            user: cluster.user_name(),
            database: "bench",
            clients: args.connections as u32,
            threads: args.pgbench_threads,
            seconds: args.duration,
        };
        let pg0 = Snapshot::take(panel.pid(), postmaster)?;
        let pg = tokio::task::block_in_place(|| pgbench::run(&run, &script, &script_path))?;
        // pgbench's backends end just after it; their CPU moves to the postmaster's
        // reaped-children total once they are gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pg1 = Snapshot::take(panel.pid(), postmaster)?;
        eprintln!("pgbench: {:.0} tps", pg.tps);
        rows.push(Row {
            path: ep.path,
            statements: stmts.len(),
            api,
            pg,
            peak_sampled_kib: peak.load(Ordering::Relaxed),
            api_cpu: cpu1.since(&cpu0),
            pg_cpu: pg1.since(&pg0),
        });
    }
    let end = proc::memory(panel.pid())?;
    drop(panel);
    db.close().await;
    drop(cluster);

    let idle_mib = proc::mib(idle.rss_kib);
    // VmHWM covers every instant since start, sampled or not.
    let peak_mib = proc::mib(end.hwm_kib);
    let peak_sampled = rows.iter().map(|r| r.peak_sampled_kib).max().unwrap_or(0);
    let mut all_ok = true;
    println!(
        "\n{} connections, {} s warm-up + {} s measured per endpoint; pgbench -c {} -j {} -T {} -M prepared",
        args.connections, args.warmup, args.duration, args.connections, args.pgbench_threads, args.duration
    );
    println!("| endpoint | req/s | p50 | p99 | errors | SQL/request | pgbench tps (same SQL) | API/pgbench | ≥ 70% |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        let ratio = r.api.rps() / r.pg.tps;
        let ok = ratio >= TARGET_RATIO && r.api.errors == 0 && r.pg.failed.unwrap_or(0) == 0;
        all_ok &= ok;
        println!(
            "| `GET {}` | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {:.0} | {:.0}% | {} |",
            r.path,
            r.api.rps(),
            r.api.percentile_ms(50.0),
            r.api.percentile_ms(99.0),
            r.api.errors,
            r.statements,
            r.pg.tps,
            ratio * 100.0,
            pass(ok)
        );
        if let Some(e) = &r.api.first_error {
            println!("  first error: {e}");
        }
    }
    println!("\nWhere the CPU went (ms of CPU per request or pgbench transaction; cores = CPU s / wall s):");
    println!("| phase | panel-api | postgres | load generator / pgbench | cores busy (ours) | cores busy (other processes) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
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
        started.elapsed().as_secs_f64()
    );
    if args.strict && !all_ok {
        std::process::exit(1);
    }
    Ok(())
}
