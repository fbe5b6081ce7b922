//! SFTP through OpenSSH's own `sftp` client against wings' russh server, with
//! logins checked by the real panel-api (reference §7): password and key login,
//! upstream's permission mapping, read-only mode, suspended servers, the jail,
//! the quota, failed-login limiting and a host key kept across restarts.

mod wings_stack;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use wings_stack::{stack, Options, Srv, Stack};

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

enum Login<'a> {
    Password(&'a str),
    Key(&'a Path),
}

async fn run(st: &Stack, user: &str, login: Login<'_>, commands: &str, cwd: &Path) -> Out {
    // The client blocks; keep the runtime free for wings and the panel.
    let (st_port, user, commands, cwd) = (
        st.sftp_port,
        user.to_string(),
        commands.to_string(),
        cwd.to_path_buf(),
    );
    let login = match login {
        Login::Password(p) => (Some(p.to_string()), None),
        Login::Key(k) => (None, Some(k.to_path_buf())),
    };
    tokio::task::spawn_blocking(move || {
        let l = match (&login.0, &login.1) {
            (Some(p), _) => Login::Password(p),
            (_, Some(k)) => Login::Key(k),
            _ => unreachable!(),
        };
        sftp_raw(st_port, &user, l, &commands, &cwd)
    })
    .await
    .unwrap()
}

/// Runs `commands` with OpenSSH's sftp in batch mode (errors abort the batch).
fn sftp_raw(port: u16, user: &str, login: Login, commands: &str, cwd: &Path) -> Out {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sftp");
    cmd.current_dir(cwd);
    match &login {
        Login::Password(pw) => {
            let askpass = tmp.path().join("askpass.sh");
            std::fs::write(&askpass, format!("#!/bin/sh\nprintf '%s\\n' '{pw}'\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
            cmd.args(["-o", "BatchMode=no"])
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0")
                .args([
                    "-o",
                    "PreferredAuthentications=password",
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "NumberOfPasswordPrompts=1",
                ]);
        }
        Login::Key(k) => {
            cmd.args([
                "-o",
                "PreferredAuthentications=publickey",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
            ])
            .arg(k);
        }
    }
    let batch = tmp.path().join("batch");
    std::fs::write(&batch, commands).unwrap();
    cmd.arg("-b")
        .arg(&batch)
        .args([
            "-P",
            &port.to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .stdin(std::process::Stdio::null());
    let out = cmd.output().expect("run OpenSSH's sftp");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn user(name: &str, s: &Srv) -> String {
    format!("{name}.{}", s.short)
}

async fn subuser(st: &Stack, s: &Srv, name: &str, perms: &[&str]) {
    let acc = st.p.account(name, false, 1).await.unwrap();
    sqlx::query("INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, $3)")
        .bind(acc.id)
        .bind(s.id)
        .bind(json!(perms))
        .execute(&st.p.db)
        .await
        .unwrap();
}

fn local() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("upload.txt"), "uploaded over sftp\n").unwrap();
    d
}

#[tokio::test]
async fn owner_uploads_downloads_renames_lists_and_deletes() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    std::fs::write(dir.join("server.properties"), "motd=hi\n").unwrap();
    std::fs::create_dir_all(dir.join("many")).unwrap();
    for i in 0..2500 {
        std::fs::write(dir.join(format!("many/f{i:05}.txt")), "x").unwrap();
    }
    let l = local();
    let out = run(
        &st,
        &user("admin", s),
        Login::Password("password123"),
        "ls -1 many\n",
        l.path(),
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let listed = out.stdout.lines().filter(|l| l.contains(".txt")).count();
    assert_eq!(listed, 2500, "a large directory is listed in full");
    let out = run(
        &st,
        &user("admin", s),
        Login::Password("password123"),
        "put upload.txt\nmkdir plugins\nrename upload.txt plugins/moved.txt\nget server.properties got.properties\nls -l\nls plugins\nrm plugins/moved.txt\nrmdir plugins\n",
        l.path(),
    )
    .await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("server.properties"), "{}", out.stdout);
    assert!(out.stdout.contains("moved.txt"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(l.path().join("got.properties")).unwrap(),
        "motd=hi\n"
    );
    assert!(!dir.join("plugins").exists());
    assert!(!dir.join("upload.txt").exists());

    let out = run(
        &st,
        &user("admin", s),
        Login::Password("password123"),
        "put upload.txt\n",
        l.path(),
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("upload.txt")).unwrap(),
        "uploaded over sftp\n"
    );
    // Activity for the upload is queued for the panel.
    let log = std::fs::read_to_string(
        PathBuf::from(&st.app.config().system.root_directory).join("activity.jsonl"),
    )
    .unwrap();
    assert!(log.contains("server:sftp.create"), "{log}");

    // Escapes: `..` stays at the root; links out of the root do not resolve.
    let outside = st.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "top secret").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("evil")).unwrap();
    for cmd in [
        "get ../../outside/secret leak1\n",
        "get evil/secret leak2\n",
        "put upload.txt evil/planted\n",
        "get /etc/passwd leak3\n",
    ] {
        let out = run(
            &st,
            &user("admin", s),
            Login::Password("password123"),
            cmd,
            l.path(),
        )
        .await;
        assert!(!out.ok, "{cmd} should fail: {}", out.stdout);
    }
    assert!(!outside.join("planted").exists());
    for f in ["leak1", "leak2", "leak3"] {
        assert!(!l.path().join(f).exists(), "{f}");
    }
}

#[tokio::test]
async fn permissions_map_as_upstream() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    std::fs::write(dir.join("existing.txt"), "v1").unwrap();
    subuser(
        &st,
        s,
        "reader",
        &["file.sftp", "file.read", "file.read-content"],
    )
    .await;
    subuser(&st, s, "lister", &["file.sftp", "file.read"]).await;
    subuser(
        &st,
        s,
        "creator",
        &["file.sftp", "file.read", "file.create"],
    )
    .await;
    subuser(
        &st,
        s,
        "deleter",
        &["file.sftp", "file.read", "file.delete"],
    )
    .await;
    subuser(&st, s, "nosftp", &["file.read", "file.read-content"]).await;
    let l = local();
    let cases: &[(&str, &str, bool)] = &[
        ("reader", "ls\nget existing.txt r.txt\n", true),
        ("reader", "put upload.txt\n", false),
        ("lister", "ls\n", true),
        ("lister", "get existing.txt l.txt\n", false),
        ("creator", "put upload.txt new.txt\n", true),
        ("creator", "put upload.txt existing.txt\n", false),
        ("creator", "rename new.txt renamed.txt\n", false),
        ("creator", "mkdir made\n", true),
        ("deleter", "rm new.txt\n", true),
        ("deleter", "put upload.txt other.txt\n", false),
        ("nosftp", "ls\n", false),
    ];
    for (who, cmds, expect) in cases {
        let out = run(
            &st,
            &user(who, s),
            Login::Password("password123"),
            cmds,
            l.path(),
        )
        .await;
        assert_eq!(
            out.ok, *expect,
            "{who}: {cmds}\n{}\n{}",
            out.stdout, out.stderr
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("existing.txt")).unwrap(),
        "v1"
    );
    assert!(dir.join("made").is_dir());
    assert!(
        !dir.join("new.txt").exists(),
        "deleted by the subuser with file.delete"
    );
    assert!(!dir.join("other.txt").exists());
}

#[tokio::test]
async fn read_only_mode_allows_reads_only() {
    let (st, srv) = stack(Options {
        tweak: Box::new(|c| c.system.sftp.read_only = true),
        ..Default::default()
    })
    .await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    std::fs::write(dir.join("a.txt"), "a").unwrap();
    let l = local();
    let u = user("admin", s);
    let out = run(
        &st,
        &u,
        Login::Password("password123"),
        "get a.txt\nls\n",
        l.path(),
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    for cmd in [
        "put upload.txt\n",
        "mkdir x\n",
        "rm a.txt\n",
        "rename a.txt b.txt\n",
    ] {
        let out = run(&st, &u, Login::Password("password123"), cmd, l.path()).await;
        assert!(!out.ok, "{cmd} succeeded in read-only mode");
    }
    assert!(dir.join("a.txt").exists() && !dir.join("upload.txt").exists());
}

#[tokio::test]
async fn key_login_uses_the_accounts_ssh_keys() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let keys = tempfile::tempdir().unwrap();
    for k in ["good", "bad"] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(keys.path().join(k))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let line = std::fs::read_to_string(keys.path().join("good.pub")).unwrap();
    let fp = panel_api::http::remote::ssh_fingerprint(line.trim()).unwrap();
    sqlx::query("INSERT INTO user_ssh_keys (user_id, name, fingerprint, public_key) VALUES ($1, 'laptop', $2, $3)")
        .bind(st.admin.id)
        .bind(fp)
        .bind(line.trim())
        .execute(&st.p.db)
        .await
        .unwrap();
    let l = local();
    let good = keys.path().join("good");
    let out = run(
        &st,
        &user("admin", s),
        Login::Key(&good),
        "put upload.txt\n",
        l.path(),
    )
    .await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(st.server_dir(s).join("upload.txt").exists());
    let bad = keys.path().join("bad");
    let out = run(&st, &user("admin", s), Login::Key(&bad), "ls\n", l.path()).await;
    assert!(!out.ok, "an unknown key logged in");
}

#[tokio::test]
async fn bad_logins_are_refused_and_rate_limited_and_suspension_locks_out() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let l = local();
    let u = user("admin", s);
    // Usernames without `.<8 chars>` never reach the panel.
    let out = run(
        &st,
        "admin",
        Login::Password("password123"),
        "ls\n",
        l.path(),
    )
    .await;
    assert!(!out.ok);
    for _ in 0..wings::sftp::MAX_FAILURES {
        let out = run(&st, &u, Login::Password("wrong-password"), "ls\n", l.path()).await;
        assert!(!out.ok);
    }
    // The right password is now refused too: the address is locked out for a while.
    let out = run(&st, &u, Login::Password("password123"), "ls\n", l.path()).await;
    assert!(!out.ok, "login allowed after repeated failures");

    // A fresh daemon and panel (new limiter): suspension locks the owner out.
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let u = user("admin", s);
    let out = run(&st, &u, Login::Password("password123"), "ls\n", l.path()).await;
    assert!(out.ok, "{}", out.stderr);
    let r =
        st.p.call(st.p.req(
            reqwest::Method::POST,
            &format!("/api/application/servers/{}/suspend", s.id),
            Some(&st.admin.key),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(st.app.manager.get(&s.uuid).unwrap().is_suspended());
    let out = run(&st, &u, Login::Password("password123"), "ls\n", l.path()).await;
    assert!(!out.ok, "a suspended server accepted an SFTP login");
}

#[tokio::test]
async fn uploads_over_quota_leave_nothing_and_the_host_key_is_kept() {
    let (st, srv) = stack(Options {
        servers: vec![("small", 1)],
        ..Default::default()
    })
    .await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    std::fs::write(dir.join("keep.txt"), "old content").unwrap();
    let l = local();
    std::fs::write(l.path().join("big.bin"), vec![9u8; 3 * 1024 * 1024]).unwrap();
    let out = run(
        &st,
        &user("admin", s),
        Login::Password("password123"),
        "put big.bin keep.txt\n",
        l.path(),
    )
    .await;
    assert!(!out.ok, "an upload over the disk limit succeeded");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "old content",
        "the failed upload did not replace the file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ferro-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let key = wings::sftp::host_key_path(&st.app.config().system.data);
    let first = std::fs::read(&key).expect("host key written on first start");
    let again = wings::sftp::host_key(std::path::Path::new(&st.app.config().system.data)).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), first, "the key file is kept");
    let pem = String::from_utf8(first).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM as upstream"
    );
    assert_eq!(again.algorithm().as_str(), "ssh-ed25519");
}
