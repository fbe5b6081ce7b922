//! The Wings HTTP API (wings-protocol §1) of a wings node attached to a real
//! panel-api: bearer auth, request ids, CORS, the error envelope, system
//! information, `/api/update`, and bad input on every route answering with the
//! envelope; servers come from the panel's Remote API.

mod wings_stack;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use wings_stack::{stack, Options, Spec, Stack};

async fn node(tweak: impl FnOnce(&mut wings::config::Config) + Send + 'static) -> Stack {
    stack(Options {
        servers: vec![],
        tweak: Box::new(tweak),
        ..Default::default()
    })
    .await
    .0
}

async fn body(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (s, v)
}

fn authed(st: &Stack, m: Method, path: &str) -> reqwest::RequestBuilder {
    st.http
        .request(m, format!("{}{path}", st.url))
        .header("Authorization", format!("Bearer {}", st.token))
        .header("Accept", "application/json")
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_auth_is_case_sensitive_and_constant_time_checked() {
    let st = node(|_| {}).await;
    let url = format!("{}/api/servers", st.url);
    let r = st.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(r.headers().contains_key("x-request-id"));
    let (_, v) = body(r).await;
    assert_eq!(
        v,
        json!({"error": "The required authorization heads were not present in the request."})
    );

    let r = st
        .http
        .get(&url)
        .header("Authorization", format!("bearer {}", st.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "scheme must be exactly `Bearer`");

    let r = st
        .http
        .get(&url)
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

    // The node token the panel issued is the one wings accepts; this node has no
    // servers in the panel.
    let (s, v) = body(
        authed(&st, Method::GET, "/api/servers")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_require_auth_then_answer_plain_404() {
    let st = node(|_| {}).await;
    let r = st
        .http
        .get(format!("{}/nope", st.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = authed(&st, Method::GET, "/nope").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "404 page not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_defaults_to_panel_and_echoes_allowed_origins_preflight_without_auth() {
    let st = node(|c| c.allowed_origins = vec!["https://other.example".into()]).await;
    let r = st
        .http
        .request(Method::OPTIONS, format!("{}/upload/file", st.url))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        st.p.url.as_str(),
        "the panel's URL (config `remote`, from the panel's node configuration)"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["access-control-max-age"], "7200");
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "GET, POST, PATCH, PUT, DELETE, OPTIONS"
    );
    assert!(r.headers().contains_key("x-request-id"));
    let r = authed(&st, Method::GET, "/api/system")
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
    let st = node(|_| {}).await;
    let (s, v) = body(
        authed(&st, Method::GET, "/api/system")
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
        authed(&st, Method::GET, "/api/system?v=2")
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
    let st = node(|c| c.allowed_mounts = vec!["/srv".into()]).await;
    let (s, v) = body(
        authed(&st, Method::POST, "/api/update")
            .json(&json!({"debug": true, "api": {"upload_limit": 250, "ssl": {"enabled": false,
                "cert": "/etc/letsencrypt/live/x/fullchain.pem", "key": "/etc/letsencrypt/live/x/privkey.pem"}},
                "allowed_mounts": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!({"applied": true})));
    let path = st.dir.path().join("config.yml");
    let cfg = wings::config::Config::load(&path).unwrap();
    assert!(cfg.debug);
    assert_eq!(cfg.api.upload_limit, 250);
    assert_eq!(cfg.allowed_mounts, vec!["/srv".to_string()]);
    assert_eq!(cfg.api.ssl.key, "");
    assert_eq!(cfg.token, st.token, "untouched keys are kept");
    assert_eq!(cfg.remote, st.p.url);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // The panel's own node configuration, as panel-api sends it on a node update.
    let conf =
        st.p.get(
            &format!("/api/application/nodes/{}/configuration", st.node),
            &st.admin.key,
        )
        .await
        .unwrap()
        .json;
    let (s, v) = body(
        authed(&st, Method::POST, "/api/update")
            .json(&conf)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!({"applied": true})));
    let cfg = wings::config::Config::load(&path).unwrap();
    assert!(!cfg.debug, "the panel's debug: false applied");
    assert_eq!(cfg.token, st.token);
    assert_eq!(cfg.allowed_mounts, vec!["/srv".to_string()]);

    let st2 = node(|c| c.ignore_panel_config_updates = true).await;
    let (s, v) = body(
        authed(&st2, Method::POST, "/api/update")
            .json(&json!({"debug": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v), (200, json!({"applied": false})));
    let cfg = wings::config::Config::load(&st2.dir.path().join("config.yml")).unwrap();
    assert!(!cfg.debug, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_answers_with_the_envelope_never_a_panic() {
    let (st, servers) = stack(Options {
        servers: vec![],
        specs: vec![Spec::new("http-bad", "sleep 1000")],
        ..Default::default()
    })
    .await;
    let srv = &servers[0];
    let uuid = srv.uuid.clone();

    // Unparsable / empty bodies.
    for (m, path) in [
        (Method::POST, "/api/servers".to_string()),
        (Method::POST, format!("/api/servers/{uuid}/power")),
        (Method::POST, format!("/api/servers/{uuid}/ws/deny")),
        (Method::POST, "/api/update".to_string()),
    ] {
        for payload in ["", "{", "[1,2]", "\"x\""] {
            let (s, v) = body(
                authed(&st, m.clone(), &path)
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
        authed(&st, Method::POST, "/api/servers")
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
        authed(&st, Method::POST, "/api/servers")
            .json(&json!({"uuid": v1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    // The panel does not know the server (its Remote API answers 404) → 500 with a
    // request id.
    let (s, v) = body(
        authed(&st, Method::POST, "/api/servers")
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
        authed(&st, Method::POST, &format!("/api/servers/{uuid}/power"))
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
            authed(&st, m, p)
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
        authed(&st, Method::POST, &format!("/api/servers/{uuid}/commands"))
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
        let (s, v) = body(authed(&st, m, &p).send().await.unwrap()).await;
        assert_eq!(s, status, "{p}");
        assert!(v["error"].is_string());
    }
    let (s, v) = body(
        st.http
            .get(format!("{}/download/file?token=x", st.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    assert!(v["error"].is_string());

    // Logs size clamping never fails on odd input.
    for q in ["size=-1", "size=abc", "size=100000", "size=0"] {
        let r = authed(&st, Method::GET, &format!("/api/servers/{uuid}/logs?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{q}");
    }
    // Suspended in the panel: after a sync, wings refuses to start it.
    sqlx::query("UPDATE servers SET status = 'suspended' WHERE id = $1")
        .bind(srv.id)
        .execute(&st.p.db)
        .await
        .unwrap();
    let r = authed(&st, Method::POST, &format!("/api/servers/{uuid}/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = body(
        authed(&st, Method::POST, &format!("/api/servers/{uuid}/power"))
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
    assert!(
        st.inspect(&uuid).await.is_null(),
        "no container was created"
    );
}
