//! The Client API driving a real wings on the real Docker engine: power, console and
//! resources, the websocket with a panel-minted JWT (a real websocket client), the
//! file manager and signed URLs, backups through their whole state machine, and
//! schedules run by the panel's runner.

mod wings_stack;

use ferrodactyl_tests::{Account, Resp};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wings_stack::{eventually, stack, Options, Srv, Stack};

struct Ctx {
    st: Stack,
    srv: Srv,
    owner: Account,
}

async fn ctx() -> Ctx {
    let (st, mut servers) = stack(Options::default()).await;
    let srv = servers.remove(0);
    let owner = st.p.account("player", false, 1).await.unwrap();
    sqlx::query("UPDATE servers SET owner_id = $1, backup_limit = 3 WHERE id = $2")
        .bind(owner.id)
        .bind(srv.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    st.write_start_script(&srv);
    Ctx { st, srv, owner }
}

impl Ctx {
    fn path(&self, rest: &str) -> String {
        format!("/api/client/servers/{}{rest}", self.srv.short)
    }
    async fn get(&self, rest: &str) -> Resp {
        self.st
            .p
            .get(&self.path(rest), &self.owner.key)
            .await
            .unwrap()
    }
    async fn send(&self, m: Method, rest: &str, body: Value) -> Resp {
        self.st
            .p
            .send(m, &self.path(rest), &self.owner.key, &body)
            .await
            .unwrap()
    }
    async fn state(&self) -> String {
        self.st
            .get(&format!("/api/servers/{}", self.srv.uuid))
            .await
            .json["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    async fn wait_state(&self, want: &str) -> bool {
        eventually(Duration::from_secs(60), || async {
            self.state().await == want
        })
        .await
    }
}

async fn next_event(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    want: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            if want(&v) {
                return Some(v);
            }
        }
    }
    None
}

#[tokio::test]
async fn power_console_resources_and_the_websocket_through_the_client_api() {
    let c = ctx().await;
    // Offline: a command is upstream's 502.
    let r = c
        .send(Method::POST, "/command", json!({"command": "hi"}))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.error_detail(),
        "Server must be online in order to send commands."
    );
    // The websocket, with the token the panel minted, from a real websocket client.
    let r = c.get("/websocket").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json["data"]["token"].as_str().unwrap().to_string();
    let socket = r.json["data"]["socket"].as_str().unwrap().to_string();
    let mut req = socket.into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", c.st.p.url.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("wings accepts the websocket");
    ws.send(Message::Text(
        json!({"event": "auth", "args": [token]}).to_string(),
    ))
    .await
    .unwrap();
    assert!(
        next_event(&mut ws, |v| v["event"] == "auth success")
            .await
            .is_some(),
        "the panel's JWT authenticates on wings"
    );
    // Power on through the client API; the console streams over the socket.
    let r = c
        .send(Method::POST, "/power", json!({"signal": "start"}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(c.wait_state("running").await, "the server reached running");
    let r = c
        .send(
            Method::POST,
            "/command",
            json!({"command": "ping from the api"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let line = next_event(&mut ws, |v| {
        v["event"] == "console output"
            && v["args"][0]
                .as_str()
                .is_some_and(|s| s.contains("you said: ping from the api"))
    })
    .await;
    assert!(line.is_some(), "the command's output reached the websocket");
    // Resources come from the node (once it has sampled the container).
    let sampled = eventually(Duration::from_secs(30), || async {
        c.st.get(&format!("/api/servers/{}", c.srv.uuid)).await.json["utilization"]["memory_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    })
    .await;
    assert!(sampled, "wings sampled the container's stats");
    let r = c.get("/resources").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["object"], "stats");
    assert_eq!(r.json["attributes"]["current_state"], "running");
    assert_eq!(r.json["attributes"]["is_suspended"], false);
    let res = r.json["attributes"]["resources"].as_object().unwrap();
    assert_eq!(
        res.keys().collect::<Vec<_>>(),
        [
            "memory_bytes",
            "cpu_absolute",
            "disk_bytes",
            "network_rx_bytes",
            "network_tx_bytes",
            "uptime"
        ]
    );
    assert!(res["memory_bytes"].as_u64().unwrap() > 0);
    let r = c
        .send(Method::POST, "/power", json!({"signal": "stop"}))
        .await;
    assert_eq!(r.status, 204);
    assert!(c.wait_state("offline").await, "the stop command stopped it");
    let r = c.get("/activity").await;
    let events: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "server:power.stop",
            "server:console.command",
            "server:power.start"
        ]
    );
}

#[tokio::test]
async fn the_file_manager_through_the_client_api() {
    let c = ctx().await;
    let r =
        c.st.p
            .call(
                c.st.p
                    .req(
                        Method::POST,
                        &c.path("/files/write?file=%2Fconfig%2Fserver.properties"),
                        Some(&c.owner.key),
                    )
                    .header("Content-Type", "text/plain")
                    .body("motd=hello\n"),
            )
            .await
            .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let r = c.get("/files/list?directory=%2Fconfig").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let f = &r.json["data"][0];
    assert_eq!(f["object"], "file_object");
    ferrodactyl_tests::assert_shape(
        &f["attributes"],
        &[
            ("name", "string"),
            ("mode", "string"),
            ("mode_bits", "string"),
            ("size", "int"),
            ("is_file", "bool"),
            ("is_symlink", "bool"),
            ("mimetype", "string"),
            ("created_at", "string"),
            ("modified_at", "string"),
        ],
    );
    assert_eq!(f["attributes"]["name"], "server.properties");
    assert_eq!(f["attributes"]["size"], 11);
    let r = c
        .get("/files/contents?file=%2Fconfig%2Fserver.properties")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "motd=hello\n");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    // Escapes are refused by the node and come back as an error, never the file.
    let r = c
        .get("/files/contents?file=..%2F..%2F..%2Fetc%2Fpasswd")
        .await;
    assert_ne!(r.status, 200);
    assert_eq!(r.error_code(), "DaemonConnectionException");
    // Copy, rename, folder, chmod (a numeric mode works here; upstream forwards it and fails).
    assert_eq!(
        c.send(
            Method::POST,
            "/files/copy",
            json!({"location": "/config/server.properties"})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        c.send(Method::PUT, "/files/rename", json!({"root": "/config", "files": [{"from": "server.properties", "to": "renamed.properties"}]})).await.status,
        204
    );
    let r = c
        .send(
            Method::PUT,
            "/files/rename",
            json!({"root": "", "files": []}),
        )
        .await;
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        c.send(
            Method::POST,
            "/files/create-folder",
            json!({"root": "/", "name": "mods"})
        )
        .await
        .status,
        204
    );
    let r = c
        .send(
            Method::POST,
            "/files/chmod",
            json!({"root": "/config", "files": [{"file": "renamed.properties", "mode": 600}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let dir = c.st.server_dir(&c.srv);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("config/renamed.properties"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let names: Vec<String> = c.get("/files/list?directory=%2Fconfig").await.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["attributes"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"renamed.properties".to_string())
            && names.contains(&"server copy.properties".to_string()),
        "{names:?}"
    );
    // Compress answers the archive's file_object; delete removes files.
    let r = c
        .send(
            Method::POST,
            "/files/compress",
            json!({"root": "/", "files": ["config"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let archive = r.json["attributes"]["name"].as_str().unwrap().to_string();
    assert!(
        archive.starts_with("archive-") && archive.ends_with(".tar.gz"),
        "{archive}"
    );
    assert_eq!(
        c.send(
            Method::POST,
            "/files/delete",
            json!({"root": "/", "files": ["config"]})
        )
        .await
        .status,
        204
    );
    assert!(!dir.join("config").exists());
    assert_eq!(
        c.send(
            Method::POST,
            "/files/decompress",
            json!({"root": "/", "file": archive})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("config/renamed.properties")).unwrap(),
        "motd=hello\n"
    );
    // The signed download URL works once, from a plain HTTP client.
    let r = c
        .get("/files/download?file=%2Fconfig%2Frenamed.properties")
        .await;
    let url = r.json["attributes"]["url"].as_str().unwrap().to_string();
    let first = reqwest::get(&url).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "motd=hello\n");
    assert_eq!(
        reqwest::get(&url).await.unwrap().status(),
        404,
        "single use"
    );
    // The signed upload URL takes a multipart upload.
    let r = c.get("/files/upload").await;
    let url = r.json["attributes"]["url"].as_str().unwrap().to_string();
    let form = reqwest::multipart::Form::new().part(
        "files",
        reqwest::multipart::Part::bytes(b"uploaded!".to_vec()).file_name("up.txt"),
    );
    let up = reqwest::Client::new()
        .post(format!("{url}&directory=/mods"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    assert_eq!(
        std::fs::read_to_string(dir.join("mods/up.txt")).unwrap(),
        "uploaded!"
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM activity_logs ORDER BY id")
        .fetch_all(&c.st.p.db)
        .await
        .unwrap();
    for e in [
        "server:file.write",
        "server:file.read",
        "server:file.copy",
        "server:file.rename",
        "server:file.compress",
        "server:file.delete",
        "server:file.decompress",
        "server:file.download",
    ] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
}

#[tokio::test]
async fn a_backup_is_made_downloaded_restored_and_deleted() {
    let c = ctx().await;
    let dir = c.st.server_dir(&c.srv);
    std::fs::write(dir.join("world.dat"), "v1").unwrap();
    std::fs::write(dir.join("skip.log"), "noise").unwrap();
    let r = c
        .send(
            Method::POST,
            "/backups",
            json!({"name": "before update", "ignored": "*.log", "is_locked": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["attributes"]["is_successful"], false);
    assert_eq!(r.json["attributes"]["ignored_files"], json!(["*.log"]));
    let uuid = r.json["attributes"]["uuid"].as_str().unwrap().to_string();
    // The node archives it and reports back to the panel.
    let done = eventually(Duration::from_secs(60), || async {
        let r = c.get(&format!("/backups/{uuid}")).await;
        r.json["attributes"]["completed_at"].is_string()
    })
    .await;
    assert!(done, "the node reported the backup");
    let r = c.get(&format!("/backups/{uuid}")).await;
    assert_eq!(r.json["attributes"]["is_successful"], true, "{}", r.text());
    assert!(r.json["attributes"]["checksum"]
        .as_str()
        .unwrap()
        .starts_with("sha1:"));
    assert!(r.json["attributes"]["bytes"].as_i64().unwrap() > 0);
    assert_eq!(c.get("/backups").await.json["meta"]["backup_count"], 1);
    // The throttle: two per ten minutes by default.
    assert_eq!(
        c.send(Method::POST, "/backups", json!({})).await.status,
        200
    );
    let r = c.send(Method::POST, "/backups", json!({})).await;
    r.assert_envelope(429, "TooManyRequestsHttpException");
    assert!(r.headers.contains_key("retry-after"));
    // Download through the signed URL.
    let r = c.get(&format!("/backups/{uuid}/download")).await;
    let url = r.json["attributes"]["url"].as_str().unwrap().to_string();
    assert!(url.contains("/download/backup?token="));
    let archive = reqwest::get(&url).await.unwrap();
    assert_eq!(archive.status(), 200);
    let bytes = archive.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip archive");
    // Restore with truncation brings the old content back and removes newer files.
    std::fs::write(dir.join("world.dat"), "v2").unwrap();
    std::fs::write(dir.join("new.txt"), "new").unwrap();
    let r = c
        .send(
            Method::POST,
            &format!("/backups/{uuid}/restore"),
            json!({"truncate": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let restored = eventually(Duration::from_secs(60), || async {
        let s: Option<String> = sqlx::query_scalar("SELECT status FROM servers WHERE id = $1")
            .bind(c.srv.id)
            .fetch_one(&c.st.p.db)
            .await
            .unwrap();
        s.is_none()
    })
    .await;
    assert!(restored, "the node reported the restore");
    assert_eq!(
        std::fs::read_to_string(dir.join("world.dat")).unwrap(),
        "v1"
    );
    assert!(!dir.join("new.txt").exists());
    assert!(
        !dir.join("skip.log").exists(),
        ".log files were ignored by the backup"
    );
    // Lock blocks deletion; unlock and delete removes the archive on the node.
    let r = c
        .send(Method::POST, &format!("/backups/{uuid}/lock"), json!({}))
        .await;
    assert_eq!(r.json["attributes"]["is_locked"], true);
    let r = c
        .send(Method::DELETE, &format!("/backups/{uuid}"), json!({}))
        .await;
    assert_eq!(r.error_code(), "BackupLockedException");
    c.send(Method::POST, &format!("/backups/{uuid}/lock"), json!({}))
        .await;
    assert_eq!(
        c.send(Method::DELETE, &format!("/backups/{uuid}"), json!({}))
            .await
            .status,
        204
    );
    assert!(!c.st.backups.join(format!("{uuid}.tar.gz")).exists());
    assert_eq!(c.get(&format!("/backups/{uuid}")).await.status, 404);
}

#[tokio::test]
async fn schedules_run_their_tasks_on_the_node() {
    let c = ctx().await;
    let r = c
        .send(Method::POST, "/schedules", json!({"name": "boot", "minute": "*", "hour": "*", "day_of_month": "*", "month": "*", "day_of_week": "*", "is_active": true}))
        .await;
    let boot = r.json["attributes"]["id"].as_i64().unwrap();
    // Run now with no tasks: 400.
    let r = c
        .send(
            Method::POST,
            &format!("/schedules/{boot}/execute"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 400);
    c.send(
        Method::POST,
        &format!("/schedules/{boot}/tasks"),
        json!({"action": "power", "payload": "start", "time_offset": 0}),
    )
    .await;
    let r = c
        .send(
            Method::POST,
            &format!("/schedules/{boot}/execute"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.text(), "[]");
    assert!(
        c.wait_state("running").await,
        "the run-now power task started the server"
    );
    // The runner: a due schedule (only when online) sends two commands, the second
    // after its offset; it is claimed once and its run recorded.
    let r = c
        .send(Method::POST, "/schedules", json!({"name": "say", "minute": "*", "hour": "*", "day_of_month": "*", "month": "*", "day_of_week": "*", "is_active": true, "only_when_online": true}))
        .await;
    let say = r.json["attributes"]["id"].as_i64().unwrap();
    c.send(
        Method::POST,
        &format!("/schedules/{say}/tasks"),
        json!({"action": "command", "payload": "first", "time_offset": 0}),
    )
    .await;
    c.send(
        Method::POST,
        &format!("/schedules/{say}/tasks"),
        json!({"action": "command", "payload": "second", "time_offset": 1}),
    )
    .await;
    let made_due = chrono::Utc::now();
    sqlx::query("UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1")
        .bind(say)
        .execute(&c.st.p.db)
        .await
        .unwrap();
    let ran = eventually(Duration::from_secs(30), || async {
        let logs = c.st.get(&format!("/api/servers/{}/logs", c.srv.uuid)).await;
        logs.text().contains("you said: second")
    })
    .await;
    assert!(ran, "the runner sent both commands");
    let logs =
        c.st.get(&format!("/api/servers/{}/logs", c.srv.uuid))
            .await
            .text();
    assert!(
        logs.find("you said: first") < logs.find("you said: second"),
        "in sequence order"
    );
    let finished = eventually(Duration::from_secs(10), || async {
        let (processing, last): (bool, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as("SELECT is_processing, last_run_at FROM schedules WHERE id = $1")
                .bind(say)
                .fetch_one(&c.st.p.db)
                .await
                .unwrap();
        !processing && last.is_some()
    })
    .await;
    assert!(finished);
    let next: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT next_run_at FROM schedules WHERE id = $1")
            .bind(say)
            .fetch_one(&c.st.p.db)
            .await
            .unwrap();
    // The claim sets the next run to the cron's next minute after the claim (the
    // run itself takes over a second, so this can already be in the past when a
    // minute boundary fell during the run).
    use chrono::Timelike;
    assert!(
        next > made_due,
        "the next run is after the claim: {next} vs {made_due}"
    );
    assert_eq!(
        (next.second(), next.nanosecond()),
        (0, 0),
        "on a minute: {next}"
    );
    assert!(
        next <= made_due + chrono::Duration::seconds(90),
        "the next minute, not a later one: {next} vs {made_due}"
    );
    c.send(Method::POST, "/power", json!({"signal": "kill"}))
        .await;
    assert!(c.wait_state("offline").await);
}

#[tokio::test]
async fn changing_a_subusers_permissions_revokes_their_open_websocket() {
    let c = ctx().await;
    let sub = c.st.p.account("helper", false, 1).await.unwrap();
    let r = c
        .send(
            Method::POST,
            "/users",
            json!({"email": "helper@example.com", "permissions": ["control.console"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.st.p.get(&c.path("/websocket"), &sub.key).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json["data"]["token"].as_str().unwrap().to_string();
    let mut req = r.json["data"]["socket"]
        .as_str()
        .unwrap()
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", c.st.p.url.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"event": "auth", "args": [token]}).to_string(),
    ))
    .await
    .unwrap();
    assert!(next_event(&mut ws, |v| v["event"] == "auth success")
        .await
        .is_some());
    // The owner narrows the subuser's permissions: the panel asks wings to deny the
    // subuser's token, and the open socket stops accepting it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c
        .send(
            Method::POST,
            &format!("/users/{}", sub.uuid),
            json!({"permissions": ["file.read"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    ws.send(Message::Text(
        json!({"event": "send logs", "args": [null]}).to_string(),
    ))
    .await
    .unwrap();
    let err = next_event(&mut ws, |v| v["event"] == "jwt error").await;
    assert!(
        err.is_some(),
        "the revoked token is refused on the open socket"
    );
}

#[tokio::test]
async fn schedule_tasks_fail_continue_skip_and_back_up_as_upstream() {
    let c = ctx().await;
    let db = &c.st.p.db;
    let make = |name: &'static str, online: bool| {
        let c = &c;
        async move {
            let r = c
                .send(Method::POST, "/schedules", json!({"name": name, "minute": "*", "hour": "*", "day_of_month": "*", "month": "*", "day_of_week": "*", "is_active": true, "only_when_online": online}))
                .await;
            r.json["attributes"]["id"].as_i64().unwrap()
        }
    };
    let task = |sid: i64, body: Value| {
        let c = &c;
        async move {
            let r = c
                .send(Method::POST, &format!("/schedules/{sid}/tasks"), body)
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    let run = |sid: i64| async move {
        sqlx::query("UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE id = $1")
            .bind(sid)
            .execute(db)
            .await
            .unwrap();
        let done = eventually(Duration::from_secs(20), || async {
            let (p, last): (bool, Option<chrono::DateTime<chrono::Utc>>) =
                sqlx::query_as("SELECT is_processing, last_run_at FROM schedules WHERE id = $1")
                    .bind(sid)
                    .fetch_one(db)
                    .await
                    .unwrap();
            !p && last.is_some()
        })
        .await;
        assert!(done, "schedule {sid} ran");
    };
    // Only when online, while offline: skipped, nothing started.
    let skipped = make("skipped", true).await;
    task(
        skipped,
        json!({"action": "power", "payload": "start", "time_offset": 0}),
    )
    .await;
    run(skipped).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.state().await, "offline");
    // A failing first task without continue_on_failure stops the run.
    let stops = make("stops", false).await;
    task(
        stops,
        json!({"action": "command", "payload": "nobody listens", "time_offset": 0}),
    )
    .await;
    task(
        stops,
        json!({"action": "power", "payload": "start", "time_offset": 0}),
    )
    .await;
    run(stops).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.state().await, "offline", "the second task did not run");
    // With continue_on_failure the next task runs.
    let goes_on = make("goes on", false).await;
    task(goes_on, json!({"action": "command", "payload": "nobody listens", "time_offset": 0, "continue_on_failure": true})).await;
    task(
        goes_on,
        json!({"action": "power", "payload": "start", "time_offset": 0}),
    )
    .await;
    run(goes_on).await;
    assert!(
        c.wait_state("running").await,
        "the task after the failure ran"
    );
    // A backup task makes a backup (the ignore list comes from its payload).
    let backs_up = make("backs up", false).await;
    task(
        backs_up,
        json!({"action": "backup", "payload": "*.log", "time_offset": 0}),
    )
    .await;
    run(backs_up).await;
    let made = eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backups WHERE server_id = $1 AND is_successful AND ignored_files = '[\"*.log\"]'")
            .bind(c.srv.id)
            .fetch_one(db)
            .await
            .unwrap();
        n == 1
    })
    .await;
    assert!(made, "the backup task made a successful backup");
    c.send(Method::POST, "/power", json!({"signal": "kill"}))
        .await;
    assert!(c.wait_state("offline").await);
}
