//! Wings benchmarks of issue 3, each measured against its baseline in the same run:
//!
//! 1. console fan-out: a server printing lines as fast as it can, delivered to 1, 10
//!    and 100 websocket clients with throttling off, against the raw rate at which
//!    `docker attach` reads the same container (the one wings created, started
//!    again by Docker alone right after), once with the tests' server spec
//!    (cpu_limit 50) and once with no CPU limit;
//! 2. time from power start to `running`, against `docker start` + first output line
//!    of the same container spec (7 runs of each, alternating; medians);
//! 3. resident memory of the `wings` binary with 0 and 50 servers defined.
//!
//! Run: `cargo bench -p wings --bench daemon` (needs the local Docker engine). The
//! memory figure runs the `wings` binary: `target/release/wings` (build it first
//! with `cargo build --release -p wings`) or the path in `WINGS_BIN`.
//!
//! The fan-out clients (`RawWs` in `tests/common`) make a normal websocket
//! handshake (the accept key is checked) and authenticate with a masked text
//! frame, then read the socket themselves: every frame header is parsed off the
//! wire and each whole text frame whose payload starts with
//! `{"event":"console output"` counts as one line, as the baseline counts
//! newlines. They share the bench process and the machine's two cores with wings
//! and dockerd, so they skip a websocket library's per-message work (UTF-8
//! validation, a buffer per message); what is counted is still real frames.
//! Each case runs `FANOUT_ROUNDS` rounds (3 by default) of wings' rate followed
//! by the raw rate; it reports the rounds' mean rates, their ratio and every
//! round's own. Before the cases, for each client count, the loopback ceiling:
//! the same frames written to that many local sockets as fast as they take them,
//! with neither Docker nor wings running (what two cores can deliver at all).
//! Each case also prints the machine's busy cores during its windows
//! (`/proc/stat`) and wings' rate against the ceiling. `FANOUT_CLIENTS=1,10` picks the client counts, `FANOUT_ONLY=1`
//! skips the other figures.

#[path = "../tests/common/mod.rs"]
mod common;

use bollard::query_parameters::AttachContainerOptionsBuilder;
use common::*;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

const SPAM: &str = r#"sh -c 'echo Done; sleep 1; yes "console line with some typical length for a game server log"'"#;
const WINDOW: Duration = Duration::from_secs(4);
/// From start until the container prints at full speed (it sleeps 1 s first).
const WARM_UP: Duration = Duration::from_millis(1500);

#[tokio::main]
async fn main() {
    ensure_image();
    fanout().await;
    if std::env::var_os("FANOUT_ONLY").is_some() {
        return;
    }
    start_latency().await;
    memory().await;
}

/// Power start through wings (waits for the container to start, up to 30 s).
async fn power_start(server: &std::sync::Arc<wings::server::Server>) {
    server
        .handle_power(
            wings::server::PowerAction::Start,
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap();
}

/// Lines/s that a raw `docker attach` reads from the container `name` (already
/// created, stopped): attach, `docker start`, skip the warm-up, count newlines for
/// WINDOW, kill.
async fn raw_attach_rate(docker: &bollard::Docker, name: &str) -> (f64, f64) {
    let mut att = docker
        .attach_container(
            name,
            Some(
                AttachContainerOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .stream(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    // Read from the start, count from the end of the warm-up (as the fan-out's
    // clients do).
    let start = Instant::now() + WARM_UP;
    let cpu = busy_cores(start, start + WINDOW);
    let mut lines = 0u64;
    while start.elapsed() < WINDOW {
        // (The container is quiet for its first second.)
        match tokio::time::timeout(Duration::from_secs(3), att.output.next()).await {
            Ok(Some(Ok(chunk))) if Instant::now() >= start => {
                lines += memchr_count(&chunk.into_bytes())
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    let rate = lines as f64 / start.elapsed().as_secs_f64();
    let busy = cpu.await.unwrap_or(0.0);
    // Close the stream first: an attach nobody reads kept dockerd copying into it,
    // and the kill's `die` came minutes late.
    drop(att);
    let _ = docker
        .kill_container(
            name,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await;
    let _ = docker
        .wait_container(
            name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        )
        .next()
        .await;
    (rate, busy)
}

/// Busy and total jiffies of the whole machine (`/proc/stat`).
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Cores of the machine busy, on average, from `from` to `to` (a task that reads
/// `/proc/stat` at both instants).
fn busy_cores(from: Instant, to: Instant) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let (b0, t0) = cpu_jiffies();
        tokio::time::sleep_until(to.into()).await;
        let (b1, t1) = cpu_jiffies();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cores
    })
}

fn memchr_count(b: &[u8]) -> u64 {
    b.iter().filter(|c| **c == b'\n').count() as u64
}

/// Rounds of each fan-out case (`FANOUT_ROUNDS` to change): each round measures
/// wings, then the raw baseline right after, so a round's two figures see the
/// same machine; the case's figure is the sum of the rounds' lines/s over the
/// sum of their baselines.
const ROUNDS: usize = 3;

/// One round of a fan-out case: lines/s per client through wings, lines/s of the
/// raw `docker attach`, and the machine's busy cores during each.
struct Round {
    per_client: f64,
    wings_busy: f64,
    raw: f64,
    raw_busy: f64,
}

/// For each round: console lines/s per client that wings delivers to `clients`
/// websocket clients, then the raw `docker attach` rate of the same container
/// (the one wings created, started again by Docker alone).
async fn fanout_case(
    docker: &bollard::Docker,
    clients: usize,
    cpu_limit: i64,
    rounds: usize,
) -> Vec<Round> {
    let test = format!("bench-fanout-{clients}");
    let mut cfg = server_config(
        &test,
        SPAM,
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    cfg.settings.build.cpu_limit = cpu_limit;
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(&test, |p| p.add_server(cfg), |c| c.throttles.lines = 0).await;
    let server = node.app.manager.get(&uuid).unwrap();
    let mut figures = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut sockets = Vec::new();
        for _ in 0..clients {
            let mut ws = node.raw_ws(&uuid).await;
            ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
                .await;
            assert!(
                ws.wait_for(Duration::from_secs(10), "auth success").await,
                "auth success"
            );
            sockets.push(ws);
        }
        power_start(&server).await;
        let (per_client, wings_busy) = count_window(&mut sockets, WARM_UP).await;
        let mut rx = server.subscribe_state();
        let _ = server
            .handle_power(wings::server::PowerAction::Kill, None)
            .await;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|s| *s == wings::events::State::Offline),
        )
        .await;
        drop(sockets);
        let (raw, raw_busy) = raw_attach_rate(docker, &uuid).await;
        figures.push(Round {
            per_client,
            wings_busy,
            raw,
            raw_busy,
        });
    }
    node.cleanup().await;
    figures
}

/// The machine's ceiling for `clients` clients: the same `console output` frames
/// (wings' own framing of the container's line, 128 lines per batch) written to
/// `clients` loopback sockets with wings' socket options, one writer task per
/// socket writing 256 KiB per `writev` as wings' writers do, as fast as the
/// sockets take them, read and counted by the same clients; no Docker, no wings.
/// Lines/s per client.
async fn loopback_ceiling(clients: usize) -> (f64, f64) {
    use tokio::io::AsyncWriteExt;
    let line = SPAM.split('"').nth(1).unwrap();
    let mut frames = wings::events::ConsoleFramesBuilder::default();
    for _ in 0..128 {
        frames.push(line);
    }
    let batch = wings::events::Published::new(wings::events::Event::ConsoleLines(frames.take()))
        .wire()
        .clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let mut writers = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            wings::daemon::tune_connection(&tcp);
            let batch = batch.clone();
            writers.push(tokio::spawn(async move {
                let template: Vec<bytes::Bytes> = (0..16).map(|_| batch.clone()).collect();
                loop {
                    let mut parts = template.clone();
                    while !parts.is_empty() {
                        let slices: Vec<std::io::IoSlice<'_>> =
                            parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
                        let Ok(mut n) = tcp.write_vectored(&slices).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        while n > 0 {
                            if n >= parts[0].len() {
                                n -= parts[0].len();
                                parts.remove(0);
                            } else {
                                bytes::Buf::advance(&mut parts[0], n);
                                n = 0;
                            }
                        }
                    }
                }
            }));
        }
        writers
    });
    let mut sockets = Vec::new();
    for _ in 0..clients {
        sockets.push(RawWs::over(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
        ));
    }
    let figures = count_window(&mut sockets, Duration::from_millis(500)).await;
    drop(sockets);
    accept.abort();
    figures
}

/// The clients read from now on (as a panel's do) and count `console output`
/// frames from the end of `warm_up` for WINDOW: lines/s per client, and the
/// machine's busy cores during the window.
async fn count_window(sockets: &mut [RawWs], warm_up: Duration) -> (f64, f64) {
    let start = Instant::now() + warm_up;
    let deadline = start + WINDOW;
    let cpu = busy_cores(start, deadline);
    let counts = futures::future::join_all(
        sockets
            .iter_mut()
            .map(|ws| async move { ws.count_console_between(start, deadline).await }),
    )
    .await;
    let secs = start.elapsed().as_secs_f64();
    let per_client = counts.iter().sum::<u64>() as f64 / sockets.len() as f64 / secs;
    (per_client, cpu.await.unwrap_or(0.0))
}

async fn fanout() {
    let docker = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    // FANOUT_CLIENTS=1,10 runs only those client counts (for profiling one case).
    let counts: Vec<usize> = std::env::var("FANOUT_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 100]);
    let rounds = std::env::var("FANOUT_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(ROUNDS);
    // What the machine can deliver to that many local sockets at all.
    let mut ceilings = Vec::new();
    for &clients in &counts {
        let (ceiling, busy) = loopback_ceiling(clients).await;
        println!(
            "loopback ceiling, {clients:>3} client(s) (the same frames written to the sockets as fast as they take them; no Docker, no wings): {ceiling:.0} lines/s per client, {busy:.2} cores busy"
        );
        ceilings.push((ceiling, busy));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // The tests' server spec (cpu_limit 50 = half a core), then the same with no
    // CPU limit.
    for cpu_limit in [50, 0] {
        println!("console fan-out (throttling off), container cpu_limit {cpu_limit} (0 = none), {rounds} round(s) each:");
        for (&clients, &(ceiling, ceiling_busy)) in counts.iter().zip(&ceilings) {
            let figures = fanout_case(&docker, clients, cpu_limit, rounds).await;
            let n = rounds as f64;
            let wings: f64 = figures.iter().map(|f| f.per_client).sum::<f64>() / n;
            let raw: f64 = figures.iter().map(|f| f.raw).sum::<f64>() / n;
            let wings_busy: f64 = figures.iter().map(|f| f.wings_busy).sum::<f64>() / n;
            let raw_busy: f64 = figures.iter().map(|f| f.raw_busy).sum::<f64>() / n;
            let each: Vec<String> = figures
                .iter()
                .map(|f| {
                    format!(
                        "{:.0}% ({:.0}/{:.0})",
                        f.per_client / f.raw * 100.0,
                        f.per_client,
                        f.raw
                    )
                })
                .collect();
            println!(
                "  {clients:>3} client(s): {wings:.0} lines/s per client, raw docker attach of the same container {raw:.0} lines/s = {:.0}%; rounds: {}",
                wings / raw * 100.0,
                each.join(", ")
            );
            println!(
                "       cores busy: {wings_busy:.2} of {cores} with wings, {raw_busy:.2} with the raw attach; per client wings delivers {:.0}% of the loopback ceiling ({ceiling:.0} lines/s, {ceiling_busy:.2} cores busy, = {:.0}% of this raw rate)",
                wings / ceiling * 100.0,
                ceiling / raw * 100.0
            );
        }
    }
}

async fn start_latency() {
    const RUNS: usize = 7;
    let test = "bench-start";
    let cfg = server_config(
        test,
        "sh -c 'echo Done; sleep 1000'",
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(
        test,
        |p| p.add_server(cfg),
        |c| c.system.check_permissions_on_boot = false,
    )
    .await;
    let server = node.app.manager.get(&uuid).unwrap();
    let docker = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    // The two alternate, so drift of the shared machine hits both alike.
    let mut wings_ms = Vec::new();
    let mut docker_ms = Vec::new();
    for _ in 0..RUNS {
        let mut rx = server.subscribe_state();
        let t = Instant::now();
        power_start(&server).await;
        rx.wait_for(|s| *s == wings::events::State::Running)
            .await
            .unwrap();
        wings_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        server
            .handle_power(wings::server::PowerAction::Kill, None)
            .await
            .unwrap();
        rx.wait_for(|s| *s == wings::events::State::Offline)
            .await
            .unwrap();

        // Baseline: `docker start` of the same (already created) container until
        // its first output line, read through an attach opened beforehand.
        let mut att = docker
            .attach_container(
                &uuid,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stdout(true)
                        .stream(true)
                        .build(),
                ),
            )
            .await
            .unwrap();
        let t = Instant::now();
        docker
            .start_container(
                &uuid,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = att.output.next().await {
            buf.extend_from_slice(&chunk.into_bytes());
            if String::from_utf8_lossy(&buf).contains("Done") {
                break;
            }
        }
        docker_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(att);
        docker
            .kill_container(
                &uuid,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .unwrap();
        let _ = docker
            .wait_container(
                &uuid,
                None::<bollard::query_parameters::WaitContainerOptions>,
            )
            .next()
            .await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (w, d) = (median(&mut wings_ms), median(&mut docker_ms));
    println!("power start → running: wings {w:.0} ms (recreates the container) vs docker start {d:.0} ms = {:.2}×", w / d);
    node.cleanup().await;
}

async fn memory() {
    let bin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join("release/wings");
    let bin = std::env::var("WINGS_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or(bin);
    if !bin.exists() {
        println!("resident memory: skipped, build the binary first (cargo build --release -p wings) or set WINGS_BIN");
        return;
    }
    for n in [0usize, 50] {
        let rss = async {
            let token = random_token();
            let panel = FakePanel::start(TOKEN_ID, &token).await;
            for _ in 0..n {
                panel.add_server(server_config(
                    "bench-rss",
                    "sleep 1000",
                    &["x"],
                    json!({"type": "signal", "value": "SIGKILL"}),
                ));
            }
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = node_config(dir.path(), &panel.url, &token);
            cfg.api.port = free_port();
            cfg.remote_query.boot_servers_per_page = 100;
            let path = dir.path().join("config.yml");
            cfg.save(&path).unwrap();
            let mut child = std::process::Command::new(&bin)
                .arg("--config")
                .arg(&path)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let client = reqwest::Client::new();
            for _ in 0..100 {
                if client
                    .get(format!("http://127.0.0.1:{}/api/system", cfg.api.port))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .is_ok()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        }
        .await;
        println!(
            "resident memory with {n:>2} servers: {rss:.1} MiB (target {:.1} MiB)",
            20.0 + 0.5 * n as f64
        );
    }
}
