//! The daemon-facing Remote API (`/api/remote`, wings-protocol §4): authenticated
//! with the node's `token_id.token`, it serves server configurations and install
//! scripts to Wings and takes back install, transfer, backup and activity reports
//! and SFTP logins.

pub mod configuration;

use crate::activity::{self, Subject};
use crate::crypto;
use crate::error::{ApiError, ApiResult};
use crate::http::application::{nodes, servers};
use crate::http::auth::bearer;
use crate::http::fractal;
use crate::state::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openapi::remote::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers", get(list_servers))
        .route("/servers/reset", post(reset))
        .route("/activity", post(activity_batch))
        .route("/servers/{uuid}", get(server_configuration))
        .route(
            "/servers/{uuid}/install",
            get(install_script).post(install_status),
        )
        .route(
            "/servers/{uuid}/transfer/success",
            get(transfer_success).post(transfer_success),
        )
        .route(
            "/servers/{uuid}/transfer/failure",
            get(transfer_failure).post(transfer_failure),
        )
        .route("/sftp/auth", post(sftp_auth))
        .route(
            "/backups/{backup}",
            get(backup_upload_urls).post(backup_status),
        )
        .route("/backups/{backup}/restore", post(backup_restore_status))
}

/// Every route's methods, for the 405 answer.
pub const METHODS: &[(&str, &[&str])] = &[
    ("/servers", &["GET"]),
    ("/servers/reset", &["POST"]),
    ("/activity", &["POST"]),
    ("/servers/{uuid}", &["GET"]),
    ("/servers/{uuid}/install", &["GET", "POST"]),
    ("/servers/{uuid}/transfer/success", &["GET", "POST"]),
    ("/servers/{uuid}/transfer/failure", &["GET", "POST"]),
    ("/sftp/auth", &["POST"]),
    ("/backups/{backup}", &["GET", "POST"]),
    ("/backups/{backup}/restore", &["POST"]),
];

/// The node a daemon authenticated as.
#[derive(Clone, Debug)]
pub struct DaemonNode(pub nodes::NodeRow);

/// `Authorization: Bearer <token_id>.<token>`: missing → 401, malformed → 400,
/// unknown or wrong → 403 (upstream's DaemonAuthenticate). Bodies may be `null`.
pub async fn daemon_guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_string)
    else {
        return ApiError::http(
            StatusCode::UNAUTHORIZED,
            "HttpException",
            "The authorization header provided was not in a valid format.",
        )
        .into_response();
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 2 || parts[0].is_empty() || parts[1].is_empty() {
        return ApiError::bad_request(
            "The Authorization header provided was not in a valid format.",
        )
        .into_response();
    }
    let denied =
        || ApiError::forbidden("You are not authorized to access this resource.").into_response();
    let node: Option<i64> =
        match sqlx::query_scalar("SELECT id FROM nodes WHERE daemon_token_id = $1")
            .bind(parts[0])
            .fetch_optional(&st.db)
            .await
        {
            Ok(n) => n,
            Err(e) => return ApiError::from(e).into_response(),
        };
    let Some(node_id) = node else { return denied() };
    let node = match nodes::find(&st, node_id).await {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let secret = match st.enc.decrypt(&node.daemon_token) {
        Ok(s) => s,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if !crypto::eq_ct(secret.as_bytes(), parts[1].as_bytes()) {
        return denied();
    }
    req.extensions_mut().insert(DaemonNode(node));
    next.run(req).await
}

/// Reads a JSON body that may be absent or the literal `null`.
async fn json_body<T: serde::de::DeserializeOwned + Default>(
    req: Request,
    limit: usize,
) -> ApiResult<T> {
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ApiError::http(StatusCode::PAYLOAD_TOO_LARGE, "PostTooLargeException", ""))?;
    let trimmed: &[u8] = bytes.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(trimmed).map_err(|e| {
        ApiError::field(
            "body",
            "json",
            format!("The request body is not valid: {e}"),
        )
    })
}

fn node_of(req: &Request) -> ApiResult<nodes::NodeRow> {
    req.extensions()
        .get::<DaemonNode>()
        .map(|n| n.0.clone())
        .ok_or(ApiError::Unauthenticated)
}

async fn server_by_uuid(st: &AppState, uuid: &str) -> ApiResult<servers::ServerRow> {
    let uuid: uuid::Uuid = uuid.parse().map_err(|_| ApiError::not_found())?;
    sqlx::query_as::<_, servers::ServerRow>(&format!("{} WHERE s.uuid = $1", servers::SELECT))
        .bind(uuid)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// `GET /servers?page=N&per_page=M` — this node's servers, Laravel-paginated.
/// Wings asks for page 0 first; that is page 1.
pub async fn list_servers(State(st): State<AppState>, req: Request) -> ApiResult<Response> {
    let node = node_of(&req)?;
    let p = crate::http::input::Params::parse(req.uri().query().unwrap_or(""));
    let page = p
        .get("page")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let per_page = p
        .get("per_page")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(50)
        .min(fractal::MAX_PER_PAGE);
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE node_id = $1")
        .bind(node.id)
        .fetch_one(&st.db)
        .await?;
    let rows: Vec<servers::ServerRow> = sqlx::query_as(&format!(
        "{} WHERE s.node_id = $1 ORDER BY s.id LIMIT $2 OFFSET $3",
        servers::SELECT
    ))
    .bind(node.id)
    .bind(per_page)
    .bind((page - 1) * per_page)
    .fetch_all(&st.db)
    .await?;
    let data = configuration::build(&st, &rows).await?;
    let last_page = ((total + per_page - 1) / per_page).max(1);
    let path = format!("{}/api/remote/servers", st.cfg.app_url);
    let url = |n: i64| format!("{path}?page={n}");
    let from = (!data.is_empty()).then(|| ((page - 1) * per_page + 1) as u64);
    let to = (!data.is_empty()).then(|| ((page - 1) * per_page) as u64 + data.len() as u64);
    let mut links = vec![PaginationMetaLink {
        url: (page > 1).then(|| url(page - 1)),
        label: "&laquo; Previous".into(),
        active: false,
    }];
    for n in 1..=last_page.min(50) {
        links.push(PaginationMetaLink {
            url: Some(url(n)),
            label: n.to_string(),
            active: n == page,
        });
    }
    links.push(PaginationMetaLink {
        url: (page < last_page).then(|| url(page + 1)),
        label: "Next &raquo;".into(),
        active: false,
    });
    let body = ServerList {
        data,
        links: PaginationLinks {
            first: Some(url(1)),
            last: Some(url(last_page)),
            prev: (page > 1).then(|| url(page - 1)),
            next: (page < last_page).then(|| url(page + 1)),
        },
        meta: PaginationMeta {
            current_page: page as u64,
            from,
            last_page: last_page as u64,
            links,
            path,
            per_page: per_page as u64,
            to,
            total: total as u64,
        },
    };
    Ok(fractal::ok(&body))
}

/// `POST /servers/reset` — after a daemon boots, nothing of its is still installing
/// or restoring.
pub async fn reset(State(st): State<AppState>, req: Request) -> ApiResult<Response> {
    let node = node_of(&req)?;
    sqlx::query("UPDATE servers SET status = NULL, updated_at = now() WHERE node_id = $1 AND status IN ('installing', 'restoring_backup')")
        .bind(node.id)
        .execute(&st.db)
        .await?;
    Ok(fractal::no_content())
}

/// `GET /servers/{uuid}` — settings and process configuration (not scoped to the
/// node, as upstream: a destination node reads it during a transfer).
pub async fn server_configuration(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let s = server_by_uuid(&st, &uuid).await?;
    let mut data = configuration::build(&st, std::slice::from_ref(&s)).await?;
    let d = data.pop().ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&ServerConfigurationResponse {
        settings: d.settings,
        process_configuration: d.process_configuration,
    }))
}

/// `GET /servers/{uuid}/install` — the egg's install script (inherited when copied).
pub async fn install_script(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let s = server_by_uuid(&st, &uuid).await?;
    let row: (Option<String>, String, String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT e.script_install, e.script_container, e.script_entry, p.script_install, p.script_container
         FROM eggs e LEFT JOIN eggs p ON p.id = e.copy_script_from WHERE e.id = $1",
    )
    .bind(s.egg_id)
    .fetch_one(&st.db)
    .await?;
    let (own_script, container, entry, parent_script, _parent_container) = row;
    let script = own_script
        .or(parent_script)
        .map(|s| s.replace("\r\n", "\n"));
    Ok(fractal::ok(&InstallationScript {
        container_image: container,
        entrypoint: entry,
        script,
    }))
}

/// `POST /servers/{uuid}/install` — the result of an install or reinstall.
pub async fn install_status(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let s = server_by_uuid(&st, &uuid).await?;
    let body: InstallStatusRequest = json_body(req, 1 << 20).await?;
    let status: Option<&str> = if s.status.as_deref() == Some("suspended") {
        Some("suspended")
    } else if body.successful {
        None
    } else if body.reinstall {
        Some("reinstall_failed")
    } else {
        Some("install_failed")
    };
    sqlx::query(
        "UPDATE servers SET status = $2, installed_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(s.id)
    .bind(status)
    .execute(&st.db)
    .await?;
    Ok(fractal::no_content())
}

async fn active_transfer(
    st: &AppState,
    server_id: i64,
) -> ApiResult<(i64, i64, i64, i64, Option<Value>, Option<Value>)> {
    sqlx::query_as(
        "SELECT id, old_node, new_node, new_allocation, old_additional_allocations, new_additional_allocations
         FROM server_transfers WHERE server_id = $1 AND successful IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(server_id)
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(|| ApiError::conflict("ConflictHttpException", "Server is not being transferred."))
}

fn ids(v: &Option<Value>) -> Vec<i64> {
    v.as_ref()
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
        .unwrap_or_default()
}

/// `GET|POST /servers/{uuid}/transfer/success` — the destination has the server:
/// move it and its allocations, then delete it from the old node.
pub async fn transfer_success(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let s = server_by_uuid(&st, &uuid).await?;
    let (tid, old_node, new_node, new_alloc, _old_extra, new_extra) =
        active_transfer(&st, s.id).await?;
    let mut tx = st.db.begin().await?;
    // The old allocations are released; the new ones become the server's.
    sqlx::query("UPDATE allocations SET server_id = NULL, notes = NULL WHERE server_id = $1 AND node_id = $2")
        .bind(s.id)
        .bind(old_node)
        .execute(&mut *tx)
        .await?;
    let mut new_ids = ids(&new_extra);
    new_ids.push(new_alloc);
    sqlx::query("UPDATE allocations SET server_id = $1 WHERE id = ANY($2)")
        .bind(s.id)
        .bind(&new_ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE servers SET node_id = $2, allocation_id = $3, updated_at = now() WHERE id = $1",
    )
    .bind(s.id)
    .bind(new_node)
    .bind(new_alloc)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE server_transfers SET successful = TRUE, updated_at = now() WHERE id = $1")
        .bind(tid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if let Ok(old) = nodes::find(&st, old_node).await {
        if let Ok(conn) = old.conn(&st) {
            if let Err(e) = st.daemon.delete_server(&conn, &uuid).await {
                tracing::warn!(server = %uuid, error = ?e, "old node did not delete the transferred server");
            }
        }
    }
    Ok(fractal::no_content())
}

/// `GET|POST /servers/{uuid}/transfer/failure` — the transfer is abandoned; the
/// allocations reserved on the destination are freed.
pub async fn transfer_failure(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let s = server_by_uuid(&st, &uuid).await?;
    let (tid, _old_node, _new_node, new_alloc, _old_extra, new_extra) =
        active_transfer(&st, s.id).await?;
    let mut tx = st.db.begin().await?;
    let mut new_ids = ids(&new_extra);
    new_ids.push(new_alloc);
    sqlx::query("UPDATE allocations SET server_id = NULL WHERE id = ANY($1) AND (server_id IS NULL OR server_id = $2) AND id <> $3")
        .bind(&new_ids)
        .bind(s.id)
        .bind(s.allocation_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE server_transfers SET successful = FALSE, updated_at = now() WHERE id = $1")
        .bind(tid)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(fractal::no_content())
}

/// `POST /activity` — events the daemon recorded (SFTP, file, console…).
pub async fn activity_batch(State(st): State<AppState>, req: Request) -> ApiResult<Response> {
    let node = node_of(&req)?;
    let raw: Value = json_body(req, 8 << 20).await?;
    let items = raw
        .get("data")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item
            .get("server")
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .is_none()
        {
            errors.push(crate::error::FieldError {
                field: format!("data.{i}.server"),
                rule: "uuid".into(),
                message: format!("The data.{i}.server must be a valid UUID."),
            });
        }
        if item.get("event").and_then(|s| s.as_str()).is_none() {
            errors.push(crate::error::FieldError {
                field: format!("data.{i}.event"),
                rule: "required".into(),
                message: format!("The data.{i}.event field is required."),
            });
        }
        if item.get("metadata").is_none() {
            errors.push(crate::error::FieldError {
                field: format!("data.{i}.metadata"),
                rule: "present".into(),
                message: format!("The data.{i}.metadata field must be present."),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let uuids: Vec<uuid::Uuid> = items
        .iter()
        .filter_map(|i| i["server"].as_str()?.parse().ok())
        .collect();
    let servers: HashMap<uuid::Uuid, i64> = sqlx::query_as::<_, (uuid::Uuid, i64)>(
        "SELECT uuid, id FROM servers WHERE uuid = ANY($1) AND node_id = $2",
    )
    .bind(&uuids)
    .bind(node.id)
    .fetch_all(&st.db)
    .await?
    .into_iter()
    .collect();
    let user_uuids: Vec<uuid::Uuid> = items
        .iter()
        .filter_map(|i| i["user"].as_str()?.parse().ok())
        .collect();
    let users: HashMap<uuid::Uuid, i64> =
        sqlx::query_as::<_, (uuid::Uuid, i64)>("SELECT uuid, id FROM users WHERE uuid = ANY($1)")
            .bind(&user_uuids)
            .fetch_all(&st.db)
            .await?
            .into_iter()
            .collect();
    let mut tx = st.db.begin().await?;
    for item in &items {
        let event = item["event"].as_str().unwrap_or("");
        // Only server events are accepted; servers of other nodes are ignored.
        if !event.starts_with("server:") {
            continue;
        }
        let Some(server_id) = item["server"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .and_then(|u: uuid::Uuid| servers.get(&u).copied())
        else {
            continue;
        };
        let actor = item["user"]
            .as_str()
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .and_then(|u| users.get(&u).copied());
        let ip = match item["ip"].as_str() {
            Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => Some(ip.to_string()),
            _ => Some("127.0.0.1".to_string()),
        };
        let ts = item["timestamp"].as_str().and_then(openapi::time::parse);
        let props = match &item["metadata"] {
            Value::Object(o) => Value::Object(o.clone()),
            _ => json!({}),
        };
        let subjects = [Subject {
            kind: "server",
            id: server_id,
        }];
        let mut e = activity::Event::new(event);
        e.actor_user = actor;
        e.ip = ip.as_deref();
        e.properties = props;
        e.subjects = &subjects;
        e.timestamp = ts;
        activity::log(&mut *tx, &e).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::OK.into_response())
}

/// Failed SFTP logins per `lower(server identifier)|daemon ip` (upstream's throttle
/// key): 5 a minute.
static SFTP_FAILURES: Mutex<Option<HashMap<String, Vec<Instant>>>> = Mutex::new(None);
const SFTP_MAX_ATTEMPTS: usize = 5;
const SFTP_DECAY: Duration = Duration::from_secs(60);

fn sftp_throttled(key: &str) -> Option<u64> {
    let mut guard = SFTP_FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    let list = map.entry(key.to_string()).or_default();
    list.retain(|t| now.duration_since(*t) < SFTP_DECAY);
    (list.len() >= SFTP_MAX_ATTEMPTS).then(|| {
        list.first()
            .map(|t| (SFTP_DECAY - now.duration_since(*t)).as_secs() + 1)
            .unwrap_or(60)
    })
}

fn sftp_failed(key: &str) {
    let mut guard = SFTP_FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    map.entry(key.to_string()).or_default().push(Instant::now());
    if map.len() > 10_000 {
        let now = Instant::now();
        map.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < SFTP_DECAY));
    }
}

/// The permissions of `user` on server `s`: `*` for owners and admins (admins also
/// get the admin websocket pseudo-permissions), a subuser's list otherwise.
pub async fn permissions_for(
    st: &AppState,
    s: &servers::ServerRow,
    user_id: i64,
    root_admin: bool,
) -> ApiResult<Option<Vec<String>>> {
    if root_admin {
        return Ok(Some(
            [
                "*",
                "admin.websocket.errors",
                "admin.websocket.install",
                "admin.websocket.transfer",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ));
    }
    if s.owner_id == user_id {
        return Ok(Some(vec!["*".into()]));
    }
    let perms: Option<Value> = sqlx::query_scalar(
        "SELECT permissions FROM subusers WHERE server_id = $1 AND user_id = $2",
    )
    .bind(s.id)
    .bind(user_id)
    .fetch_optional(&st.db)
    .await?;
    Ok(perms.map(|p| {
        p.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }))
}

/// The SHA-256 fingerprint of an OpenSSH public key line, as upstream stores it
/// (base64 without padding, no `SHA256:` prefix).
pub fn ssh_fingerprint(line: &str) -> Option<String> {
    crate::ssh::parse(line).ok().map(|k| k.fingerprint)
}

/// `POST /sftp/auth` — checks an SFTP login for the daemon.
pub async fn sftp_auth(State(st): State<AppState>, req: Request) -> ApiResult<Response> {
    let node = node_of(&req)?;
    let daemon_ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let raw: Value = json_body(req, 1 << 20).await?;
    let body = Value::Object(raw.as_object().cloned().unwrap_or_default());
    let mut v = crate::validate::Validator::new(&body);
    use crate::validate::Rule;
    v.check("type", &[Rule::In(&["password", "public_key"])]);
    v.check("username", &[Rule::Required]);
    v.check("password", &[Rule::Required]);
    v.finish()?;
    let kind = body["type"].as_str().unwrap_or("password");
    let username = body["username"].as_str().unwrap_or("");
    let secret = body["password"].as_str().unwrap_or("");
    let (user_part, server_part) = username.rsplit_once('.').unwrap_or((username, ""));
    if server_part.is_empty() {
        return Err(ApiError::bad_request(
            "No valid server identifier was included in the request.",
        ));
    }
    let key = format!("{}|{daemon_ip}", server_part.to_lowercase());
    if let Some(secs) = sftp_throttled(&key) {
        return Err(ApiError::Http {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "TooManyRequestsHttpException",
            detail: format!(
                "Too many login attempts for this account, please try again in {secs} seconds."
            ),
            headers: vec![(header::RETRY_AFTER, secs.to_string())],
        });
    }
    let reject = |count: bool| {
        if count {
            sftp_failed(&key);
        }
        ApiError::http(
            StatusCode::FORBIDDEN,
            "HttpForbiddenException",
            "Authorization credentials were not correct, please try again.",
        )
    };
    let user: Option<(i64, uuid::Uuid, String, bool)> = sqlx::query_as(
        "SELECT id, uuid, password, root_admin FROM users WHERE lower(username) = lower($1)",
    )
    .bind(user_part)
    .fetch_optional(&st.db)
    .await?;
    let Some((user_id, user_uuid, hash, root_admin)) = user else {
        return Err(reject(true));
    };
    // The server part is the short identifier or the full UUID in its canonical
    // (lower-case, hyphenated) form. One indexed lookup for whichever it is: the former
    // `uuid_short = $1 OR uuid::text = $1` could use neither unique index and scanned the
    // node's servers on every SFTP login.
    // Compared without regard to case, as upstream's MySQL collation compares them.
    let part = server_part.to_ascii_lowercase();
    let full = uuid::Uuid::parse_str(&part)
        .ok()
        .filter(|u| u.hyphenated().to_string() == part);
    let server: Option<servers::ServerRow> = match full {
        Some(u) => {
            sqlx::query_as(&format!(
                "{} WHERE s.uuid = $1 AND s.node_id = $2",
                servers::SELECT
            ))
            .bind(u)
            .bind(node.id)
            .fetch_optional(&st.db)
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "{} WHERE s.uuid_short = $1 AND s.node_id = $2",
                servers::SELECT
            ))
            .bind(&part)
            .bind(node.id)
            .fetch_optional(&st.db)
            .await?
        }
    };
    let Some(server) = server else {
        return Err(reject(true));
    };
    if kind == "public_key" {
        let fp = ssh_fingerprint(secret.trim());
        let known: bool = match &fp {
            Some(fp) => sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM user_ssh_keys WHERE user_id = $1 AND fingerprint = $2 AND deleted_at IS NULL)")
                .bind(user_id)
                .bind(fp)
                .fetch_one(&st.db)
                .await?,
            None => false,
        };
        if !known {
            if fp.is_some() {
                let subjects = [Subject {
                    kind: "user",
                    id: user_id,
                }];
                let mut e = activity::Event::new("auth:sftp.fail");
                e.properties = json!({"method": "publickey"});
                e.subjects = &subjects;
                activity::log(&st.db, &e).await?;
            }
            return Err(reject(false));
        }
    } else {
        let pw = secret.to_string();
        let ok = tokio::task::spawn_blocking(move || crypto::verify_password(&pw, &hash))
            .await
            .map_err(ApiError::internal)?;
        if !ok {
            let subjects = [Subject {
                kind: "user",
                id: user_id,
            }];
            let mut e = activity::Event::new("auth:sftp.fail");
            e.properties = json!({"method": "password"});
            e.subjects = &subjects;
            activity::log(&st.db, &e).await?;
            return Err(reject(true));
        }
    }
    let perms = permissions_for(&st, &server, user_id, root_admin)
        .await?
        .unwrap_or_default();
    if !root_admin && server.owner_id != user_id && !perms.iter().any(|p| p == "file.sftp") {
        let subjects = [Subject {
            kind: "server",
            id: server.id,
        }];
        let mut e = activity::Event::new("server:sftp.denied");
        e.actor_user = Some(user_id);
        e.subjects = &subjects;
        activity::log(&st.db, &e).await?;
        return Err(ApiError::http(
            StatusCode::FORBIDDEN,
            "HttpForbiddenException",
            "You do not have permission to access SFTP for this server.",
        ));
    }
    state_conflict(&st, &server, &node).await?;
    Ok(fractal::ok(&SftpAuthResponse {
        user: user_uuid.to_string(),
        server: server.uuid.to_string(),
        permissions: perms,
    }))
}

/// Upstream's `validateCurrentState` (reference §3.4 ServerStateConflictException).
pub async fn state_conflict(
    st: &AppState,
    s: &servers::ServerRow,
    node: &nodes::NodeRow,
) -> ApiResult<()> {
    let msg = if s.status.as_deref() == Some("suspended") {
        Some("This server is currently suspended and the functionality requested is unavailable.")
    } else if node.maintenance_mode {
        Some("The node of this server is currently under maintenance and the functionality requested is unavailable.")
    } else if matches!(
        s.status.as_deref(),
        Some("installing") | Some("install_failed")
    ) {
        Some("This server has not yet completed its installation process, please try again later.")
    } else if s.status.as_deref() == Some("restoring_backup") {
        Some("This server is currently restoring from a backup, please try again later.")
    } else {
        let transferring: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM server_transfers WHERE server_id = $1 AND successful IS NULL)")
            .bind(s.id)
            .fetch_one(&st.db)
            .await?;
        transferring.then_some(
            "This server is currently being transferred to a new machine, please try again later.",
        )
    };
    match msg {
        Some(m) => Err(ApiError::conflict("ServerStateConflictException", m)),
        None => Ok(()),
    }
}

#[derive(sqlx::FromRow)]
struct BackupRef {
    id: i64,
    uuid: uuid::Uuid,
    server_id: i64,
    server_uuid: uuid::Uuid,
    is_successful: bool,
    completed_at: Option<chrono::DateTime<chrono::Utc>>,
    node_id: i64,
    disk: String,
    upload_id: Option<String>,
}

async fn backup_for_node(st: &AppState, raw: &str, node: &nodes::NodeRow) -> ApiResult<BackupRef> {
    let uuid: uuid::Uuid = raw.parse().map_err(|_| ApiError::not_found())?;
    let b: BackupRef = sqlx::query_as(
        "SELECT b.id, b.uuid, b.server_id, s.uuid AS server_uuid, b.is_successful, b.completed_at, s.node_id, b.disk, b.upload_id
         FROM backups b JOIN servers s ON s.id = b.server_id WHERE b.uuid = $1",
    )
    .bind(uuid)
    .fetch_optional(&st.db)
    .await?
    .ok_or_else(ApiError::not_found)?;
    if b.node_id != node.id {
        return Err(ApiError::forbidden(
            "You do not have permission to access that backup.",
        ));
    }
    Ok(b)
}

/// `GET /backups/{uuid}?size=` — presigned multipart upload URLs for S3 backups.
pub async fn backup_upload_urls(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let node = node_of(&req)?;
    let b = backup_for_node(&st, &raw, &node).await?;
    if b.completed_at.is_some() {
        return Err(ApiError::conflict(
            "ConflictHttpException",
            "This backup is already in a completed state.",
        ));
    }
    let p = crate::http::input::Params::parse(req.uri().query().unwrap_or(""));
    let Some(size) = p
        .get("size")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n > 0)
    else {
        return Err(ApiError::bad_request(
            "A non-empty \"size\" query parameter must be provided.",
        ));
    };
    let Some(s3) = st.s3.as_ref().filter(|_| b.disk == "s3") else {
        return Err(ApiError::bad_request(
            "The configured backup adapter is not an S3 compatible adapter.",
        ));
    };
    let key = crate::s3::backup_key(&b.server_uuid, &b.uuid);
    let upload_id = s3.create_multipart(&key).await?;
    let part_size = s3.max_part_size();
    let count = size.div_ceil(part_size);
    let mut parts = Vec::with_capacity(count as usize);
    for n in 1..=count {
        parts.push(s3.presign_part(&key, &upload_id, n)?);
    }
    sqlx::query("UPDATE backups SET upload_id = $2, updated_at = now() WHERE id = $1")
        .bind(b.id)
        .bind(&upload_id)
        .execute(&st.db)
        .await?;
    Ok(fractal::ok(
        &json!({"parts": parts, "part_size": part_size}),
    ))
}

/// `POST /backups/{uuid}` — the daemon finished (or failed) a backup.
pub async fn backup_status(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let node = node_of(&req)?;
    let backup = backup_for_node(&st, &raw, &node).await?;
    let BackupRef {
        id,
        server_id,
        is_successful,
        ..
    } = backup;
    if is_successful {
        return Err(ApiError::bad_request(
            "Cannot update the status of a backup that is already marked as completed.",
        ));
    }
    let mut body: BackupStatusRequest = json_body(req, 1 << 20).await?;
    // An S3 backup is finished (or abandoned) on the bucket before the row says so.
    if let (Some(s3), "s3") = (st.s3.as_ref(), backup.disk.as_str()) {
        let Some(upload_id) = backup.upload_id.as_deref() else {
            return Err(ApiError::bad_request(
                "Cannot complete backup request: no upload_id present on model.",
            ));
        };
        let key = crate::s3::backup_key(&backup.server_uuid, &backup.uuid);
        if body.successful {
            let mut parts: Vec<(i64, String)> = body
                .parts
                .iter()
                .flatten()
                .map(|p| (p.part_number, p.etag.clone()))
                .collect();
            parts.sort();
            // A bucket that refuses the parts means the backup does not exist: it is
            // recorded as failed rather than as a success pointing at nothing.
            if let Err(e) = s3.complete_multipart(&key, upload_id, &parts).await {
                tracing::warn!(backup = %backup.uuid, error = %format!("{e:#}"), "completing the S3 upload failed");
                let _ = s3.abort_multipart(&key, upload_id).await;
                body.successful = false;
            }
        } else if let Err(e) = s3.abort_multipart(&key, upload_id).await {
            tracing::warn!(backup = %backup.uuid, error = %format!("{e:#}"), "aborting the S3 upload failed");
        }
    }
    let checksum =
        (!body.checksum.is_empty()).then(|| format!("{}:{}", body.checksum_type, body.checksum));
    sqlx::query(
        "UPDATE backups SET is_successful = $2, is_locked = CASE WHEN $2 THEN is_locked ELSE FALSE END, checksum = $3, bytes = $4,
            completed_at = now(), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(body.successful)
    .bind(checksum)
    .bind(body.size)
    .execute(&st.db)
    .await?;
    let subjects = [
        Subject {
            kind: "server",
            id: server_id,
        },
        Subject { kind: "backup", id },
    ];
    let mut e = activity::Event::new(if body.successful {
        "server:backup.complete"
    } else {
        "server:backup.fail"
    });
    e.properties = json!({"name": raw});
    e.subjects = &subjects;
    activity::log(&st.db, &e).await?;
    Ok(fractal::no_content())
}

/// `POST /backups/{uuid}/restore` — a restore finished; the server is usable again.
pub async fn backup_restore_status(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let node = node_of(&req)?;
    let BackupRef { id, server_id, .. } = backup_for_node(&st, &raw, &node).await?;
    let body: BackupRestoreStatusRequest = json_body(req, 1 << 20).await?;
    sqlx::query("UPDATE servers SET status = NULL, updated_at = now() WHERE id = $1")
        .bind(server_id)
        .execute(&st.db)
        .await?;
    let subjects = [
        Subject {
            kind: "server",
            id: server_id,
        },
        Subject { kind: "backup", id },
    ];
    // Upstream misspells the failure event (`server.backup…`); we write the
    // well-formed name, which is what activity feeds filter on.
    let mut e = activity::Event::new(if body.successful {
        "server:backup.restore-complete"
    } else {
        "server:backup.restore-failed"
    });
    e.subjects = &subjects;
    activity::log(&st.db, &e).await?;
    Ok(fractal::no_content())
}
