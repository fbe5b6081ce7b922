//! Websocket JWT and protocol rules (reference §2–§3) with a real websocket client
//! and Panel-style HS256 tokens.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

async fn node_with_server(test: &str) -> (Node, String) {
    let cfg = server_config(
        test,
        "sleep 1000",
        &["x"],
        json!({"type": "command", "value": "stop"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start(test, |p| p.add_server(cfg), |_| {}).await;
    (node, uuid)
}

fn is_error_event(arg: &str, text: &str) -> bool {
    arg.starts_with("Error Event [") && arg.ends_with(&format!("]: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_must_match_the_panel_or_allowed_origins() {
    let (node, uuid) = node_with_server("ws-origin").await;
    let url = node.url(&format!("/api/servers/{uuid}/ws"));
    assert!(
        Ws::connect(&url, None).await.is_err(),
        "missing Origin is rejected"
    );
    assert!(Ws::connect(&url, Some("https://evil.example"))
        .await
        .is_err());
    assert!(
        Ws::connect(&url, Some(&format!("{}/", node.panel.url)))
            .await
            .is_err(),
        "compared byte for byte"
    );
    assert!(Ws::connect(&url, Some(&node.panel.url)).await.is_ok());
    let r = node
        .http
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

    let (node2, uuid2) = {
        let cfg = server_config(
            "ws-origin2",
            "sleep 1000",
            &["x"],
            json!({"type": "command", "value": "stop"}),
        );
        let u = cfg.settings.uuid.clone();
        (
            Node::start(
                "ws-origin2",
                |p| p.add_server(cfg),
                |c| c.allowed_origins = vec!["*".into()],
            )
            .await,
            u,
        )
    };
    let url2 = node2.url(&format!("/api/servers/{uuid2}/ws"));
    assert!(
        Ws::connect(&url2, None).await.is_ok(),
        "wildcard allows a missing Origin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_auth_sends_auth_success_status_and_stats_and_accepts_null_args() {
    let (node, uuid) = node_with_server("ws-ok").await;
    let mut ws = node.ws(&uuid).await;
    ws.send(
        "auth",
        json!([node.jwt(&uuid, &["websocket.connect"], 1, 600)]),
    )
    .await;
    assert_eq!(ws.next(T).await.unwrap(), ("auth success".into(), vec![]));
    assert_eq!(
        ws.next(T).await.unwrap(),
        ("status".into(), vec!["offline".into()])
    );
    assert_eq!(ws.next(T).await.unwrap().0, "stats");
    ws.send("send stats", json!([null])).await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "stats");
    let v: serde_json::Value = serde_json::from_str(&a[0]).unwrap();
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
    // A refresh only answers auth success.
    ws.send(
        "auth",
        json!([node.jwt(&uuid, &["websocket.connect"], 1, 600)]),
    )
    .await;
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
        node.app.manager.get(&uuid).unwrap().state(),
        wings::events::State::Offline
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_refusals_match_upstream() {
    let (node, uuid) = node_with_server("ws-jwt").await;

    // Expired token.
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, -10)]))
        .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(is_error_event(&a[0], "jwt: exp claim is invalid"), "{a:?}");

    // Wrong signature: a daemon error with the generic message.
    let mut ws = node.ws(&uuid).await;
    ws.send(
        "auth",
        json!([mint("not-the-node-token", &uuid, &["*"], 1, 600, "j")]),
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
    let mut ws = node.ws(&uuid).await;
    ws.send(
        "auth",
        json!([node.jwt(&uuid, &["control.console"], 1, 600)]),
    )
    .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(is_error_event(&a[0], "jwt: missing connect permission"));

    // Issued before boot.
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], -3600, 600)]))
        .await;
    let (e, a) = ws.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(is_error_event(
        &a[0],
        "jwt: created too far in past (denylist)"
    ));

    // Wrong server: auth succeeds, then every message is a jwt error.
    let mut ws = node.ws(&uuid).await;
    ws.send(
        "auth",
        json!([node.jwt("00000000-0000-4000-8000-000000000000", &["*"], 1, 600)]),
    )
    .await;
    assert_eq!(ws.next(T).await.unwrap().0, "auth success");
    assert_eq!(
        ws.next(T).await.unwrap(),
        ("jwt error".into(), vec!["jwt: server uuid mismatch".into()])
    );
    ws.send("send stats", json!([null])).await;
    let mut got = Vec::new();
    while let Some(m) = ws.next(Duration::from_millis(700)).await {
        got.push(m);
    }
    assert!(
        got.contains(&("jwt error".into(), vec!["jwt: server uuid mismatch".into()])),
        "{got:?}"
    );
    assert!(!got.iter().any(|(e, _)| e == "stats"));

    // Denylisted through /ws/deny, including an already-connected socket.
    let mut ws = node.ws(&uuid).await;
    let token = mint(&node.token, &uuid, &["*"], 1, 600, "deny-me");
    ws.send("auth", json!([token.clone()])).await;
    assert_eq!(ws.next(T).await.unwrap().0, "auth success");
    while ws.next(Duration::from_millis(500)).await.is_some() {}
    // The deny entry must be later than the token's iat (whole seconds, iat = now+1).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/ws/deny"))
        .json(&json!({"jtis": ["deny-me"]}))
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
    let mut ws2 = node.ws(&uuid).await;
    ws2.send("auth", json!([token])).await;
    let (e, a) = ws2.next(T).await.unwrap();
    assert_eq!(e, "jwt error");
    assert!(is_error_event(
        &a[0],
        "jwt: created too far in past (denylist)"
    ));

    // Not authenticated at all.
    let mut ws = node.ws(&uuid).await;
    ws.send("send stats", json!([null])).await;
    assert_eq!(
        ws.next(T).await.unwrap(),
        ("jwt error".into(), vec!["jwt: no jwt present".into()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_watcher_sends_token_expiring_then_jwt_error_after_expiry() {
    let (node, uuid) = node_with_server("ws-expiry").await;
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 3)]))
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
    // A fresh token restores the socket.
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
        .await;
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
    let (node, uuid) = node_with_server("ws-delete").await;
    let mut ws = node.ws(&uuid).await;
    ws.send("auth", json!([node.jwt(&uuid, &["*"], 1, 600)]))
        .await;
    assert_eq!(ws.next(T).await.unwrap().0, "auth success");
    let r = node
        .authed(Method::DELETE, &format!("/api/servers/{uuid}"))
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
    node.cleanup().await;
}
