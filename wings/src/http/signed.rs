//! Browser-facing signed URLs (reference §1.7): `GET /download/file`,
//! `GET /download/backup` and `POST /upload/file`, each authorised by a Panel JWT
//! (HS256, node secret) whose `unique_id` works once. Also the remote pull routes.

use super::files::{blocking, fs_error, open, stream_file};
use super::{ApiError, JsonBody};
use crate::filesystem::{jail, FsError};
use crate::pull::{self, PullError, PullRequest};
use crate::App;
use axum::extract::{ConnectInfo, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openapi::wings::TokenClaims;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

const MSG_NOT_FOUND: &str = "The requested resource was not found on this server.";
const MSG_BACKUP_NOT_FOUND: &str = "The requested backup was not found on this server.";

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
    #[serde(default)]
    directory: String,
}

/// Verifies a signed-URL token. Upstream answers a bad token with a generic 500;
/// it is the client's input, so it gets a 403 in the envelope here.
fn verify(app: &App, token: &str) -> Result<TokenClaims, ApiError> {
    crate::jwt::verify(token, &app.config().token).map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "You are not authorized to access this endpoint.",
        )
    })
}

pub async fn download_file(
    State(app): State<Arc<App>>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let claims = verify(&app, &q.token)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    let server = claims.server_uuid.as_deref().unwrap_or("");
    if app.manager.get(server).is_none() || !app.jwt.use_once(claims.unique_id.as_deref()) {
        return Err(not_found());
    }
    let fs = open(&app, server).await?;
    let rel = jail::clean(claims.file_path.as_deref().unwrap_or("")).map_err(fs_error)?;
    let name = jail::split(&rel).1.to_string();
    let (f, st) = blocking(move || match fs.jail.open_read(&rel) {
        Ok(v) => Ok(v),
        Err(FsError::IsDirectory) => Err(fs_error(FsError::NotFound)),
        Err(e) => Err(fs_error(e)),
    })
    .await?;
    Ok(stream_file(f, st.st_size as u64, &name, None, true))
}

pub async fn download_backup(
    State(app): State<Arc<App>>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let claims = verify(&app, &q.token)?;
    let server = claims.server_uuid.as_deref().unwrap_or("");
    if app.manager.get(server).is_none() || !app.jwt.use_once(claims.unique_id.as_deref()) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, MSG_NOT_FOUND));
    }
    let missing = || ApiError::new(StatusCode::NOT_FOUND, MSG_BACKUP_NOT_FOUND);
    let uuid = claims
        .backup_uuid
        .as_deref()
        .and_then(|u| uuid::Uuid::parse_str(u).ok())
        .ok_or_else(missing)?;
    let path = crate::backup::local_path(&app.config(), &uuid.to_string());
    let f = std::fs::File::open(&path).map_err(|_| missing())?;
    let meta = f.metadata().map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let name = format!("{uuid}.tar.gz");
    Ok(stream_file(f, meta.len(), &name, None, true))
}

pub async fn upload_file(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
    mut multipart: Multipart,
) -> Result<StatusCode, ApiError> {
    let claims = verify(&app, &q.token)?;
    let server = claims.server_uuid.clone().unwrap_or_default();
    if app.manager.get(&server).is_none() || !app.jwt.use_once(claims.unique_id.as_deref()) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, MSG_NOT_FOUND));
    }
    let fs = open(&app, &server).await?;
    let dir = jail::clean(&q.directory).map_err(fs_error)?;
    let limit_mb = app.config().api.upload_limit.max(0) as u64;
    let limit = limit_mb * 1024 * 1024;
    let bad = |_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "The data passed in the request was not in a parsable format. Please try again.",
        )
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("files") {
            continue;
        }
        let raw = field.file_name().unwrap_or("").to_string();
        let name = jail::clean(&raw).map_err(fs_error)?;
        let name = jail::split(&name).1.to_string();
        if name.is_empty() {
            continue;
        }
        let target = jail::join(&dir, &name).map_err(fs_error)?;
        fs.check_denylist(&target).map_err(fs_error)?;
        use futures::StreamExt;
        let too_large =
            format!("File {name} is larger than the maximum file upload size of {limit_mb} MB.");
        let mut seen = 0u64;
        let stream = field.map(move |r| {
            let b = r.map_err(std::io::Error::other)?;
            seen += b.len() as u64;
            if seen > limit {
                return Err(std::io::Error::from(std::io::ErrorKind::FileTooLarge));
            }
            Ok(b)
        });
        let res = fs.write_stream(&target, Box::pin(stream), 0o644).await;
        match res {
            Ok(_) => {}
            Err(FsError::Io(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, too_large));
            }
            Err(FsError::Io(_)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "The upload was interrupted before it completed.",
                ))
            }
            Err(e) => return Err(fs_error(e)),
        }
        app.activity.record(
            &server,
            "server:file.uploaded",
            claims.user_uuid.clone(),
            Some(peer.ip()),
            serde_json::json!({"file": name, "directory": format!("/{dir}")}),
        );
    }
    Ok(StatusCode::OK)
}

// ------------------------------------------------------------------ pull

fn pull_enabled(app: &App) -> Result<(), ApiError> {
    if app.config().api.disable_remote_download {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "This functionality is not currently enabled on this instance.",
        ));
    }
    Ok(())
}

pub async fn pull_list(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    pull_enabled(&app)?;
    super::files::server(&app, &id)?;
    let list = app.downloads.list(&id);
    let body = if list.is_empty() {
        serde_json::json!({"downloads": null})
    } else {
        serde_json::json!({"downloads": list})
    };
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
pub struct PullBody {
    #[serde(default)]
    url: String,
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    directory: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    use_header: bool,
    #[serde(default)]
    foreground: bool,
}

fn pull_error(e: PullError) -> ApiError {
    match e {
        PullError::Fs(e) => fs_error(e),
        PullError::Transport(t) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The remote file could not be downloaded: {t}"),
        ),
        e => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

pub async fn pull(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PullBody>,
) -> Result<Response, ApiError> {
    pull_enabled(&app)?;
    let root = req.root.clone().or(req.directory.clone());
    let Some(root) = root else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The data provided in the request could not be validated.",
        ));
    };
    let allow = pull::parse_allowlist(&app.config().api.remote_download_allowed_ips);
    pull::check_url(&req.url, &allow).map_err(pull_error)?;
    let fs = open(&app, &id).await?;
    if !fs.has_space_for(1) {
        return Err(fs_error(FsError::NotEnoughSpace));
    }
    let Some((dl, progress, cancel)) = app.downloads.register(&id) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "This server has reached its limit of 3 simultaneous remote file downloads at a time. Try again in a bit.",
        ));
    };
    let root = jail::clean(&root).map_err(fs_error)?;
    let pr = PullRequest {
        url: req.url.clone(),
        root,
        file_name: req.file_name.clone(),
        use_header: req.use_header,
    };
    let server = fs.server.clone();
    let server_cancel = server.cancelled();
    let task = {
        let cancel = cancel.clone();
        async move {
            tokio::select! {
                r = pull::run(fs, pr, allow, progress, cancel) => r,
                _ = server_cancel.cancelled() => Err(PullError::Cancelled),
            }
        }
    };
    if req.foreground {
        let res = task.await;
        app.downloads.finish(&dl);
        return Ok(Json(res.map_err(pull_error)?).into_response());
    }
    let app2 = app.clone();
    let dl2 = dl.clone();
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::warn!(server = %server.uuid, error = %e, "remote download failed");
        }
        app2.downloads.finish(&dl2);
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"identifier": dl})),
    )
        .into_response())
}

pub async fn pull_cancel(
    State(app): State<Arc<App>>,
    Path((id, dl)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    pull_enabled(&app)?;
    super::files::server(&app, &id)?;
    app.downloads.cancel(&id, &dl);
    Ok(StatusCode::NO_CONTENT)
}
