//! Websocket JWT and protocol rules (wings-protocol §2–§3) with a real websocket
//! client against a wings node attached to a real panel-api. Valid tokens are the
//! ones the panel hands out at `/api/client/servers/{id}/websocket`; the refused
//! variants (expired, wrong key, missing permission, issued before boot) are
//! minted with the panel's JWT code and the node's token.

mod wings_stack;

use ferrodactyl_tests::Account;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use wings_stack::ws::Ws;
use wings_stack::{stack, Egg, Options, Spec, Srv, Stack};

const T: Duration = Duration::from_secs(10);

struct Ctx {
    st: Stack,
    srv: Srv,
    /// A second server on the same node.
    other: Srv,
    /// The (non-admin) owner of both.
    owner: Account,
}

async fn ctx(
    tweak: impl FnOnce(&mut wings::config::Config) + Send + 'static,
    tick: Option<Duration>,
) -> Ctx {
    let (st, mut servers) = stack(Options {
        servers: vec![],
        egg: Some(Egg {
            done: vec!["x".into()],
            stop: Some("stop".into()),
            ..Default::default()
        }),
        specs: vec![
            Spec::new("ws", "sleep 1000"),
            Spec::new("other", "sleep 1000"),
        ],
        tweak: Box::new(tweak),
        ws_expiry_tick: tick,
        ..Default::default()
    })
    .await;
    let other = servers.pop().unwrap();
    let srv = servers.pop().unwrap();
    let owner = st.p.account("player", false, 1).await.unwrap();
    st.give(&srv, &owner).await;
    st.give(&other, &owner).await;
    Ctx {
        st,
        srv,
        other,
        owner,
    }
}

fn is_error_event(arg: &str, text: &str) -> bool {
    arg.starts_with("Error Event [") && arg.ends_with(&format!("]: {text}"))
}

fn url(st: &Stack, s: &Srv) -> String {
    format!("{}/api/servers/{}/ws", st.url, s.uuid)
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_must_match_the_panel_or_allowed_origins() {
    let c = ctx(|_| {}, None).await;
    let url = url(&c.st, &c.srv);
    assert!(
        Ws::connect(&url, None).await.is_err(),
        "missing Origin is rejected"
    );
    assert!(Ws::connect(&url, Some("https://evil.example"))
        .await
        .is_err());
    assert!(
        Ws::connect(&url, Some(&format!("{}/", c.st.p.url)))
            .await
            .is_err(),
        "compared byte for byte"
    );
    assert!(
        Ws::connect(&url, Some(&c.st.p.url)).await.is_ok(),
        "the panel's URL (config `remote`)"
    );
    let r =
        c.st.http
            .get(&url)
            .header("Origin", "https://evil.example")
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);

    let c2 = ctx(|c| c.allowed_origins = vec!["*".into()], None).await;
    assert!(
        Ws::connect(&url_for(&c2), None).await.is_ok(),
        "wildcard allows a missing Origin"
    );
}

// ------------------------------------------------------------- RFC 6455 framing

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A masked client frame, written by hand (for what a websocket library refuses
/// to send).
fn client_frame(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let m = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Writes `bytes` on a fresh socket (the handshake done by tokio-tungstenite, which
/// has nothing buffered: wings sends nothing before `auth`) and reads until wings
/// hangs up: returns the close code of the one frame that must arrive, a close.
async fn raw_exchange(c: &Ctx, bytes: &[u8]) -> u16 {
    let mut ws = Ws::connect(&url_for(c), Some(&c.st.p.url)).await.unwrap();
    let io = ws.stream.get_mut();
    io.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(T, io.read_to_end(&mut got))
        .await
        .expect("wings hangs up after its close frame")
        .unwrap();
    assert_eq!(got.first(), Some(&0x88), "a close frame: {got:02x?}");
    let len = got[1] as usize;
    assert_eq!(
        got.len(),
        2 + len,
        "nothing after the close frame: {got:02x?}"
    );
    u16::from_be_bytes([got[2], got[3]])
}

/// The close frame wings sends next (other messages skipped), and whether the
/// connection then ends.
async fn next_close(ws: &mut Ws) -> (Option<CloseFrame<'static>>, bool) {
    loop {
        match tokio::time::timeout(T, ws.stream.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => {
                let ended = matches!(
                    tokio::time::timeout(T, ws.stream.next()).await,
                    Ok(None | Some(Err(_)))
                );
                return (f, ended);
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_answers_rfc_6455s_accept_key_and_malformed_upgrades_get_400() {
    let c = ctx(|_| {}, None).await;
    let url = url_for(&c);
    let upgrade = |key: Option<&str>, version: &str| {
        let mut r =
            c.st.http
                .get(&url)
                .header("Origin", &c.st.p.url)
                .header("Connection", "Upgrade")
                .header("Upgrade", "websocket")
                .header("Sec-WebSocket-Version", version);
        if let Some(k) = key {
            r = r.header("Sec-WebSocket-Key", k);
        }
        r.send()
    };
    // The sample handshake of RFC 6455 §1.3.
    let r = upgrade(Some("dGhlIHNhbXBsZSBub25jZQ=="), "13")
        .await
        .unwrap();
    assert_eq!(r.status(), 101);
    assert_eq!(
        r.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(r.headers()["upgrade"], "websocket");
    assert!(
        r.headers().get("sec-websocket-extensions").is_none(),
        "no extension negotiated"
    );
    for (key, version, error) in [
        (None, "13", "`Sec-WebSocket-Key` header missing"),
        (
            Some("c2hvcnQ="),
            "13",
            "`Sec-WebSocket-Key` header is not the base64 encoding of 16 bytes",
        ),
        (
            Some("dGhlIHNhbXBsZSBub25jZQ=="),
            "8",
            "`Sec-WebSocket-Version` header did not include '13'",
        ),
    ] {
        let r = upgrade(key, version).await.unwrap();
        assert_eq!(r.status(), 400, "{key:?} {version}");
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"error": error}));
    }
    // A plain GET is no upgrade either.
    let r =
        c.st.http
            .get(&url)
            .header("Origin", &c.st.p.url)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "Connection header did not include 'upgrade'"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_are_answered_with_the_same_payload_and_a_close_is_echoed() {
    let c = ctx(|_| {}, None).await;
    let mut ws = c.st.ws_as(&c.srv, &c.owner.key).await;
    ws.stream
        .send(Message::Ping(b"are you there?".to_vec()))
        .await
        .unwrap();
    let pong = loop {
        match tokio::time::timeout(T, ws.stream.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => break p,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no pong: {other:?}"),
        }
    };
    assert_eq!(pong, b"are you there?");
    // The socket still works after the ping.
    ws.send("send stats", json!([null])).await;
    ws.wait_for(T, |e, _| e == "stats").await.expect("stats");
    ws.stream
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let (frame, ended) = next_close(&mut ws).await;
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001), "code echoed");
    assert!(ended, "wings ends the connection after the close handshake");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fragmented_message_is_reassembled_with_a_ping_in_between() {
    let c = ctx(|_| {}, None).await;
    let mut ws = c.st.ws(&c.srv).await;
    let (token, _) = c.st.panel_ws(&c.srv, &c.owner.key).await;
    let auth = json!({"event": "auth", "args": [token]}).to_string();
    let (a, b) = auth.split_at(auth.len() / 2);
    let (b, d) = b.split_at(b.len() / 2);
    for f in [
        Frame::message(a.as_bytes().to_vec(), OpCode::Data(Data::Text), false),
        Frame::ping(b"mid-message".to_vec()),
        Frame::message(b.as_bytes().to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(d.as_bytes().to_vec(), OpCode::Data(Data::Continue), true),
    ] {
        ws.stream.send(Message::Frame(f)).await.unwrap();
    }
    let mut pong = false;
    let mut auth_ok = false;
    while !(pong && auth_ok) {
        match tokio::time::timeout(T, ws.stream.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(p, b"mid-message");
                assert!(
                    !auth_ok,
                    "the ping is answered before the message completes"
                );
                pong = true;
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                assert!(t.contains("\"auth success\""), "{t}");
                auth_ok = true;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_1_mib_is_refused_with_close_1009() {
    let c = ctx(|_| {}, None).await;
    let mut ws = c.st.ws_as(&c.srv, &c.owner.key).await;
    let limit = wings::http::ws::MAX_MESSAGE;
    assert_eq!(limit, 1 << 20);
    // Exactly at the limit: handled (JSON allows the trailing blanks).
    let msg = r#"{"event":"send stats","args":[null]}"#;
    ws.send_raw(&format!("{msg}{}", " ".repeat(limit - msg.len())))
        .await;
    ws.wait_for(T, |e, _| e == "stats")
        .await
        .expect("a message of exactly the limit is handled");
    // One byte more: refused.
    ws.send_raw(&format!("{msg}{}", " ".repeat(limit + 1 - msg.len())))
        .await;
    let (frame, ended) = next_close(&mut ws).await;
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1009));
    assert!(ended);
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_breaking_the_protocol_are_refused_with_their_close_codes() {
    let c = ctx(|_| {}, None).await;
    let stats = br#"{"event":"send stats","args":[null]}"#;
    // Client frames must be masked.
    assert_eq!(
        raw_exchange(&c, &client_frame(0x81, false, stats)).await,
        1002
    );
    // Invalid UTF-8 in a text message.
    assert_eq!(
        raw_exchange(&c, &client_frame(0x81, true, b"{\"event\":\"\xc3\x28\"}")).await,
        1007
    );
    // Control frames: at most 125 bytes, never fragmented.
    assert_eq!(
        raw_exchange(&c, &client_frame(0x89, true, &[b'p'; 126])).await,
        1002
    );
    assert_eq!(
        raw_exchange(&c, &client_frame(0x09, true, b"p")).await,
        1002
    );
    // A continuation with nothing to continue; a reserved bit without an extension.
    assert_eq!(
        raw_exchange(&c, &client_frame(0x80, true, stats)).await,
        1002
    );
    assert_eq!(
        raw_exchange(&c, &client_frame(0xC1, true, stats)).await,
        1002
    );
}

fn url_for(c: &Ctx) -> String {
    url(&c.st, &c.srv)
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_auth_sends_auth_success_status_and_stats_and_accepts_null_args() {
    let c = ctx(|_| {}, None).await;
    // A subuser holding only websocket.connect: the panel's token carries just that.
    let helper = c.st.p.account("helper", false, 1).await.unwrap();
    let r =
        c.st.p
            .send(
                Method::POST,
                &format!("/api/client/servers/{}/users", c.srv.short),
                &c.owner.key,
                &json!({"email": "helper@example.com", "permissions": ["websocket.connect"]}),
            )
            .await
            .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let (token, _) = c.st.panel_ws(&c.srv, &helper.key).await;
    let mut ws = c.st.ws(&c.srv).await;
    ws.send("auth", json!([token])).await;
    assert_eq!(ws.next(T).await.unwrap(), ("auth success".into(), vec![]));
    assert_eq!(
        ws.next(T).await.unwrap(),
        ("status".into(), vec!["offline".into()])
    );
    assert_eq!(ws.next(T).await.unwrap().0, "stats");
    ws.send("send stats", json!([null])).await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "stats");
    let v: Value = serde_json::from_str(&a[0]).unwrap();
    for k in [
        "memory_bytes",
        "memory_limit_bytes",
        "cpu_absolute",
        "network",
        "uptime",
        "state",
        "disk_bytes",
    ] {
        assert!(v.get(k).is_some(), "stats has {k}");
    }
    // A refresh (a new token from the panel) only answers auth success.
    let (token, _) = c.st.panel_ws(&c.srv, &helper.key).await;
    ws.send("auth", json!([token])).await;
    assert_eq!(ws.next(T).await.unwrap(), ("auth success".into(), vec![]));
    assert!(ws.next(Duration::from_millis(700)).await.is_none());
    // Garbage frames are ignored; the socket stays open.
    ws.send_raw("not json").await;
    ws.send("send stats", json!([])).await;
    assert_eq!(ws.next(T).await.unwrap().0, "stats");
    // Without control permissions, power and commands are silently ignored.
    ws.send("set state", json!(["start"])).await;
    ws.send("send command", json!(["x"])).await;
    assert!(ws.next(Duration::from_secs(1)).await.is_none());
    assert_eq!(
        c.st.app.manager.get(&c.srv.uuid).unwrap().state(),
        wings::events::State::Offline
    );
    assert!(c.st.inspect(&c.srv.uuid).await.is_null(), "nothing started");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_refusals_match_upstream() {
    let c = ctx(|_| {}, None).await;
    let (st, uuid) = (&c.st, c.srv.uuid.as_str());

    // Expired token.
    let mut ws = st.ws(&c.srv).await;
    ws.send(
        "auth",
        json!([st.ws_jwt(&st.token, &c.owner, uuid, &["*"], -10, json!({}))]),
    )
    .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(is_error_event(&a[0], "jwt: exp claim is invalid"), "{a:?}");

    // Wrong signature: a daemon error with the generic message.
    let mut ws = st.ws(&c.srv).await;
    ws.send(
        "auth",
        json!([st.ws_jwt("not-the-node-token", &c.owner, uuid, &["*"], 600, json!({}))]),
    )
    .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "daemon error");
    assert!(
        is_error_event(
            &a[0],
            "an unexpected error was encountered while handling this request"
        ),
        "{a:?}"
    );

    // Missing connect permission.
    let mut ws = st.ws(&c.srv).await;
    ws.send(
        "auth",
        json!([st.ws_jwt(
            &st.token,
            &c.owner,
            uuid,
            &["control.console"],
            600,
            json!({})
        )]),
    )
    .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(
        is_error_event(&a[0], "jwt: missing connect permission"),
        "{a:?}"
    );

    // Issued before boot.
    let mut ws = st.ws(&c.srv).await;
    let before = chrono::Utc::now().timestamp() - 3600;
    ws.send(
        "auth",
        json!([st.ws_jwt(
            &st.token,
            &c.owner,
            uuid,
            &["*"],
            600,
            json!({"iat": before})
        )]),
    )
    .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(
        is_error_event(&a[0], "jwt: created too far in past (denylist)"),
        "{a:?}"
    );

    // The panel's token for another server of the same owner: auth succeeds, then
    // every message is a jwt error.
    let (other_token, _) = st.panel_ws(&c.other, &c.owner.key).await;
    let mut ws = st.ws(&c.srv).await;
    ws.send("auth", json!([other_token])).await;
    assert_eq!(ws.next(T).await.unwrap().0, "auth success");
    assert_eq!(
        ws.next(T).await.unwrap(),
        ("jwt error".into(), vec!["jwt: server uuid mismatch".into()])
    );
    ws.send("send stats", json!([null])).await;
    let got = ws.drain(Duration::from_millis(700)).await;
    assert!(
        got.contains(&("jwt error".into(), vec!["jwt: server uuid mismatch".into()])),
        "{got:?}"
    );
    assert!(!got.iter().any(|(e, _)| e == "stats"));

    // Denylisted through /ws/deny (as the panel does when a user's access
    // changes), including an already-connected socket.
    let (token, _) = st.panel_ws(&c.srv, &c.owner.key).await;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[&st.url]);
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(st.token.as_bytes()),
        &validation,
    )
    .expect("the panel signs with the node's token")
    .claims;
    let jti = claims["jti"].as_str().unwrap().to_string();
    let mut ws = st.ws(&c.srv).await;
    ws.send("auth", json!([token.clone()])).await;
    assert_eq!(ws.next(T).await.unwrap().0, "auth success");
    ws.drain(Duration::from_millis(500)).await;
    let r = st
        .http
        .post(format!("{}/api/servers/{uuid}/ws/deny", st.url))
        .bearer_auth(&st.token)
        .json(&json!({"jtis": [jti]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    ws.send("send stats", json!([null])).await;
    assert_eq!(
        ws.next(T).await.unwrap(),
        (
            "jwt error".into(),
            vec!["jwt: created too far in past (denylist)".into()]
        )
    );
    let mut ws2 = st.ws(&c.srv).await;
    ws2.send("auth", json!([token])).await;
    let (e, a) = ws2.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(
        is_error_event(&a[0], "jwt: created too far in past (denylist)"),
        "{a:?}"
    );
    // Another user's token for the same server carries another jti: still valid.
    let root = st.p.account("root", true, 1).await.unwrap();
    let (admin_token, _) = st.panel_ws(&c.srv, &root.key).await;
    let mut ws3 = st.ws(&c.srv).await;
    ws3.send("auth", json!([admin_token])).await;
    assert_eq!(ws3.next(T).await.unwrap().0, "auth success");

    // Not authenticated at all.
    let mut ws = st.ws(&c.srv).await;
    ws.send("send stats", json!([null])).await;
    assert_eq!(
        ws.next(T).await.unwrap(),
        ("jwt error".into(), vec!["jwt: no jwt present".into()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_watcher_sends_token_expiring_then_jwt_error_after_expiry() {
    let c = ctx(|_| {}, Some(Duration::from_millis(500))).await;
    let st = &c.st;
    let mut ws = st.ws(&c.srv).await;
    ws.send(
        "auth",
        json!([st.ws_jwt(&st.token, &c.owner, &c.srv.uuid, &["*"], 3, json!({}))]),
    )
    .await;
    assert_eq!(ws.next(T).await.unwrap().0, "auth success");
    ws.wait_for(T, |e, _| e == "token expiring")
        .await
        .expect("token expiring");
    ws.wait_for(T, |e, a| {
        e == "jwt error" && a == ["jwt: exp claim is invalid"]
    })
    .await
    .expect("expired");
    // A fresh token from the panel restores the socket.
    let (token, _) = st.panel_ws(&c.srv, &c.owner.key).await;
    ws.send("auth", json!([token])).await;
    ws.wait_for(T, |e, _| e == "auth success")
        .await
        .expect("re-auth");
    ws.send("send stats", json!([null])).await;
    ws.wait_for(T, |e, _| e == "stats")
        .await
        .expect("stats after refresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_server_closes_sockets_with_1001() {
    let c = ctx(|_| {}, None).await;
    let mut ws = c.st.ws_as(&c.srv, &c.owner.key).await;
    let r =
        c.st.http
            .delete(format!("{}/api/servers/{}", c.st.url, c.srv.uuid))
            .bearer_auth(&c.st.token)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    use futures::StreamExt;
    let mut close = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(T, ws.stream.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Close(f) = m {
            close = f;
            break;
        }
    }
    let f = close.expect("close frame");
    assert_eq!(u16::from(f.code), 1001);
    assert_eq!(f.reason, "server deleted");
}
