//! Backups on the S3 disk, end to end: panel-api (APP_BACKUP_DRIVER=s3) issues the
//! multipart upload and its presigned part URLs, the real wings uploads the archive
//! to them and reports the parts, panel-api completes the upload on a real
//! S3-compatible server (moto's server mode, from PyPI), downloads are presigned,
//! restores stream from the bucket, and deletion removes the object.

mod wings_stack;

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wings_stack::{eventually, stack, Options};

/// A moto S3 server on a free port, stopped on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let port = ferrodactyl_tests::closed_port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]') must be installed for the S3 tests");
    let endpoint = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(30), || async {
        reqwest::get(&endpoint).await.is_ok()
    })
    .await;
    assert!(up, "moto_server did not start");
    Moto { child, endpoint }
}

#[tokio::test]
async fn s3_backups_upload_in_parts_restore_and_delete() {
    let m = moto().await;
    let s3cfg = panel_api::s3::S3Config {
        endpoint: m.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: "backups".into(),
        access_key: "test".into(),
        secret_key: "test".into(),
        path_style: true,
        // S3's smallest part, so a 12 MiB archive goes up in three parts.
        max_part_size: 5 * 1024 * 1024,
    };
    panel_api::s3::S3::new(s3cfg.clone())
        .unwrap()
        .create_bucket()
        .await
        .unwrap();
    let cfg = s3cfg.clone();
    let (st, mut servers) = stack(Options {
        panel: Box::new(move |c| {
            c.backup_driver = "s3".into();
            c.s3 = Some(cfg);
        }),
        servers: vec![("s3", 4096)],
        ..Default::default()
    })
    .await;
    let srv = servers.remove(0);
    let owner = st.p.account("s3owner", false, 1).await.unwrap();
    sqlx::query("UPDATE servers SET owner_id = $1, backup_limit = 2 WHERE id = $2")
        .bind(owner.id)
        .bind(srv.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    let dir = st.server_dir(&srv);
    std::fs::create_dir_all(&dir).unwrap();
    // Incompressible content, so the archive really is larger than two parts.
    let mut big = vec![0u8; 12 * 1024 * 1024];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(dir.join("world.bin"), &big).unwrap();
    std::fs::write(dir.join("small.txt"), "v1").unwrap();
    let base = format!("/api/client/servers/{}/backups", srv.short);
    let r =
        st.p.send(Method::POST, &base, &owner.key, &json!({"name": "to s3"}))
            .await
            .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let uuid = r.json["attributes"]["uuid"].as_str().unwrap().to_string();
    let done = eventually(Duration::from_secs(120), || async {
        let r =
            st.p.get(&format!("{base}/{uuid}"), &owner.key)
                .await
                .unwrap();
        r.json["attributes"]["completed_at"].is_string()
    })
    .await;
    assert!(done, "wings reported the S3 backup");
    let r =
        st.p.get(&format!("{base}/{uuid}"), &owner.key)
            .await
            .unwrap();
    assert_eq!(r.json["attributes"]["is_successful"], true, "{}", r.text());
    let (disk, upload_id): (String, Option<String>) =
        sqlx::query_as("SELECT disk, upload_id FROM backups WHERE uuid = $1::uuid")
            .bind(&uuid)
            .fetch_one(&st.p.db)
            .await
            .unwrap();
    assert_eq!(disk, "s3");
    assert!(upload_id.is_some());
    assert!(
        !st.backups.join(format!("{uuid}.tar.gz")).exists(),
        "nothing is kept on the node"
    );
    // The download link is a presigned GET on the bucket; the object is the archive.
    let r =
        st.p.get(&format!("{base}/{uuid}/download"), &owner.key)
            .await
            .unwrap();
    let url = r.json["attributes"]["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&m.endpoint) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let object = reqwest::get(&url).await.unwrap();
    assert_eq!(object.status(), 200);
    let bytes = object.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    assert!(
        bytes.len() > 10 * 1024 * 1024,
        "all parts were joined: {}",
        bytes.len()
    );
    let r =
        st.p.get(&format!("{base}/{uuid}"), &owner.key)
            .await
            .unwrap();
    assert_eq!(
        r.json["attributes"]["bytes"].as_u64().unwrap(),
        bytes.len() as u64
    );
    // A restore streams it back from the bucket.
    std::fs::write(dir.join("small.txt"), "v2").unwrap();
    std::fs::remove_file(dir.join("world.bin")).unwrap();
    let r =
        st.p.send(
            Method::POST,
            &format!("{base}/{uuid}/restore"),
            &owner.key,
            &json!({"truncate": true}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let restored = eventually(Duration::from_secs(120), || async {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
            .bind(srv.id)
            .fetch_one(&st.p.db)
            .await
            .unwrap();
        s.is_none()
    })
    .await;
    assert!(restored, "wings reported the restore");
    assert_eq!(
        std::fs::read_to_string(dir.join("small.txt")).unwrap(),
        "v1"
    );
    assert_eq!(std::fs::read(dir.join("world.bin")).unwrap(), big);
    // Deleting removes the object from the bucket.
    let r =
        st.p.send(
            Method::DELETE,
            &format!("{base}/{uuid}"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
}
