//! crates.io's `pterodactyl_api` 0.3.0 (Earthcomputer's Client API library, written
//! against upstream Pterodactyl) driving a live panel-api and wings: every method
//! the crate offers, each result checked. Where the crate sends what upstream 1.11
//! rejects (its two-factor calls predate 1.11's routes), the test pins that our panel
//! answers exactly what upstream answers, and what the crate makes of it.
//!
//! Built only with `--features upstream-client` in a cargo invocation of its own
//! (see `isolated_build.rs` and `Cargo.toml`); run by hand with
//! `cargo build -p panel-api -p wings && cargo test -p ferrodactyl-compat --features upstream-client --test pterodactyl_api`.

use ferrodactyl_compat::{request, MariaDb, Stack};
use futures::StreamExt;
use pterodactyl_api::client::backups::BackupParams;
use pterodactyl_api::client::files::PteroFileType;
use pterodactyl_api::client::schedules::{
    CronField, CronPart, ScheduleAction, ScheduleParams, TaskParams,
};
use pterodactyl_api::client::websocket::{
    PteroWebSocketHandle, PteroWebSocketListener, ServerStats,
};
use pterodactyl_api::client::{Client, ClientBuilder, PowerSignal, ServerState};
use pterodactyl_api::Error;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "compat-password-1";
const NEW_PASSWORD: &str = "compat-password-2";

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn names(files: &[pterodactyl_api::client::files::PteroFile]) -> BTreeSet<String> {
    files.iter().map(|f| f.name.clone()).collect()
}

/// `Err(Error::Http(status))` from the crate.
fn assert_http<T: std::fmt::Debug>(r: pterodactyl_api::Result<T>, status: u16) {
    match r {
        Err(Error::Http(s)) if s.as_u16() == status => {}
        other => panic!("expected Error::Http({status}), got {other:?}"),
    }
}

async fn wait_state(server: &pterodactyl_api::client::Server<'_>, want: ServerState) {
    let start = Instant::now();
    loop {
        let r = server.get_resources().await.expect("resources");
        if r.current_state == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server still {:?}, waiting for {want:?}",
            r.current_state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_pterodactyl_api_against_panel_api_and_wings() {
    let st = Stack::start().await.expect("the stack starts");
    let maria = MariaDb::start().expect("MariaDB starts");
    st.database_host(&maria).expect("database host row");
    let (owner, _) = st.user("compat", PASSWORD).await.unwrap();
    let (_friend, friend_uuid) = st.user("friend", PASSWORD).await.unwrap();
    let key = st.client_key(owner).unwrap();
    let server = st.server(owner, "compat-one").await.unwrap();
    let client = ClientBuilder::new(&st.panel_url, &key).build();

    account(&st, &client, owner, &key).await;
    servers_and_permissions(&st, &client, &server).await;
    let s = client.get_server(&server.identifier);
    startup_and_settings(&st, &client, &server).await;
    power_console_and_websocket(&st, &s, &server).await;
    files(&st, &s).await;
    backups(&st, &s).await;
    databases(&s, maria.port).await;
    network(&st, &s).await;
    schedules(&s).await;
    subusers(&st, &client, &s, &server, &friend_uuid).await;

    // Unknown servers are a 404 to the crate, as upstream answers them.
    match client.get_server("ffffffff").get_details().await {
        Err(Error::ResourceNotFound) => {}
        other => panic!("unknown server: {other:?}"),
    }
    drop(maria);
    drop(st);
}

async fn account(st: &Stack, client: &Client, owner: i64, key: &str) {
    assert!(client.get_rate_limits().is_none());
    let me = client.get_account_details().await.expect("account");
    assert_eq!(me.id, owner as u64);
    assert!(!me.admin);
    assert_eq!(me.username, "compat");
    assert_eq!(me.email, "compat@example.com");
    assert_eq!(
        (me.first_name.as_str(), me.last_name.as_str()),
        ("Compat", "Client")
    );
    assert_eq!(me.language, "en");
    let limits = client.get_rate_limits().expect("X-RateLimit-* headers");
    assert_eq!(limits.limit, 720, "upstream's client limit per minute");
    assert!(limits.limit_remaining < 720);

    // API keys.
    let keys = client.get_api_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].identifier, key[..16]);
    assert_eq!(keys[0].description, "compat");
    assert!(keys[0].allowed_ips.is_empty());
    assert!(keys[0].last_used_at.is_some(), "the key was just used");
    let made = client
        .create_api_key("made by pterodactyl_api")
        .await
        .unwrap();
    assert!(made.key.identifier.starts_with("ptlc_") && made.key.identifier.len() == 16);
    assert_eq!(made.key.description, "made by pterodactyl_api");
    assert!(made.key.allowed_ips.is_empty() && made.key.last_used_at.is_none());
    // Upstream hands back only the 32-character secret; the usable key is the
    // identifier followed by it (reference §2.1), as the web UI builds it.
    assert_eq!(made.secret_token.len(), 32);
    assert!(!made.secret_token.starts_with("ptlc_"));
    let made_key = format!("{}{}", made.key.identifier, made.secret_token);
    let other = ClientBuilder::new(&st.panel_url, &made_key).build();
    assert_eq!(other.get_account_details().await.unwrap().id, owner as u64);
    let restricted = client
        .create_api_key_with_allowed_ips("restricted", vec!["10.1.2.3".into()])
        .await
        .unwrap();
    assert_eq!(restricted.key.allowed_ips, vec!["10.1.2.3".to_string()]);
    let restricted_key = format!("{}{}", restricted.key.identifier, restricted.secret_token);
    let from_here = ClientBuilder::new(&st.panel_url, &restricted_key).build();
    match from_here.get_account_details().await {
        Err(Error::PermissionError) => {}
        other => panic!("a key for 10.1.2.3 used from 127.0.0.1: {other:?}"),
    }
    let keys = client.get_api_keys().await.unwrap();
    assert_eq!(keys.len(), 3);
    client
        .delete_api_key(restricted.key.identifier.clone())
        .await
        .unwrap();
    client
        .delete_api_key(made.key.identifier.clone())
        .await
        .unwrap();
    let left: Vec<String> = client
        .get_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.identifier)
        .collect();
    assert_eq!(left, vec![key[..16].to_string()]);
    assert_http(other.get_account_details().await, 401);

    // Email and password.
    match client.update_email("compat-new@example.com", "wrong").await {
        Err(Error::IncorrectPassword) => {}
        other => panic!("email with a wrong password: {other:?}"),
    }
    assert_http(client.update_email("not-an-email", PASSWORD).await, 422);
    let raw = st
        .call(
            "PUT",
            "/api/client/account/email",
            key,
            Some(&json!({"email": "not-an-email", "password": PASSWORD})),
        )
        .await
        .unwrap();
    raw.assert_error(
        422,
        "ValidationException",
        "The email must be a valid email address.",
    );
    assert_eq!(raw.json["errors"][0]["meta"]["source_field"], "email");
    client
        .update_email("compat-new@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        client.get_account_details().await.unwrap().email,
        "compat-new@example.com"
    );
    match client.update_password("wrong", NEW_PASSWORD).await {
        Err(Error::IncorrectPassword) => {}
        other => panic!("password with a wrong current one: {other:?}"),
    }
    client
        .update_password(PASSWORD, NEW_PASSWORD)
        .await
        .unwrap();
    match client.update_email("compat@example.com", PASSWORD).await {
        Err(Error::IncorrectPassword) => {}
        other => panic!("the old password still works: {other:?}"),
    }
    client
        .update_email("compat@example.com", NEW_PASSWORD)
        .await
        .unwrap();

    // Two-factor. The secret is issued as upstream issues it.
    let tfa = client.get_account_2fa_details().await.unwrap();
    assert_eq!(tfa.secret.len(), 32);
    assert!(tfa
        .secret
        .chars()
        .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
    assert!(
        tfa.image_url_data
            .starts_with("otpauth://totp/Pterodactyl:compat%40example.com?secret=")
            && tfa.image_url_data.contains(&tfa.secret),
        "{}",
        tfa.image_url_data
    );
    // The crate posts only `code`; since 1.11 upstream also requires `password` and
    // answers 422 before it looks at the code. The crate sees a plain 422.
    assert_http(client.enable_2fa("123456").await, 422);
    let raw = st
        .call(
            "POST",
            "/api/client/account/two-factor",
            key,
            Some(&json!({"code": "123456"})),
        )
        .await
        .unwrap();
    raw.assert_error(
        422,
        "ValidationException",
        "The password field is required.",
    );
    assert_eq!(raw.json["errors"][0]["meta"]["source_field"], "password");
    assert_eq!(raw.json["errors"][0]["meta"]["rule"], "required");
    // Still not enabled: the details can be fetched again (enabled → 400).
    client.get_account_2fa_details().await.unwrap();
    // The crate disables with `DELETE /account/two-factor`; 1.11 has
    // `POST /account/two-factor/disable`, so the route answers 405.
    assert_http(client.disable_2fa(NEW_PASSWORD).await, 405);
    let raw = request(
        &st.panel_url,
        "DELETE",
        "/api/client/account/two-factor",
        Some(key),
        Some(&json!({"password": NEW_PASSWORD})),
    )
    .await
    .unwrap();
    raw.assert_error(
        405,
        "MethodNotAllowedHttpException",
        "The DELETE method is not supported for route api/client/account/two-factor. Supported methods: GET, HEAD, POST.",
    );
    assert_eq!(
        raw.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, POST")
    );
}

async fn servers_and_permissions(st: &Stack, client: &Client, server: &ferrodactyl_compat::Server) {
    let list = client.list_servers().await.unwrap();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert!(s.server_owner);
    assert_eq!(s.identifier, server.identifier);
    assert_eq!(s.uuid.to_string(), server.uuid);
    assert_eq!(s.name, "compat-one");
    assert_eq!(s.node, "local");
    assert!(!s.is_node_under_maintenance && !s.is_transferring);
    assert_eq!(s.status, None, "installed");
    assert_eq!(
        (s.limits.memory, s.limits.disk, s.limits.io),
        (256, 512, 500)
    );
    assert_eq!(s.limits.swap, 0);
    assert_eq!(s.limits.cpu, 100.0);
    assert_eq!(s.limits.threads, None);
    assert_eq!(s.feature_limits.databases, Some(2));
    assert_eq!(s.feature_limits.allocations, Some(3));
    assert_eq!(s.feature_limits.backups, Some(3));
    assert_eq!(s.invocation, "sh ./start.sh");
    assert_eq!(s.docker_image, "ferrodactyl/test-base:latest");
    assert_eq!(s.sftp_details.ip, "127.0.0.1");
    assert_eq!(s.relationships.allocations.len(), 1);
    let a = &s.relationships.allocations[0];
    assert!(a.is_default && a.ip == "127.0.0.1");
    assert!((st.ports..st.ports + 10).contains(&a.port));
    let d = client
        .get_server(&server.identifier)
        .get_details()
        .await
        .unwrap();
    assert_eq!((d.uuid, d.name.as_str()), (s.uuid, "compat-one"));

    let groups = client.get_permissions().await.unwrap();
    let got: BTreeSet<String> = groups.keys().cloned().collect();
    assert_eq!(
        got,
        set(&[
            "websocket",
            "control",
            "user",
            "file",
            "backup",
            "allocation",
            "startup",
            "database",
            "schedule",
            "settings",
            "activity"
        ])
    );
    let control: BTreeSet<String> = groups["control"].keys.keys().cloned().collect();
    assert_eq!(control, set(&["console", "start", "stop", "restart"]));
    assert!(!groups["file"].description.is_empty());
}

async fn startup_and_settings(st: &Stack, client: &Client, server: &ferrodactyl_compat::Server) {
    let s = client.get_server(&server.identifier);
    let data = s.get_startup_data().await.unwrap();
    assert_eq!(data.startup_command, "sh ./start.sh");
    assert_eq!(data.raw_startup_command, "sh ./start.sh");
    assert_eq!(data.variables.len(), 1);
    let v = &data.variables[0];
    assert_eq!(v.env_variable, "SERVER_MESSAGE");
    assert_eq!(v.server_value, "Hello from compat");
    assert_eq!(v.default_value, "Hello from Ferrodactyl");
    assert!(v.is_editable);
    assert_eq!(v.rules, "required|string|max:64");
    let v = s
        .set_startup_variable("SERVER_MESSAGE", "Changed by the crate")
        .await
        .unwrap();
    assert_eq!(v.server_value, "Changed by the crate");
    assert_http(
        s.set_startup_variable("SERVER_MESSAGE", "x".repeat(65))
            .await,
        422,
    );
    assert_eq!(
        s.get_startup_data().await.unwrap().variables[0].server_value,
        "Changed by the crate"
    );

    s.rename("compat-renamed").await.unwrap();
    assert_eq!(s.get_details().await.unwrap().name, "compat-renamed");
    s.rename("compat-one").await.unwrap();

    // Reinstall: the panel marks it installing and wings runs the egg's script again.
    std::fs::remove_file(st.volumes().join(&server.uuid).join("start.sh"))
        .expect("start.sh was installed");
    s.reinstall().await.unwrap();
    st.wait_installed(server).await.unwrap();
    assert!(
        st.volumes().join(&server.uuid).join("start.sh").exists(),
        "the install script ran again"
    );
    assert_eq!(s.get_details().await.unwrap().status, None);
}

#[derive(Default)]
struct Seen {
    ready: bool,
    console: Vec<String>,
    states: Vec<ServerState>,
    stats: Vec<ServerStats>,
    sent: bool,
}

struct Listener(Arc<Mutex<Seen>>);

impl<H: PteroWebSocketHandle> PteroWebSocketListener<H> for Listener {
    async fn on_ready(&mut self, handle: &mut H) -> pterodactyl_api::Result<()> {
        self.0.lock().unwrap().ready = true;
        handle.request_logs().await?;
        handle.request_stats().await
    }

    async fn on_status(
        &mut self,
        _handle: &mut H,
        status: ServerState,
    ) -> pterodactyl_api::Result<()> {
        self.0.lock().unwrap().states.push(status);
        Ok(())
    }

    async fn on_console_output(
        &mut self,
        handle: &mut H,
        output: &str,
    ) -> pterodactyl_api::Result<()> {
        let (send, done) = {
            let mut seen = self.0.lock().unwrap();
            seen.console.push(output.to_string());
            let send = !seen.sent && output.contains("you said: via-api");
            if send {
                seen.sent = true;
            }
            (send, output.contains("you said: via-websocket"))
        };
        if send {
            handle.send_command("via-websocket").await?;
        }
        if done {
            handle.disconnect();
        }
        Ok(())
    }

    async fn on_stats(
        &mut self,
        _handle: &mut H,
        stats: ServerStats,
    ) -> pterodactyl_api::Result<()> {
        self.0.lock().unwrap().stats.push(stats);
        Ok(())
    }
}

/// Waits until the server runs a process started after `sent` (its uptime is
/// younger than the time since then).
async fn wait_restarted(st: &Stack, server: &pterodactyl_api::client::Server<'_>, sent: Instant) {
    loop {
        let r = server.get_resources().await.expect("resources");
        if r.current_state == ServerState::Running
            && u128::from(r.resources.uptime) < sent.elapsed().as_millis()
        {
            return;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(60),
            "no restarted process after 60 s: {r:?}\n{}",
            st.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn power_console_and_websocket(
    st: &Stack,
    s: &pterodactyl_api::client::Server<'_>,
    server: &ferrodactyl_compat::Server,
) {
    let r = s.get_resources().await.unwrap();
    assert_eq!(r.current_state, ServerState::Offline);
    assert!(!r.is_suspended);
    s.send_power_signal(PowerSignal::Start).await.unwrap();
    wait_state(s, ServerState::Running).await;
    let r = s.get_resources().await.unwrap();
    assert!(r.resources.memory_bytes > 0, "{r:?}");
    s.send_command("via-api").await.unwrap();

    // The console: the crate fetches the socket credentials from the panel and talks
    // to wings (Origin = the panel, as a browser on the panel's page sends it).
    let seen = Arc::new(Mutex::new(Seen::default()));
    let origin = st.panel_url.clone();
    let run = s.run_websocket_loop(
        move |url: String| async move {
            use async_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = url.into_client_request()?;
            req.headers_mut()
                .insert("Origin", origin.parse().expect("origin header"));
            async_tungstenite::tokio::connect_async(req)
                .await
                .map(|(ws, _)| ws)
        },
        Listener(seen.clone()),
    );
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "websocket: no echo within 60 s: {:?}\n{}",
                seen.lock().unwrap().console,
                st.logs()
            )
        })
        .expect("websocket loop");
    {
        let seen = seen.lock().unwrap();
        assert!(seen.ready);
        let all = seen.console.join("\n");
        assert!(
            all.contains("Changed by the crate"),
            "the startup variable reached the process: {all}"
        );
        assert!(all.contains("you said: via-api"), "{all}");
        assert!(all.contains("you said: via-websocket"), "{all}");
        let stats = seen.stats.last().expect("a stats event");
        assert_eq!(stats.state, ServerState::Running);
        // Upstream's BoundedMemoryLimit: 256 MB with the 1.15 overhead of limits up
        // to 2 GB, in units of 1,000,000 bytes.
        assert_eq!(stats.memory_limit_bytes, 294_400_000);
    }

    let sent = Instant::now();
    s.send_power_signal(PowerSignal::Restart).await.unwrap();
    // The answer comes before the restart begins, and the whole restart (the stop
    // command, a new container, "Server is ready") can fit between two polls through
    // the panel. What tells the new process from the old one is its uptime: the old
    // one's is older than the request. wings (as upstream's) refuses another power
    // action while the restart holds the power lock, so it is waited out first.
    wait_restarted(st, s, sent).await;
    s.send_power_signal(PowerSignal::Stop).await.unwrap();
    wait_state(s, ServerState::Offline).await;
    s.send_power_signal(PowerSignal::Start).await.unwrap();
    wait_state(s, ServerState::Running).await;
    s.send_power_signal(PowerSignal::Kill).await.unwrap();
    wait_state(s, ServerState::Offline).await;
    let _ = server;
}

/// A file's content that the crate can write (see `files`).
const HELLO: &str = "{\"hello\": \"world\"}\n";

async fn files(st: &Stack, s: &pterodactyl_api::client::Server<'_>) {
    let root = s.list_files("/").await.unwrap();
    let start = root
        .iter()
        .find(|f| f.name == "start.sh")
        .expect("start.sh");
    assert!(start.is_file && !start.is_symlink);
    assert_eq!(start.permissions.file_type, PteroFileType::Normal);
    assert!(start.permissions.owner.read && start.permissions.owner.executable);

    // The crate labels the raw file body `Content-Type: application/json`, so
    // upstream's IsValidJson middleware (which runs before the route) refuses any
    // content that is not JSON with a 400; panel-api does the same, and the crate
    // can only write JSON documents. Both halves are checked.
    match s.write_file("plain.txt", "hello world\n").await {
        Err(Error::Http(code)) if code.as_u16() == 400 => {}
        other => panic!("non-JSON content through the crate: {other:?}"),
    }
    s.write_file("hello.txt", HELLO).await.unwrap();
    assert_eq!(
        &s.file_contents("hello.txt").await.unwrap()[..],
        HELLO.as_bytes()
    );
    assert_eq!(s.file_contents_text("hello.txt").await.unwrap(), HELLO);
    let mut stream = Box::pin(s.file_contents_stream("hello.txt").await.unwrap());
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.next().await {
        streamed.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(streamed, HELLO.as_bytes());

    // Signed URLs point at wings and work there.
    let url = s.get_file_download_url("hello.txt").await.unwrap();
    let path = url
        .strip_prefix(&st.wings_url)
        .unwrap_or_else(|| panic!("{url} is not on {}", st.wings_url));
    assert!(path.starts_with("/download/file?token="), "{url}");
    let got = request(&st.wings_url, "GET", path, None, None)
        .await
        .unwrap();
    assert_eq!((got.status, &got.raw[..]), (200, HELLO.as_bytes()));
    let up = s.get_files_upload_url().await.unwrap();
    let path = up.strip_prefix(&st.wings_url).expect("upload URL on wings");
    assert!(path.starts_with("/upload/file?token="), "{up}");
    let jwt = path
        .split("token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(jwt.split('.').count(), 3, "a JWT: {jwt}");

    s.create_folder("dir1").await.unwrap();
    s.create_folder("/dir1/inner/").await.unwrap();
    let dir = s.list_files("/").await.unwrap();
    let d = dir.iter().find(|f| f.name == "dir1").expect("dir1");
    assert!(!d.is_file);
    assert_eq!(d.permissions.file_type, PteroFileType::Directory);
    assert_eq!(
        names(&s.list_files("/dir1").await.unwrap()),
        set(&["inner"])
    );

    s.create_file_copy("hello.txt").await.unwrap();
    assert!(names(&s.list_files("/").await.unwrap()).contains("hello copy.txt"));
    // copy_file: another copy ("hello copy 1.txt"), renamed to its target.
    s.copy_file("hello.txt", "dir1/copied.txt").await.unwrap();
    let top = names(&s.list_files("/").await.unwrap());
    assert!(!top.contains("hello copy 1.txt"), "{top:?}");
    assert_eq!(
        s.file_contents_text("dir1/copied.txt").await.unwrap(),
        HELLO
    );
    s.rename_file("hello copy.txt", "renamed.txt")
        .await
        .unwrap();
    s.write_file("b.txt", "[\"bee\"]").await.unwrap();
    s.rename_files(vec![
        ("b.txt".into(), "dir1/b.txt".into()),
        ("renamed.txt".into(), "dir1/renamed.txt".into()),
    ])
    .await
    .unwrap();
    assert_eq!(
        names(&s.list_files("/dir1").await.unwrap()),
        set(&["inner", "copied.txt", "b.txt", "renamed.txt"])
    );

    let one = s.compress_file("hello.txt").await.unwrap();
    assert!(one.is_file && one.name.ends_with(".tar.gz"), "{one:?}");
    assert!(one.size > 0);
    let many = s
        .compress_files("/dir1", vec!["b.txt".into(), "inner".into()])
        .await
        .unwrap();
    assert!(many.name.ends_with(".tar.gz"), "{many:?}");
    assert!(names(&s.list_files("/dir1").await.unwrap()).contains(&many.name));
    s.create_folder("unpacked").await.unwrap();
    s.decompress_file(format!("/dir1/{}", many.name), "/unpacked")
        .await
        .unwrap();
    assert_eq!(
        names(&s.list_files("/unpacked").await.unwrap()),
        set(&["b.txt", "inner"])
    );
    assert_eq!(
        s.file_contents_text("unpacked/b.txt").await.unwrap(),
        "[\"bee\"]"
    );

    s.delete_file(one.name.clone()).await.unwrap();
    s.delete_files(vec!["unpacked".into(), format!("dir1/{}", many.name)])
        .await
        .unwrap();
    let top = names(&s.list_files("/").await.unwrap());
    assert!(
        !top.contains(&one.name) && !top.contains("unpacked"),
        "{top:?}"
    );
    assert!(!names(&s.list_files("/dir1").await.unwrap()).contains(&many.name));
    match s.file_contents("missing.txt").await {
        Err(Error::ResourceNotFound) => {}
        other => panic!("missing file: {other:?}"),
    }
}

async fn backups(st: &Stack, s: &pterodactyl_api::client::Server<'_>) {
    assert!(s.list_backups().await.unwrap().is_empty());
    let b = s.create_backup().await.unwrap();
    assert!(!b.name.is_empty() && !b.is_locked);
    assert!(b.completed_at.is_none());
    let locked = s
        .create_backup_with_params(BackupParams::new().with_name("kept").set_locked())
        .await
        .unwrap();
    assert_eq!(locked.name, "kept");
    assert!(locked.is_locked);
    // wings archives and reports; the panel records size and checksum.
    for id in [b.uuid, locked.uuid] {
        let start = Instant::now();
        loop {
            let got = s.get_backup(id).await.unwrap();
            if got.completed_at.is_some() {
                assert!(got.bytes > 0, "{got:?}");
                assert!(
                    got.checksum
                        .as_deref()
                        .is_some_and(|c| c.starts_with("sha1:")),
                    "{got:?}"
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "backup {id} unfinished:\n{}",
                st.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let listed: BTreeSet<String> = s
        .list_backups()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.uuid.to_string())
        .collect();
    assert_eq!(
        listed,
        set(&[&b.uuid.to_string(), &locked.uuid.to_string()])
    );
    let url = s.get_backup_download_link(b.uuid).await.unwrap();
    let path = url
        .strip_prefix(&st.wings_url)
        .expect("download URL on wings");
    assert!(path.starts_with("/download/backup?token="), "{url}");
    let got = request(&st.wings_url, "GET", path, None, None)
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(&got.raw[..2], &[0x1f, 0x8b], "a gzip archive");

    s.delete_backup(b.uuid).await.unwrap();
    // A locked backup cannot be deleted (upstream: 400 BadRequestHttpException).
    assert_http(s.delete_backup(locked.uuid).await, 400);
    let left: Vec<_> = s
        .list_backups()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.uuid)
        .collect();
    assert_eq!(left, vec![locked.uuid]);
    match s.get_backup(b.uuid).await {
        Err(Error::ResourceNotFound) => {}
        other => panic!("deleted backup: {other:?}"),
    }
}

async fn databases(s: &pterodactyl_api::client::Server<'_>, port: u16) {
    assert!(s.list_databases().await.unwrap().is_empty());
    let db = s.create_database("main", "%").await.unwrap();
    assert!(
        db.name.ends_with("_main") && db.name.starts_with('s'),
        "{db:?}"
    );
    assert!(db.username.starts_with('u'), "{db:?}");
    assert_eq!(db.connections_from, "%");
    assert_eq!((db.host.ip.as_str(), db.host.port), ("127.0.0.1", port));
    let first = db
        .relationships
        .password
        .clone()
        .expect("password included");
    assert!(first.len() >= 16);
    let rotated = s.rotate_database_password(db.id.clone()).await.unwrap();
    let second = rotated.relationships.password.expect("new password");
    assert_ne!(first, second);
    let listed = s.list_databases().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, db.id);
    assert!(
        listed[0].relationships.password.is_none(),
        "listed without passwords"
    );
    s.delete_database(db.id.clone()).await.unwrap();
    assert!(s.list_databases().await.unwrap().is_empty());
}

async fn network(st: &Stack, s: &pterodactyl_api::client::Server<'_>) {
    let list = s.list_network_allocations().await.unwrap();
    assert_eq!(list.len(), 1);
    let primary = &list[0];
    assert!(primary.is_default && primary.notes.is_none());
    let added = s.create_network_allocation().await.unwrap();
    assert!(!added.is_default);
    assert!((st.ports..st.ports + 10).contains(&added.port) && added.port != primary.port);
    let noted = s
        .set_network_allocation_notes(added.id, "query port")
        .await
        .unwrap();
    assert_eq!(noted.notes.as_deref(), Some("query port"));
    let now = s.set_network_allocation_primary(added.id).await.unwrap();
    assert!(now.is_default);
    match s.delete_network_allocation(added.id).await {
        Err(Error::PrimaryAllocation) => {}
        other => panic!("deleting the primary allocation: {other:?}"),
    }
    s.set_network_allocation_primary(primary.id).await.unwrap();
    s.delete_network_allocation(added.id).await.unwrap();
    let left: Vec<u64> = s
        .list_network_allocations()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(left, vec![primary.id]);
}

async fn schedules(s: &pterodactyl_api::client::Server<'_>) {
    assert!(s.list_schedules().await.unwrap().is_empty());
    let made = s
        .create_schedule(
            ScheduleParams::new("nightly")
                .set_active()
                .with_hour(3)
                .with_minute(30),
        )
        .await
        .unwrap();
    assert_eq!(made.name, "nightly");
    assert!(made.is_active && !made.is_processing);
    assert_eq!(made.cron.hour, CronField::from(3));
    assert_eq!(made.cron.minute, CronField::from(30));
    assert_eq!(made.cron.day_of_month, CronPart::all().into());
    assert!(made.next_run_at.is_some() && made.last_run_at.is_none());
    assert!(made.relationships.tasks.is_empty());
    let got = s.get_schedule(made.id).await.unwrap();
    assert_eq!((got.id, got.cron.clone()), (made.id, made.cron.clone()));

    let weekdays = CronPart::Range {
        min: 1,
        max: 5,
        step: 1,
    };
    let updated = s
        .update_schedule(
            made.id,
            ScheduleParams::new("weekdays")
                .with_day_of_week(weekdays)
                .with_month(CronPart::All { step: 2 })
                .with_hour(4)
                .with_minute(0),
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "weekdays");
    assert!(
        !updated.is_active,
        "is_active omitted → false, as upstream reads it"
    );
    assert_eq!(updated.cron.day_of_week, weekdays.into());
    assert_eq!(updated.cron.month, CronPart::All { step: 2 }.into());

    let cmd = s
        .create_task(
            made.id,
            TaskParams::new(ScheduleAction::Command("say hi".into())),
        )
        .await
        .unwrap();
    assert_eq!(cmd.action, ScheduleAction::Command("say hi".into()));
    assert_eq!((cmd.sequence_id, cmd.time_offset), (1, 0));
    assert!(!cmd.is_queued);
    let power = s
        .create_task(
            made.id,
            TaskParams::new(ScheduleAction::Power(PowerSignal::Restart)).with_time_offset(10),
        )
        .await
        .unwrap();
    assert_eq!(power.action, ScheduleAction::Power(PowerSignal::Restart));
    assert_eq!((power.sequence_id, power.time_offset), (2, 10));
    let backup = s
        .create_task(
            made.id,
            ScheduleAction::Backup {
                ignored_files: vec!["*.log".into(), "cache/".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(
        backup.action,
        ScheduleAction::Backup {
            ignored_files: vec!["*.log".into(), "cache/".into()]
        }
    );
    let changed = s
        .update_task(
            made.id,
            cmd.id,
            TaskParams::new(ScheduleAction::Command("say bye".into())).with_time_offset(5),
        )
        .await
        .unwrap();
    assert_eq!(changed.id, cmd.id);
    assert_eq!(changed.action, ScheduleAction::Command("say bye".into()));
    assert_eq!(changed.time_offset, 5);
    let tasks = s.get_schedule(made.id).await.unwrap().relationships.tasks;
    assert_eq!(
        tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![cmd.id, power.id, backup.id]
    );
    s.delete_task(made.id, power.id).await.unwrap();
    let tasks = s.get_schedule(made.id).await.unwrap().relationships.tasks;
    assert_eq!(
        tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![cmd.id, backup.id]
    );
    assert_eq!(s.list_schedules().await.unwrap().len(), 1);
    s.delete_schedule(made.id).await.unwrap();
    assert!(s.list_schedules().await.unwrap().is_empty());
    match s.get_schedule(made.id).await {
        Err(Error::ResourceNotFound) => {}
        other => panic!("deleted schedule: {other:?}"),
    }
}

async fn subusers(
    st: &Stack,
    client: &Client,
    s: &pterodactyl_api::client::Server<'_>,
    server: &ferrodactyl_compat::Server,
    friend_uuid: &str,
) {
    assert!(s.list_users().await.unwrap().is_empty());
    let added = s
        .add_user(
            "friend@example.com",
            vec!["control.console".into(), "file.read".into()],
        )
        .await
        .unwrap();
    assert_eq!(added.uuid.to_string(), friend_uuid);
    assert_eq!(
        (added.username.as_str(), added.email.as_str()),
        ("friend", "friend@example.com")
    );
    assert!(!added.two_factor_enabled);
    assert!(
        added.image.starts_with("https://gravatar.com/avatar/"),
        "{}",
        added.image
    );
    // Upstream always grants websocket.connect with the rest.
    let perms = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        perms(&added.permissions),
        set(&["control.console", "file.read", "websocket.connect"])
    );
    let got = s.get_user(added.uuid).await.unwrap();
    assert_eq!(perms(&got.permissions), perms(&added.permissions));
    let changed = s
        .set_user_permissions(added.uuid, vec!["control.start".into()])
        .await
        .unwrap();
    assert_eq!(
        perms(&changed.permissions),
        set(&["control.start", "websocket.connect"])
    );
    assert_eq!(s.list_users().await.unwrap().len(), 1);

    // The friend sees the server as a subuser and holds only what was granted.
    let friend_id: i64 = st
        .sql(&format!(
            "SELECT id FROM users WHERE uuid = '{friend_uuid}'"
        ))
        .unwrap()
        .parse()
        .unwrap();
    let friend = ClientBuilder::new(&st.panel_url, st.client_key(friend_id).unwrap()).build();
    let theirs = friend.list_servers().await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert!(!theirs[0].server_owner);
    assert_eq!(theirs[0].identifier, server.identifier);
    let fs = friend.get_server(&server.identifier);
    match fs.list_files("/").await {
        Err(Error::PermissionError) => {}
        other => panic!("file.read was taken away: {other:?}"),
    }
    match fs.list_users().await {
        Err(Error::PermissionError) => {}
        other => panic!("subuser listing without user.read: {other:?}"),
    }

    s.delete_user(added.uuid).await.unwrap();
    assert!(s.list_users().await.unwrap().is_empty());
    assert!(friend.list_servers().await.unwrap().is_empty());
    match fs.get_details().await {
        Err(Error::ResourceNotFound) => {}
        other => panic!("a removed subuser's server: {other:?}"),
    }
    let _ = client;
}
