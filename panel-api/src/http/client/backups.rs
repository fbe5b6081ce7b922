//! Backups on the client API (reference §7.4 "Backups", §5 throttle): the panel's
//! side of the backup state machine — creation with the limit and throttle,
//! locking, signed download links, restore and deletion — driving the node's daemon.

use super::{active, atom, atom_opt, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::http::application::servers::ServerRow;
use crate::http::auth::Auth;
use crate::http::fractal::{self, Page};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{Rule, Validator};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/backups", get(index).post(store))
        .route(
            "/servers/{server}/backups/{backup}",
            get(view).delete(destroy),
        )
        .route("/servers/{server}/backups/{backup}/download", get(download))
        .route("/servers/{server}/backups/{backup}/lock", post(lock))
        .route("/servers/{server}/backups/{backup}/restore", post(restore))
}

#[derive(sqlx::FromRow, Clone, Debug)]
pub struct BackupRow {
    pub id: i64,
    pub server_id: i64,
    pub uuid: uuid::Uuid,
    pub is_successful: bool,
    pub is_locked: bool,
    pub name: String,
    pub ignored_files: Value,
    pub disk: String,
    pub checksum: Option<String>,
    pub bytes: i64,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLS: &str = "id, server_id, uuid, is_successful, is_locked, name, ignored_files, disk, checksum, bytes, completed_at, created_at";

pub fn attrs(b: &BackupRow) -> Value {
    json!({
        "uuid": b.uuid.to_string(), "is_successful": b.is_successful, "is_locked": b.is_locked, "name": b.name,
        "ignored_files": b.ignored_files, "checksum": b.checksum, "bytes": b.bytes,
        "created_at": atom(&b.created_at), "completed_at": atom_opt(&b.completed_at),
    })
}

async fn find(st: &AppState, ctx: &Ctx, raw: &str) -> ApiResult<BackupRow> {
    let uuid: uuid::Uuid = raw.parse().map_err(|_| ApiError::not_found())?;
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM backups WHERE uuid = $1 AND server_id = $2 AND deleted_at IS NULL"
    ))
    .bind(uuid)
    .bind(ctx.server.id)
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(ApiError::not_found)
}

/// Upstream's InitiateBackupService. `override_oldest` (schedules) deletes the
/// oldest unlocked backup instead of refusing when the limit is reached.
pub async fn initiate(
    st: &AppState,
    server: &ServerRow,
    name: Option<&str>,
    ignored: &str,
    locked: bool,
    override_oldest: bool,
) -> ApiResult<BackupRow> {
    let (limit, period) = (st.cfg.backup_throttle_limit, st.cfg.backup_throttle_period);
    if period > 0 {
        let recent: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT created_at FROM backups WHERE server_id = $1 AND created_at >= now() - make_interval(secs => $2)
               AND (is_successful OR completed_at IS NULL) ORDER BY created_at DESC",
        )
        .bind(server.id)
        .bind(period as f64)
        .fetch_all(&st.db)
        .await?;
        if recent.len() as i64 >= limit {
            let oldest = recent.last().copied().unwrap_or_else(Utc::now);
            let retry = (oldest + chrono::Duration::seconds(period) - Utc::now())
                .num_seconds()
                .max(1);
            return Err(ApiError::Http {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "TooManyRequestsHttpException",
                detail: format!(
                    "Only {limit} backups may be generated within a {period} second span of time."
                ),
                headers: vec![(header::RETRY_AFTER, retry.to_string())],
            });
        }
    }
    let too_many = || {
        ApiError::display(
            "TooManyBackupsException",
            format!(
                "Cannot create a new backup, this server has reached its limit of {} backups.",
                server.backup_limit
            ),
        )
    };
    let live: Vec<BackupRow> = sqlx::query_as(&format!(
        "SELECT {COLS} FROM backups WHERE server_id = $1 AND deleted_at IS NULL AND (is_successful OR completed_at IS NULL) ORDER BY created_at"
    ))
    .bind(server.id)
    .fetch_all(&st.db)
    .await?;
    if server.backup_limit <= 0 || live.len() as i64 >= server.backup_limit {
        if !override_oldest || server.backup_limit <= 0 {
            return Err(too_many());
        }
        let oldest = live
            .iter()
            .find(|b| !b.is_locked && b.is_successful)
            .cloned()
            .ok_or_else(too_many)?;
        delete_backup(st, server, &oldest).await?;
    }
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("Backup at {}", Utc::now().format("%Y-%m-%d %H:%M:%S")));
    let ignored_list: Vec<String> = ignored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let adapter = if st.cfg.backup_driver == "s3" {
        "s3"
    } else {
        "wings"
    };
    let row: BackupRow = sqlx::query_as(&format!(
        "INSERT INTO backups (server_id, uuid, name, ignored_files, disk, is_locked) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLS}"
    ))
    .bind(server.id)
    .bind(uuid::Uuid::new_v4())
    .bind(&name)
    .bind(json!(ignored_list))
    .bind(adapter)
    .bind(locked)
    .fetch_one(&st.db)
    .await?;
    let node = crate::http::application::nodes::find(st, server.node_id).await?;
    if let Err(e) = st
        .daemon
        .backup(
            &node.conn(st)?,
            &server.uuid.to_string(),
            adapter,
            &row.uuid.to_string(),
            &ignored_list.join("\n"),
        )
        .await
    {
        // No half-made backup: the row goes with the failed request.
        sqlx::query("DELETE FROM backups WHERE id = $1")
            .bind(row.id)
            .execute(&st.db)
            .await?;
        return Err(e.into());
    }
    Ok(row)
}

/// A presigned GET of an S3 backup, valid five minutes (upstream's DownloadLinkService).
fn s3_download_url(st: &AppState, server: &ServerRow, b: &BackupRow) -> ApiResult<String> {
    let s3 = st.s3.as_ref().ok_or_else(|| {
        ApiError::bad_request("The S3 backup disk is not configured on this panel.")
    })?;
    Ok(s3.presign(
        "GET",
        &crate::s3::backup_key(&server.uuid, &b.uuid),
        &[],
        300,
    )?)
}

/// Upstream's DeleteBackupService: locked finished backups stay; the node's archive
/// goes first (a 404 there is fine), then the row is soft-deleted.
pub async fn delete_backup(st: &AppState, server: &ServerRow, b: &BackupRow) -> ApiResult<()> {
    if b.is_locked && b.is_successful && b.completed_at.is_some() {
        return Err(ApiError::display(
            "BackupLockedException",
            "Cannot delete a backup that is marked as locked.",
        ));
    }
    if b.disk == "s3" {
        let s3 = st.s3.as_ref().ok_or_else(|| {
            ApiError::bad_request("The S3 backup disk is not configured on this panel.")
        })?;
        s3.delete_object(&crate::s3::backup_key(&server.uuid, &b.uuid))
            .await?;
    } else if b.disk == "wings" {
        let node = crate::http::application::nodes::find(st, server.node_id).await?;
        match st
            .daemon
            .delete_backup(
                &node.conn(st)?,
                &server.uuid.to_string(),
                &b.uuid.to_string(),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    sqlx::query("UPDATE backups SET deleted_at = now(), updated_at = now() WHERE id = $1")
        .bind(b.id)
        .execute(&st.db)
        .await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/client/servers/{server}/backups", tag = "client backups",
    params(("server" = String, Path), ("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query)),
    responses((status = 200, description = "paginated `backup` with meta.backup_count")), security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("backup.read")?;
    let page = Page::capped(&p, 20, 50)?;
    let (total, live): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE is_successful OR completed_at IS NULL) FROM backups WHERE server_id = $1 AND deleted_at IS NULL",
    )
    .bind(ctx.server.id)
    .fetch_one(&st.db)
    .await?;
    let rows: Vec<BackupRow> = sqlx::query_as(&format!(
        "SELECT {COLS} FROM backups WHERE server_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT $2 OFFSET $3"
    ))
    .bind(ctx.server.id)
    .bind(page.per_page)
    .bind(page.offset())
    .fetch_all(&st.db)
    .await?;
    let items: Vec<Value> = rows.iter().map(attrs).collect();
    let count = items.len();
    let mut meta = json!({"backup_count": live});
    let pag = fractal::pagination(
        total,
        count,
        &page,
        &format!(
            "{}/api/client/servers/{}/backups",
            st.cfg.app_url, ctx.server.uuid_short
        ),
        None,
    );
    meta["pagination"] = pag["pagination"].clone();
    Ok(fractal::ok(&fractal::paginated("backup", items, meta)))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/backups", tag = "client backups",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 200, description = "`backup`"), (status = 400, body = openapi::ErrorEnvelope), (status = 429, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("backup.create")?;
    let mut v = Validator::new(&body.0);
    v.check("name", &[Rule::Nullable, Rule::String, Rule::Max(191.0)]);
    v.check("is_locked", &[Rule::Nullable, Rule::Boolean]);
    v.check("ignored", &[Rule::Nullable, Rule::String]);
    v.finish()?;
    let locked = ctx.can("backup.delete")
        && crate::validate::as_bool(body.get("is_locked")).unwrap_or(false);
    let b = initiate(
        &st,
        &ctx.server,
        body.get("name").and_then(|n| n.as_str()),
        body.get("ignored").and_then(|n| n.as_str()).unwrap_or(""),
        locked,
        false,
    )
    .await?;
    ctx.log_with(
        &st,
        "server:backup.start",
        json!({"name": b.name}),
        &[crate::activity::Subject {
            kind: "backup",
            id: b.id,
        }],
    )
    .await;
    Ok(fractal::ok(&fractal::item("backup", attrs(&b), None)))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/backups/{backup}", tag = "client backups",
    params(("server" = String, Path), ("backup" = String, Path)), responses((status = 200, description = "`backup`")), security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, backup)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let b = find(&st, &ctx, &backup).await?;
    ctx.require("backup.read")?;
    Ok(fractal::ok(&fractal::item("backup", attrs(&b), None)))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/backups/{backup}/download", tag = "client backups",
    params(("server" = String, Path), ("backup" = String, Path)), responses((status = 200, description = "`signed_url`")), security(("api_key" = [])))]
pub async fn download(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, backup)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let b = find(&st, &ctx, &backup).await?;
    ctx.require("backup.download")?;
    if b.disk == "s3" {
        let url = s3_download_url(&st, &ctx.server, &b)?;
        ctx.log(&st, "server:backup.download", json!({"name": b.name}))
            .await;
        return Ok(fractal::ok(&fractal::item(
            "signed_url",
            json!({"url": url}),
            None,
        )));
    }
    if b.disk != "wings" {
        return Err(ApiError::bad_request(
            "The backup requested references an unknown disk driver type and cannot be downloaded.",
        ));
    }
    let mut claims = serde_json::Map::new();
    claims.insert("backup_uuid".into(), b.uuid.to_string().into());
    claims.insert("server_uuid".into(), ctx.server.uuid.to_string().into());
    let item = ctx.signed_url(&st, "/download/backup", claims)?;
    ctx.log(&st, "server:backup.download", json!({"name": b.name}))
        .await;
    Ok(fractal::ok(&item))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/backups/{backup}/lock", tag = "client backups",
    params(("server" = String, Path), ("backup" = String, Path)), responses((status = 200, description = "`backup`")), security(("api_key" = [])))]
pub async fn lock(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, backup)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let b = find(&st, &ctx, &backup).await?;
    ctx.require("backup.delete")?;
    let b: BackupRow = sqlx::query_as(&format!(
        "UPDATE backups SET is_locked = NOT is_locked, updated_at = now() WHERE id = $1 RETURNING {COLS}"
    ))
    .bind(b.id)
    .fetch_one(&st.db)
    .await?;
    let event = if b.is_locked {
        "server:backup.lock"
    } else {
        "server:backup.unlock"
    };
    ctx.log(&st, event, json!({"name": b.name})).await;
    Ok(fractal::ok(&fractal::item("backup", attrs(&b), None)))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/backups/{backup}/restore", tag = "client backups",
    params(("server" = String, Path), ("backup" = String, Path)), request_body = Object,
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn restore(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path((server, backup)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let b = find(&st, &ctx, &backup).await?;
    ctx.require("backup.restore")?;
    let mut v = Validator::new(&body.0);
    v.check("truncate", &[Rule::Required, Rule::Boolean]);
    v.finish()?;
    let truncate = crate::validate::as_bool(body.get("truncate")).unwrap_or(false);
    if ctx.server.status.is_some() {
        return Err(ApiError::bad_request(
            "This server is not currently in a state that allows for a backup to be restored.",
        ));
    }
    if !b.is_successful && b.completed_at.is_none() {
        return Err(ApiError::bad_request(
            "This backup cannot be restored at this time: not completed or failed.",
        ));
    }
    let download_url = if b.disk == "s3" {
        s3_download_url(&st, &ctx.server, &b)?
    } else {
        String::new()
    };
    // Claim the server atomically so two restores cannot both start.
    let claimed = sqlx::query(
        "UPDATE servers SET status = 'restoring_backup', updated_at = now() WHERE id = $1 AND status IS NULL",
    )
    .bind(ctx.server.id)
    .execute(&st.db)
    .await?;
    if claimed.rows_affected() == 0 {
        return Err(ApiError::bad_request(
            "This server is not currently in a state that allows for a backup to be restored.",
        ));
    }
    if let Err(e) = st
        .daemon
        .restore_backup(
            &ctx.conn(&st)?,
            &ctx.server.uuid.to_string(),
            &b.uuid.to_string(),
            &b.disk,
            truncate,
            &download_url,
        )
        .await
    {
        sqlx::query(
            "UPDATE servers SET status = NULL WHERE id = $1 AND status = 'restoring_backup'",
        )
        .bind(ctx.server.id)
        .execute(&st.db)
        .await?;
        return Err(e.into());
    }
    ctx.log_with(
        &st,
        "server:backup.restore",
        json!({"name": b.name, "truncate": truncate}),
        &[crate::activity::Subject {
            kind: "backup",
            id: b.id,
        }],
    )
    .await;
    Ok(fractal::no_content())
}

#[utoipa::path(delete, path = "/api/client/servers/{server}/backups/{backup}", tag = "client backups",
    params(("server" = String, Path), ("backup" = String, Path)),
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn destroy(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, backup)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let b = find(&st, &ctx, &backup).await?;
    ctx.require("backup.delete")?;
    delete_backup(&st, &ctx.server, &b).await?;
    ctx.log_with(
        &st,
        "server:backup.delete",
        json!({"name": b.name, "failed": !b.is_successful}),
        &[crate::activity::Subject {
            kind: "backup",
            id: b.id,
        }],
    )
    .await;
    Ok(fractal::no_content())
}
