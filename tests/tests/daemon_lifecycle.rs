//! A server's life on a wings node attached to a real panel-api, on the real
//! Docker engine: create → install in the installer container (its result lands in
//! the panel's database) → start (the egg's done string) → console and commands
//! over a real websocket with the panel's token → stats → restart → stop → kill →
//! reinstall → delete; the container spec as upstream builds it from the panel's
//! settings; crash detection; the egg's `^C` stop signal and the activity the panel
//! records; boot pagination, the panel's state reset, state restore and
//! re-attachment; console throttling; the disk limit.

mod wings_stack;

use ferrodactyl_tests::Account;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use wings_stack::ws::{arg, Ws};
use wings_stack::{docker_inspect, eventually, stack, Egg, Options, Spec, Srv, Stack};

const LONG: Duration = Duration::from_secs(60);

/// A tiny "game server": prints a done line, echoes commands, exits on `stop`.
const ECHO_SERVER: &str = r#"sh -c 'echo "{{GREETING}} from $SERVER_PORT"; echo "Done (0.1s)! For help, type help"; while read line; do echo "got: $line"; if [ "$line" = stop ]; then echo bye; exit 0; fi; done'"#;

fn egg(done: &str, stop: &str) -> Egg {
    Egg {
        done: vec![done.into()],
        stop: Some(stop.into()),
        ..Default::default()
    }
}

/// A stack with `specs` seeded before boot, all owned by a non-admin "player".
async fn node_with(
    egg: Egg,
    specs: Vec<Spec>,
    tweak: impl FnOnce(&mut wings::config::Config) + Send + 'static,
) -> (Stack, Vec<Srv>, Account) {
    let (st, servers) = stack(Options {
        servers: vec![],
        egg: Some(egg),
        specs,
        tweak: Box::new(tweak),
        ..Default::default()
    })
    .await;
    let owner = st.p.account("player", false, 1).await.unwrap();
    for s in &servers {
        st.give(s, &owner).await;
    }
    (st, servers, owner)
}

async fn power(st: &Stack, uuid: &str, body: Value) -> u16 {
    st.send(
        st.req(Method::POST, &format!("/api/servers/{uuid}/power"))
            .json(&body),
    )
    .await
    .status
}

/// Marks every server of an extra in-process daemon as stopping when dropped, so
/// that the stack's container removal is not taken for a crash by it either.
struct Quiet(Arc<wings::App>);

impl Drop for Quiet {
    fn drop(&mut self) {
        for s in self.0.manager.all() {
            s.set_state(wings::events::State::Stopping);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_life_install_power_console_stats_delete() {
    let (st, _, owner) = node_with(
        Egg {
            done: vec!["regex:^Done \\(".into()],
            stop: Some("stop".into()),
            files: Some(json!({"server.properties": {"parser": "properties",
                "find": {"server-port": "{{server.build.default.port}}", "server-ip": "{{config.docker.network.interface}}"}}})),
            install: Some(
                "#!/bin/ash\r\necho installing $GREETING\r\necho hi > /mnt/server/installed.txt\r\n"
                    .into(),
            ),
            variables: vec![("GREETING".into(), "hello".into())],
            ..Default::default()
        },
        vec![],
        |_| {},
    )
    .await;
    // Created in the panel as an admin would (installing), then on the node.
    let srv = st
        .seed(&Spec {
            memory: 256,
            swap: 0,
            disk: 100,
            io: 500,
            cpu: 50,
            status: Some("installing".into()),
            ..Spec::new("life", ECHO_SERVER)
        })
        .await;
    st.give(&srv, &owner).await;
    let uuid = srv.uuid.clone();
    let port: i32 = sqlx::query_scalar(
        "SELECT a.port FROM allocations a JOIN servers s ON s.allocation_id = a.id WHERE s.id = $1",
    )
    .bind(srv.id)
    .fetch_one(&st.p.db)
    .await
    .unwrap();
    // A second allocation on another IP.
    sqlx::query(
        "INSERT INTO allocations (node_id, ip, port, server_id) VALUES ($1, '0.0.0.0', $2, $3)",
    )
    .bind(st.node)
    .bind(ferrodactyl_tests::free_port_range(1) as i32)
    .bind(srv.id)
    .execute(&st.p.db)
    .await
    .unwrap();
    assert_eq!(
        st.install_state(&srv).await,
        (Some("installing".into()), None)
    );

    // Create: 202, then the install runs in <uuid>_installer and reports to the panel.
    let r = st
        .post(
            "/api/servers",
            json!({"uuid": uuid, "start_on_completion": false}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        eventually(LONG, || async { st.install_state(&srv).await.0.is_none() }).await,
        "the install's success never reached the panel"
    );
    let (_, first_install) = st.install_state(&srv).await;
    let first_install = first_install.expect("installed_at set by the report");
    let data = st.app.config().data_dir().join(&uuid);
    assert_eq!(
        std::fs::read_to_string(data.join("installed.txt")).unwrap(),
        "hi\n"
    );
    let log = std::fs::read_to_string(
        std::path::Path::new(&st.app.config().system.log_directory)
            .join(format!("install/{uuid}.log")),
    )
    .unwrap();
    assert!(
        log.contains("installing hello"),
        "the egg variable's default reached the script: {log}"
    );
    assert!(
        docker_inspect(&format!("{uuid}_installer")).await.is_null(),
        "installer container removed"
    );

    // Websocket with the owner's token from the panel: auth success, status, stats.
    let mut ws = st.ws_as(&srv, &owner.key).await;
    assert_eq!(
        ws.next(LONG).await.unwrap(),
        ("status".into(), vec!["offline".into()])
    );
    let (e, a) = ws.next(LONG).await.unwrap();
    assert_eq!(e, "stats");
    let stats: Value = serde_json::from_str(&arg(&a)).unwrap();
    assert_eq!(stats["state"], "offline");
    assert!(stats["disk_bytes"].as_i64().unwrap() >= 3);

    // Start through the HTTP API; "done" line → running.
    assert_eq!(power(&st, &uuid, json!({"action": "start"})).await, 202);
    ws.wait_for(LONG, |e, a| e == "status" && arg(a) == "starting")
        .await
        .expect("starting");
    let seen = ws
        .wait_for(LONG, |e, a| {
            e == "console output" && arg(a) == format!("hello from {port}")
        })
        .await;
    assert!(
        seen.is_ok(),
        "STARTUP rendered with the egg variable and the panel's port: {seen:?}"
    );
    ws.wait_state("running", LONG).await;

    // Egg configuration files were rewritten before the start.
    let props = std::fs::read_to_string(data.join("server.properties")).unwrap();
    assert_eq!(props, format!("server-port={port}\nserver-ip=172.18.0.1\n"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(data.join("installed.txt")).unwrap().uid(),
        65534,
        "files chowned to the wings user"
    );

    // The container as upstream builds it from the panel's build settings.
    let c = docker_inspect(&uuid).await;
    let hc = &c["HostConfig"];
    assert_eq!(hc["Memory"], 294_400_000i64); // 256 MB × 1.15 overhead
    assert_eq!(hc["MemoryReservation"], 256_000_000i64);
    assert_eq!(hc["MemorySwap"], 294_400_000i64);
    assert_eq!(hc["CpuQuota"], 50_000);
    assert_eq!(hc["CpuPeriod"], 100_000);
    assert_eq!(hc["PidsLimit"], 512);
    // BlkioWeight (io_weight) is sent, but engines without block-IO weight support
    // (cgroup v2 without BFQ, as here) drop it; `spec` unit tests pin the value.
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["NetworkMode"], "pterodactyl_nw");
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(hc["Tmpfs"]["/tmp"], "rw,exec,nosuid,size=100M");
    assert_eq!(hc["LogConfig"]["Type"], "local");
    let tcp = &hc["PortBindings"][format!("{port}/tcp")][0];
    assert_eq!(
        tcp["HostIp"], "172.18.0.1",
        "127.0.0.1 is rewritten to the docker interface"
    );
    assert!(hc["PortBindings"][format!("{port}/udp")].is_array());
    assert_eq!(c["Config"]["User"], "65534:65534");
    assert_eq!(c["Config"]["Labels"]["Service"], "Pterodactyl");
    assert_eq!(c["Config"]["Labels"]["ContainerType"], "server_process");
    let env: Vec<String> = serde_json::from_value(c["Config"]["Env"].clone()).unwrap();
    assert!(env.contains(&"SERVER_IP=172.18.0.1".to_string()), "{env:?}");
    assert!(env.contains(&format!("SERVER_PORT={port}")), "{env:?}");
    assert!(
        env.contains(&"P_SERVER_ALLOCATION_LIMIT=0.000000".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&format!("P_SERVER_UUID={uuid}")), "{env:?}");
    assert!(env.contains(&"GREETING=hello".to_string()), "{env:?}");
    assert!(
        env.iter().any(|e| e.starts_with("STARTUP=sh -c")),
        "{env:?}"
    );
    assert_eq!(c["Mounts"][0]["Destination"], "/home/container");
    let started_at = c["State"]["StartedAt"].clone();

    // Console: websocket command and HTTP commands reach stdin.
    ws.send("send command", json!(["hello"])).await;
    ws.wait_for(LONG, |e, a| e == "console output" && arg(a) == "got: hello")
        .await
        .expect("ws command echoed");
    let r = st
        .post(
            &format!("/api/servers/{uuid}/commands"),
            json!({"commands": ["hello2"]}),
        )
        .await;
    assert_eq!(r.status, 204);
    ws.wait_for(LONG, |e, a| {
        e == "console output" && arg(a) == "got: hello2"
    })
    .await
    .expect("http command echoed");

    // Stats while running.
    let (_, a) = ws
        .wait_for(LONG, |e, a| {
            e == "stats"
                && serde_json::from_str::<Value>(&arg(a))
                    .map(|v| v["state"] == "running" && v["memory_bytes"].as_u64().unwrap_or(0) > 0)
                    .unwrap_or(false)
        })
        .await
        .expect("running stats");
    let s: Value = serde_json::from_str(&arg(&a)).unwrap();
    assert!(s["memory_limit_bytes"].as_u64().unwrap() > 0);
    assert!(s["uptime"].as_i64().unwrap() >= 0);
    assert!(s["cpu_absolute"].is_number());
    assert!(s["network"]["rx_bytes"].is_u64());

    // Logs and details.
    let v = st
        .get(&format!("/api/servers/{uuid}/logs?size=20"))
        .await
        .json;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("For help")),
        "{v}"
    );
    let v = st.get(&format!("/api/servers/{uuid}")).await.json;
    assert_eq!(v["state"], "running");
    assert_eq!(v["configuration"]["uuid"], uuid.as_str());
    assert_eq!(v["configuration"]["crash_detection_enabled"], true);
    ws.send("send logs", json!([null])).await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && arg(a).contains("For help")
    })
    .await
    .expect("send logs replays docker log");

    // Restart over the websocket: stop command → offline → the container is recreated.
    ws.send("set state", json!(["restart"])).await;
    ws.wait_state("stopping", LONG).await;
    ws.wait_state("offline", LONG).await;
    ws.wait_state("running", LONG).await;
    let c = docker_inspect(&uuid).await;
    assert_ne!(
        c["State"]["StartedAt"], started_at,
        "restarted container is new"
    );

    // Stop via the egg's stop command: no crash handling.
    assert_eq!(power(&st, &uuid, json!({"action": "stop"})).await, 202);
    ws.wait_state("offline", LONG).await;
    let more = ws
        .wait_for(Duration::from_secs(3), |e, a| {
            e == "console output" && arg(a).contains("crashed state")
        })
        .await;
    assert!(more.is_err(), "a clean stop is not a crash");
    assert_eq!(docker_inspect(&uuid).await["State"]["ExitCode"], 0);

    // Start then kill.
    ws.send("set state", json!(["start"])).await;
    ws.wait_state("running", LONG).await;
    ws.send("set state", json!(["kill"])).await;
    ws.wait_state("offline", LONG).await;
    assert_eq!(docker_inspect(&uuid).await["State"]["ExitCode"], 137);

    // Reinstall (the panel marks the server installing, then asks the node): install
    // events reach every socket; install output only reaches tokens holding
    // admin.websocket.install, which the panel gives root admins.
    let root = st.p.account("root", true, 1).await.unwrap();
    let mut admin = st.ws_as(&srv, &root.key).await;
    sqlx::query("UPDATE servers SET status = 'installing' WHERE id = $1")
        .bind(srv.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    let r = st
        .send(st.req(Method::POST, &format!("/api/servers/{uuid}/reinstall")))
        .await;
    assert_eq!(r.status, 202);
    admin
        .wait_for(LONG, |e, a| {
            e == "install output" && arg(a).contains("installing hello")
        })
        .await
        .expect("admin sees install output");
    let mut user_events = Vec::new();
    loop {
        let (e, a) = ws
            .next(LONG)
            .await
            .expect("install completed reaches the user");
        if e == "install completed" {
            break;
        }
        user_events.push((e, a));
    }
    assert!(
        user_events.iter().any(|(e, _)| e == "install started"),
        "{user_events:?}"
    );
    assert!(
        !user_events.iter().any(|(e, _)| e == "install output"),
        "install output needs admin.websocket.install"
    );
    assert!(
        eventually(LONG, || async {
            let (status, at) = st.install_state(&srv).await;
            status.is_none() && at.is_some_and(|t| t > first_install)
        })
        .await,
        "the reinstall's success reached the panel: {:?}",
        st.install_state(&srv).await
    );

    // A reinstall whose installer cannot run is reported as such: the panel marks
    // the server reinstall_failed (a failed first install would be install_failed).
    sqlx::query("UPDATE eggs SET script_entry = '/no/such/entrypoint' WHERE id = $1")
        .bind(st.egg)
        .execute(&st.p.db)
        .await
        .unwrap();
    sqlx::query("UPDATE servers SET status = 'installing' WHERE id = $1")
        .bind(srv.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    let r = st
        .send(st.req(Method::POST, &format!("/api/servers/{uuid}/reinstall")))
        .await;
    assert_eq!(r.status, 202);
    assert!(
        eventually(LONG, || async {
            st.install_state(&srv).await.0.as_deref() == Some("reinstall_failed")
        })
        .await,
        "the failed reinstall reached the panel: {:?}",
        st.install_state(&srv).await
    );

    // Delete: container and files go; sockets are closed with 1001.
    let r = st
        .send(st.req(Method::DELETE, &format!("/api/servers/{uuid}")))
        .await;
    assert_eq!(r.status, 204);
    assert!(docker_inspect(&uuid).await.is_null());
    assert!(eventually(Duration::from_secs(10), || async { !data.exists() }).await);
    assert_eq!(st.get(&format!("/api/servers/{uuid}")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_detection_restarts_once_then_aborts_within_the_timeout() {
    let (st, servers, owner) = node_with(
        egg("regex:^Done$", "stop"),
        vec![Spec::new("crash", "sh -c 'echo Done; sleep 2; exit 3'")],
        |_| {},
    )
    .await;
    let srv = &servers[0];
    let mut ws = st.ws_as(srv, &owner.key).await;
    ws.send("set state", json!(["start"])).await;
    ws.wait_state("running", LONG).await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && arg(a).contains("Detected server process in a crashed state!")
    })
    .await
    .expect("crash detected");
    ws.wait_for(LONG, |e, a| {
        e == "console output" && arg(a).contains("Exit code: 3")
    })
    .await
    .expect("exit code printed");
    // Restarted automatically…
    ws.wait_state("running", LONG).await;
    // …and the second crash within 60 s is not restarted.
    ws.wait_for(LONG, |e, a| {
        e == "console output"
            && arg(a).contains(
                "Aborting automatic restart, last crash occurred less than 60 seconds ago.",
            )
    })
    .await
    .expect("restart aborted");
    assert!(ws
        .wait_for(Duration::from_secs(4), |e, a| e == "status"
            && arg(a) == "starting")
        .await
        .is_err());
    assert_eq!(
        st.app.manager.get(&srv.uuid).unwrap().state(),
        wings::events::State::Offline
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn caret_c_stop_signal_is_sigint_and_websocket_power_is_recorded_as_activity() {
    let trap =
        r#"sh -c 'trap "echo caught INT; exit 0" INT; echo Done; while true; do sleep 1; done'"#;
    let (st, servers, owner) = node_with(
        egg("regex:^Done$", "^C"),
        vec![Spec::new("signal", trap)],
        |c| c.system.activity_send_interval = 1,
    )
    .await;
    let srv = &servers[0];
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(1);
    // From 127.0.0.2, so the address the panel stores is the one wings saw.
    let (token, socket) = st.panel_ws(srv, &owner.key).await;
    let mut ws = Ws::connect_from(Some("127.0.0.2".parse().unwrap()), &socket, Some(&st.p.url))
        .await
        .expect("ws upgrade");
    ws.send("auth", json!([token])).await;
    assert_eq!(ws.next(LONG).await.unwrap().0, "auth success");
    ws.send("set state", json!(["start"])).await;
    ws.wait_state("running", LONG).await;
    ws.send("send command", json!(["hello"])).await;
    // The start action holds the power lock until `docker start` returns; a stop sent
    // while it is held is refused as busy (upstream behaviour), so let it finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ws.send("set state", json!(["stop"])).await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && arg(a).contains("caught INT")
    })
    .await
    .expect("SIGINT delivered");
    ws.wait_state("offline", LONG).await;
    assert_eq!(
        docker_inspect(&srv.uuid).await["State"]["ExitCode"],
        0,
        "the trap's clean exit, not a kill"
    );

    // Websocket power actions and commands land in the panel's activity log.
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Value,
        chrono::DateTime<chrono::Utc>,
    );
    let rows = || async {
        sqlx::query_as::<_, Row>(
            "SELECT l.event, l.ip, l.actor_type, l.actor_id, l.properties, l.timestamp
             FROM activity_logs l JOIN activity_log_subjects s ON s.activity_log_id = l.id
             WHERE s.subject_type = 'server' AND s.subject_id = $1 ORDER BY l.timestamp, l.id",
        )
        .bind(srv.id)
        .fetch_all(&st.p.db)
        .await
        .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(15), || async {
            rows().await.len() >= 3
        })
        .await,
        "activity delivered: {:?}",
        rows().await
    );
    let rows = rows().await;
    let mut names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    // Like upstream, a power action is recorded once it returned, so the command
    // sent while `docker start` was still returning may come first; the stop, a
    // second later, is last by wings' timestamps.
    assert_eq!(
        names.last(),
        Some(&"server:power.stop"),
        "ordered by wings' timestamps: {rows:?}"
    );
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "server:console.command",
            "server:power.start",
            "server:power.stop"
        ]
    );
    let t1 = chrono::Utc::now();
    for (event, ip, actor_type, actor_id, _, ts) in &rows {
        assert_eq!(ip.as_deref(), Some("127.0.0.2"), "{event}");
        assert_eq!(actor_type.as_deref(), Some("user"), "{event}");
        assert_eq!(*actor_id, Some(owner.id), "{event}: the token's user");
        assert!(*ts >= t0 && *ts <= t1, "{event} at {ts}");
    }
    let cmd = rows
        .iter()
        .find(|r| r.0 == "server:console.command")
        .unwrap();
    assert_eq!(cmd.4, json!({"command": "hello"}));
    assert!(
        st.app.activity.pending().is_empty(),
        "delivered rows are dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_paginates_from_page_zero_restores_states_and_reattaches() {
    let looping = "sh -c 'echo Done; while true; do sleep 1; done'";
    let (st, servers, _) = node_with(
        egg("regex:^Done$", "^SIGKILL"),
        vec![
            Spec::new("running", looping),
            Spec {
                status: Some("restoring_backup".into()),
                ..Spec::new("restore", looping)
            },
            Spec {
                status: Some("installing".into()),
                ..Spec::new("idle", "sh -c 'echo Done; sleep 1000'")
            },
        ],
        |c| c.remote_query.boot_servers_per_page = 2,
    )
    .await;
    let (running, restore, idle) = (&servers[0], &servers[1], &servers[2]);
    let (ru, rs, iu) = (&running.uuid, &restore.uuid, &idle.uuid);

    // Three servers at two per page: all of them were loaded, so both pages were
    // read (page 0 is the first).
    assert_eq!(st.app.manager.len(), 3);
    for u in [ru, rs, iu] {
        assert!(st.app.manager.get(u).is_some(), "{u} loaded");
    }
    // The panel took the node's Bearer id.token and applied the boot's reset.
    assert_eq!(st.install_state(restore).await.0, None, "restore reset");
    assert_eq!(st.install_state(idle).await.0, None, "install reset");
    // Sent once per boot: a state set afterwards stays.
    sqlx::query("UPDATE servers SET status = 'installing' WHERE id = $1")
        .bind(idle.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        st.install_state(idle).await.0.as_deref(),
        Some("installing")
    );

    // Start one server and note its container start time.
    let s = st.app.manager.get(ru).unwrap();
    s.handle_power(
        wings::server::PowerAction::Start,
        Some(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let mut rx = s.subscribe_state();
    tokio::time::timeout(LONG, rx.wait_for(|s| *s == wings::events::State::Running))
        .await
        .unwrap()
        .unwrap();
    let started_at = docker_inspect(ru).await["State"]["StartedAt"].clone();

    // states.json says the other one was running before the daemon stopped.
    let states_path = st.app.states_path();
    std::fs::write(
        &states_path,
        json!({rs: "running", iu: "offline", ru: "running"}).to_string(),
    )
    .unwrap();

    // A second daemon on the same node (the first one is gone as far as Docker cares).
    let dir2 = tempfile::tempdir().unwrap();
    let app2 = wings::boot(
        st.cfg.clone(),
        wings::BootOptions::new(dir2.path().join("config.yml")),
    )
    .await
    .unwrap();
    let _quiet = Quiet(app2.clone());
    assert_eq!(
        st.install_state(idle).await.0,
        None,
        "the second boot reset it again"
    );
    let s2 = app2.manager.get(ru).unwrap();
    assert_eq!(
        s2.state(),
        wings::events::State::Running,
        "running container re-attached"
    );
    assert!(s2.is_attached());
    assert_eq!(
        docker_inspect(ru).await["State"]["StartedAt"],
        started_at,
        "not restarted"
    );
    let r2 = app2.manager.get(rs).unwrap();
    let mut rx = r2.subscribe_state();
    tokio::time::timeout(LONG, rx.wait_for(|s| *s == wings::events::State::Running))
        .await
        .expect("saved running state restored")
        .unwrap();
    assert_eq!(
        app2.manager.get(iu).unwrap().state(),
        wings::events::State::Offline
    );
    // The re-attached console works: commands reach the process.
    s2.send_command("echo still-here").await.unwrap();

    // Persisted states and the rewritten config.
    app2.manager.persist_states(&states_path).unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&states_path).unwrap()).unwrap();
    assert_eq!(saved[ru], "running");
    let written = wings::config::Config::load(&dir2.path().join("config.yml")).unwrap();
    assert_eq!(written.token, st.token);
    // Two daemons are attached to the same containers here; mark every copy as
    // stopping first so neither treats the kill as a crash and restarts it.
    let all: Vec<_> = app2
        .manager
        .all()
        .into_iter()
        .chain(st.app.manager.all())
        .collect();
    for s in &all {
        s.set_state(wings::events::State::Stopping);
    }
    for s in &all {
        let _ = s.handle_power(wings::server::PowerAction::Kill, None).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn console_throttle_drops_excess_lines_with_one_notice() {
    let (st, servers, owner) = node_with(
        egg("regex:^Done$", "^SIGKILL"),
        vec![Spec::new(
            "throttle",
            r#"sh -c 'echo Done; sleep 2; i=0; while [ $i -lt 3000 ]; do echo "spam $i"; i=$((i+1)); done; sleep 1000'"#,
        )],
        |c| {
            c.throttles.lines = 50;
            c.throttles.line_reset_interval = 60_000;
        },
    )
    .await;
    let srv = &servers[0];
    let mut ws = st.ws_as(srv, &owner.key).await;
    ws.send("set state", json!(["start"])).await;
    ws.wait_state("running", LONG).await;
    let mut spam = 0;
    let mut notices = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while let Some((e, a)) = ws
        .next(deadline.saturating_duration_since(std::time::Instant::now()))
        .await
    {
        if e != "console output" {
            continue;
        }
        if arg(&a).starts_with("spam ") {
            spam += 1;
        }
        if arg(&a).contains("Server is outputting console data too quickly -- throttling...") {
            notices += 1;
        }
    }
    assert!(
        spam < 60,
        "at most `throttles.lines` per window reach the socket, got {spam}"
    );
    assert!(spam > 0, "lines before the limit are delivered");
    assert_eq!(notices, 1, "one notice per throttling episode");
    // Docker's own log still has every line.
    let logs = st
        .app
        .manager
        .get(&srv.uuid)
        .unwrap()
        .read_log(10)
        .await
        .unwrap();
    assert!(logs.iter().any(|l| l == "spam 2999"), "{logs:?}");
    ws.send("set state", json!(["kill"])).await;
    ws.wait_state("offline", LONG).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_burst_reaches_every_socket_whole_and_in_order() {
    // Throttling off, a burst of lines far larger than one read of the container's
    // output: wings publishes a read's lines together, yet every socket must get
    // each line as its own `console output` message, none lost, in order, with the
    // lines before the done marker ahead of the `running` status it causes.
    const N: usize = 20_000;
    let (st, servers, owner) = node_with(
        egg("regex:^Done$", "^SIGKILL"),
        vec![Spec::new(
            "burst",
            r#"sh -c 'echo before-1; echo before-2; echo Done; seq 1 20000; sleep 1000'"#,
        )],
        |c| c.throttles.lines = 0,
    )
    .await;
    let srv = &servers[0];
    let mut a = st.ws_as(srv, &owner.key).await;
    let mut b = st.ws_as(srv, &owner.key).await;
    // Both sockets' initial status/stats, before anything is printed.
    a.drain(Duration::from_millis(300)).await;
    b.drain(Duration::from_millis(300)).await;
    a.send("set state", json!(["start"])).await;
    for ws in [&mut a, &mut b] {
        let mut seen: Vec<String> = Vec::new();
        let mut running_at = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.last().map(String::as_str) != Some("20000") {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Some((e, args)) = ws.next(left).await else {
                panic!(
                    "burst incomplete: {} lines, last {:?}",
                    seen.len(),
                    seen.last()
                );
            };
            match e.as_str() {
                "console output" => {
                    assert_eq!(args.len(), 1, "one line per message: {args:?}");
                    seen.push(arg(&args));
                }
                "status" if arg(&args) == "running" => running_at = Some(seen.len()),
                _ => {}
            }
        }
        let before: Vec<&str> = seen
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("before-"))
            .collect();
        assert_eq!(before, ["before-1", "before-2"]);
        let at = running_at.expect("a running status");
        let done = seen
            .iter()
            .position(|l| l == "Done")
            .expect("the Done line");
        assert!(
            seen[..at].contains(&"before-2".to_string()) && at <= done,
            "`running` comes after the lines before Done and before Done's own line: status at {at}, Done at {done}, {:?}",
            &seen[..seen.len().min(6)]
        );
        let numbers: Vec<&str> = seen[done + 1..].iter().map(String::as_str).collect();
        let want: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
        assert_eq!(numbers.len(), N, "every line of the burst arrives");
        assert!(
            numbers.iter().zip(&want).all(|(g, w)| *g == w.as_str()),
            "the burst arrives in order"
        );
    }
    a.send("set state", json!(["kill"])).await;
    a.wait_state("offline", LONG).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_is_refused_when_the_server_is_over_its_disk_limit() {
    let (st, servers, _) = node_with(
        egg("regex:^Done$", "^SIGKILL"),
        vec![Spec {
            disk: 1, // MiB, from the panel's server row
            ..Spec::new("disk", "sh -c 'echo Done; sleep 1000'")
        }],
        |_| {},
    )
    .await;
    let uuid = servers[0].uuid.clone();
    let data = st.app.config().data_dir().join(&uuid);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("big.bin"), vec![0u8; 2 * 1024 * 1024]).unwrap();
    assert_eq!(
        power(&st, &uuid, json!({"action": "start", "wait_seconds": 5})).await,
        202
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = st.app.manager.get(&uuid).unwrap();
    assert_eq!(s.state(), wings::events::State::Offline);
    assert!(
        docker_inspect(&uuid).await.is_null(),
        "no container was created"
    );
    assert!(s.console_history().is_empty());
    let v = st.get(&format!("/api/servers/{uuid}")).await.json;
    assert!(v["utilization"]["disk_bytes"].as_i64().unwrap() >= 2 * 1024 * 1024);
}

/// A kill that lands while a restart is between its stop and its start wins: the
/// restart does not bring the server back. Every start first fetches the server's
/// configuration from the panel; holding an exclusive lock on `servers` in
/// PostgreSQL keeps the real panel-api's answer (and so the restart) in that gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_a_restarts_stop_and_start_is_not_lost() {
    use wings::events::State;
    use wings::server::PowerAction;
    let (st, servers, _owner) = node_with(
        egg("regex:^Done$", "^SIGKILL"),
        vec![Spec::new("kill", "sh -c 'echo Done; sleep 1000'")],
        |_| {},
    )
    .await;
    let server = st.app.manager.get(&servers[0].uuid).expect("loaded");
    let mut state = server.subscribe_state();
    server
        .handle_power(PowerAction::Start, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    tokio::time::timeout(LONG, state.wait_for(|s| *s == State::Running))
        .await
        .expect("the server starts")
        .unwrap();

    let mut lock = st.p.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE servers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let restarting = server.clone();
    let restart = tokio::spawn(async move {
        restarting
            .handle_power(PowerAction::Restart, Some(Duration::from_secs(30)))
            .await
    });
    tokio::time::timeout(LONG, state.wait_for(|s| *s == State::Offline))
        .await
        .expect("the restart stops the server")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!restart.is_finished(), "the restart waits on the panel");
    server.handle_power(PowerAction::Kill, None).await.unwrap();
    lock.rollback().await.unwrap();

    tokio::time::timeout(LONG, restart)
        .await
        .expect("the restart returns")
        .unwrap()
        .unwrap();
    // Give a wrongly started container time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.state(), State::Offline);
    assert!(
        !server.is_running().await,
        "the kill was lost: the restart started the server"
    );
}
