//! The server websocket (reference §3): Origin check, JWT auth inside the socket,
//! token gating of every message in both directions, permission filters, the expiry
//! watcher, and `null`-tolerant inbound args.

use super::{ApiError, MSG_NO_SERVER};
use crate::events::{Event, Published, State as ServerState};
use crate::jwt::{self, TokenError};
use crate::server::{PowerAction, Server, ServerError};
use crate::App;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use openapi::wings::{events, TokenClaims, WebsocketMessage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, mpsc};

const GENERIC: &str = "an unexpected error was encountered while handling this request";

pub async fn handler(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ip = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(server) = app.manager.get(&id) else {
        return ApiError::new(StatusCode::NOT_FOUND, MSG_NO_SERVER).into_response();
    };
    let cfg = app.config();
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = origin == cfg.remote
        || cfg
            .allowed_origins
            .iter()
            .any(|o| o.as_str() == "*" || o == origin);
    if !allowed {
        return (StatusCode::FORBIDDEN, "Forbidden").into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return ApiError::new(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    upgrade.on_upgrade(move |socket| run(app, server, socket, ip))
}

enum Outbound {
    Msg(WebsocketMessage),
    /// Start forwarding the server's bus (after the first successful auth).
    Subscribe,
    Close(u16, &'static str),
}

struct Conn {
    app: Arc<App>,
    server: Arc<Server>,
    token: RwLock<Option<TokenClaims>>,
    out: mpsc::Sender<Outbound>,
    started: AtomicBool,
    closed: tokio_util::sync::CancellationToken,
    ip: Option<std::net::IpAddr>,
}

async fn run(app: Arc<App>, server: Arc<Server>, socket: WebSocket, ip: Option<std::net::IpAddr>) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Outbound>(512);
    let conn = Arc::new(Conn {
        app,
        server: server.clone(),
        token: RwLock::new(None),
        out: tx,
        started: AtomicBool::new(false),
        closed: tokio_util::sync::CancellationToken::new(),
        ip,
    });
    let writer = tokio::spawn(conn.clone().write(sink, rx));
    let cancel = server.cancelled();
    let mut deleted = false;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = conn.out.send(Outbound::Close(1001, "server deleted")).await;
                deleted = true;
                break;
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let text = match msg {
                    Message::Text(t) => t.as_str().to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(parsed) = serde_json::from_str::<WebsocketMessage>(&text) else { continue };
                let c = conn.clone();
                // Upstream handles each inbound message on its own goroutine.
                tasks.spawn(async move { c.handle(parsed).await });
            }
        }
    }
    tasks.abort_all();
    conn.started.store(false, Ordering::SeqCst);
    conn.closed.cancel();
    if deleted {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    } else {
        writer.abort();
    }
}

impl Conn {
    fn activity(&self, event: &str, metadata: serde_json::Value) {
        let user = self.claims().and_then(|c| c.user_uuid);
        self.app
            .activity
            .record(&self.server.uuid, event, user, self.ip, metadata);
    }

    fn claims(&self) -> Option<TokenClaims> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn can(&self, perm: &str) -> bool {
        self.claims().is_some_and(|c| jwt::has_permission(&c, perm))
    }

    /// Upstream's `TokenValid`.
    fn token_valid(&self) -> Result<(), &'static str> {
        self.token_valid_for(
            self.token
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref(),
        )
    }

    /// `TokenValid` of the given claims (read in place, not cloned).
    fn token_valid_for(&self, c: Option<&TokenClaims>) -> Result<(), &'static str> {
        let Some(c) = c else {
            return Err(jwt::ERR_NOT_PRESENT);
        };
        if jwt::check_exp(c).is_err() {
            return Err(jwt::ERR_EXPIRED);
        }
        if self.app.jwt.is_denylisted(c) {
            return Err(jwt::ERR_DENYLIST);
        }
        if !jwt::has_permission(c, "websocket.connect") {
            return Err(jwt::ERR_NO_CONNECT);
        }
        if c.server_uuid.as_deref() != Some(self.server.uuid.as_str()) {
            return Err(jwt::ERR_UUID_MISMATCH);
        }
        Ok(())
    }

    async fn raw(&self, m: WebsocketMessage) {
        let _ = self.out.send(Outbound::Msg(m)).await;
    }

    /// Gated send: a `jwt error` replaces the message when the token is not valid.
    async fn send(&self, m: WebsocketMessage) {
        if let Err(e) = self.token_valid() {
            self.raw(WebsocketMessage::new(events::JWT_ERROR, vec![e.into()]))
                .await;
            return;
        }
        self.raw(m).await;
    }

    fn error_text(msg: &str) -> String {
        format!("Error Event [{}]: {}", uuid::Uuid::new_v4(), msg)
    }

    /// Upstream's `SendErrorJson`.
    async fn send_error(&self, err: ErrorKind) {
        let (event, text) = match err {
            ErrorKind::Jwt(t) => (events::JWT_ERROR, t),
            ErrorKind::Other(t) => {
                if self.can("admin.websocket.errors") {
                    (events::DAEMON_ERROR, t)
                } else {
                    tracing::warn!(server = %self.server.uuid, error = %t, "websocket event failed");
                    (events::DAEMON_ERROR, GENERIC.to_string())
                }
            }
        };
        self.raw(WebsocketMessage::new(event, vec![Self::error_text(&text)]))
            .await;
    }

    async fn handle(self: Arc<Self>, m: WebsocketMessage) {
        if m.event != events::AUTH {
            if let Err(e) = self.token_valid() {
                self.raw(WebsocketMessage::new(events::JWT_ERROR, vec![e.into()]))
                    .await;
                return;
            }
        }
        let arg = m.args.concat();
        match m.event.as_str() {
            events::AUTH => self.auth(&arg).await,
            events::SET_STATE => {
                let Some(action) = PowerAction::parse(&arg) else {
                    self.send_error(ErrorKind::Other(format!("invalid power action \"{arg}\"")))
                        .await;
                    return;
                };
                let perm = match action {
                    PowerAction::Start => "control.start",
                    PowerAction::Stop | PowerAction::Kill => "control.stop",
                    PowerAction::Restart => "control.restart",
                };
                if !self.can(perm) {
                    return;
                }
                match self.server.handle_power(action, None).await {
                    Ok(()) => self.activity(
                        &format!("server:power.{}", action.as_str()),
                        serde_json::json!({}),
                    ),
                    Err(ServerError::Busy) => {
                        let text = Self::error_text(&ServerError::Busy.to_string());
                        self.send(WebsocketMessage::new(events::DAEMON_ERROR, vec![text]))
                            .await;
                    }
                    Err(e) => self.send_error(ErrorKind::Other(e.to_string())).await,
                }
            }
            events::SEND_COMMAND => {
                if !self.can("control.console") {
                    return;
                }
                match self.server.state() {
                    ServerState::Offline => return,
                    ServerState::Starting if !self.server.is_attached() => return,
                    _ => {}
                }
                if let Err(e) = self.server.send_command(&arg).await {
                    self.send_error(ErrorKind::Other(e.to_string())).await;
                    return;
                }
                self.activity(
                    "server:console.command",
                    serde_json::json!({"command": arg}),
                );
            }
            events::SEND_LOGS => {
                if !self.server.is_running().await {
                    return;
                }
                let n = self.app.config().system.websocket_log_count;
                match self.server.read_log(n).await {
                    Ok(lines) => {
                        for l in lines {
                            self.send(WebsocketMessage::new(events::CONSOLE_OUTPUT, vec![l]))
                                .await;
                        }
                    }
                    Err(e) => self.send_error(ErrorKind::Other(e.to_string())).await,
                }
            }
            events::SEND_STATS => {
                let json = serde_json::to_string(&self.server.proc_usage()).unwrap_or_default();
                self.send(WebsocketMessage::new(events::STATS, vec![json]))
                    .await;
            }
            _ => {}
        }
    }

    async fn auth(self: &Arc<Self>, token: &str) {
        let secret = self.app.config().token.clone();
        let claims = match jwt::verify(token, &secret) {
            Ok(c) => c,
            Err(TokenError::Jwt(e)) => return self.send_error(ErrorKind::Jwt(e.into())).await,
            Err(TokenError::Invalid(e)) => return self.send_error(ErrorKind::Other(e)).await,
        };
        if self.app.jwt.is_denylisted(&claims) {
            return self
                .send_error(ErrorKind::Jwt(jwt::ERR_DENYLIST.into()))
                .await;
        }
        if !jwt::has_permission(&claims, "websocket.connect") {
            return self
                .send_error(ErrorKind::Jwt(jwt::ERR_NO_CONNECT.into()))
                .await;
        }
        let first = self
            .token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none();
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Some(claims);
        self.raw(WebsocketMessage::new(events::AUTH_SUCCESS, vec![]))
            .await;
        if !first || self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.out.send(Outbound::Subscribe).await;
        let me = self.clone();
        tokio::spawn(async move { me.watch_expiry().await });
        let state = self.server.state();
        self.send(WebsocketMessage::new(
            events::STATUS,
            vec![state.as_str().into()],
        ))
        .await;
        if state == ServerState::Offline
            && !self.server.is_installing()
            && !self.server.is_transferring()
        {
            self.server.disk_usage(false).await;
            let json = serde_json::to_string(&self.server.proc_usage()).unwrap_or_default();
            self.send(WebsocketMessage::new(events::STATS, vec![json]))
                .await;
        }
    }

    /// The socket's writer: replies and notices from `rx`, and, once subscribed,
    /// the server's bus read directly (no task in between: one wake-up per bus
    /// message). Whatever is ready goes out in one flush.
    async fn write(
        self: Arc<Self>,
        mut sink: futures::stream::SplitSink<WebSocket, Message>,
        mut rx: mpsc::Receiver<Outbound>,
    ) {
        let mut bus: Option<broadcast::Receiver<Arc<Published>>> = None;
        let mut batch = Vec::with_capacity(64);
        loop {
            let first = tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, 64) => {
                    if n == 0 {
                        return;
                    }
                    None
                }
                r = next_bus(&mut bus) => Some(r),
            };
            for o in batch.drain(..) {
                let res = match o {
                    Outbound::Msg(m) => feed_msg(&mut sink, &m).await,
                    Outbound::Subscribe => {
                        bus.get_or_insert_with(|| self.server.subscribe());
                        continue;
                    }
                    Outbound::Close(code, reason) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                };
                if res.is_err() {
                    return;
                }
            }
            // The bus message that woke us, then whatever else is already there.
            let mut received = first;
            let mut taken = 0;
            loop {
                let published = match received.take() {
                    Some(Ok(p)) => p,
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                        // Console output never blocks the bus: a socket too slow
                        // to keep up loses the lines it missed.
                        received = try_next_bus(&mut bus);
                        continue;
                    }
                    Some(Err(broadcast::error::RecvError::Closed)) => {
                        bus = None;
                        break;
                    }
                    None => break,
                };
                if self.started.load(Ordering::SeqCst) {
                    let res = match self.bus_verdict(&published.event) {
                        BusVerdict::Skip => Ok(()),
                        BusVerdict::Refuse(e) => {
                            let m = WebsocketMessage::new(events::JWT_ERROR, vec![e.into()]);
                            feed_msg(&mut sink, &m).await
                        }
                        BusVerdict::Send => {
                            let mut res = Ok(());
                            for text in published.texts() {
                                res = sink.feed(Message::Text(text.clone())).await;
                                if res.is_err() {
                                    break;
                                }
                            }
                            res
                        }
                    };
                    if res.is_err() {
                        return;
                    }
                }
                taken += 1;
                if taken == 64 {
                    break;
                }
                received = try_next_bus(&mut bus);
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    }

    /// One look at the token per bus event, in place: a permission-gated event is
    /// skipped for a valid token without that permission, and an invalid token gets
    /// a `jwt error` instead of the event.
    fn bus_verdict(&self, ev: &Event) -> BusVerdict {
        let token = self.token.read().unwrap_or_else(|e| e.into_inner());
        match self.token_valid_for(token.as_ref()) {
            Err(e) => BusVerdict::Refuse(e),
            Ok(()) => match (ev.permission(), token.as_ref()) {
                (Some(perm), Some(c)) if !jwt::has_permission(c, perm) => BusVerdict::Skip,
                _ => BusVerdict::Send,
            },
        }
    }

    async fn watch_expiry(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.app.ws_expiry_tick);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = self.closed.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.started.load(Ordering::SeqCst) || self.out.is_closed() {
                return;
            }
            let Some(c) = self.claims() else { continue };
            let left = c.exp.unwrap_or(0) - jwt::now_secs();
            if left <= 0 {
                self.send(WebsocketMessage::new(events::TOKEN_EXPIRED, vec![]))
                    .await;
            } else if left <= 60 {
                self.send(WebsocketMessage::new(events::TOKEN_EXPIRING, vec![]))
                    .await;
            }
        }
    }
}

/// Queues one message on the socket (sent at the next flush).
async fn feed_msg(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    m: &WebsocketMessage,
) -> Result<(), axum::Error> {
    match serde_json::to_string(m) {
        Ok(text) => sink.feed(Message::Text(text.into())).await,
        // A message of strings always serialises; nothing to send otherwise.
        Err(_) => Ok(()),
    }
}

enum BusVerdict {
    Send,
    Skip,
    Refuse(&'static str),
}

/// The next bus message, or never while not subscribed.
async fn next_bus(
    bus: &mut Option<broadcast::Receiver<Arc<Published>>>,
) -> Result<Arc<Published>, broadcast::error::RecvError> {
    match bus {
        Some(b) => b.recv().await,
        None => std::future::pending().await,
    }
}

/// The next bus message if one is already there.
fn try_next_bus(
    bus: &mut Option<broadcast::Receiver<Arc<Published>>>,
) -> Option<Result<Arc<Published>, broadcast::error::RecvError>> {
    use broadcast::error::{RecvError, TryRecvError};
    match bus.as_mut()?.try_recv() {
        Ok(p) => Some(Ok(p)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
    }
}

enum ErrorKind {
    Jwt(String),
    Other(String),
}
