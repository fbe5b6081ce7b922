//! The binary as an operator runs it: with no DATABASE_URL it starts its own
//! PostgreSQL cluster (a Unix socket, no TCP port) and stops it on exit; the operator
//! CLI creates users, keys, locations and nodes and imports eggs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_panel-api")
}

fn cli(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("DATABASE_URL")
        .env("PANEL_DATA_DIR", data)
        .env("PANEL_USER_PASSWORD", "a-long-password")
        .output()
        .expect("run panel-api");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn postgres_running_in(data: &Path) -> bool {
    let needle = data.join("postgres").join("pgdata");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains(needle.to_str().unwrap()))
}

#[test]
fn the_cli_works_on_the_embedded_database() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (ok, out, err) = cli(
        &data,
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--username",
            "root",
            "--admin",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("created user 1 (root) as admin"), "{out}");
    let (ok, key, err) = cli(
        &data,
        &[
            "key",
            "create",
            "--user",
            "root",
            "--description",
            "billing",
        ],
    );
    assert!(ok, "{err}");
    let key = key.trim();
    assert_eq!(key.len(), 48);
    assert!(key.starts_with("ptla_"));
    let (ok, out, _) = cli(&data, &["key", "list"]);
    assert!(
        ok && out.contains(&key[..16]) && !out.contains(&key[16..]),
        "the secret is never listed: {out}"
    );
    assert!(
        cli(
            &data,
            &["location", "create", "--short", "eu1", "--long", "Europe"]
        )
        .0
    );
    let (ok, out, err) = cli(
        &data,
        &[
            "node",
            "create",
            "--name",
            "n1",
            "--location",
            "1",
            "--fqdn",
            "node.example.com",
            "--ip",
            "10.0.0.5",
            "--ports",
            "25565-25570",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("created node 1"), "{out}");
    let egg = tmp.path().join("egg.json");
    std::fs::write(&egg, include_str!("../eggs/generic-shell.json")).unwrap();
    let (ok, out, err) = cli(
        &data,
        &["egg", "import", egg.to_str().unwrap(), "--nest", "Games"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("imported egg 1"), "{out}");
    let (_, users, _) = cli(&data, &["user", "list"]);
    assert!(users.contains("root@example.com\tadmin"), "{users}");
    // Bad input gets a clear message and a failing exit code.
    let (ok, _, err) = cli(
        &data,
        &["user", "create", "--email", "nope", "--username=-x-"],
    );
    assert!(!ok);
    assert!(
        err.contains("The email must be a valid email address."),
        "{err}"
    );
    let (ok, _, err) = cli(&data, &["egg", "import", "/nonexistent.json"]);
    assert!(!ok && err.contains("reading /nonexistent.json"), "{err}");
    assert!(
        !postgres_running_in(&data),
        "every CLI run stops its cluster"
    );
}

#[test]
fn serve_starts_and_stops_its_own_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let creds = tmp.path().join("creds.env");
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--quickstart",
            "--credentials-file",
            creds.to_str().unwrap(),
        ])
        .env_remove("DATABASE_URL")
        .env("PANEL_DATA_DIR", &data)
        .env("PANEL_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut up = false;
    while start.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && creds.exists() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "panel-api did not come up");
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(text.contains("PANEL_APPLICATION_KEY=ptla_"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(postgres_running_in(&data), "the embedded cluster runs");
    // Unix socket only: the cluster listens on no TCP port.
    let conf = std::fs::read_to_string(data.join("postgres/pgdata/postmaster.pid")).unwrap();
    assert!(
        conf.contains(&data.join("postgres/socket").to_string_lossy().to_string()),
        "{conf}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 5432)).is_err()
            || !conf.lines().any(|l| l.trim() == "*")
    );
    // SIGTERM: graceful stop, and the cluster goes with it.
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let start = Instant::now();
    while postgres_running_in(&data) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !postgres_running_in(&data),
        "the cluster stopped with panel-api"
    );
}
