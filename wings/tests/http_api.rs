//! The Wings HTTP API against a real axum listener (reference §1): auth, request ids,
//! CORS, the error envelope, system information, /api/update, and bad input on every
//! route answering with the envelope.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

async fn body(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (s, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_auth_is_case_sensitive_and_constant_time_checked() {
    let node = Node::start("http-auth", |_| {}, |_| {}).await;
    let r = node
        .http
        .get(node.url("/api/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(r.headers().contains_key("x-request-id"));
    let (_, v) = body(r).await;
    assert_eq!(
        v,
        json!({"error": "The required authorization heads were not present in the request."})
    );

    let r = node
        .http
        .get(node.url("/api/servers"))
        .header("Authorization", format!("bearer {}", node.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "scheme must be exactly `Bearer`");

    let r = node
        .http
        .get(node.url("/api/servers"))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    let (s, v) = body(r).await;
    assert_eq!(s, 403);
    assert_eq!(
        v,
        json!({"error": "You are not authorized to access this endpoint."})
    );

    let r = node
        .authed(Method::GET, "/api/servers")
        .send()
        .await
        .unwrap();
    let (s, v) = body(r).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_require_auth_then_answer_plain_404() {
    let node = Node::start("http-404", |_| {}, |_| {}).await;
    let r = node.http.get(node.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = node.authed(Method::GET, "/nope").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "404 page not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_defaults_to_panel_and_echoes_allowed_origins_preflight_without_auth() {
    let node = Node::start(
        "http-cors",
        |_| {},
        |c| c.allowed_origins = vec!["https://other.example".into()],
    )
    .await;
    let r = node
        .http
        .request(Method::OPTIONS, node.url("/upload/file"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        node.panel.url.as_str()
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["access-control-max-age"], "7200");
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "GET, POST, PATCH, PUT, DELETE, OPTIONS"
    );
    assert!(r.headers().contains_key("x-request-id"));
    let r = node
        .authed(Method::GET, "/api/system")
        .header("Origin", "https://other.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://other.example"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn system_reports_upstream_fields_v1_and_v2() {
    let node = Node::start("http-system", |_| {}, |_| {}).await;
    let (s, v) = body(
        node.authed(Method::GET, "/api/system")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "architecture",
            "cpu_count",
            "kernel_version",
            "os",
            "version"
        ]
    );
    assert_eq!(v["os"], "linux");
    assert!(v["cpu_count"].as_i64().unwrap() >= 1);
    assert!(!v["version"].as_str().unwrap().starts_with('v'));

    let (s, v) = body(
        node.authed(Method::GET, "/api/system?v=2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(v["docker"]["version"].as_str().unwrap().len() > 1);
    assert!(v["docker"]["containers"]["total"].is_i64());
    assert!(v["docker"]["storage"]["driver"].is_string());
    assert_eq!(v["system"]["os_type"], "linux");
    assert!(v["system"]["memory_bytes"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_merges_panel_config_and_respects_ignore_flag() {
    let node = Node::start(
        "http-update",
        |_| {},
        |c| c.allowed_mounts = vec!["/srv".into()],
    )
    .await;
    let (s, v) = body(
        node.authed(Method::POST, "/api/update")
            .json(&json!({"debug": true, "api": {"upload_limit": 250, "ssl": {"enabled": false,
                "cert": "/etc/letsencrypt/live/x/fullchain.pem", "key": "/etc/letsencrypt/live/x/privkey.pem"}},
                "allowed_mounts": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!({"applied": true})));
    let cfg = wings::config::Config::load(&node.dir.path().join("config.yml")).unwrap();
    assert!(cfg.debug);
    assert_eq!(cfg.api.upload_limit, 250);
    assert_eq!(cfg.allowed_mounts, vec!["/srv".to_string()]);
    assert_eq!(cfg.api.ssl.key, "");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.dir.path().join("config.yml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let node2 = Node::start(
        "http-update2",
        |_| {},
        |c| c.ignore_panel_config_updates = true,
    )
    .await;
    let (s, v) = body(
        node2
            .authed(Method::POST, "/api/update")
            .json(&json!({"debug": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!({"applied": false})));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_answers_with_the_envelope_never_a_panic() {
    let cfg = server_config(
        "http-bad",
        "sleep 1000",
        &["x"],
        json!({"type": "command", "value": "stop"}),
    );
    let uuid = cfg.settings.uuid.clone();
    let node = Node::start("http-bad", |p| p.add_server(cfg.clone()), |_| {}).await;

    // Unparsable / empty bodies.
    for (m, path) in [
        (Method::POST, "/api/servers".to_string()),
        (Method::POST, format!("/api/servers/{uuid}/power")),
        (Method::POST, format!("/api/servers/{uuid}/ws/deny")),
        (Method::POST, "/api/update".to_string()),
    ] {
        for payload in ["", "{", "[1,2]", "\"x\""] {
            let (s, v) = body(
                node.authed(m.clone(), &path)
                    .body(payload)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(s, 400, "{path} with {payload:?}");
            assert!(v["error"].is_string(), "{path}: {v}");
        }
    }
    // Validation.
    let (s, v) = body(
        node.authed(Method::POST, "/api/servers")
            .json(&json!({"uuid": "not-a-uuid"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        v["error"],
        "The data provided in the request could not be validated."
    );
    let v1 = "c232ab6b-f3fe-11e4-9f0e-2f5e0c3a0b2d"; // a version-1 UUID
    let (s, _) = body(
        node.authed(Method::POST, "/api/servers")
            .json(&json!({"uuid": v1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    // Panel does not know the server → 500 with request id.
    let (s, v) = body(
        node.authed(Method::POST, "/api/servers")
            .json(&json!({"uuid": uuid::Uuid::new_v4().to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 500);
    assert!(v["request_id"].is_string());
    assert_eq!(
        v["error"],
        "An unexpected error was encountered while processing this request"
    );

    let (s, v) = body(
        node.authed(Method::POST, &format!("/api/servers/{uuid}/power"))
            .json(&json!({"action": "explode"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(v["error"], "The power action provided was not valid, should be one of \"stop\", \"start\", \"restart\", \"kill\"");

    // Unknown server.
    for (m, p) in [
        (Method::GET, "/api/servers/nope"),
        (Method::DELETE, "/api/servers/nope"),
        (Method::POST, "/api/servers/nope/power"),
        (Method::POST, "/api/servers/nope/sync"),
        (Method::GET, "/api/servers/nope/logs"),
        (Method::GET, "/api/servers/nope/ws"),
    ] {
        let (s, v) = body(
            node.authed(m, p)
                .json(&json!({"action": "start"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 404, "{p}");
        assert_eq!(
            v["error"],
            "The requested resource does not exist on this instance."
        );
    }

    // Commands to a stopped server: 502 before the body is even read.
    let (s, v) = body(
        node.authed(Method::POST, &format!("/api/servers/{uuid}/commands"))
            .body("garbage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 502);
    assert_eq!(
        v["error"],
        "Cannot send commands to a stopped server instance."
    );

    // File, backup and transfer routes refuse bad input in the envelope (after auth).
    for (m, p, status) in [
        (
            Method::GET,
            format!("/api/servers/{uuid}/files/contents?file=../../etc/passwd"),
            404,
        ),
        (Method::POST, format!("/api/servers/{uuid}/backup"), 400),
        (Method::POST, format!("/api/servers/{uuid}/transfer"), 400),
    ] {
        let (s, v) = body(node.authed(m, &p).send().await.unwrap()).await;
        assert_eq!(s, status, "{p}");
        assert!(v["error"].is_string());
    }
    let (s, v) = body(
        node.http
            .get(node.url("/download/file?token=x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    assert!(v["error"].is_string());

    // Logs size clamping never fails on odd input.
    for q in ["size=-1", "size=abc", "size=100000", "size=0"] {
        let r = node
            .authed(Method::GET, &format!("/api/servers/{uuid}/logs?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{q}");
    }
    // Suspended servers cannot start.
    node.panel
        .update_server(&uuid, |c| c.settings.suspended = true);
    let r = node
        .authed(Method::POST, &format!("/api/servers/{uuid}/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = body(
        node.authed(Method::POST, &format!("/api/servers/{uuid}/power"))
            .json(&json!({"action": "start"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["error"],
        "Cannot start or restart a server that is suspended."
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    node.cleanup().await;
}
