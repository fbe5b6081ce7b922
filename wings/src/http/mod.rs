//! The Wings HTTP API (reference §1): router, request ids, CORS, node-token auth and
//! the `{"error": …}` envelope. Route handlers live in one module per resource.

pub mod backups;
pub mod files;
pub mod servers;
pub mod signed;
pub mod system;
pub mod transfers;
pub mod ws;

use crate::App;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const MSG_GENERIC: &str = "An unexpected error was encountered while processing this request";
pub const MSG_UNPARSABLE: &str =
    "The data passed in the request was not in a parsable format. Please try again.";
pub const MSG_NO_SERVER: &str = "The requested resource does not exist on this instance.";

/// An error answered as `{"error": …}`. Internal errors also carry `request_id`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub with_request_id: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            with_request_id: false,
        }
    }

    /// A 500 with the generic message; the cause is logged.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: MSG_GENERIC.into(),
            with_request_id: true,
        }
    }

    pub fn not_implemented() -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "This endpoint is not implemented by this daemon yet.",
        )
    }
}

/// Marks a response whose body must be rebuilt with the request id.
#[derive(Clone)]
struct NeedsRequestId(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = openapi::wings::ErrorResponse {
            error: self.message.clone(),
            request_id: None,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.with_request_id {
            resp.extensions_mut().insert(NeedsRequestId(self.message));
        }
        resp
    }
}

/// JSON body extractor answering bad input with the envelope (400).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, MSG_UNPARSABLE))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, MSG_UNPARSABLE))
    }
}

async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let mut resp = next.run(req).await;
    if let Some(NeedsRequestId(message)) = resp.extensions_mut().remove::<NeedsRequestId>() {
        let status = resp.status();
        let body = openapi::wings::ErrorResponse {
            error: message,
            request_id: Some(id.clone()),
        };
        let mut rebuilt = (status, axum::Json(body)).into_response();
        for (k, v) in resp.headers() {
            if k != header::CONTENT_LENGTH && k != header::CONTENT_TYPE {
                rebuilt.headers_mut().insert(k.clone(), v.clone());
            }
        }
        resp = rebuilt;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn cors(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let cfg = app.config();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut allow = cfg.remote.clone();
    if origin != cfg.remote {
        if let Some(o) = cfg
            .allowed_origins
            .iter()
            .find(|o| o.as_str() == "*" || **o == origin)
        {
            allow = o.clone();
        }
    }
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, PUT, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Accept-Encoding, Authorization, Cache-Control, Content-Type, Content-Length, Origin, X-Real-IP, X-CSRF-Token"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("7200"),
    );
    if cfg.allow_cors_private_network {
        h.insert(
            "access-control-request-private-network",
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// The node-token bearer check (§1.1): scheme exactly `Bearer`, constant-time compare.
fn check_auth(app: &App, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((scheme, token)) = raw.split_once(' ') else {
        return Err(Box::new(unauthorized()));
    };
    if scheme != "Bearer" {
        return Err(Box::new(unauthorized()));
    }
    let expected = app.config().token.clone();
    if expected.is_empty() || !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(Box::new(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "You are not authorized to access this endpoint.",
            )
            .into_response(),
        ));
    }
    Ok(())
}

fn unauthorized() -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "The required authorization heads were not present in the request.",
    )
    .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn require_auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Err(r) = check_auth(&app, req.headers()) {
        return *r;
    }
    next.run(req).await
}

/// Unknown routes: auth first (upstream attaches the bearer check engine-wide), then
/// gin's plain-text 404.
async fn fallback(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_auth(&app, &headers) {
        return *r;
    }
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from("404 page not found"),
    )
        .into_response()
}

async fn not_implemented() -> ApiError {
    ApiError::not_implemented()
}

pub fn router(app: Arc<App>) -> Router {
    use servers as s;
    let protected = Router::new()
        .route("/api/update", post(system::update))
        .route("/api/system", get(system::info))
        .route("/api/servers", get(s::list).post(s::create))
        .route("/api/transfers/{server}", delete(not_implemented))
        .route("/api/servers/{server}", get(s::details).delete(s::delete))
        .route("/api/servers/{server}/logs", get(s::logs))
        .route("/api/servers/{server}/power", post(s::power))
        .route("/api/servers/{server}/commands", post(s::commands))
        .route("/api/servers/{server}/install", post(s::install))
        .route("/api/servers/{server}/reinstall", post(s::reinstall))
        .route("/api/servers/{server}/sync", post(s::sync))
        .route("/api/servers/{server}/ws/deny", post(s::deny))
        .route(
            "/api/servers/{server}/transfer",
            post(transfers::start).delete(transfers::cancel),
        )
        .route("/api/servers/{server}/files/contents", get(files::contents))
        .route(
            "/api/servers/{server}/files/list-directory",
            get(files::list_directory),
        )
        .route("/api/servers/{server}/files/rename", put(files::rename))
        .route("/api/servers/{server}/files/copy", post(files::copy))
        .route("/api/servers/{server}/files/write", post(files::write))
        .route(
            "/api/servers/{server}/files/create-directory",
            post(files::create_directory),
        )
        .route("/api/servers/{server}/files/delete", post(files::delete))
        .route(
            "/api/servers/{server}/files/compress",
            post(files::compress),
        )
        .route(
            "/api/servers/{server}/files/decompress",
            post(files::decompress),
        )
        .route("/api/servers/{server}/files/chmod", post(files::chmod))
        .route(
            "/api/servers/{server}/files/pull",
            get(signed::pull_list).post(signed::pull),
        )
        .route(
            "/api/servers/{server}/files/pull/{download}",
            delete(signed::pull_cancel),
        )
        .route("/api/servers/{server}/backup", post(backups::create))
        .route(
            "/api/servers/{server}/backup/{backup}",
            delete(backups::delete),
        )
        .route(
            "/api/servers/{server}/backup/{backup}/restore",
            post(backups::restore),
        )
        .route_layer(from_fn_with_state(app.clone(), require_auth));
    let public = Router::new()
        .route("/download/backup", get(signed::download_backup))
        .route("/download/file", get(signed::download_file))
        .route(
            "/upload/file",
            post(signed::upload_file).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/api/transfers",
            post(transfers::receive).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/servers/{server}/ws", get(ws::handler));
    public
        .merge(protected)
        .fallback(fallback)
        .layer(from_fn_with_state(app.clone(), cors))
        .layer(from_fn(request_id))
        .with_state(app)
}
