//! Node-to-node transfers (reference §1.9, §8.3). The source streams a tar.gz of
//! the server root as a multipart `archive` part followed by a `checksum` part
//! (hex SHA-256 of the archive bytes) to the destination's `POST /api/transfers`,
//! forwarding the Panel's token verbatim. The destination verifies the token with
//! its own secret, extracts through the jail while hashing, checks the checksum,
//! creates the container and reports success; any failure is reported as
//! upstream reports it and leaves the source untouched.

use crate::events::{Event, State};
use crate::filesystem::{archive, Filesystem, Jail};
use crate::server::Server;
use crate::App;
use bytes::Bytes;
use sha2::Digest;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn log(server: &Server, msg: &str) {
    let now = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S UTC");
    server.publish(Event::TransferLogs(format!(
        "\x1b[1;33m{now} [Transfer System] [Source Node]:\x1b[0m {msg}"
    )));
}

/// Forwards written bytes into the request body channel.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    hash: Option<sha2::Sha256>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(h) = self.hash.as_mut() {
            h.update(buf);
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the destination stopped reading"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Pushes the server to the destination. Errors are reported by the caller.
pub async fn push(
    app: Arc<App>,
    server: Arc<Server>,
    url: String,
    token: String,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    log(&server, "Preparing to stream server data to destination...");
    if server.state() != State::Offline {
        let _ = server.wait_for_stop(Duration::from_secs(15), false).await;
    }
    let cfg = app.config();
    let jail = Jail::open(
        &server.data_path(),
        cfg.system.user.uid,
        cfg.system.user.gid,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let boundary = format!("ferrodactyl{}", uuid::Uuid::new_v4().simple());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let b2 = boundary.clone();
    let level = archive::level(&cfg.system.backups.compression_level);
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let head = format!(
            "--{b2}\r\nContent-Disposition: form-data; name=\"archive\"; filename=\"archive.tar.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        tx.blocking_send(Ok(Bytes::from(head)))
            .map_err(|_| anyhow::anyhow!("closed"))?;
        let w = ChannelWriter {
            tx: tx.clone(),
            hash: Some(sha2::Sha256::new()),
        };
        let mut w = archive::write_tar_gz(&jail, "", &[String::new()], None, level, w)
            .map_err(|e| anyhow::anyhow!("could not archive the server: {e}"))?;
        let sum = hex::encode(w.hash.take().expect("hash").finalize());
        let tail = format!(
            "\r\n--{b2}\r\nContent-Disposition: form-data; name=\"checksum\"\r\n\r\n{sum}\r\n--{b2}--\r\n"
        );
        tx.blocking_send(Ok(Bytes::from(tail)))
            .map_err(|_| anyhow::anyhow!("closed"))?;
        Ok(())
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    log(&server, "Streaming archive to destination...");
    let req = reqwest::Client::new()
        .post(&url)
        .header("Authorization", token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let resp = tokio::select! {
        r = req => r?,
        _ = cancel.cancelled() => anyhow::bail!("the transfer was cancelled"),
    };
    producer.await??;
    if resp.status() != reqwest::StatusCode::OK {
        anyhow::bail!(
            "the destination answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    log(&server, "Finished streaming archive to destination.");
    Ok(())
}

/// Reads from the body channel and hashes what it hands out.
struct HashingReader<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Extracts an incoming archive (already decompressed by the caller's reader
/// chain) into the server root; returns the hex SHA-256 of the raw bytes.
pub fn receive_archive(fs: &Filesystem, raw: impl Read) -> anyhow::Result<String> {
    let mut hr = HashingReader {
        inner: raw,
        hash: sha2::Sha256::new(),
    };
    {
        let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(&mut hr));
        archive::extract_tar(fs, gz, "", true, &mut |_| {})
            .map_err(|e| anyhow::anyhow!("could not extract the archive: {e}"))?;
    }
    // Whatever follows the tar end marker (gzip trailer, padding) still counts.
    std::io::copy(&mut hr, &mut std::io::sink())?;
    Ok(hex::encode(hr.hash.finalize()))
}
