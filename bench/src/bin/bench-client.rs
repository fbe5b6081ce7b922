//! `bench-client`: issue 4's benchmark of the Client API, in one run.
//!
//! The same data set as `bench-application` (10,000 users, 1,000 servers), plus one
//! ordinary user who owns 30 servers and is a subuser of 20 more, so 50 servers are
//! visible to them, with a `ptlc_` key. The release panel-api serves it; at 32
//! keep-alive connections the load generator drives `GET /api/client` (their server
//! list, one full page), `GET /api/client/account` and `GET /api/client/servers/{id}`
//! (a server they are a subuser of: the heavier path, with the permission lookup),
//! and pgbench runs the statements each request issued, captured from PostgreSQL's
//! log, at the same concurrency.

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use ferrodactyl_bench::harness::{Bench, Endpoint, Settings};
use ferrodactyl_bench::seed;
use serde_json::Value;
use std::time::Instant;

const OWNED: i64 = 30;
const SHARED: i64 = 20;

#[derive(Parser, Debug)]
#[command(about = "panel-api's Client API against pgbench running the same SQL")]
struct Args {
    #[command(flatten)]
    settings: Settings,
}

fn check_list(v: &Value, u: &seed::ClientUser) -> Result<()> {
    let data = v["data"].as_array().context("list: no data array")?;
    let total = OWNED + SHARED;
    ensure!(
        data.len() as i64 == total && v["meta"]["pagination"]["total"].as_i64() == Some(total),
        "list: expected {total} of {total} servers, got {} of {}",
        data.len(),
        v["meta"]["pagination"]["total"]
    );
    let mut owned = Vec::new();
    let mut shared = Vec::new();
    for s in data {
        let a = &s["attributes"];
        let id = a["identifier"]
            .as_str()
            .context("list: no identifier")?
            .to_string();
        match a["server_owner"].as_bool() {
            Some(true) => owned.push(id),
            Some(false) => shared.push(id),
            None => bail!("list: no server_owner in {a}"),
        }
    }
    ensure!(
        owned == u.owned && shared == u.shared,
        "list: owned {owned:?} / shared {shared:?}, expected {:?} / {:?}",
        u.owned,
        u.shared
    );
    Ok(())
}

fn check_account(v: &Value, u: &seed::ClientUser) -> Result<()> {
    let a = &v["attributes"];
    ensure!(
        v["object"] == "user"
            && a["id"].as_i64() == Some(u.id)
            && a["username"] == u.username.as_str()
            && a["admin"] == false,
        "account: unexpected {v}"
    );
    Ok(())
}

fn check_server(v: &Value, u: &seed::ClientUser, id: &str) -> Result<()> {
    let a = &v["attributes"];
    ensure!(
        v["object"] == "server" && a["identifier"] == id && a["server_owner"] == false,
        "server: unexpected {a}"
    );
    let mut got: Vec<String> = v["meta"]["user_permissions"]
        .as_array()
        .context("server: no meta.user_permissions")?
        .iter()
        .filter_map(|p| p.as_str().map(String::from))
        .collect();
    got.sort();
    let mut want = u.permissions.clone();
    want.sort();
    ensure!(
        got == want && v["meta"]["is_server_owner"] == false,
        "server: permissions {got:?}, expected {want:?} ({})",
        v["meta"]
    );
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
    ensure!(
        s.servers >= OWNED + SHARED,
        "at least {} servers",
        OWNED + SHARED
    );
    let t = Instant::now();
    let seeded = seed::seed(&bench.db, &bench.app_key, s.users, s.servers).await?;
    let user = std::sync::Arc::new(seed::client_user(&bench.db, OWNED, SHARED).await?);
    eprintln!(
        "seeded {} users (incl. the admin) and {} servers in {:.1} s; {} owns {} and is a subuser of {}",
        seeded.users,
        seeded.servers,
        t.elapsed().as_secs_f64(),
        user.username,
        user.owned.len(),
        user.shared.len()
    );
    let key = user.client_key.clone();
    bench.start_panel("/api/client/account", &key).await?;
    let server = user.shared[user.shared.len() / 2].clone();
    let (u1, u2, u3) = (user.clone(), user.clone(), user.clone());
    let sid = server.clone();
    let endpoints = [
        Endpoint {
            path: "/api/client".into(),
            bearer: key.clone(),
            check: Box::new(move |v| check_list(v, &u1)),
        },
        Endpoint {
            path: "/api/client/account".into(),
            bearer: key.clone(),
            check: Box::new(move |v| check_account(v, &u2)),
        },
        Endpoint {
            path: format!("/api/client/servers/{server}"),
            bearer: key.clone(),
            check: Box::new(move |v| check_server(v, &u3, &sid)),
        },
    ];
    let rows = bench.measure_all(&endpoints).await?;
    bench.finish(&rows).await
}
