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

async fn worker(
    plan: std::sync::Arc<Plan>,
    measure_from: Instant,
    until: Instant,
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Worker> {
    let stream = tokio::net::TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connecting to {}", plan.addr))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let host = plan.addr.to_string();
    let auth = format!("Bearer {}", plan.bearer);
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
        let req = Request::get(plan.path.as_str())
            .header(HOST, host.as_str())
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, auth.as_str())
            .body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let elapsed = start.elapsed();
        if !measured {
            w.warmup += 1;
            continue;
        }
        if status.is_success() {
            w.ok += 1;
            w.body_bytes += body.len() as u64;
            w.latencies_us
                .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
        } else {
            w.errors += 1;
            if w.first_error.is_none() {
                w.first_error = Some(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ));
            }
        }
    }
    drop(sender);
    let _ = driver.await;
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
