//! The embedded default database: a private PostgreSQL cluster started from the
//! operating system's own binaries (`initdb`, `postgres`), listening only on a Unix
//! socket inside its data folder, and stopped with the program that started it.
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster runs as an
//! unprivileged OS user (Debian's package creates `postgres`) in a folder it owns.

use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private cluster. Dropping it stops the server (fast shutdown).
pub struct Cluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    keeper: Option<Keeper>,
    user: String,
}

/// The thread that started the server and owns it. The server is told to stop
/// (PR_SET_PDEATHSIG) when *that thread* ends, so it lives exactly as long as the
/// `Cluster` — or as the whole process, if the process is killed.
struct Keeper {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Options for [`Cluster::start`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Durability off: for tests and benchmarks only.
    pub fast_unsafe: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fast_unsafe: false,
            max_connections: 100,
        }
    }
}

fn bindir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    // Debian keeps the server binaries out of PATH, under a versioned folder.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        if let Some(dir) = versions
            .into_iter()
            .rev()
            .find(|d| d.join("initdb").exists())
        {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, postgres) were not found; install Debian's \
         `postgresql` package (apt-get install postgresql) or set DATABASE_URL"
    )
}

struct RunAs {
    uid: u32,
    gid: u32,
    name: String,
}

fn run_as() -> Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = std::env::var("PG_OS_USER").unwrap_or_else(|_| "postgres".into());
    let user = nix::unistd::User::from_name(&name)?.with_context(|| {
        format!("running as root and OS user `{name}` does not exist to run PostgreSQL")
    })?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        name,
    }))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let u = Some(nix::unistd::Uid::from_raw(uid));
    let g = Some(nix::unistd::Gid::from_raw(gid));
    nix::unistd::chown(path, u, g).with_context(|| format!("chown {}", path.display()))?;
    Ok(())
}

fn command(bin: &Path, who: &Option<RunAs>) -> Command {
    let mut cmd = Command::new(bin);
    if let Some(r) = who {
        cmd.uid(r.uid).gid(r.gid);
        cmd.env("HOME", "/tmp");
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

impl Cluster {
    /// Starts (initialising on first use) a cluster whose files live in `dir`.
    pub fn start(dir: &Path, opts: &Options) -> Result<Cluster> {
        let bin = bindir()?;
        let who = run_as()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let data_dir = dir.join("pgdata");
        let socket_dir = dir.join("socket");
        std::fs::create_dir_all(&socket_dir)?;
        if let Some(r) = &who {
            chown_tree(&dir, r.uid, r.gid)?;
            chown_tree(&socket_dir, r.uid, r.gid)?;
            // The OS user must be able to reach the folder from the root down.
            let mut p = dir.parent();
            while let Some(parent) = p {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(parent) {
                    let mode = meta.permissions().mode();
                    if mode & 0o001 == 0 {
                        let mut perm = meta.permissions();
                        perm.set_mode(mode | 0o001);
                        let _ = std::fs::set_permissions(parent, perm);
                    }
                }
                p = parent.parent();
            }
        }
        if !data_dir.join("PG_VERSION").exists() {
            if data_dir.exists() {
                std::fs::remove_dir_all(&data_dir)?;
            }
            let out = command(&bin.join("initdb"), &who)
                .arg("-D")
                .arg(&data_dir)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ])
                .args(if opts.fast_unsafe {
                    &["--no-sync"][..]
                } else {
                    &[][..]
                })
                .stdin(Stdio::null())
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        // A stale pid file from a killed run would stop the server from starting.
        let pid_file = data_dir.join("postmaster.pid");
        if pid_file.exists() {
            let alive = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                .map(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
                .unwrap_or(false);
            if alive {
                bail!(
                    "a PostgreSQL server is already running on {}",
                    data_dir.display()
                );
            }
            let _ = std::fs::remove_file(&pid_file);
        }
        let port: u16 = 5432;
        let mut cmd = command(&bin.join("postgres"), &who);
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-k")
            .arg(&socket_dir)
            .args(["-c", "listen_addresses="])
            .args(["-p", &port.to_string()])
            .args(["-c", &format!("max_connections={}", opts.max_connections)])
            .args(["-c", "logging_collector=off"])
            .args(["-c", "log_min_messages=warning"]);
        if opts.fast_unsafe {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        // The server's own log goes to a file beside its data, not to our terminal.
        let log_path = dir.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        if let Some(r) = &who {
            chown_tree(&log_path, r.uid, r.gid)?;
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: prctl and setsid are async-signal-safe. The server is asked to stop
        // (fast shutdown) when the thread that started it goes away, so a killed parent
        // never leaves an orphaned cluster behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                libc::setsid();
                Ok(())
            });
        }
        let (started_tx, started_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                let child = match cmd.spawn() {
                    Ok(c) => {
                        let _ = started_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = stop_rx.recv();
                stop_child(child);
            })?;
        started_rx
            .recv()
            .context("postgres keeper thread")?
            .context("starting postgres")?;
        let cluster = Cluster {
            data_dir,
            socket_dir,
            port,
            keeper: Some(Keeper {
                stop: stop_tx,
                thread,
            }),
            user: who.map(|r| r.name).unwrap_or_else(|| "postgres".into()),
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let sock = self.socket_dir.join(format!(".s.PGSQL.{}", self.port));
        let start = Instant::now();
        while start.elapsed() < limit {
            if sock.exists() && std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                // The socket accepts before recovery ends; give the server a moment.
                if Self::probe(&sock) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("PostgreSQL did not become ready within {limit:?}")
    }

    fn probe(sock: &Path) -> bool {
        // A bare startup packet is answered with an authentication request (`R`) when
        // the server accepts connections, or an error (`E`) while it is starting up.
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut body = Vec::new();
        body.extend_from_slice(&196608u32.to_be_bytes());
        for (k, v) in [("user", "postgres"), ("database", "postgres")] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        if s.write_all(&msg).is_err() {
            return false;
        }
        let mut tag = [0u8; 1];
        matches!(s.read_exact(&mut tag), Ok(()) if tag[0] == b'R')
    }

    /// A connection URL for `database` over the Unix socket.
    pub fn url(&self, database: &str) -> String {
        let host: String = percent_encode(&self.socket_dir.to_string_lossy());
        format!(
            "postgres://{}@{}:{}/{}",
            self.user_name(),
            host,
            self.port,
            database
        )
    }

    /// The role to connect as (the superuser created by initdb).
    pub fn user_name(&self) -> &str {
        "postgres"
    }

    /// The folder holding the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number in the socket's file name.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The OS user the server runs as.
    pub fn os_user(&self) -> &str {
        &self.user
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(k) = self.keeper.take() {
            let _ = k.stop.send(());
            let _ = k.thread.join();
        }
    }
}

fn stop_child(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if start.elapsed() > Duration::from_secs(20) => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_accepts_connections_and_stops() {
        let dir = std::env::temp_dir().join(format!("pgcluster-test-{}", std::process::id()));
        let mut c = Cluster::start(
            &dir,
            &Options {
                fast_unsafe: true,
                ..Default::default()
            },
        )
        .expect("cluster starts (needs Debian's postgresql package)");
        let sock = c.socket_dir().join(".s.PGSQL.5432");
        assert!(Cluster::probe(&sock), "server accepts a startup packet");
        assert!(c.url("postgres").starts_with("postgres://postgres@%2F"));
        c.stop();
        assert!(!Cluster::probe(&sock), "server is gone after stop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
