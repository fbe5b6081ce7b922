//! The HTTP surface: route groups, the fallbacks that answer unknown routes (404)
//! and wrong methods (405) in the envelope, trailing-slash normalisation, and the
//! OpenAPI document.

pub mod application;
pub mod auth;
pub mod fractal;
pub mod input;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

/// Builds the panel's full router (unnormalised; see [`service`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest(
            "/api/application",
            application::router().route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::application_guard,
            )),
        )
        .route(
            "/openapi.json",
            axum::routing::get(crate::openapi::document),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(method_not_allowed))
        .with_state(state)
}

/// The router with upstream's trailing-slash tolerance, ready to serve.
pub fn service(state: AppState) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router(state))
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/').to_string();
    ApiError::http(
        StatusCode::NOT_FOUND,
        "NotFoundHttpException",
        format!("The route {path} could not be found."),
    )
    .into_response()
}

/// Rewrites axum's bare 405 into upstream's envelope, keeping `Allow`.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().trim_start_matches('/').to_string();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED
        || resp.headers().get(header::CONTENT_TYPE).is_some()
    {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut methods: Vec<String> = allow
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
        methods.push("HEAD".into());
    }
    let order = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    methods.sort_by_key(|m| order.iter().position(|o| o.as_str() == m).unwrap_or(99));
    let list = methods.join(", ");
    let mut out = ApiError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedHttpException",
        format!(
            "The {method} method is not supported for route {path}. Supported methods: {list}."
        ),
    )
    .into_response();
    if let Ok(v) = list.parse() {
        out.headers_mut().insert(header::ALLOW, v);
    }
    out
}
