//! Wings benchmarks of issue 6, each measured against its baseline in the same run:
//!
//! 1. SFTP upload and download of one large file and of many small files with
//!    OpenSSH's `sftp` client, against OpenSSH's own `sshd` + `sftp-server` driven by
//!    the same client, with the same key type and the client's default cipher;
//! 2. listing a directory of 10,000 entries through `files/list-directory`
//!    (p50 of 20), against `ls -l` of the same directory;
//! 3. the backup archiver on the same tree, against `tar czf`.
//!
//! Run: `cargo bench -p wings --bench files` (needs Docker, and Debian's
//! `openssh-server` for the baseline, installed when missing). Sizes:
//! `BENCH_BIG_MIB` (default 1024) and `BENCH_SMALL_FILES` (default 10000); each
//! SFTP transfer runs `BENCH_ROUNDS` (default 3) times per side, alternating which
//! side goes first, and the medians are compared.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs an sftp batch against 127.0.0.1:`port` as `user` with `key`; returns the
/// wall time.
fn sftp(port: u16, user: &str, key: &Path, cwd: &Path, batch: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch");
    std::fs::write(&file, batch).unwrap();
    let t = Instant::now();
    let out = Command::new("sftp")
        .current_dir(cwd)
        .args(["-q", "-b"])
        .arg(&file)
        .args(["-i"])
        .arg(key)
        .args([
            "-P",
            &port.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "sftp {batch}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// OpenSSH's sshd on a loopback port, serving `sftp-server` to root with `key`.
struct Sshd {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd(pubkey: &Path) -> Sshd {
    if !Path::new("/usr/sbin/sshd").exists() {
        sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}/host && cp {} {}/authorized_keys && chmod 600 {}/authorized_keys && mkdir -p /run/sshd",
        d.display(),
        pubkey.display(),
        d.display(),
        d.display()
    ));
    let port = free_port();
    let cfg = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\nSubsystem sftp /usr/lib/openssh/sftp-server\nPidFile {d}/pid\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), cfg).unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .spawn()
        .expect("start sshd");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Sshd {
        port,
        child,
        _dir: dir,
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1048576.0 / d.as_secs_f64()
}

/// Runs both sides `rounds` times, alternating which goes first, after `prep`
/// (fresh targets); returns each side's median. The machine is shared, so a
/// single run per side measures the neighbours as much as the servers.
fn paired(
    rounds: usize,
    prep: impl Fn(),
    ours: impl Fn() -> Duration,
    theirs: impl Fn() -> Duration,
) -> (Duration, Duration) {
    let (mut o, mut t) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        prep();
        if round % 2 == 0 {
            o.push(ours());
            t.push(theirs());
        } else {
            t.push(theirs());
            o.push(ours());
        }
    }
    o.sort();
    t.sort();
    (o[o.len() / 2], t[t.len() / 2])
}

struct Row {
    what: String,
    ours: Duration,
    base: Duration,
    bytes: u64,
}

#[tokio::main]
async fn main() {
    ensure_image();
    let big_mib = env_num("BENCH_BIG_MIB", 1024);
    let small = env_num("BENCH_SMALL_FILES", 10_000);
    let cfg = server_config("bench-files", "sleep 1", &["x"], json!({"type": "stop"}));
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(
        "bench-files",
        |p| {
            let mut c = cfg.clone();
            c.settings.build.disk_space = 0;
            p.add_server(c);
        },
        |c| {
            c.system.sftp.bind_port = free_port();
            c.system.sftp.bind_address = "127.0.0.1".into();
        },
    )
    .await;
    let sftp_listener =
        tokio::net::TcpListener::bind(("127.0.0.1", node.app.config().system.sftp.bind_port))
            .await
            .unwrap();
    let wings_port = sftp_listener.local_addr().unwrap().port();
    tokio::spawn(wings::sftp::serve(node.app.clone(), sftp_listener));

    // Local material: a big file and a tree of small files.
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_path_buf();
    sh(&format!(
        "cd {} && head -c {} /dev/urandom > big.bin && mkdir small && cd small && i=0; while [ $i -lt {small} ]; do printf 'file %s\\n' $i > f$i.txt; i=$((i+1)); done",
        w.display(),
        big_mib * 1048576
    ));
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}/key",
        w.display()
    ));
    let key = w.join("key");
    let base = sshd(&w.join("key.pub"));
    let target_base = tempfile::tempdir().unwrap();
    let tb = target_base.path().display().to_string();
    let server_dir = PathBuf::from(&node.app.config().system.data).join(&uuid);
    let user = format!("bench.{}", &uuid[..8]);
    let small_bytes = small * 12;

    let rounds = env_num("BENCH_ROUNDS", 3).max(1) as usize;
    let sd = server_dir.display().to_string();
    let wd = w.display().to_string();
    let tasks = tokio::task::spawn_blocking(move || {
        let ours = |batch: &str| sftp(wings_port, &user, &key, &w, batch);
        let theirs = |batch: &str| sftp(base.port, "root", &key, &w, batch);
        let mut rows = Vec::new();
        let big = big_mib * 1048576;

        let (o, t) = paired(
            rounds,
            || sh(&format!("rm -f {sd}/big.bin {tb}/big.bin")),
            || ours("put big.bin\n"),
            || theirs(&format!("put big.bin {tb}/big.bin\n")),
        );
        rows.push(Row {
            what: format!("upload {big_mib} MiB file"),
            ours: o,
            base: t,
            bytes: big,
        });
        let (o, t) = paired(
            rounds,
            || sh(&format!("rm -f {wd}/got-ours.bin {wd}/got-theirs.bin")),
            || ours("get big.bin got-ours.bin\n"),
            || theirs(&format!("get {tb}/big.bin got-theirs.bin\n")),
        );
        rows.push(Row {
            what: format!("download {big_mib} MiB file"),
            ours: o,
            base: t,
            bytes: big,
        });
        let (o, t) = paired(
            rounds,
            || sh(&format!("rm -rf {sd}/small {tb}/small")),
            || ours("put -r small\n"),
            || theirs(&format!("put -r small {tb}/small\n")),
        );
        rows.push(Row {
            what: format!("upload {small} small files"),
            ours: o,
            base: t,
            bytes: small_bytes,
        });
        let (o, t) = paired(
            rounds,
            || {
                sh(&format!("rm -rf {wd}/back-ours {wd}/back-theirs && mkdir -p {wd}/back-ours {wd}/back-theirs"))
            },
            || ours("get -r small back-ours\n"),
            || theirs(&format!("get -r {tb}/small back-theirs\n")),
        );
        rows.push(Row {
            what: format!("download {small} small files"),
            ours: o,
            base: t,
            bytes: small_bytes,
        });
        drop(base);
        rows
    });
    let rows = tasks.await.unwrap();
    println!("\n| SFTP (OpenSSH sftp client) | wings | OpenSSH sshd + sftp-server | ratio (throughput) |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} s ({:.1} MiB/s) | {:.2} s ({:.1} MiB/s) | {:.2}× |",
            r.what,
            r.ours.as_secs_f64(),
            mbps(r.bytes, r.ours),
            r.base.as_secs_f64(),
            mbps(r.bytes, r.base),
            r.base.as_secs_f64() / r.ours.as_secs_f64()
        );
    }

    // Listing 10,000 entries.
    let list_dir = server_dir.join("small");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = node
            .authed(
                reqwest::Method::GET,
                &format!("/api/servers/{uuid}/files/list-directory?directory=/small"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
        ours.push(t.elapsed());
        let t = Instant::now();
        let out = Command::new("ls")
            .arg("-l")
            .arg(&list_dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        theirs.push(t.elapsed());
    }
    ours.sort();
    theirs.sort();
    println!("\n| listing {small} entries (p50 of 20) | wings list-directory | ls -l |");
    println!("|---|---|---|");
    println!(
        "| p50 | {:.1} ms | {:.1} ms |",
        ours[10].as_secs_f64() * 1000.0,
        theirs[10].as_secs_f64() * 1000.0
    );

    // Backup archiver vs tar czf on the same tree (the big file + the small files).
    let cfg = node.app.config();
    let jail = wings::filesystem::Jail::open(&server_dir, 0, 0).unwrap();
    let t = Instant::now();
    let (_, size) =
        wings::backup::archive_server(&jail, &cfg, &uuid::Uuid::new_v4().to_string(), "").unwrap();
    let ours = t.elapsed();
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    sh(&format!(
        "tar czf {}/t.tar.gz -C {} .",
        out.path().display(),
        server_dir.display()
    ));
    let theirs = t.elapsed();
    println!("\n| backup of the server tree ({:.0} MiB archive) | wings (level {}) | tar czf | ratio (time) |", size as f64 / 1048576.0, cfg.system.backups.compression_level);
    println!("|---|---|---|---|");
    println!(
        "| time | {:.2} s | {:.2} s | {:.2}× |",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    node.cleanup().await;
}
