//! A server's life on the real Docker engine: create → install in the installer
//! container → start (done string) → console and commands over a real websocket →
//! stats → restart → stop → kill → delete; the container spec as upstream builds it;
//! crash detection; stop signals; boot pagination, state restore and re-attachment.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A tiny "game server": prints a done line, echoes commands, exits on `stop`.
const ECHO_SERVER: &str = r#"sh -c 'echo "{{GREETING}} from $SERVER_PORT"; echo "Done (0.1s)! For help, type help"; while read line; do echo "got: $line"; if [ "$line" = stop ]; then echo bye; exit 0; fi; done'"#;

fn wsarg(a: &[String]) -> String {
    a.first().cloned().unwrap_or_default()
}

async fn docker_inspect(name: &str) -> Value {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", name])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.get(0).cloned().unwrap_or(Value::Null)
}

async fn wait_state(ws: &mut Ws, state: &str) -> Vec<(String, Vec<String>)> {
    match ws
        .wait_for(LONG, |e, a| e == "status" && wsarg(a) == state)
        .await
    {
        Ok(_) => Vec::new(),
        Err(seen) => panic!("never reached {state}; saw {seen:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_life_install_power_console_stats_delete() {
    let test = "life";
    let mut cfg = server_config(
        test,
        ECHO_SERVER,
        &["regex:^Done \\("],
        json!({"type": "command", "value": "stop"}),
    );
    let port = cfg.settings.allocations.default.port;
    cfg.settings
        .allocations
        .mappings
        .insert("127.0.0.1".into(), vec![port]);
    cfg.settings
        .allocations
        .mappings
        .insert("0.0.0.0".into(), vec![free_port() as i64]);
    cfg.process_configuration.configs = serde_json::from_value(json!([{"file": "server.properties", "parser": "properties",
        "replace": [{"match": "server-port", "replace_with": port}, {"match": "server-ip", "replace_with": "{{config.docker.network.interface}}"}]}]))
    .unwrap();
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(test, |_| {}, |_| {}).await;
    node.panel.add_server(cfg);
    node.panel.set_script(
        &uuid,
        "#!/bin/ash\r\necho installing $GREETING\r\necho hi > /mnt/server/installed.txt\r\n",
    );

    // Create: 202, then the install runs in <uuid>_installer and reports to the panel.
    let r = node
        .authed(Method::POST, "/api/servers")
        .json(&json!({"uuid": uuid, "start_on_completion": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let reports = node.panel.state.clone();
    assert!(
        eventually(LONG, || !reports.install_reports.lock().unwrap().is_empty()).await,
        "install status never reached the panel"
    );
    assert_eq!(
        reports.install_reports.lock().unwrap()[0],
        (
            uuid.clone(),
            json!({"successful": true, "reinstall": false})
        )
    );
    let data = node.app.config().data_dir().join(&uuid);
    assert_eq!(
        std::fs::read_to_string(data.join("installed.txt")).unwrap(),
        "hi\n"
    );
    let log = std::fs::read_to_string(
        std::path::Path::new(&node.app.config().system.log_directory)
            .join(format!("install/{uuid}.log")),
    )
    .unwrap();
    assert!(log.contains("installing hello"), "install log: {log}");
    assert!(
        docker_inspect(&format!("{uuid}_installer")).await.is_null(),
        "installer container removed"
    );

    // Websocket: auth → auth success, status, stats (offline).
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
        .await;
    assert_eq!(ws.next(LONG).await.unwrap().0, "auth success");
    assert_eq!(
        ws.next(LONG).await.unwrap(),
        ("status".into(), vec!["offline".into()])
    );
    let (e, a) = ws.next(LONG).await.unwrap();
    assert_eq!(e, "stats");
    let stats: Value = serde_json::from_str(&wsarg(&a)).unwrap();
    assert_eq!(stats["state"], "offline");
    assert!(stats["disk_bytes"].as_i64().unwrap() >= 3);

    // Start through the HTTP API; "done" line → running.
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/power"))
        .json(&json!({"action": "start"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    ws.wait_for(LONG, |e, a| e == "status" && wsarg(a) == "starting")
        .await
        .expect("starting");
    let seen = ws
        .wait_for(LONG, |e, a| {
            e == "console output" && wsarg(a).contains("hello from")
        })
        .await;
    assert!(seen.is_ok(), "STARTUP rendered with env: {seen:?}");
    wait_state(&mut ws, "running").await;

    // Egg configuration files were rewritten before the start.
    let props = std::fs::read_to_string(data.join("server.properties")).unwrap();
    assert_eq!(props, format!("server-port={port}\nserver-ip=172.18.0.1\n"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(data.join("installed.txt")).unwrap().uid(),
        65534,
        "files chowned to the wings user"
    );

    // The container as upstream builds it.
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
    assert!(env.contains(&"SERVER_IP=172.18.0.1".to_string()));
    assert!(env.contains(&"P_SERVER_ALLOCATION_LIMIT=0.000000".to_string()));
    assert!(env.iter().any(|e| e.starts_with("STARTUP=sh -c")));
    assert_eq!(c["Mounts"][0]["Destination"], "/home/container");
    let started_at = c["State"]["StartedAt"].clone();

    // Console: websocket command and HTTP commands reach stdin.
    ws.send("send command", json!(["hello"])).await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && wsarg(a) == "got: hello"
    })
    .await
    .expect("ws command echoed");
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/commands"))
        .json(&json!({"commands": ["hello2"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    ws.wait_for(LONG, |e, a| {
        e == "console output" && wsarg(a) == "got: hello2"
    })
    .await
    .expect("http command echoed");

    // Stats while running.
    let (_, a) = ws
        .wait_for(LONG, |e, a| {
            e == "stats"
                && serde_json::from_str::<Value>(&wsarg(a))
                    .map(|v| v["state"] == "running" && v["memory_bytes"].as_u64().unwrap_or(0) > 0)
                    .unwrap_or(false)
        })
        .await
        .expect("running stats");
    let s: Value = serde_json::from_str(&wsarg(&a)).unwrap();
    assert!(s["memory_limit_bytes"].as_u64().unwrap() > 0);
    assert!(s["uptime"].as_i64().unwrap() >= 0);
    assert!(s["cpu_absolute"].is_number());
    assert!(s["network"]["rx_bytes"].is_u64());

    // Logs and details.
    let v: Value = node
        .authed(Method::GET, &format!("/api/servers/{uuid}/logs?size=20"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("For help")),
        "{v}"
    );
    let v: Value = node
        .authed(Method::GET, &format!("/api/servers/{uuid}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["configuration"]["uuid"], uuid.as_str());
    assert_eq!(v["configuration"]["crash_detection_enabled"], true);
    ws.send("send logs", json!([null])).await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && wsarg(a).contains("For help")
    })
    .await
    .expect("send logs replays docker log");

    // Restart over the websocket: stop command → offline → the container is recreated.
    ws.send("set state", json!(["restart"])).await;
    wait_state(&mut ws, "stopping").await;
    wait_state(&mut ws, "offline").await;
    wait_state(&mut ws, "running").await;
    let c = docker_inspect(&uuid).await;
    assert_ne!(
        c["State"]["StartedAt"], started_at,
        "restarted container is new"
    );

    // Stop via the egg's stop command: no crash handling.
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/power"))
        .json(&json!({"action": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let seen = ws
        .wait_for(LONG, |e, a| e == "status" && wsarg(a) == "offline")
        .await
        .expect("stopped");
    let _ = seen;
    let more = ws
        .wait_for(Duration::from_secs(3), |e, a| {
            e == "console output" && wsarg(a).contains("crashed state")
        })
        .await;
    assert!(more.is_err(), "a clean stop is not a crash");
    assert_eq!(docker_inspect(&uuid).await["State"]["ExitCode"], 0);

    // Start then kill.
    ws.send("set state", json!(["start"])).await;
    wait_state(&mut ws, "running").await;
    ws.send("set state", json!(["kill"])).await;
    wait_state(&mut ws, "offline").await;
    assert_eq!(docker_inspect(&uuid).await["State"]["ExitCode"], 137);

    // Reinstall: install events reach every socket; install output only reaches
    // tokens holding admin.websocket.install.
    let mut admin = node.ws(&uuid).await;
    admin
        .send(
            "auth",
            json!([node.jwt(&uuid, &["*", "admin.websocket.install"], 1, 600)]),
        )
        .await;
    admin
        .wait_for(LONG, |e, _| e == "auth success")
        .await
        .expect("admin auth");
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/reinstall"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    admin
        .wait_for(LONG, |e, a| {
            e == "install output" && wsarg(a).contains("installing hello")
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
    assert!(eventually(LONG, || reports.install_reports.lock().unwrap().len() == 2).await);
    assert_eq!(
        reports.install_reports.lock().unwrap()[1].1,
        json!({"successful": true, "reinstall": true})
    );

    // Delete: container and files go; sockets are closed with 1001.
    let r = node
        .authed(Method::DELETE, &format!("/api/servers/{uuid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(docker_inspect(&uuid).await.is_null());
    assert!(eventually(Duration::from_secs(10), || !data.exists()).await);
    let r = node
        .authed(Method::GET, &format!("/api/servers/{uuid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_detection_restarts_once_then_aborts_within_the_timeout() {
    let test = "crash";
    let cfg = server_config(
        test,
        "sh -c 'echo Done; sleep 2; exit 3'",
        &["regex:^Done$"],
        json!({"type": "command", "value": "stop"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(test, |p| p.add_server(cfg), |_| {}).await;
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
        .await;
    assert_eq!(ws.next(LONG).await.unwrap().0, "auth success");
    ws.send("set state", json!(["start"])).await;
    wait_state(&mut ws, "running").await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && wsarg(a).contains("Detected server process in a crashed state!")
    })
    .await
    .expect("crash detected");
    ws.wait_for(LONG, |e, a| {
        e == "console output" && wsarg(a).contains("Exit code: 3")
    })
    .await
    .expect("exit code printed");
    // Restarted automatically…
    wait_state(&mut ws, "running").await;
    // …and the second crash within 60 s is not restarted.
    ws.wait_for(LONG, |e, a| {
        e == "console output"
            && wsarg(a).contains(
                "Aborting automatic restart, last crash occurred less than 60 seconds ago.",
            )
    })
    .await
    .expect("restart aborted");
    assert!(ws
        .wait_for(Duration::from_secs(4), |e, a| e == "status"
            && wsarg(a) == "starting")
        .await
        .is_err());
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caret_c_stop_signal_is_sigint_and_websocket_power_is_recorded_as_activity() {
    let test = "signal";
    let trap =
        r#"sh -c 'trap "echo caught INT; exit 0" INT; echo Done; while true; do sleep 1; done'"#;
    let cfg = server_config(
        test,
        trap,
        &["regex:^Done$"],
        json!({"type": "signal", "value": "C"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(
        test,
        |p| p.add_server(cfg),
        |c| c.system.activity_send_interval = 1,
    )
    .await;
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
        .await;
    assert_eq!(ws.next(LONG).await.unwrap().0, "auth success");
    ws.send("set state", json!(["start"])).await;
    wait_state(&mut ws, "running").await;
    ws.send("send command", json!(["hello"])).await;
    // The start action holds the power lock until `docker start` returns; a stop sent
    // while it is held is refused as busy (upstream behaviour), so let it finish.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ws.send("set state", json!(["stop"])).await;
    ws.wait_for(LONG, |e, a| {
        e == "console output" && wsarg(a).contains("caught INT")
    })
    .await
    .expect("SIGINT delivered");
    wait_state(&mut ws, "offline").await;

    // Websocket power actions and commands reach the panel's activity log.
    let st = node.panel.state.clone();
    assert!(
        eventually(Duration::from_secs(10), || st
            .activity
            .lock()
            .unwrap()
            .len()
            >= 3)
        .await,
        "activity sent"
    );
    let events = st.activity.lock().unwrap().clone();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"server:power.start"), "{names:?}");
    assert!(names.contains(&"server:power.stop"), "{names:?}");
    let cmd = events
        .iter()
        .find(|e| e["event"] == "server:console.command")
        .expect("command activity");
    assert_eq!(cmd["metadata"], json!({"command": "hello"}));
    assert_eq!(cmd["user"], "u-1");
    assert_eq!(cmd["server"], uuid.as_str());
    assert_eq!(cmd["ip"], "127.0.0.1");
    assert!(cmd["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        node.app.activity.pending().is_empty(),
        "delivered rows are dropped"
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_paginates_from_page_zero_restores_states_and_reattaches() {
    let test = "boot";
    let running = server_config(
        test,
        "sh -c 'echo Done; while true; do sleep 1; done'",
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    let restore = server_config(
        test,
        "sh -c 'echo Done; while true; do sleep 1; done'",
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    let idle = server_config(
        test,
        "sh -c 'echo Done; sleep 1000'",
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    let (ru, rs, iu) = (
        running.settings.uuid.clone(),
        restore.settings.uuid.clone(),
        idle.settings.uuid.clone(),
    );
    let token = random_token();
    let panel = FakePanel::start(TOKEN_ID, &token).await;
    for c in [running, restore, idle] {
        panel.add_server(c);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path(), &panel.url, &token);
    cfg.remote_query.boot_servers_per_page = 2;
    ensure_image();
    let node = Node::boot_with(test, dir, token.clone(), panel, cfg.clone()).await;

    assert_eq!(
        *node.panel.state.pages_requested.lock().unwrap(),
        vec!["0".to_string(), "2".to_string()]
    );
    assert_eq!(node.app.manager.len(), 3);
    let st = node.panel.state.clone();
    assert!(
        eventually(Duration::from_secs(10), || *st.resets.lock().unwrap() == 1).await,
        "POST /servers/reset sent once"
    );
    assert_eq!(
        *st.bad_auth.lock().unwrap(),
        0,
        "every remote call carried Bearer id.token"
    );

    // Start one server and note its container start time.
    let s = node.app.manager.get(&ru).unwrap();
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
    let started_at = docker_inspect(&ru).await["State"]["StartedAt"].clone();

    // states.json says the other one was running before the daemon stopped.
    let states_path = node.app.states_path();
    std::fs::write(
        &states_path,
        json!({&rs: "running", &iu: "offline", &ru: "running"}).to_string(),
    )
    .unwrap();

    // A second daemon on the same node (the first one is gone as far as Docker cares).
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.remote = node.panel.url.clone();
    let app2 = wings::boot(
        cfg2,
        wings::BootOptions::new(dir2.path().join("config.yml")),
    )
    .await
    .unwrap();
    let s2 = app2.manager.get(&ru).unwrap();
    assert_eq!(
        s2.state(),
        wings::events::State::Running,
        "running container re-attached"
    );
    assert!(s2.is_attached());
    assert_eq!(
        docker_inspect(&ru).await["State"]["StartedAt"],
        started_at,
        "not restarted"
    );
    let r2 = app2.manager.get(&rs).unwrap();
    let mut rx = r2.subscribe_state();
    tokio::time::timeout(LONG, rx.wait_for(|s| *s == wings::events::State::Running))
        .await
        .expect("saved running state restored")
        .unwrap();
    assert_eq!(
        app2.manager.get(&iu).unwrap().state(),
        wings::events::State::Offline
    );
    // The re-attached console works: commands reach the process.
    s2.send_command("echo still-here").await.unwrap();

    // Persisted states and the rewritten config.
    app2.manager.persist_states(&states_path).unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&states_path).unwrap()).unwrap();
    assert_eq!(saved[&ru], "running");
    let written = wings::config::Config::load(&dir2.path().join("config.yml")).unwrap();
    assert_eq!(written.token, token);
    // Two daemons are attached to the same containers here; mark every copy as
    // stopping first so neither treats the kill as a crash and restarts it.
    let all: Vec<_> = app2
        .manager
        .all()
        .into_iter()
        .chain(node.app.manager.all())
        .collect();
    for s in &all {
        s.set_state(wings::events::State::Stopping);
    }
    for s in &all {
        let _ = s.handle_power(wings::server::PowerAction::Kill, None).await;
    }
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_throttle_drops_excess_lines_with_one_notice() {
    let test = "throttle";
    let cfg = server_config(
        test,
        r#"sh -c 'echo Done; sleep 2; i=0; while [ $i -lt 3000 ]; do echo "spam $i"; i=$((i+1)); done; sleep 1000'"#,
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(
        test,
        |p| p.add_server(cfg),
        |c| {
            c.throttles.lines = 50;
            c.throttles.line_reset_interval = 60_000;
        },
    )
    .await;
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
        .await;
    assert_eq!(ws.next(LONG).await.unwrap().0, "auth success");
    ws.send("set state", json!(["start"])).await;
    wait_state(&mut ws, "running").await;
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
        if wsarg(&a).starts_with("spam ") {
            spam += 1;
        }
        if wsarg(&a).contains("Server is outputting console data too quickly -- throttling...") {
            notices += 1;
        }
    }
    assert!(
        spam < 60,
        "at most `throttles.lines` per window reach the socket, got {spam}"
    );
    assert_eq!(notices, 1, "one notice per throttling episode");
    // Docker's own log still has every line.
    let logs = node
        .app
        .manager
        .get(&uuid)
        .unwrap()
        .read_log(10)
        .await
        .unwrap();
    assert!(logs.iter().any(|l| l == "spam 2999"), "{logs:?}");
    ws.send("set state", json!(["kill"])).await;
    wait_state(&mut ws, "offline").await;
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_is_refused_when_the_server_is_over_its_disk_limit() {
    let test = "disk";
    let mut cfg = server_config(
        test,
        "sh -c 'echo Done; sleep 1000'",
        &["regex:^Done$"],
        json!({"type": "signal", "value": "SIGKILL"}),
    );
    cfg.settings.build.disk_space = 1; // MiB
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(test, |p| p.add_server(cfg), |_| {}).await;
    let data = node.app.config().data_dir().join(&uuid);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("big.bin"), vec![0u8; 2 * 1024 * 1024]).unwrap();
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/power"))
        .json(&json!({"action": "start", "wait_seconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = node.app.manager.get(&uuid).unwrap();
    assert_eq!(s.state(), wings::events::State::Offline);
    assert!(
        docker_inspect(&uuid).await.is_null(),
        "no container was created"
    );
    assert!(s.console_history().is_empty());
    let v: Value = node
        .authed(Method::GET, &format!("/api/servers/{uuid}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["utilization"]["disk_bytes"].as_i64().unwrap() >= 2 * 1024 * 1024);
    node.cleanup().await;
}
