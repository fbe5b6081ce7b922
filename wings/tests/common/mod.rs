//! Shared test harness: the local busybox image, a node directory, wings booted
//! in-process on a loopback port, JWT minting, websocket clients, cleanup.
//!
//! Used by the wings benchmarks (`wings/benches/*.rs` include it by path), which
//! measure wings alone: `FakePanel` below serves them the Remote API JSON wings
//! calls, with upstream's shapes. The daemon's tests run against the real panel-api
//! in the `ferrodactyl-tests` crate (`tests/tests/daemon_*.rs`).
#![allow(dead_code, clippy::field_reassign_with_default)]

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use openapi::remote::{InstallationScript, ServerConfigurationResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wings::config::Config;
use wings::App;

pub const IMAGE: &str = "ferrodactyl/test-base";
pub const TOKEN_ID: &str = "abcdefghijklmnop";
pub const TEST_LABEL: &str = "ferrodactyl.test";

static IMAGE_ONCE: Once = Once::new();

/// Builds the busybox image (idempotent). Panics when Docker is unusable: these
/// tests must fail loudly, never skip.
pub fn ensure_image() {
    IMAGE_ONCE.call_once(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
        let out = std::process::Command::new("sh")
            .arg(&script)
            .output()
            .expect("could not run scripts/test-image.sh");
        assert!(
            out.status.success(),
            "scripts/test-image.sh failed (is Docker running?):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub fn random_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

// ------------------------------------------------------------------------ fake panel

#[derive(Default)]
pub struct PanelState {
    pub servers: Mutex<Vec<ServerConfigurationResponse>>,
    pub scripts: Mutex<HashMap<String, InstallationScript>>,
    pub install_reports: Mutex<Vec<(String, Value)>>,
    pub resets: Mutex<u32>,
    pub pages_requested: Mutex<Vec<String>>,
    pub expected_auth: Mutex<String>,
    pub bad_auth: Mutex<u32>,
    pub activity: Mutex<Vec<Value>>,
}

pub struct FakePanel {
    pub url: String,
    pub state: Arc<PanelState>,
}

fn authorised(st: &PanelState, h: &HeaderMap) -> bool {
    let ok = h.get("authorization").and_then(|v| v.to_str().ok())
        == Some(st.expected_auth.lock().unwrap().as_str())
        && h.get("accept").and_then(|v| v.to_str().ok())
            == Some("application/vnd.pterodactyl.v1+json");
    if !ok {
        *st.bad_auth.lock().unwrap() += 1;
    }
    ok
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"errors":[{"code":"HttpException","status":"403","detail":"no"}]})),
    )
        .into_response()
}

async fn list(
    State(st): State<Arc<PanelState>>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorised(&st, &h) {
        return forbidden();
    }
    let page_raw = q.get("page").cloned().unwrap_or_default();
    st.pages_requested.lock().unwrap().push(page_raw.clone());
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(50);
    let page: usize = page_raw.parse::<usize>().unwrap_or(1).max(1);
    let all = st.servers.lock().unwrap().clone();
    let last_page = all.len().div_ceil(per_page).max(1);
    let data: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|c| json!({"uuid": c.settings.uuid, "settings": c.settings, "process_configuration": c.process_configuration}))
        .collect();
    Json(json!({
        "data": data,
        "links": {"first": "x", "last": "y", "prev": null, "next": null},
        "meta": {"current_page": page, "from": null, "last_page": last_page, "links": [],
                 "path": "p", "per_page": per_page, "to": null, "total": all.len()}
    }))
    .into_response()
}

async fn one(
    State(st): State<Arc<PanelState>>,
    h: HeaderMap,
    Path(uuid): Path<String>,
) -> Response {
    if !authorised(&st, &h) {
        return forbidden();
    }
    let all = st.servers.lock().unwrap().clone();
    match all.into_iter().find(|c| c.settings.uuid == uuid) {
        Some(c) => Json(c).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errors":[{"code":"NotFoundHttpException","status":"404","detail":"not found"}]})),
        )
            .into_response(),
    }
}

async fn script(
    State(st): State<Arc<PanelState>>,
    h: HeaderMap,
    Path(uuid): Path<String>,
) -> Response {
    if !authorised(&st, &h) {
        return forbidden();
    }
    match st.scripts.lock().unwrap().get(&uuid).cloned() {
        Some(s) => Json(s).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn install_report(
    State(st): State<Arc<PanelState>>,
    h: HeaderMap,
    Path(uuid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if !authorised(&st, &h) {
        return forbidden();
    }
    st.install_reports.lock().unwrap().push((uuid, body));
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(st): State<Arc<PanelState>>, h: HeaderMap, body: String) -> Response {
    if !authorised(&st, &h) || body != "null" {
        return forbidden();
    }
    *st.resets.lock().unwrap() += 1;
    StatusCode::NO_CONTENT.into_response()
}

async fn activity(
    State(st): State<Arc<PanelState>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorised(&st, &h) {
        return forbidden();
    }
    if let Some(items) = body["data"].as_array() {
        st.activity.lock().unwrap().extend(items.iter().cloned());
    }
    StatusCode::OK.into_response()
}

/// SFTP logins (benchmarks only): any credentials get `*` on the first server.
async fn sftp_auth(State(st): State<Arc<PanelState>>) -> Response {
    let servers = st.servers.lock().unwrap();
    match servers.first() {
        Some(c) => Json(json!({"user": uuid::Uuid::new_v4().to_string(), "server": c.settings.uuid, "permissions": ["*"]}))
            .into_response(),
        None => StatusCode::FORBIDDEN.into_response(),
    }
}

impl FakePanel {
    pub async fn start(token_id: &str, token: &str) -> FakePanel {
        let state = Arc::new(PanelState::default());
        *state.expected_auth.lock().unwrap() = format!("Bearer {token_id}.{token}");
        let router = Router::new()
            .route("/api/remote/servers", get(list))
            .route("/api/remote/servers/reset", post(reset))
            .route("/api/remote/activity", post(activity))
            .route("/api/remote/servers/{uuid}", get(one))
            .route(
                "/api/remote/servers/{uuid}/install",
                get(script).post(install_report),
            )
            .route("/api/remote/sftp/auth", post(sftp_auth))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakePanel {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn add_server(&self, c: ServerConfigurationResponse) {
        self.state.servers.lock().unwrap().push(c);
    }

    pub fn set_script(&self, uuid: &str, script: &str) {
        self.state.scripts.lock().unwrap().insert(
            uuid.to_string(),
            InstallationScript {
                container_image: IMAGE.into(),
                entrypoint: "sh".into(),
                script: Some(script.into()),
            },
        );
    }

    pub fn update_server(&self, uuid: &str, f: impl FnOnce(&mut ServerConfigurationResponse)) {
        let mut all = self.state.servers.lock().unwrap();
        if let Some(c) = all.iter_mut().find(|c| c.settings.uuid == uuid) {
            f(c);
        }
    }
}

/// A server definition as the Panel would send it. `startup` runs in the busybox
/// image through its yolks-style entrypoint.
pub fn server_config(
    test: &str,
    startup: &str,
    done: &[&str],
    stop: Value,
) -> ServerConfigurationResponse {
    let uuid = uuid::Uuid::new_v4().to_string();
    serde_json::from_value(json!({
        "settings": {
            "uuid": uuid,
            "meta": {"name": "test", "description": ""},
            "suspended": false,
            "environment": {"GREETING": "hello", "STARTUP": "ignored", "P_SERVER_ALLOCATION_LIMIT": 0},
            "invocation": startup,
            "skip_egg_scripts": false,
            "build": {"memory_limit": 256, "swap": 0, "io_weight": 500, "cpu_limit": 50, "threads": null, "disk_space": 100, "oom_disabled": false},
            "container": {"image": IMAGE, "oom_disabled": true, "requires_rebuild": false},
            "allocations": {"force_outgoing_ip": false, "default": {"ip": "127.0.0.1", "port": free_port()}, "mappings": {}},
            "mounts": [],
            "egg": {"id": "egg", "file_denylist": []},
            "labels": {TEST_LABEL: test}
        },
        "process_configuration": {
            "startup": {"done": done, "user_interaction": [], "strip_ansi": false},
            "stop": stop,
            "configs": []
        }
    }))
    .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------------------ node

pub struct Node {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub panel: FakePanel,
    pub app: Arc<App>,
    pub addr: SocketAddr,
    pub test: String,
    pub http: reqwest::Client,
}

pub fn node_config(dir: &std::path::Path, panel_url: &str, token: &str) -> Config {
    let mut cfg = Config::default();
    cfg.uuid = uuid::Uuid::new_v4().to_string();
    cfg.token_id = TOKEN_ID.into();
    cfg.token = token.into();
    cfg.remote = panel_url.into();
    cfg.api.host = "127.0.0.1".into();
    let root = dir.join("root");
    cfg.system.root_directory = root.to_string_lossy().into();
    cfg.system.data = root.join("volumes").to_string_lossy().into();
    cfg.system.archive_directory = root.join("archives").to_string_lossy().into();
    cfg.system.backup_directory = root.join("backups").to_string_lossy().into();
    cfg.system.log_directory = dir.join("log").to_string_lossy().into();
    cfg.system.tmp_directory = dir.join("tmp").to_string_lossy().into();
    cfg.system.username = "nobody".into();
    cfg
}

impl Node {
    /// Boots wings in-process against a fresh fake panel; `setup` adds servers first.
    pub async fn start(
        test: &str,
        setup: impl FnOnce(&FakePanel),
        tweak: impl FnOnce(&mut Config),
    ) -> Node {
        ensure_image();
        let token = random_token();
        let panel = FakePanel::start(TOKEN_ID, &token).await;
        setup(&panel);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = node_config(dir.path(), &panel.url, &token);
        tweak(&mut cfg);
        Self::boot_with(test, dir, token, panel, cfg).await
    }

    pub async fn boot_with(
        test: &str,
        dir: tempfile::TempDir,
        token: String,
        panel: FakePanel,
        cfg: Config,
    ) -> Node {
        let mut opts = wings::BootOptions::new(dir.path().join("config.yml"));
        opts.ws_expiry_tick = Duration::from_millis(500);
        let app = wings::boot(cfg, opts).await.expect("wings boots");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(wings::serve(app.clone(), listener));
        Node {
            dir,
            token,
            panel,
            app,
            addr,
            test: test.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn authed(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json")
    }

    /// Removes every container this test created.
    pub async fn cleanup(&self) {
        cleanup_label(&self.test).await;
    }

    pub fn jwt(&self, server: &str, perms: &[&str], iat_offset: i64, exp_offset: i64) -> String {
        mint(&self.token, server, perms, iat_offset, exp_offset, "jti-1")
    }

    /// A [`RawWs`] on the server's websocket, with the panel's Origin.
    pub async fn raw_ws(&self, server: &str) -> RawWs {
        RawWs::connect(
            self.addr,
            &format!("/api/servers/{server}/ws"),
            &self.panel.url,
        )
        .await
    }

    pub async fn ws(&self, server: &str) -> Ws {
        Ws::connect(
            &self.url(&format!("/api/servers/{server}/ws")),
            Some(&self.panel.url),
        )
        .await
        .expect("ws upgrade")
    }
}

impl Drop for Node {
    /// Containers are removed even when a test fails half-way.
    fn drop(&mut self) {
        remove_labelled_sync(&self.test);
    }
}

pub fn remove_labelled_sync(test: &str) {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={TEST_LABEL}={test}"),
        ])
        .output();
    if let Ok(out) = out {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
    }
}

pub async fn cleanup_label(test: &str) {
    let env = wings::environment::docker::DockerEnvironment::connect()
        .await
        .unwrap();
    env.remove_labelled(TEST_LABEL, test).await.unwrap();
}

/// Signs a websocket JWT the way the Panel does (integer dates, array `aud`).
pub fn mint(
    secret: &str,
    server: &str,
    perms: &[&str],
    iat_offset: i64,
    exp_offset: i64,
    jti: &str,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "http://panel.test", "aud": ["http://node.test:8080"], "jti": jti,
        "iat": now + iat_offset, "nbf": now - 300, "exp": now + exp_offset,
        "unique_id": "abcdefghijklmnop", "user_uuid": "u-1", "user_id": 1,
        "server_uuid": server, "permissions": perms,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

// ------------------------------------------------------------------------ websocket client

pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn connect(
        http_url: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = http_url.replacen("http://", "ws://", 1);
        let mut req = url.into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws { stream })
    }

    pub async fn send(&mut self, event: &str, args: Value) {
        let msg = json!({"event": event, "args": args}).to_string();
        self.stream.send(Message::Text(msg)).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.stream.send(Message::Text(text.into())).await.unwrap();
    }

    /// Next JSON event within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = tokio::time::timeout(left, self.stream.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                let args = v
                    .get("args")
                    .and_then(|a| a.as_array())
                    .map(|a| {
                        a.iter()
                            .map(|x| x.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                return Some((v["event"].as_str().unwrap().to_string(), args));
            }
        }
    }

    /// Counts the `console output` messages received until `deadline` (by their
    /// JSON prefix, without parsing them); one timer for the whole count.
    #[allow(dead_code)]
    pub async fn count_console_until(&mut self, deadline: Instant) -> u64 {
        const PREFIX: &str = r#"{"event":"console output""#;
        let mut n = 0u64;
        let _ = tokio::time::timeout_at(deadline.into(), async {
            while let Some(Ok(msg)) = self.stream.next().await {
                if let Message::Text(t) = msg {
                    n += t.starts_with(PREFIX) as u64;
                }
            }
        })
        .await;
        n
    }

    /// Waits for an event matching `pred`, returning everything seen up to it.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str, &[String]) -> bool,
    ) -> Result<(String, Vec<String>), Vec<(String, Vec<String>)>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(seen);
            };
            match self.next(left).await {
                Some((e, a)) => {
                    if pred(&e, &a) {
                        return Ok((e, a));
                    }
                    seen.push((e, a));
                }
                None => return Err(seen),
            }
        }
    }
}

// ------------------------------------------------------------------------ raw websocket client

/// The fan-out benchmark's websocket client: a normal RFC 6455 client handshake
/// (random key, `Sec-WebSocket-Accept` checked), masked text frames out, and frames
/// parsed off the wire by hand on the way in. It exists so that 100 measuring
/// clients, which share the machine's cores with wings and dockerd, cost a frame
/// header parse and a prefix compare per message instead of a websocket library's
/// full message handling; every frame is still read and parsed from the socket.
pub struct RawWs {
    sock: tokio::net::TcpStream,
    buf: Vec<u8>,
}

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

impl RawWs {
    pub async fn connect(addr: SocketAddr, path: &str, origin: &str) -> RawWs {
        use base64::Engine as _;
        use sha1::Digest as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.encode(uuid::Uuid::new_v4().as_bytes());
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nOrigin: {origin}\r\n\r\n"
        );
        sock.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::with_capacity(256 * 1024);
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        let want = b64.encode(sha1::Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
        assert!(
            head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
                })
            }),
            "bad Sec-WebSocket-Accept: {head}"
        );
        buf.drain(..head_end);
        RawWs { sock, buf }
    }

    /// A client for a stream already past the handshake (the bench's loopback
    /// ceiling writes frames to plain TCP sockets).
    pub fn over(sock: tokio::net::TcpStream) -> RawWs {
        sock.set_nodelay(true).unwrap();
        RawWs {
            sock,
            buf: Vec::with_capacity(256 * 1024),
        }
    }

    /// One masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.sock.write_all(&frame).await.unwrap();
    }

    pub async fn send(&mut self, event: &str, args: Value) {
        self.send_text(&json!({"event": event, "args": args}).to_string())
            .await;
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        self.buf.reserve(64 * 1024);
        matches!(self.sock.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Header of the frame at the start of `b`: (first byte, payload length,
    /// header length), or None until the whole header is there. Server frames are
    /// never masked.
    fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
        let (&b0, &b1) = (b.first()?, b.get(1)?);
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        Some(match b1 & 0x7f {
            126 => (
                b0,
                u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
                4,
            ),
            127 => (
                b0,
                u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            n => (b0, n as usize, 2),
        })
    }

    /// The next whole frame: (first byte, payload).
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((b0, len, hlen)) = Self::header(&self.buf) {
                if self.buf.len() >= hlen + len {
                    let payload = self.buf[hlen..hlen + len].to_vec();
                    self.buf.drain(..hlen + len);
                    return Some((b0, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Waits for the event `name` (text frames parsed as JSON).
    pub async fn wait_for(&mut self, timeout: Duration, name: &str) -> bool {
        tokio::time::timeout(timeout, async {
            while let Some((b0, payload)) = self.next_frame().await {
                if b0 == 0x81 {
                    let v: Value = serde_json::from_slice(&payload).unwrap();
                    if v["event"] == name {
                        return true;
                    }
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    /// Reads the socket until `deadline` and counts the whole, unfragmented text
    /// frames whose payload starts with `{"event":"console output"` among those
    /// read from `from` on (what comes before is read and not counted, as a client
    /// that has been reading all along would). Every frame header is parsed;
    /// payloads are skipped once their prefix is checked.
    pub async fn count_console_between(&mut self, from: Instant, deadline: Instant) -> u64 {
        const PREFIX: &[u8] = br#"{"event":"console output""#;
        let mut n = 0u64;
        let mut counting = Instant::now() >= from;
        // Payload bytes of the current frame still to be skipped.
        let mut skip = 0usize;
        let _ = tokio::time::timeout_at(deadline.into(), async {
            loop {
                let mut pos = 0;
                loop {
                    let take = skip.min(self.buf.len() - pos);
                    pos += take;
                    skip -= take;
                    if skip > 0 {
                        break;
                    }
                    let Some((b0, len, hlen)) = Self::header(&self.buf[pos..]) else {
                        break;
                    };
                    let rest = &self.buf[pos + hlen..];
                    if rest.len() < len.min(PREFIX.len()) {
                        break;
                    }
                    n += (counting && b0 == 0x81 && rest[..len.min(rest.len())].starts_with(PREFIX))
                        as u64;
                    let have = len.min(rest.len());
                    pos += hlen + have;
                    skip = len - have;
                }
                self.buf.drain(..pos);
                if !self.fill().await {
                    return;
                }
                counting = counting || Instant::now() >= from;
            }
        })
        .await;
        n
    }
}

/// Polls `f` until it returns true.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}
