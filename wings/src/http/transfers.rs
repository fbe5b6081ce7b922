//! Transfer routes (reference §1.9): start/cancel an outgoing push on the source
//! node and receive an incoming archive on the destination node.

use super::{ApiError, JsonBody};
use crate::events::Event;
use crate::filesystem::Filesystem;
use crate::server::Server;
use crate::App;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct StartRequest {
    #[serde(default)]
    url: String,
    #[serde(default)]
    token: String,
}

pub async fn start(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<StartRequest>,
) -> Result<StatusCode, ApiError> {
    let server = super::servers::find(&app, &id)?;
    if req.url.is_empty() || req.token.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The data provided in the request could not be validated.",
        ));
    }
    if server.set_transferring(true) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "A transfer is already in progress for this server.",
        ));
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    app.transfers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), cancel.clone());
    server.publish(Event::TransferStatus("processing".into()));
    let app2 = app.clone();
    tokio::spawn(async move {
        let res =
            crate::transfer::push(app2.clone(), server.clone(), req.url, req.token, cancel).await;
        app2.transfers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server.uuid);
        if let Err(e) = res {
            tracing::error!(server = %server.uuid, error = %e, "outgoing transfer failed");
            server.set_transferring(false);
            server.publish(Event::TransferStatus("failure".into()));
            if let Err(e) = app2
                .shared
                .remote()
                .set_transfer_status(&server.uuid, false)
                .await
            {
                tracing::error!(server = %server.uuid, error = %e, "could not report the transfer failure");
            }
        }
        // On success the panel deletes the server from this node.
    });
    Ok(StatusCode::ACCEPTED)
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let server = super::servers::find(&app, &id)?;
    let token = app
        .transfers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    match token {
        Some(t) if server.is_transferring() => {
            server.publish(Event::TransferStatus("cancelling".into()));
            t.cancel();
            Ok(StatusCode::ACCEPTED)
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "Server is not currently being transferred.",
        )),
    }
}

/// `POST /api/transfers` on the destination.
pub async fn receive(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<StatusCode, ApiError> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = raw.strip_prefix("Bearer ").unwrap_or(raw);
    let denied = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "You are not authorized to access this endpoint.",
        )
    };
    let claims = crate::jwt::verify(token, &app.config().token).map_err(|_| denied())?;
    let uuid = claims
        .sub
        .as_deref()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or_else(denied)?
        .to_string();
    if app.manager.get(&uuid).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "A server with this identifier already exists on this instance.",
        ));
    }
    let mut cfg = app
        .shared
        .remote()
        .get_server_configuration(&uuid)
        .await
        .map_err(ApiError::internal)?;
    if cfg.settings.uuid.is_empty() {
        cfg.settings.uuid = uuid.clone();
    }
    let server = Server::new(app.shared.clone(), cfg);
    server.set_transferring(true);
    app.manager.add(server.clone());
    let result = receive_into(&server, &mut multipart).await;
    let result = match result {
        Ok(()) => server
            .create_container()
            .await
            .map_err(|e| anyhow::anyhow!("could not create the container: {e}")),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            server.set_transferring(false);
            if let Err(e) = app.shared.remote().set_transfer_status(&uuid, true).await {
                tracing::error!(server = %uuid, error = %e, "could not report the transfer success");
            }
            server.publish(Event::TransferStatus("success".into()));
            Ok(StatusCode::OK)
        }
        Err(e) => {
            tracing::error!(server = %uuid, error = %e, "incoming transfer failed");
            server.publish(Event::TransferStatus("failure".into()));
            app.manager.remove(&uuid);
            let _ = app.shared.remote().set_transfer_status(&uuid, false).await;
            let _ = tokio::fs::remove_dir_all(server.data_path()).await;
            Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
        }
    }
}

async fn receive_into(server: &Arc<Server>, multipart: &mut Multipart) -> anyhow::Result<()> {
    let fs = Filesystem::new(server)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut hash: Option<String> = None;
    let mut fs = Some(fs);
    while let Some(mut field) = multipart.next_field().await? {
        match field.name() {
            Some("archive") => {
                let Some(fs) = fs.take() else {
                    anyhow::bail!("more than one archive part");
                };
                let (tx, mut rx) =
                    tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
                let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
                let reader =
                    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
                let task = tokio::task::spawn_blocking(move || {
                    crate::transfer::receive_archive(&fs, reader)
                });
                while let Some(chunk) = field.chunk().await? {
                    if tx.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                hash = Some(task.await??);
            }
            Some("checksum") => {
                let Some(h) = hash.as_deref() else {
                    anyhow::bail!("the checksum arrived before the archive");
                };
                let want = field.text().await?;
                if want.trim() != h {
                    anyhow::bail!("checksum mismatch: expected {}, got {h}", want.trim());
                }
                return Ok(());
            }
            _ => {}
        }
    }
    anyhow::bail!("the archive or its checksum is missing")
}
