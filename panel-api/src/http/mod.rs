//! The HTTP surface: route groups, the fallbacks that answer unknown routes (404)
//! and wrong methods (405) in the envelope, trailing-slash normalisation, and the
//! OpenAPI document.

pub mod application;
pub mod auth;
pub mod client;
pub mod fractal;
pub mod input;
pub mod remote;

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
        .nest(
            "/api/client",
            client::router().route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::client_guard,
            )),
        )
        .nest(
            "/api/remote",
            remote::router().route_layer(middleware::from_fn_with_state(
                state.clone(),
                remote::daemon_guard,
            )),
        )
        .route(
            "/openapi.json",
            axum::routing::get(crate::openapi::document),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forget_views_after_writes,
        ))
        .with_state(state)
}

/// Drops the cached client server views (`crate::authcache`) once a request that
/// may have written has been handled, before its answer leaves: its writes are
/// committed by then, so the writer's next read sees them without waiting for the
/// triggers' notice. Reads pass untouched (daemon requests all count as writes);
/// every other process hears the notice.
async fn forget_views_after_writes(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // The daemon's transfer reports are GETs that write (upstream's routes).
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !req.uri().path().starts_with("/api/remote/");
    let resp = next.run(req).await;
    if !reads {
        st.auth_cache.forget_views();
    }
    resp
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

/// The methods of every route, by group prefix. The authentication guard wraps the
/// routes (so unknown paths stay 404 without a key), which means axum's own 405 would
/// only be reached after authentication; upstream answers a wrong method first.
type MethodTable = Vec<(&'static str, matchit::Router<&'static [&'static str]>)>;

static METHOD_TABLE: std::sync::OnceLock<MethodTable> = std::sync::OnceLock::new();

fn method_table() -> &'static [(&'static str, matchit::Router<&'static [&'static str]>)] {
    METHOD_TABLE.get_or_init(|| {
        let mut out = Vec::new();
        for (prefix, routes) in [
            ("/api/application", application::METHODS),
            ("/api/client", client::METHODS),
            ("/api/remote", remote::METHODS),
        ] {
            let mut r = matchit::Router::new();
            for (path, methods) in routes {
                // The table is static; a bad entry is caught by the routing tests.
                let _ = r.insert(*path, *methods);
            }
            out.push((prefix, r));
        }
        out
    })
}

/// The allowed methods of `path`, if it is a known route (HEAD with GET).
pub fn allowed_methods(path: &str) -> Option<Vec<&'static str>> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    for (prefix, router) in method_table() {
        if let Some(rest) = path.strip_prefix(prefix) {
            let rest = if rest.is_empty() { "/" } else { rest };
            if let Ok(m) = router.at(rest) {
                let mut list: Vec<&'static str> = Vec::new();
                for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
                    if m.value.contains(&method) || (method == "HEAD" && m.value.contains(&"GET")) {
                        list.push(method);
                    }
                }
                return Some(list);
            }
        }
    }
    None
}

/// Answers a wrong method (405, envelope, `Allow`) and a plain `OPTIONS` (200,
/// `Allow`) before routing, as upstream does.
async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let Some(allowed) = allowed_methods(req.uri().path()) else {
        return next.run(req).await;
    };
    if method == Method::OPTIONS {
        let mut resp = StatusCode::OK.into_response();
        if let Ok(v) = allowed.join(",").parse() {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return resp;
    }
    if allowed.contains(&method.as_str()) {
        return next.run(req).await;
    }
    let path = req
        .uri()
        .path()
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string();
    let list = allowed.join(", ");
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
