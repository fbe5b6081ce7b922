//! Routing behaviour that needs no database: unknown routes and wrong methods are
//! answered in the envelope before authentication (reference §1.2).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use panel_api::config::Config;
use panel_api::crypto::Encrypter;
use panel_api::state::AppState;
use tower::ServiceExt;

fn state() -> AppState {
    let cfg = Config::for_tests(
        "postgres://nobody@%2Fnonexistent/none".into(),
        "http://panel.test".into(),
    );
    let pool = panel_api::db::lazy_url("postgres://nobody@%2Fnonexistent/none", 1).unwrap();
    AppState::new(
        pool,
        cfg.clone(),
        Encrypter::new(cfg.app_key.as_deref().unwrap()).unwrap(),
    )
    .unwrap()
}

async fn send(method: &str, path: &str) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let svc = panel_api::http::service(state());
    let resp = svc
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn wrong_methods_get_405_with_the_allowed_list_before_auth() {
    let (status, headers, body) = send("PUT", "/api/application/users").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD, POST");
    assert_eq!(body["errors"][0]["code"], "MethodNotAllowedHttpException");
    assert_eq!(
        body["errors"][0]["detail"],
        "The PUT method is not supported for route api/application/users. Supported methods: GET, HEAD, POST."
    );
}

#[tokio::test]
async fn unknown_routes_get_404_before_auth() {
    let (status, _, body) = send("GET", "/api/application/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["errors"][0]["detail"],
        "The route api/application/nope could not be found."
    );
}

#[tokio::test]
async fn the_method_table_matches_the_router() {
    // Every listed method reaches a handler (the guard answers 401 without a key);
    // every other method is a 405.
    for (path, methods) in panel_api::http::application::METHODS {
        let concrete = format!(
            "/api/application{}",
            path.replace("{force}", "force")
                .replace('{', "1")
                .replace('}', "")
        );
        let concrete = concrete
            .replace("1external_id", "x")
            .replace("1user", "1")
            .replace("1node", "1")
            .replace("1allocation", "1")
            .replace("1location", "1")
            .replace("1server", "1")
            .replace("1database", "1")
            .replace("1nest", "1")
            .replace("1egg", "1");
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let (status, _, _) = send(m, &concrete).await;
            if methods.contains(&m) {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{m} {concrete} should route"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {concrete} should be 405"
                );
            }
        }
    }
}

#[tokio::test]
async fn options_lists_the_methods() {
    let (status, headers, _) = send("OPTIONS", "/api/application/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["allow"], "GET,HEAD,POST");
}

#[tokio::test]
async fn the_client_method_table_matches_the_router() {
    assert_eq!(
        panel_api::http::client::METHODS
            .iter()
            .map(|(_, m)| m.len())
            .sum::<usize>(),
        69,
        "upstream's Client API has 69 routes"
    );
    let param = regex::Regex::new(r"\{[^}]+\}").unwrap();
    for (path, methods) in panel_api::http::client::METHODS {
        let concrete = format!("/api/client{}", param.replace_all(path, "1"));
        let concrete = concrete.trim_end_matches('/').to_string();
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let (status, _, _) = send(m, &concrete).await;
            if methods.contains(&m) {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{m} {concrete} should route"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {concrete} should be 405"
                );
            }
        }
    }
}
