//! A private MariaDB server (Debian's `mariadb-server`) for the database-host tests:
//! initialised in a temporary folder, listening on a loopback port, stopped when the
//! handle is dropped.

use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MariaDb {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

fn find(bin: &[&str]) -> Result<String> {
    for b in bin {
        for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
            let p = format!("{dir}/{b}");
            if std::path::Path::new(&p).exists() {
                return Ok(p);
            }
        }
    }
    bail!(
        "{} not found: install Debian's mariadb-server package",
        bin.join(" / ")
    )
}

impl MariaDb {
    pub fn start() -> Result<MariaDb> {
        let install = find(&["mariadb-install-db", "mysql_install_db"])?;
        let server = find(&["mariadbd", "mysqld"])?;
        let dir = std::env::temp_dir().join(format!(
            "ferro-mariadb-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let root = nix_uid_is_root();
        if root {
            Command::new("chown")
                .arg("mysql:mysql")
                .arg(&dir)
                .status()
                .context("chown")?;
        }
        // A private temporary directory: concurrent bootstraps sharing /tmp clashed on
        // their `#sql-temptable-…` files.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        if root {
            Command::new("chown")
                .arg("mysql:mysql")
                .arg(&tmp)
                .status()
                .context("chown")?;
        }
        // mariadb-install-db occasionally fails when several run at the same moment
        // (tests start their own servers in parallel); a fresh attempt succeeds.
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..3 {
            let _ = std::fs::remove_dir_all(dir.join("data"));
            let mut c = Command::new(&install);
            c.arg(format!("--datadir={}/data", dir.display()))
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
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if !ok {
            bail!("mariadb-install-db failed: {last}");
        }
        let port = crate::closed_port();
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut s = Command::new(&server);
        s.env("TMPDIR", &tmp)
            .arg(format!("--datadir={}/data", dir.display()))
            .arg(format!("--socket={}/sock", dir.display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--skip-name-resolve",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if root {
            s.arg("--user=mysql");
        }
        // SAFETY: prctl is async-signal-safe; the server dies with the test process.
        unsafe {
            s.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = s.spawn().context("starting mariadbd")?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "MariaDB did not start: {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(MariaDb { port, dir, child })
    }

    /// A root connection (no password on this private server).
    pub async fn root(&self) -> Result<sqlx::MySqlConnection> {
        use sqlx::Connection;
        let opts = sqlx::mysql::MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("root");
        Ok(sqlx::MySqlConnection::connect_with(&opts).await?)
    }
}

fn nix_uid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
