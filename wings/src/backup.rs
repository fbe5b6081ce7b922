//! Backups (reference §1.8, §8.1): a tar.gz of the server root honouring the
//! request's ignore list or the server's `.pteroignore`, its SHA-1, the result
//! reported to the Panel; the `s3` adapter uploads the archive in parts to the
//! Panel's presigned URLs. Restores extract through the jail (quota-checked,
//! links contained) with a `daemon message` per file.

use crate::events::{Event, State};
use crate::filesystem::{archive, jail, matcher, Filesystem, FsError, Jail};
use crate::server::Server;
use crate::App;
use openapi::remote::{BackupPart, BackupStatusRequest};
use sha1::Digest;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const PTEROIGNORE_MAX: u64 = 32 * 1024;

pub fn local_path(cfg: &crate::config::Config, uuid: &str) -> PathBuf {
    PathBuf::from(&cfg.system.backup_directory).join(format!("{uuid}.tar.gz"))
}

/// A writer that hashes (SHA-1) and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hash: sha1::Sha1,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The ignore patterns: the request's, else the root `.pteroignore` (≤ 32 KiB,
/// not a symlink).
fn ignore_lines(jail: &Jail, requested: &str) -> Vec<String> {
    let mut text = requested.to_string();
    if text.trim().is_empty() {
        if let Ok(st) = jail.lstat(".pteroignore") {
            if jail::is_file(&st) && (st.st_size as u64) <= PTEROIGNORE_MAX {
                if let Ok((mut f, _)) = jail.open_read(".pteroignore") {
                    text.clear();
                    let _ = (&mut f).take(PTEROIGNORE_MAX).read_to_string(&mut text);
                }
            }
        }
    }
    text.lines().map(str::to_string).collect()
}

/// Writes `<backup_directory>/<uuid>.tar.gz`; returns (sha1 hex, size).
pub fn archive_server(
    jail: &Jail,
    cfg: &crate::config::Config,
    uuid: &str,
    ignore: &str,
) -> anyhow::Result<(String, u64)> {
    let lines = ignore_lines(jail, ignore);
    let m = matcher(&lines);
    let path = local_path(cfg, uuid);
    std::fs::create_dir_all(&cfg.system.backup_directory)?;
    let part = path.with_extension("gz.part");
    let file = std::fs::File::create(&part)?;
    let w = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: sha1::Sha1::new(),
        size: 0,
    };
    let res = archive::write_tar_gz(
        jail,
        "",
        &[String::new()],
        m.as_ref(),
        archive::level(&cfg.system.backups.compression_level),
        w,
    );
    let mut w = match res {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(anyhow::anyhow!("could not create the archive: {e}"));
        }
    };
    w.flush()?;
    let sum = hex::encode(w.hash.finalize());
    std::fs::rename(&part, &path)?;
    Ok((sum, w.size))
}

fn failed() -> BackupStatusRequest {
    BackupStatusRequest {
        checksum: String::new(),
        checksum_type: String::new(),
        size: 0,
        successful: false,
        parts: None,
    }
}

/// Runs a backup in the background and reports it.
pub async fn run_backup(
    app: Arc<App>,
    server: Arc<Server>,
    adapter: String,
    uuid: String,
    ignore: String,
) {
    let cfg = app.config();
    let remote = app.shared.remote();
    let result: anyhow::Result<BackupStatusRequest> = async {
        let jail = Jail::open(
            &server.data_path(),
            cfg.system.user.uid,
            cfg.system.user.gid,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (c, u) = (cfg.clone(), uuid.clone());
        let (sum, size) =
            tokio::task::spawn_blocking(move || archive_server(&jail, &c, &u, &ignore)).await??;
        let mut parts = None;
        if adapter == "s3" {
            let path = local_path(&cfg, &uuid);
            let r = upload_s3(&remote, &uuid, &path, size).await;
            let _ = tokio::fs::remove_file(&path).await;
            parts = Some(r?);
        }
        Ok(BackupStatusRequest {
            checksum: sum,
            checksum_type: "sha1".into(),
            size: size as i64,
            successful: true,
            parts,
        })
    }
    .await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(server = %server.uuid, backup = %uuid, error = %e, "backup failed");
            let _ = tokio::fs::remove_file(local_path(&cfg, &uuid)).await;
            failed()
        }
    };
    let payload = serde_json::json!({
        "checksum": report.checksum, "checksum_type": "sha1",
        "file_size": report.size, "is_successful": report.successful, "uuid": uuid,
    });
    match remote.set_backup_status(&uuid, &report).await {
        Ok(()) => server.publish(Event::BackupCompleted(payload.to_string())),
        Err(e) => {
            tracing::error!(server = %server.uuid, backup = %uuid, error = %e, "could not report the backup to the panel");
            if report.successful {
                let _ = tokio::fs::remove_file(local_path(&cfg, &uuid)).await;
            }
        }
    }
}

/// Uploads the archive to the Panel's presigned part URLs; returns the ETags.
async fn upload_s3(
    remote: &crate::remote::RemoteClient,
    uuid: &str,
    path: &std::path::Path,
    size: u64,
) -> anyhow::Result<Vec<BackupPart>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let urls = remote.backup_upload_urls(uuid, size).await?;
    let part_size = urls.part_size.max(1) as u64;
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for (i, url) in urls.parts.iter().enumerate() {
        let offset = i as u64 * part_size;
        let len = part_size.min(size.saturating_sub(offset));
        let mut attempt = 0;
        loop {
            let mut f = tokio::fs::File::open(path).await?;
            f.seek(std::io::SeekFrom::Start(offset)).await?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f.take(len)));
            let r = http
                .put(url)
                .header("Content-Length", len)
                .header("Content-Type", "application/x-gzip")
                .body(body)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => {
                    let etag = resp
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    out.push(BackupPart {
                        etag,
                        part_number: i as i64 + 1,
                    });
                    break;
                }
                Ok(resp) if resp.status().is_client_error() => {
                    anyhow::bail!("part {} upload refused: {}", i + 1, resp.status())
                }
                other => {
                    attempt += 1;
                    if attempt >= 5 {
                        anyhow::bail!(
                            "part {} upload failed: {:?}",
                            i + 1,
                            other.map(|r| r.status())
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }
    Ok(out)
}

/// Removes every file in the server root (restore with truncation).
pub fn truncate_root(jail: &Jail) -> Result<(), FsError> {
    for e in jail.read_dir("")? {
        jail.remove_all(&e.name)?;
    }
    Ok(())
}

/// Where a restore reads its archive from.
pub enum RestoreSource {
    Local(PathBuf),
    Remote(reqwest::Response),
}

/// Restores in the background: suspend, wait for stop, extract, report, resume.
pub async fn run_restore(app: Arc<App>, server: Arc<Server>, uuid: String, source: RestoreSource) {
    let was_suspended = server.is_suspended();
    server.set_suspended(true);
    if server.state() != State::Offline {
        let _ = server.wait_for_stop(Duration::from_secs(120), false).await;
    }
    let local = matches!(source, RestoreSource::Local(_));
    let result: anyhow::Result<()> = async {
        let fs = Filesystem::new(&server)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let srv = server.clone();
        match source {
            RestoreSource::Local(path) => {
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let f = std::fs::File::open(&path)?;
                    let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f));
                    archive::extract_tar(&fs, gz, "", false, &mut |p| {
                        srv.publish(Event::DaemonMessage(format!("(restoring): {p}")))
                    })
                    .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .await??;
            }
            RestoreSource::Remote(resp) => {
                use futures::TryStreamExt;
                let stream = resp.bytes_stream().map_err(std::io::Error::other);
                let reader = tokio_util::io::StreamReader::new(stream);
                let bridge = tokio_util::io::SyncIoBridge::new(reader);
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(bridge));
                    archive::extract_tar(&fs, gz, "", false, &mut |p| {
                        srv.publish(Event::DaemonMessage(format!("(restoring): {p}")))
                    })
                    .map_err(|e| anyhow::anyhow!("{e}"))
                })
                .await??;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        tracing::error!(server = %server.uuid, backup = %uuid, error = %e, "restore failed");
    }
    server.invalidate_disk_usage();
    if let Err(e) = app
        .shared
        .remote()
        .set_restore_status(&uuid, result.is_ok())
        .await
    {
        tracing::error!(server = %server.uuid, backup = %uuid, error = %e, "could not report the restore to the panel");
    }
    server.set_suspended(was_suspended);
    if result.is_ok() {
        server.publish(Event::DaemonMessage(
            if local {
                "Completed server restoration from local backup."
            } else {
                "Completed server restoration from S3 backup."
            }
            .into(),
        ));
    }
    server.publish(Event::BackupRestoreCompleted);
    server.set_restoring(false);
}
