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

/// A token bucket of `rate` bytes per second holding at most one second of
/// tokens, full at first: upstream's `system.backups.write_limit` throttle (juju
/// `ratelimit.NewBucketWithRate(limit, limit)`). Blocking; used on the blocking pool.
pub struct Throttle {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl Throttle {
    /// `mib_per_sec` ≤ 0 means unlimited (no throttle).
    pub fn new(mib_per_sec: i64) -> Option<Throttle> {
        (mib_per_sec > 0).then(|| {
            let rate = mib_per_sec as f64 * 1024.0 * 1024.0;
            Throttle {
                rate,
                tokens: rate,
                last: std::time::Instant::now(),
            }
        })
    }

    /// How many of `want` bytes may pass now, after waiting for at least one token.
    fn take(&mut self, want: usize) -> usize {
        loop {
            let now = std::time::Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
                .min(self.rate);
            self.last = now;
            if self.tokens >= 1.0 {
                let n = (want as f64).min(self.tokens.floor()) as usize;
                self.tokens -= n as f64;
                return n.max(1);
            }
            // Wait for the chunk (at most one bucket) to be covered.
            let need = (want as f64).min(self.rate) - self.tokens;
            std::thread::sleep(Duration::from_secs_f64(need / self.rate));
        }
    }
}

/// A writer (the archive file) limited by a [`Throttle`].
pub struct ThrottledWriter<W> {
    inner: W,
    throttle: Option<Throttle>,
}

impl<W> ThrottledWriter<W> {
    pub fn new(inner: W, throttle: Option<Throttle>) -> Self {
        ThrottledWriter { inner, throttle }
    }
}

impl<W: Write> Write for ThrottledWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.throttle.as_mut() {
            Some(t) => t.take(buf.len()),
            None => buf.len(),
        };
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader (the archive a restore extracts) limited by a [`Throttle`], as upstream
/// throttles restores with the backup write limit.
pub struct ThrottledReader<R> {
    inner: R,
    throttle: Option<Throttle>,
}

impl<R> ThrottledReader<R> {
    pub fn new(inner: R, throttle: Option<Throttle>) -> Self {
        ThrottledReader { inner, throttle }
    }
}

impl<R: Read> Read for ThrottledReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.throttle.as_mut() {
            Some(t) => t.take(buf.len()),
            None => buf.len(),
        };
        self.inner.read(&mut buf[..n])
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
    let file = ThrottledWriter::new(file, Throttle::new(cfg.system.backups.write_limit));
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
    let limit = app.config().system.backups.write_limit;
    let result: anyhow::Result<()> = async {
        let fs = Filesystem::new(&server)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let srv = server.clone();
        match source {
            RestoreSource::Local(path) => {
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let f = std::fs::File::open(&path)?;
                    let f = ThrottledReader::new(f, Throttle::new(limit));
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
                    let bridge = ThrottledReader::new(bridge, Throttle::new(limit));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MIB: usize = 1024 * 1024;

    /// A server root holding `mib` MiB of random (incompressible) bytes, and a
    /// configuration that writes backups beside it.
    fn tree(mib: usize) -> (tempfile::TempDir, Jail, crate::config::Config) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let data: Vec<u8> = (0..mib * MIB).map(|_| rand::random::<u8>()).collect();
        std::fs::write(root.join("world.dat"), &data).unwrap();
        let jail = Jail::open(&root, 0, 0).unwrap();
        let mut cfg = crate::config::Config::default();
        cfg.system.backup_directory = t.path().join("backups").to_string_lossy().into();
        (t, jail, cfg)
    }

    #[test]
    fn write_limit_throttles_the_archive() {
        let (_t, jail, mut cfg) = tree(3);
        let start = Instant::now();
        let (_, free_size) = archive_server(&jail, &cfg, "unlimited", "").unwrap();
        let unlimited = start.elapsed();
        assert!(free_size > 3 * MIB as u64, "{free_size}");

        // 1 MiB/s with one second of burst: 3 MiB of random data needs ≥ 2 s.
        cfg.system.backups.write_limit = 1;
        let start = Instant::now();
        let (sum, size) = archive_server(&jail, &cfg, "limited", "").unwrap();
        let limited = start.elapsed();
        let expected = (size as f64 - MIB as f64) / MIB as f64;
        assert!(
            limited.as_secs_f64() >= expected * 0.95,
            "{size} bytes at 1 MiB/s took {limited:?} (unthrottled {unlimited:?})"
        );
        assert!(limited > unlimited * 2, "{limited:?} vs {unlimited:?}");
        // The throttled archive is complete and what its checksum says.
        let bytes = std::fs::read(local_path(&cfg, "limited")).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(hex::encode(sha1::Sha1::digest(&bytes)), sum);
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["world.dat"]);
    }

    #[test]
    fn write_limit_throttles_restore_reads() {
        let data = vec![7u8; 2 * MIB + MIB / 2];
        let start = Instant::now();
        let mut r = ThrottledReader::new(&data[..], Throttle::new(2));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let took = start.elapsed();
        assert_eq!(out, data);
        // 2.5 MiB at 2 MiB/s with a 2 MiB burst: ≥ 0.25 s.
        assert!(took >= Duration::from_millis(237), "{took:?}");
        assert!(Throttle::new(0).is_none());
        assert!(Throttle::new(-1).is_none());
    }
}
