//! A closed-loop HTTP/1.1 load generator: N keep-alive connections on loopback, each
//! sending the next request as soon as the previous answer's body has arrived. Bounded
//! by time and by a request cap; latencies are kept per request, not averaged.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What to send and for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Stop early after this many measured requests in total (a safety bound).
    pub max_requests: u64,
}

/// Requests started inside the measured window.
#[derive(Debug)]
pub struct Outcome {
    /// Requests answered during the warm-up (not in the figures).
    pub warmup: u64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Sorted, microseconds.
    pub latencies_us: Vec<u32>,
    pub measured: Duration,
    pub body_bytes: u64,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64()
    }

    /// Nearest-rank percentile in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Worker {
    warmup: u64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
    body_bytes: u64,
}

/// Where an answer's head ends, its status and its body's length, once the whole
/// head is in `buf`.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, u16, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("the load generator reads Content-Length bodies only ({line:?})");
        }
    }
    // Answers that never have a body (RFC 9112 §6.3).
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    let length = match length {
        Some(n) => n,
        None if bodiless => 0,
        None => bail!("answer without Content-Length"),
    };
    Ok(Some((end + 4, status, length)))
}

/// One keep-alive connection: a request (the same bytes each time) as soon as the
/// previous answer's body has been read. No HTTP library: pgbench, which it is
/// compared with, is a lean C client too, and both share the machine's cores with
/// the server they measure.
async fn worker(
    plan: std::sync::Arc<Plan>,
    measure_from: Instant,
    until: Instant,
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Worker> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connecting to {}", plan.addr))?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nAuthorization: Bearer {}\r\n\r\n",
        plan.path, plan.addr, plan.bearer
    )
    .into_bytes();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut w = Worker {
        warmup: 0,
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_us: Vec::with_capacity(1 << 14),
        body_bytes: 0,
    };
    loop {
        let start = Instant::now();
        if start >= until {
            break;
        }
        let measured = start >= measure_from;
        if measured && budget.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) as i64 <= 0 {
            break;
        }
        stream.write_all(&request).await?;
        let (head, status, length) = loop {
            if let Some(h) = parse_head(&buf)? {
                break h;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("the server closed the connection");
            }
        };
        while buf.len() < head + length {
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("the server closed the connection mid-body");
            }
        }
        let elapsed = start.elapsed();
        if measured {
            if (200..300).contains(&status) {
                w.ok += 1;
                w.body_bytes += length as u64;
                w.latencies_us
                    .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            } else {
                w.errors += 1;
                if w.first_error.is_none() {
                    let body = &buf[head..head + length];
                    w.first_error = Some(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ));
                }
            }
        } else {
            w.warmup += 1;
        }
        buf.drain(..head + length);
    }
    Ok(w)
}

/// One request on a fresh connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str, bearer: &str) -> Result<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let req = Request::get(path)
        .header(HOST, addr.to_string())
        .header(ACCEPT, "application/json")
        .header(AUTHORIZATION, format!("Bearer {bearer}"))
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    Ok((status, body))
}

/// Runs the plan: warm-up, then the measured window.
pub async fn run(plan: Plan) -> Result<Outcome> {
    if plan.connections == 0 {
        bail!("no connections");
    }
    let begin = Instant::now();
    let measure_from = begin + plan.warmup;
    let until = measure_from + plan.duration;
    let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(plan.max_requests));
    let plan = std::sync::Arc::new(plan);
    let mut tasks = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        tasks.push(tokio::spawn(worker(
            plan.clone(),
            measure_from,
            until,
            budget.clone(),
        )));
    }
    let mut out = Outcome {
        warmup: 0,
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_us: Vec::new(),
        measured: Duration::ZERO,
        body_bytes: 0,
    };
    for t in tasks {
        let w = t.await??;
        out.warmup += w.warmup;
        out.ok += w.ok;
        out.errors += w.errors;
        out.body_bytes += w.body_bytes;
        if out.first_error.is_none() {
            out.first_error = w.first_error;
        }
        out.latencies_us.extend(w.latencies_us);
    }
    // Requests are counted when they start inside the window; the window ends when
    // the last of them has been answered (or at its nominal end if that is later).
    out.measured = (Instant::now() - measure_from).max(plan.duration);
    out.latencies_us.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_heads_give_status_and_body_length() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"a\":1}";
        assert_eq!(parse_head(r).unwrap(), Some((r.len() - 7, 200, 12)));
        assert_eq!(parse_head(&r[..20]).unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert_eq!(
            parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            Some((27, 204, 0))
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
