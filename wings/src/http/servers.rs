//! Server routes (reference §1.5): list, create, details, delete, logs, power,
//! commands, install, reinstall, sync and the websocket denylist.

use super::{ApiError, JsonBody, MSG_NO_SERVER};
use crate::server::{PowerAction, Server, ServerError};
use crate::App;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use openapi::wings::{
    CommandsRequest, CreateServerRequest, DenyJtisRequest, LogsResponse, PowerRequest,
    ServerDetails,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn find(app: &App, id: &str) -> Result<Arc<Server>, ApiError> {
    app.manager
        .get(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, MSG_NO_SERVER))
}

pub async fn list(State(app): State<Arc<App>>) -> Json<Vec<ServerDetails>> {
    Json(app.manager.all().iter().map(|s| s.details()).collect())
}

pub async fn details(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ServerDetails>, ApiError> {
    Ok(Json(find(&app, &id)?.details()))
}

pub async fn create(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<CreateServerRequest>,
) -> Result<StatusCode, ApiError> {
    let valid = uuid::Uuid::parse_str(&req.uuid)
        .map(|u| u.get_version_num() == 4)
        .unwrap_or(false);
    if !valid {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The data provided in the request could not be validated.",
        ));
    }
    let mut cfg = app
        .shared
        .remote()
        .get_server_configuration(&req.uuid)
        .await
        .map_err(ApiError::internal)?;
    if cfg.settings.uuid.is_empty() {
        cfg.settings.uuid = req.uuid.clone();
    }
    let server = Server::new(app.shared.clone(), cfg);
    app.manager.add(server.clone());
    let start = req.start_on_completion;
    tokio::spawn(async move {
        if let Err(e) = server.create_container().await {
            tracing::error!(server = %server.uuid, error = %e, "failed to create server environment");
            return;
        }
        if let Err(e) = server.install(false).await {
            tracing::error!(server = %server.uuid, error = %e, "failed to run install process");
            return;
        }
        if start {
            if let Err(e) = server
                .handle_power(PowerAction::Start, Some(Duration::from_secs(30)))
                .await
            {
                tracing::error!(server = %server.uuid, error = %e, "failed to start server after install");
            }
        }
    });
    Ok(StatusCode::ACCEPTED)
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = find(&app, &id)?;
    app.downloads.cancel_server(&id);
    s.destroy().await.map_err(ApiError::internal)?;
    app.manager.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn logs(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<LogsResponse>, ApiError> {
    let s = find(&app, &id)?;
    let size = q
        .get("size")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n > 0 && *n <= 100)
        .unwrap_or(100) as usize;
    let data = s.read_log(size).await.map_err(ApiError::internal)?;
    Ok(Json(LogsResponse { data }))
}

pub async fn power(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PowerRequest>,
) -> Result<StatusCode, ApiError> {
    let s = find(&app, &id)?;
    let Some(action) = PowerAction::parse(&req.action) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The power action provided was not valid, should be one of \"stop\", \"start\", \"restart\", \"kill\"",
        ));
    };
    if matches!(action, PowerAction::Start | PowerAction::Restart) && s.is_suspended() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot start or restart a server that is suspended.",
        ));
    }
    let wait = match req.wait_seconds.unwrap_or(0) {
        0 => None,
        w @ 1..=300 => Some(Duration::from_secs(w as u64)),
        _ => Some(Duration::from_secs(30)),
    };
    tokio::spawn(async move {
        if let Err(e) = s.handle_power(action, wait).await {
            tracing::warn!(server = %s.uuid, action = action.as_str(), error = %e, "power action failed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

pub async fn commands(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let s = find(&app, &id)?;
    if !s.is_running().await {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Cannot send commands to a stopped server instance.",
        ));
    }
    let req: CommandsRequest = serde_json::from_slice(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, super::MSG_UNPARSABLE))?;
    for c in &req.commands {
        if let Err(e) = s.send_command(c).await {
            tracing::warn!(server = %s.uuid, error = %e, "failed to send command to server");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn install(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = find(&app, &id)?;
    tokio::spawn(async move {
        if let Err(e) = s.sync().await {
            tracing::error!(server = %s.uuid, error = %e, "failed to sync server before install");
            return;
        }
        if let Err(e) = s.install(false).await {
            tracing::error!(server = %s.uuid, error = %e, "install failed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

pub async fn reinstall(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = find(&app, &id)?;
    if s.executing_power_action() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Cannot execute server reinstall event while another power action is running.",
        ));
    }
    tokio::spawn(async move {
        if let Err(e) = s.reinstall().await {
            tracing::error!(server = %s.uuid, error = %e, "reinstall failed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

pub async fn sync(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = find(&app, &id)?;
    s.sync()
        .await
        .map_err(|e: ServerError| ApiError::internal(e))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deny(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<DenyJtisRequest>,
) -> Result<StatusCode, ApiError> {
    find(&app, &id)?;
    for jti in &req.jtis {
        app.jwt.deny(jti);
    }
    Ok(StatusCode::NO_CONTENT)
}
