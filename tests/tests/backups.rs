//! Local backups through panel-api and a real wings (reference §1.8, §8.1): the
//! archive honours `.pteroignore`, its SHA-1 and size reach the panel, restores
//! with and without truncation bring the tree back (compared by tree hashes) and
//! report to the panel, and local archives are deleted.

mod wings_stack;

use serde_json::json;
use std::time::Duration;
use wings_stack::{eventually, stack, tree_hash, Options, Srv, Stack};

async fn new_backup(st: &Stack, s: &Srv) -> String {
    let b = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO backups (server_id, uuid, name, disk) VALUES ($1, $2, 'test', 'wings')",
    )
    .bind(s.id)
    .bind(b)
    .execute(&st.p.db)
    .await
    .unwrap();
    b.to_string()
}

async fn backup_row(st: &Stack, b: &str) -> (bool, Option<String>, i64, bool) {
    sqlx::query_as(
        "SELECT is_successful, checksum, bytes, completed_at IS NOT NULL FROM backups WHERE uuid = $1::uuid",
    )
    .bind(b)
    .fetch_one(&st.p.db)
    .await
    .unwrap()
}

fn sha1_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha1sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn archive_listing(path: &std::path::Path) -> String {
    let out = std::process::Command::new("tar")
        .arg("tzf")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "the backup is a valid tar.gz");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn server_status(st: &Stack, s: &Srv) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
        .bind(s.id)
        .fetch_one(&st.p.db)
        .await
        .unwrap()
}

async fn restore(st: &Stack, s: &Srv, b: &str, truncate: bool) {
    sqlx::query("UPDATE servers SET status = 'restoring_backup' WHERE id = $1")
        .bind(s.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    let r = st
        .post(
            &format!("/api/servers/{}/backup/{b}/restore", s.uuid),
            json!({"adapter": "wings", "truncate_directory": truncate, "download_url": ""}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let done = eventually(Duration::from_secs(30), || async {
        server_status(st, s).await.is_none()
    })
    .await;
    assert!(done, "the restore was reported to the panel");
    let srv = st.app.manager.get(&s.uuid).unwrap();
    let cleared = eventually(Duration::from_secs(10), || async { !srv.is_restoring() }).await;
    assert!(cleared);
    assert!(!srv.is_suspended(), "the server is usable again");
}

#[tokio::test]
async fn a_backup_round_trip_restores_the_tree() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    std::fs::create_dir_all(dir.join("world/region")).unwrap();
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join("world/level.dat"), vec![1u8; 100_000]).unwrap();
    std::fs::write(dir.join("world/region/r.0.0.mca"), b"region").unwrap();
    std::fs::write(dir.join("server.properties"), "motd=before\n").unwrap();
    std::fs::write(dir.join("cache/blob"), "cached").unwrap();
    std::fs::write(dir.join("logs/latest.log"), "log").unwrap();
    std::fs::write(dir.join(".pteroignore"), "cache/\n*.log\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.properties"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let b = new_backup(&st, s).await;
    let r = st
        .post(
            &format!("/api/servers/{}/backup", s.uuid),
            json!({"adapter": "wings", "uuid": b, "ignore": ""}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let done = eventually(Duration::from_secs(30), || async {
        backup_row(&st, &b).await.3
    })
    .await;
    assert!(done, "the backup was reported to the panel");
    let (ok, checksum, bytes, _) = backup_row(&st, &b).await;
    assert!(ok);
    let archive = st.backups.join(format!("{b}.tar.gz"));
    assert_eq!(checksum.unwrap(), format!("sha1:{}", sha1_of(&archive)));
    assert_eq!(bytes as u64, std::fs::metadata(&archive).unwrap().len());
    let listing = archive_listing(&archive);
    assert!(listing.contains("world/level.dat"), "{listing}");
    assert!(listing.contains(".pteroignore"), "{listing}");
    assert!(!listing.contains("cache/blob"), ".pteroignore: {listing}");
    assert!(!listing.contains("latest.log"), ".pteroignore: {listing}");

    // What a restore with truncation must bring back: everything but the ignored.
    std::fs::remove_dir_all(dir.join("cache")).unwrap();
    std::fs::remove_file(dir.join("logs/latest.log")).unwrap();
    let before = tree_hash(&dir);

    // Change the tree, then restore without truncation: changed files revert,
    // new files stay.
    std::fs::write(dir.join("server.properties"), "motd=after\n").unwrap();
    std::fs::remove_file(dir.join("world/region/r.0.0.mca")).unwrap();
    std::fs::write(dir.join("new-after-backup.txt"), "new").unwrap();
    restore(&st, s, &b, false).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("server.properties")).unwrap(),
        "motd=before\n"
    );
    let m = std::fs::metadata(dir.join("server.properties"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o777, 0o600, "modes come back from the archive");
    assert!(dir.join("world/region/r.0.0.mca").exists());
    assert!(dir.join("new-after-backup.txt").exists());

    // With truncation the tree is exactly the backed-up one.
    std::fs::write(dir.join("world/level.dat"), b"corrupted").unwrap();
    restore(&st, s, &b, true).await;
    assert!(!dir.join("new-after-backup.txt").exists());
    assert_eq!(tree_hash(&dir), before);

    // Bad requests.
    let r = st
        .post(
            &format!("/api/servers/{}/backup/{b}/restore", s.uuid),
            json!({"adapter": "s3", "truncate_directory": false}),
        )
        .await;
    r.assert_error(
        400,
        "The download_url field is required when the backup adapter is set to S3.",
    );
    let r = st
        .post(
            &format!(
                "/api/servers/{}/backup/{}/restore",
                s.uuid,
                uuid::Uuid::new_v4()
            ),
            json!({"adapter": "wings"}),
        )
        .await;
    r.assert_error(404, "The requested backup was not found on this server.");
    let r = st
        .post(
            &format!("/api/servers/{}/backup/..%2F..%2Fetc/restore", s.uuid),
            json!({"adapter": "wings"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = st
        .post(
            &format!("/api/servers/{}/backup", s.uuid),
            json!({"adapter": "ftp", "uuid": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Delete the local archive; a second delete is a 404.
    let path = format!("/api/servers/{}/backup/{b}", s.uuid);
    let r = st.send(st.req(reqwest::Method::DELETE, &path)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!archive.exists());
    let r = st.send(st.req(reqwest::Method::DELETE, &path)).await;
    r.assert_error(404, "The requested backup was not found on this server.");
}

#[tokio::test]
async fn the_request_ignore_list_wins_and_symlinks_are_not_followed() {
    let (st, srv) = stack(Options::default()).await;
    let s = &srv[0];
    let dir = st.server_dir(s);
    let outside = st.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "top secret").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link-out")).unwrap();
    std::fs::write(dir.join("keep.txt"), "keep").unwrap();
    std::fs::write(dir.join("skip.tmp"), "skip").unwrap();
    std::fs::write(dir.join(".pteroignore"), "keep.txt\n").unwrap();
    let b = new_backup(&st, s).await;
    let r = st
        .post(
            &format!("/api/servers/{}/backup", s.uuid),
            json!({"adapter": "wings", "uuid": b, "ignore": "*.tmp"}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert!(
        eventually(Duration::from_secs(30), || async {
            backup_row(&st, &b).await.3
        })
        .await
    );
    let listing = archive_listing(&st.backups.join(format!("{b}.tar.gz")));
    assert!(
        listing.contains("keep.txt"),
        "the request's list replaces .pteroignore: {listing}"
    );
    assert!(!listing.contains("skip.tmp"), "{listing}");
    assert!(
        !listing.contains("secret"),
        "a link out of the root was followed: {listing}"
    );
}
