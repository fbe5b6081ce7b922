//! The server websocket (reference §3): Origin check, JWT auth inside the socket,
//! token gating of every message in both directions, permission filters, the expiry
//! watcher, and `null`-tolerant inbound args.
//!
//! The RFC 6455 side is ours ([`wire`]): the handshake is answered here and the
//! upgraded connection is split into a frame reader (this module's `run`) and a
//! writer task that writes each bus message's pre-framed bytes, shared by every
//! socket, with one vectored write for whatever is ready.
//!
//! What one socket can make wings hold is bounded whatever the peer does: its
//! replies wait in a queue of 512, its inbound messages are handled by at most
//! [`MAX_HANDLERS`] tasks at once (past that the reader stops reading and TCP
//! holds the peer back), pongs that do not fit in the queue are dropped, and
//! console output it does not read is dropped by the bus (the console reader
//! waits at most 10 ms per read for the slowest socket, and not at all for one
//! that reads nothing).

pub mod wire;

use super::{ApiError, MSG_NO_SERVER};
use crate::events::{message_frame, Event, Published, State as ServerState};
use crate::jwt::{self, TokenError};
use crate::server::bus::BusReceiver;
use crate::server::{PowerAction, Server, ServerError};
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use openapi::wings::{events, TokenClaims, WebsocketMessage};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use wire::{Inbound, ReadError};

const GENERIC: &str = "an unexpected error was encountered while handling this request";

/// Largest inbound message. Upstream sets no read limit (gorilla's default) and
/// axum's tungstenite allowed 64 MiB; what clients send is an `auth` token, a
/// console command or a power action, a few KiB at most, so 1 MiB refuses only
/// abuse (close 1009) while bounding what one connection can make wings buffer.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Inbound messages one socket may have in hand at once. Upstream starts a
/// goroutine per message with no limit; a peer that stops reading its replies
/// (or floods messages) would then hold a task per message, each waiting for
/// room in the reply queue. At this many the reader waits instead, so the peer's
/// further messages wait in TCP. Clients send a few messages at a time (auth, a
/// command, a power action, `send logs`), far below it.
pub const MAX_HANDLERS: usize = 16;

/// Bus messages one socket's writer takes per write, at most, and bytes after
/// which it stops taking more. The console reader measures how far behind each
/// socket is by the messages it has taken (`Server::wait_for_sockets`): a writer
/// holding 1 MiB for a client that reads 15 MB/s looks still to it for 60 ms,
/// 256 KiB for 17 ms.
const BUS_TAKE_MESSAGES: usize = 64;
const BUS_TAKE_BYTES: usize = 256 * 1024;

/// How long a closing socket waits for its close frame to go out and for the
/// peer to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Live websocket connections and inbound-message handler tasks of a daemon
/// (`App::ws`): what tests and diagnostics look at to see that a socket's work
/// stays bounded and ends with it.
#[derive(Debug, Default)]
pub struct Counts {
    sockets: AtomicUsize,
    handlers: AtomicUsize,
}

impl Counts {
    /// Connections whose frame reader is still running.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::SeqCst)
    }

    /// Inbound messages being handled, over every socket.
    pub fn handlers(&self) -> usize {
        self.handlers.load(Ordering::SeqCst)
    }

    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Socket => &self.sockets,
            Kind::Handler => &self.handlers,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Socket,
    Handler,
}

/// One socket or handler, counted in [`Counts`] for as long as it exists
/// (however it ends: returned, aborted or panicked).
struct Live {
    app: Arc<App>,
    kind: Kind,
}

impl Live {
    fn new(app: &Arc<App>, kind: Kind) -> Live {
        app.ws.counter(kind).fetch_add(1, Ordering::SeqCst);
        Live {
            app: app.clone(),
            kind,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.app
            .ws
            .counter(self.kind)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

pub async fn handler(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (mut parts, _) = req.into_parts();
    let ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(server) = app.manager.get(&id) else {
        return ApiError::new(StatusCode::NOT_FOUND, MSG_NO_SERVER).into_response();
    };
    let cfg = app.config();
    let origin = parts
        .headers
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
    let key = match wire::check_upgrade(&parts.method, parts.version, &parts.headers) {
        Ok(k) => k,
        Err(text) => {
            let mut r = ApiError::new(StatusCode::BAD_REQUEST, text).into_response();
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                header::HeaderValue::from_static("13"),
            );
            return r;
        }
    };
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        )
        .into_response();
    };
    let accept = wire::accept_key(&key);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(app, server, hyper_util::rt::TokioIo::new(upgraded), ip).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

enum Outbound {
    Msg(WebsocketMessage),
    /// Start forwarding the server's bus (after the first successful auth).
    Subscribe,
    /// Answer to a ping, with its payload.
    Pong(Bytes),
    /// The last frame: the writer sends it, ends the stream and stops.
    Close(Option<u16>, &'static str),
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

async fn run<S>(app: Arc<App>, server: Arc<Server>, io: S, ip: Option<std::net::IpAddr>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let _live = Live::new(&app, Kind::Socket);
    let (read, write) = tokio::io::split(io);
    let mut reader = wire::Reader::new(read, MAX_MESSAGE);
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
    let writer = tokio::spawn(conn.clone().write(write, rx));
    let cancel = server.cancelled();
    // The close frame this side sends, if the socket ends with one.
    let mut close = None;
    let handlers = Arc::new(tokio::sync::Semaphore::new(MAX_HANDLERS));
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => {
                close = Some((Some(wire::CLOSE_GOING_AWAY), "server deleted"));
                break;
            }
            msg = reader.next() => msg,
        };
        let text = match msg {
            Ok(Inbound::Text(t)) => t,
            Ok(Inbound::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Inbound::Ping(payload)) => {
                // A full queue means the peer is not reading: the pong is dropped
                // (RFC 6455 §5.5.3 lets an endpoint answer only the latest ping)
                // rather than this loop waiting, deaf to the server's deletion.
                let _ = conn.out.try_send(Outbound::Pong(payload));
                continue;
            }
            Ok(Inbound::Pong) => continue,
            // Echo the client's close (RFC 6455 §5.5.1).
            Ok(Inbound::Close(code)) => {
                close = Some((code, ""));
                break;
            }
            Err(ReadError::Refuse(code, reason)) => {
                tracing::debug!(server = %server.uuid, code, reason, "closing websocket: protocol error");
                close = Some((Some(code), reason));
                break;
            }
            Err(ReadError::Gone) => break,
        };
        let Ok(parsed) = serde_json::from_str::<WebsocketMessage>(&text) else {
            continue;
        };
        // A slot for the handler first (see MAX_HANDLERS); meanwhile nothing
        // more is read from this peer, but the server's deletion still ends it.
        let permit = tokio::select! {
            _ = cancel.cancelled() => {
                close = Some((Some(wire::CLOSE_GOING_AWAY), "server deleted"));
                break;
            }
            p = handlers.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else {
            // The semaphore is never closed.
            break;
        };
        let live = Live::new(&conn.app, Kind::Handler);
        let c = conn.clone();
        // Each inbound message on its own task, as upstream's goroutines. Not
        // tracked, and not cancelled when the socket ends: a command or power
        // action sent just before a close still runs (upstream's goroutines are
        // not cancelled either); a reply it still has fails once the writer is
        // gone. The task's memory goes as soon as it finishes.
        tokio::spawn(async move {
            let _slot = (live, permit);
            c.handle(parsed).await
        });
    }
    conn.started.store(false, Ordering::SeqCst);
    conn.closed.cancel();
    match close {
        Some((code, reason)) => {
            // The close frame goes out and the stream is ended; meanwhile whatever
            // the peer still sends is read and dropped until it hangs up. A writer
            // stuck on a peer that does not read is given up after the grace time.
            let stop = writer.abort_handle();
            let close = async {
                let _ = conn.out.send(Outbound::Close(code, reason)).await;
                let _ = writer.await;
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                tokio::join!(close, reader.discard_until_eof());
            })
            .await;
            stop.abort();
        }
        None => writer.abort(),
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
            // Both only answer this socket: dropped once it has ended.
            events::SEND_LOGS => self.unless_closed(self.send_logs()).await,
            events::SEND_STATS => {
                let json = serde_json::to_string(&self.server.proc_usage()).unwrap_or_default();
                self.unless_closed(self.send(WebsocketMessage::new(events::STATS, vec![json])))
                    .await;
            }
            _ => {}
        }
    }

    /// Runs `f` until the socket ends.
    async fn unless_closed(&self, f: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = self.closed.cancelled() => {}
            () = f => {}
        }
    }

    /// The last `websocket_log_count` lines of the container's log, one
    /// `console output` each, if it is running.
    async fn send_logs(&self) {
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
    /// message). Whatever is ready goes out in one vectored write: bus messages as
    /// their shared pre-framed bytes, the rest framed here.
    async fn write<W: AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut io: W,
        mut rx: mpsc::Receiver<Outbound>,
    ) {
        let mut bus: Option<BusReceiver> = None;
        let mut batch = Vec::with_capacity(64);
        let mut parts: Vec<Bytes> = Vec::with_capacity(128);
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
                match o {
                    Outbound::Msg(m) => parts.push(message_frame(&m)),
                    Outbound::Subscribe => {
                        bus.get_or_insert_with(|| self.server.subscribe());
                    }
                    Outbound::Pong(payload) => parts.push(wire::frame(wire::OP_PONG, &payload)),
                    Outbound::Close(code, reason) => {
                        parts.push(wire::close_frame(code, reason));
                        if write_all(&mut io, &mut parts).await.is_ok() {
                            let _ = io.shutdown().await;
                        }
                        return;
                    }
                }
            }
            // The bus message that woke us, then whatever else is already there.
            let mut received = first;
            let mut taken = 0;
            let mut bytes = 0;
            loop {
                let published = match received.take() {
                    Some(Ok(p)) => p,
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                        // The bus never waits for a socket beyond the console
                        // reader's bounded wait (`Server::wait_for_sockets`): a
                        // socket too slow to keep up loses the lines it missed.
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
                    // A bus message is checked once. For a `ConsoleLines` batch
                    // (many lines) an invalid token therefore gets one `jwt error`
                    // for the batch where upstream sends one per line (§3.3): the
                    // Panel UI reacts to the first one either way (it re-auths).
                    match self.bus_verdict(&published.event) {
                        BusVerdict::Skip => {}
                        BusVerdict::Refuse(e) => parts.push(message_frame(&WebsocketMessage::new(
                            events::JWT_ERROR,
                            vec![e.into()],
                        ))),
                        BusVerdict::Send => {
                            let wire = published.wire();
                            bytes += wire.len();
                            parts.push(wire.clone());
                        }
                    }
                }
                taken += 1;
                if taken == BUS_TAKE_MESSAGES || bytes >= BUS_TAKE_BYTES {
                    break;
                }
                received = try_next_bus(&mut bus);
            }
            if write_all(&mut io, &mut parts).await.is_err() {
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

/// Writes every part, in order, with as few writes as the stream allows (one
/// `writev` for the lot on a TCP socket), flushes, and empties `parts`.
async fn write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    parts: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    use std::io::IoSlice;
    parts.retain(|p| !p.is_empty());
    if !io.is_write_vectored() && parts.len() > 1 {
        // One buffer instead of a write per part.
        let joined: Vec<u8> = parts.concat();
        parts.clear();
        parts.push(joined.into());
    }
    let mut first = 0;
    while first < parts.len() {
        // IOV_MAX is 1024 on Linux; bus drains are at most 64 messages plus replies.
        let slices: Vec<IoSlice<'_>> = parts[first..]
            .iter()
            .take(512)
            .map(|p| IoSlice::new(p))
            .collect();
        let mut n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(p) = parts.get_mut(first) else { break };
            if n >= p.len() {
                n -= p.len();
                first += 1;
            } else {
                p.advance(n);
                n = 0;
            }
        }
    }
    parts.clear();
    io.flush().await
}

enum BusVerdict {
    Send,
    Skip,
    Refuse(&'static str),
}

/// The next bus message, or never while not subscribed.
async fn next_bus(
    bus: &mut Option<BusReceiver>,
) -> Result<Arc<Published>, broadcast::error::RecvError> {
    match bus {
        Some(b) => b.recv().await,
        None => std::future::pending().await,
    }
}

/// The next bus message if one is already there.
fn try_next_bus(
    bus: &mut Option<BusReceiver>,
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
