//! `bench-application`: issue 2's benchmark, in one run.
//!
//! A private PostgreSQL cluster is seeded with 10,000 users and 1,000 servers; the
//! release panel-api binary serves it; a load generator drives
//! `GET /api/application/users?per_page=50` and
//! `GET /api/application/servers?include=allocations` at 32 keep-alive connections;
//! the statements each request issued are captured from the server's log and run by
//! pgbench at the same concurrency. The ratio of the two rates shows what the HTTP
//! layer, the driver and the rendering cost on top of the database, and
//! `/proc/<pid>/status` shows the panel's memory idle and under load.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ferrodactyl_bench::harness::{Bench, Endpoint, Settings};
use ferrodactyl_bench::seed;
use serde_json::Value;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "panel-api's Application API against pgbench running the same SQL")]
struct Args {
    #[command(flatten)]
    settings: Settings,
}

fn check_users(v: &Value, users: i64) -> Result<()> {
    let data = v["data"].as_array().context("users: no data array")?;
    if data.len() != 50 || v["meta"]["pagination"]["total"].as_i64() != Some(users) {
        bail!(
            "users: expected 50 of {users} users, got {} of {}",
            data.len(),
            v["meta"]["pagination"]["total"]
        );
    }
    Ok(())
}

fn check_servers(v: &Value, servers: i64) -> Result<()> {
    let data = v["data"].as_array().context("servers: no data array")?;
    if data.len() != 50 || v["meta"]["pagination"]["total"].as_i64() != Some(servers) {
        bail!(
            "servers: expected 50 of {servers} servers, got {} of {}",
            data.len(),
            v["meta"]["pagination"]["total"]
        );
    }
    for srv in data {
        let allocs = srv["attributes"]["relationships"]["allocations"]["data"]
            .as_array()
            .context("servers: no relationships.allocations.data")?;
        if allocs.len() != 1 {
            bail!(
                "servers: expected one allocation per server, got {}",
                allocs.len()
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let strict = args.settings.strict;
    let ok = rt.block_on(run(args.settings))?;
    if strict && !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(settings: Settings) -> Result<bool> {
    let mut bench = Bench::start(settings).await?;
    let s = &bench.settings;
    let t = Instant::now();
    let seeded = seed::seed(&bench.db, &bench.app_key, s.users, s.servers).await?;
    eprintln!(
        "seeded {} users (incl. the admin) and {} servers in {:.1} s",
        seeded.users,
        seeded.servers,
        t.elapsed().as_secs_f64()
    );
    let key = seeded.application_key.clone();
    bench
        .start_panel("/api/application/users?per_page=1", &key)
        .await?;
    let (users, servers) = (seeded.users, seeded.servers);
    let endpoints = [
        Endpoint {
            path: "/api/application/users?per_page=50".into(),
            bearer: key.clone(),
            check: Box::new(move |v| check_users(v, users)),
        },
        Endpoint {
            path: "/api/application/servers?include=allocations".into(),
            bearer: key.clone(),
            check: Box::new(move |v| check_servers(v, servers)),
        },
    ];
    let rows = bench.measure_all(&endpoints).await?;
    bench.finish(&rows).await
}
