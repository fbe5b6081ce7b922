//! Backup routes (reference §1.8): create (background), restore (local archive or
//! the Panel's presigned S3 URL), delete of a local archive.

use super::files::{blocking, fs_error};
use super::{ApiError, JsonBody};
use crate::backup::{self, RestoreSource};
use crate::filesystem::Jail;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

const MSG_BACKUP_NOT_FOUND: &str = "The requested backup was not found on this server.";

#[derive(Deserialize)]
pub struct CreateRequest {
    #[serde(default)]
    adapter: String,
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    ignore: String,
}

fn backup_uuid(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, MSG_BACKUP_NOT_FOUND))
}

pub async fn create(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<StatusCode, ApiError> {
    let server = super::servers::find(&app, &id)?;
    if req.adapter != "wings" && req.adapter != "s3" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The backup adapter provided is not supported.",
        ));
    }
    let uuid = uuid::Uuid::parse_str(&req.uuid)
        .map(|u| u.to_string())
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The data provided in the request could not be validated.",
            )
        })?;
    tokio::spawn(backup::run_backup(
        app.clone(),
        server,
        req.adapter,
        uuid,
        req.ignore,
    ));
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
pub struct RestoreRequest {
    #[serde(default)]
    adapter: String,
    #[serde(default)]
    truncate_directory: bool,
    #[serde(default)]
    download_url: String,
}

pub async fn restore(
    State(app): State<Arc<App>>,
    Path((id, raw)): Path<(String, String)>,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> Result<StatusCode, ApiError> {
    let server = super::servers::find(&app, &id)?;
    if req.adapter != "wings" && req.adapter != "s3" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The data provided in the request could not be validated.",
        ));
    }
    if req.adapter == "s3" && req.download_url.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The download_url field is required when the backup adapter is set to S3.",
        ));
    }
    let uuid = backup_uuid(&raw)?;
    let cfg = app.config();
    let source = if req.adapter == "wings" {
        let path = backup::local_path(&cfg, &uuid);
        if !path.is_file() {
            return Err(ApiError::new(StatusCode::NOT_FOUND, MSG_BACKUP_NOT_FOUND));
        }
        RestoreSource::Local(path)
    } else {
        let resp = reqwest::Client::new()
            .get(&req.download_url)
            .send()
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("The backup could not be downloaded: {e}"),
                )
            })?;
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if ct.is_empty() || !"application/x-gzip application/gzip".contains(&ct) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("The provided backup link is not a supported content type. \"{ct}\" is not application/x-gzip."),
            ));
        }
        RestoreSource::Remote(resp)
    };
    if server.set_restoring(true) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "This server is already restoring a backup.",
        ));
    }
    if req.truncate_directory {
        let (uid, gid) = (cfg.system.user.uid, cfg.system.user.gid);
        let dir = server.data_path();
        let res = blocking(move || {
            let jail = Jail::open(&dir, uid, gid).map_err(fs_error)?;
            backup::truncate_root(&jail).map_err(fs_error)
        })
        .await;
        if let Err(e) = res {
            server.set_restoring(false);
            return Err(e);
        }
        server.invalidate_disk_usage();
    }
    tokio::spawn(backup::run_restore(app.clone(), server, uuid, source));
    Ok(StatusCode::ACCEPTED)
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Path((id, raw)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::servers::find(&app, &id)?;
    let uuid = backup_uuid(&raw)?;
    let path = backup::local_path(&app.config(), &uuid);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::new(StatusCode::NOT_FOUND, MSG_BACKUP_NOT_FOUND))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}
