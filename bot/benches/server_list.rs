//! Issue 5's benchmark: `/server list` through the interactions endpoint, from a signed
//! request to the reply the user sees, against the panel call the bot makes
//! (`GET /api/client?per_page=25` with the same client key), timed in the same run,
//! interleaved. Target: bot p50 ≤ 1.2 × panel p50 + 2 ms.
//!
//! Everything is real and in this process: panel-api on a private PostgreSQL cluster
//! (the tests crate's harness; `FERRO_TEST_PG_URL` reuses a running one), a user with
//! a client key and a handful of servers, the bot's interactions endpoint with that
//! user's credentials stored by `/config setup`, and a stand-in for Discord's REST API
//! that timestamps follow-ups (a deferred reply is timed until its follow-up arrives).
//!
//! `cargo bench -p bot --bench server_list [-- --iterations N --warmup N --servers N]`

#[path = "../tests/common/mod.rs"]
mod common;

use axum::extract::State;
use axum::http::Uri;
use axum::Router;
use common::*;
use ed25519_dalek::Signer;
use ferrodactyl_tests::Panel;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Args {
    iterations: usize,
    warmup: usize,
    servers: usize,
}

fn args() -> Args {
    let mut a = Args {
        iterations: 1000,
        warmup: 100,
        servers: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |what: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match arg.as_str() {
            "--iterations" => a.iterations = num("--iterations"),
            "--warmup" => a.warmup = num("--warmup"),
            "--servers" => a.servers = num("--servers").clamp(1, 10),
            // cargo bench passes `--bench`; filters and the like mean nothing here.
            _ => {}
        }
    }
    a.iterations = a.iterations.max(1);
    a
}

/// Discord's REST API, reduced to what a follow-up needs: every request's path and
/// arrival time go to the benchmark.
async fn standin() -> (String, mpsc::UnboundedReceiver<(String, Instant)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn record(
        State(tx): State<mpsc::UnboundedSender<(String, Instant)>>,
        uri: Uri,
    ) -> axum::Json<Value> {
        let _ = tx.send((uri.path().to_string(), Instant::now()));
        axum::Json(json!({}))
    }
    let app = Router::new().fallback(record).with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

struct Bench {
    t: TestBot,
    who: Actor,
    followups: mpsc::UnboundedReceiver<(String, Instant)>,
    http: reqwest::Client,
    panel_url: String,
    key: String,
    servers: usize,
    deferred: usize,
}

impl Bench {
    /// One `/server list`, signed before the clock starts; timed until the reply (or,
    /// when deferred, its follow-up) is in.
    async fn bot(&mut self) -> Duration {
        let data = json!({"id": "7000000000000000001", "name": "server", "type": 1,
            "options": [{"name": "list", "type": 1, "options": []}]});
        let body = self.t.interaction(2, &self.who, data);
        let token = body["token"].as_str().unwrap().to_string();
        let raw = serde_json::to_vec(&body).unwrap();
        let ts = chrono::Utc::now().timestamp().to_string();
        let mut msg = ts.as_bytes().to_vec();
        msg.extend_from_slice(&raw);
        let sig = hex::encode(self.t.signer.sign(&msg).to_bytes());

        let start = Instant::now();
        let r = self
            .t
            .http
            .post(&self.t.url)
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(raw)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        let mut took = start.elapsed();

        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let resp: Value = serde_json::from_slice(&bytes).unwrap();
        match resp["type"].as_u64() {
            Some(4) => {
                let want = format!("Your servers ({})", self.servers);
                assert!(text(&resp).contains(&want), "unexpected reply: {resp}");
            }
            Some(5) => {
                // Deferred: what the user waits for is the follow-up.
                self.deferred += 1;
                let arrived = loop {
                    let (path, at) =
                        tokio::time::timeout(Duration::from_secs(30), self.followups.recv())
                            .await
                            .expect("the follow-up of a deferred reply")
                            .expect("the stand-in runs");
                    if path.contains(&token) {
                        break at;
                    }
                };
                took = arrived - start;
            }
            _ => panic!("unexpected interaction response: {resp}"),
        }
        took
    }

    /// The same panel call the bot makes, with the same key and query.
    async fn panel(&self) -> Duration {
        let start = Instant::now();
        let r = self
            .http
            .get(format!("{}/api/client?per_page=25", self.panel_url))
            .bearer_auth(&self.key)
            .header("Accept", "Application/vnd.pterodactyl.v1+json")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        let took = start.elapsed();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        took
    }
}

struct Stats {
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
    min: f64,
}

/// Milliseconds.
fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    Stats {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
        min: ms[0],
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main]
async fn main() {
    let a = args();
    eprintln!(
        "server_list: starting panel-api and the bot (load average {})",
        loadavg()
    );

    // The panel, with its per-user Client API limit raised above what the run sends
    // (the limiter still runs on every request).
    let panel = Panel::start_with(|c| c.client_rate_limit = 1_000_000)
        .await
        .expect("panel-api on PostgreSQL");
    let admin = panel.admin().await.unwrap();
    let (_, node) = panel
        .node(&admin, ferrodactyl_tests::closed_port())
        .await
        .unwrap();
    let (_, egg) = panel.egg().await.unwrap();
    let player = panel.account("player", false, 1).await.unwrap();
    for i in 0..a.servers {
        panel
            .seed_server(player.id, node, egg, &format!("Server {i}"))
            .await
            .unwrap();
    }

    // The bot with production's defer threshold; its per-user limit is raised above
    // what the run sends (the limiter still runs on every command).
    let (discord, followups) = standin().await;
    let t = TestBot::start_with(|c| {
        c.discord_api_base = discord;
        c.defer_after_ms = 2000;
        c.rate_limit_per_minute = 1_000_000;
    })
    .await;
    let who = member(1);
    let r = configure(&t, &who, &panel.url, &player.key, None).await;
    assert!(text(&r).contains("are saved"), "/config setup: {r}");
    let setup_rows = t.audit().await.len();

    let mut b = Bench {
        t,
        who,
        followups,
        http: reqwest::Client::new(),
        panel_url: panel.url.clone(),
        key: player.key.clone(),
        servers: a.servers,
        deferred: 0,
    };

    for i in 0..a.warmup {
        if i % 2 == 0 {
            b.bot().await;
            b.panel().await;
        } else {
            b.panel().await;
            b.bot().await;
        }
    }
    b.deferred = 0;
    let load_before = loadavg();
    let mut bot = Vec::with_capacity(a.iterations);
    let mut direct = Vec::with_capacity(a.iterations);
    let started = Instant::now();
    for i in 0..a.iterations {
        // Alternate which goes first so neither always runs on a warmer path.
        if i % 2 == 0 {
            bot.push(b.bot().await);
            direct.push(b.panel().await);
        } else {
            direct.push(b.panel().await);
            bot.push(b.bot().await);
        }
    }
    let wall = started.elapsed();
    let load_after = loadavg();

    // Every command still wrote its audit row.
    let rows = b.t.audit().await;
    let listed = rows.iter().filter(|r| r.1 == "server list").count();
    let expected = a.warmup + a.iterations;
    assert_eq!(
        rows.len() - setup_rows,
        expected,
        "one audit row per /server list"
    );
    assert_eq!(listed, expected);

    let s_bot = stats(&bot);
    let s_panel = stats(&direct);
    let limit = 1.2 * s_panel.p50 + 2.0;
    let holds = s_bot.p50 <= limit;
    println!(
        "/server list: {} servers, {} warm-up + {} measured iterations of each, interleaved ({:.1} s)",
        a.servers,
        a.warmup,
        a.iterations,
        wall.as_secs_f64()
    );
    println!("load average: {load_before} (before) / {load_after} (after)");
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "ms", "p50", "p90", "p99", "mean", "min"
    );
    for (name, s) in [
        ("bot: signed request -> reply", &s_bot),
        ("panel: GET /api/client?per_page=25", &s_panel),
    ] {
        println!(
            "{:<40} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            name, s.p50, s.p90, s.p99, s.mean, s.min
        );
    }
    println!(
        "ratio bot/panel: p50 {:.2}, p90 {:.2}, mean {:.2}; bot p50 - panel p50 = {:.3} ms",
        s_bot.p50 / s_panel.p50,
        s_bot.p90 / s_panel.p90,
        s_bot.mean / s_panel.mean,
        s_bot.p50 - s_panel.p50
    );
    println!(
        "deferred replies (timed to their follow-up): {}",
        b.deferred
    );
    println!(
        "target bot p50 <= 1.2 x panel p50 + 2 ms = {limit:.3} ms: {}",
        if holds { "MET" } else { "MISSED" }
    );
    drop(panel);
    if !holds {
        std::process::exit(1);
    }
}
