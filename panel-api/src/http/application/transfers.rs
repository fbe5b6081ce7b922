//! Server transfers started by an operator: Ferrodactyl's extension route
//! `POST|GET /api/application/servers/{server}/transfer` and `panel-api server
//! transfer`. Upstream starts transfers only from its admin UI
//! (`Admin/Servers/ServerTransferController`); this follows that controller — a
//! `server_transfers` row, the new allocations reserved, a transfer JWT signed with
//! the destination's token, and `POST /api/servers/{uuid}/transfer` on the source
//! (wings-protocol §1.9, §8.3). The rest (success/failure, moving the allocations,
//! deleting from the old node) is the Remote API's.

use super::servers::{self, ServerRow};
use super::{id, nodes};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ, WRITE};
use crate::http::fractal;
use crate::http::input::Body;
use crate::state::AppState;
use crate::validate::{as_i64, is_integer, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn router() -> Router<AppState> {
    Router::new().route("/servers/{server}/transfer", post(store).get(view))
}

#[derive(sqlx::FromRow)]
struct TransferRow {
    id: i64,
    server_id: i64,
    successful: Option<bool>,
    old_node: i64,
    new_node: i64,
    old_allocation: i64,
    new_allocation: i64,
    old_additional_allocations: Option<Value>,
    new_additional_allocations: Option<Value>,
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn ids(v: &Option<Value>) -> Vec<i64> {
    v.as_ref()
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
        .unwrap_or_default()
}

fn transform(t: TransferRow) -> openapi::application::ServerTransfer {
    openapi::application::ServerTransfer {
        id: t.id,
        server_id: t.server_id,
        successful: t.successful,
        old_node: t.old_node,
        new_node: t.new_node,
        old_allocation: t.old_allocation,
        new_allocation: t.new_allocation,
        old_additional_allocations: ids(&t.old_additional_allocations),
        new_additional_allocations: ids(&t.new_additional_allocations),
        archived: t.archived,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

/// What the operator asked for.
pub struct TransferRequest {
    pub node_id: i64,
    /// `None`: the lowest free allocation of the target node.
    pub allocation_id: Option<i64>,
    pub additional: Vec<i64>,
}

const NOT_VIABLE: &str = "The node you selected does not have the required disk space or memory available to accommodate this server.";

/// Upstream's `Server::validateTransferState`: installed, not restoring, and no
/// transfer running. Suspended servers may move.
fn transfer_state_conflict(s: &ServerRow, transferring: bool) -> ApiResult<()> {
    let msg = match s.status.as_deref() {
        Some("installing") | Some("install_failed") => Some(
            "This server has not yet completed its installation process, please try again later.",
        ),
        Some("restoring_backup") => {
            Some("This server is currently restoring from a backup, please try again later.")
        }
        _ if transferring => Some(
            "This server is currently being transferred to a new machine, please try again later.",
        ),
        _ => None,
    };
    match msg {
        Some(m) => Err(ApiError::conflict("ServerStateConflictException", m)),
        None => Ok(()),
    }
}

/// Starts a transfer of `s`: checks, reserves and records in one transaction (the
/// server row locked, so of two concurrent requests one gets the 409), then asks the
/// source node to push. If the source cannot be told, the row and the reservations
/// are undone and the daemon's error is returned, as the create and reinstall
/// routes do: no transfer is left that nothing will ever finish.
pub async fn initiate(
    st: &AppState,
    s: &ServerRow,
    req: TransferRequest,
) -> ApiResult<openapi::application::ServerTransfer> {
    let dest = match nodes::find(st, req.node_id).await {
        Ok(n) => n,
        Err(ApiError::Http { status, .. }) if status == StatusCode::NOT_FOUND => {
            return Err(ApiError::field(
                "node_id",
                "exists",
                "The selected node id is invalid.",
            ))
        }
        Err(e) => return Err(e),
    };
    if dest.id == s.node_id {
        return Err(ApiError::field(
            "node_id",
            "different",
            "The server is already on the selected node.",
        ));
    }
    let source = nodes::find(st, s.node_id).await?;

    let mut tx = st.db.begin().await?;
    let locked: ServerRow = sqlx::query_as(&format!(
        "{} WHERE s.id = $1 FOR UPDATE OF s",
        servers::SELECT
    ))
    .bind(s.id)
    .fetch_one(&mut *tx)
    .await?;
    let transferring: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM server_transfers WHERE server_id = $1 AND successful IS NULL)",
    )
    .bind(s.id)
    .fetch_one(&mut *tx)
    .await?;
    transfer_state_conflict(&locked, transferring)?;

    // Upstream's `Node::isViable`: what the node's servers use plus this server
    // within the node's limits, overallocation included.
    let viable: bool = sqlx::query_scalar(
        "SELECT COALESCE((SELECT SUM(memory) FROM servers WHERE node_id = n.id), 0) + $2 <= n.memory * (1 + n.memory_overallocate / 100.0)
            AND COALESCE((SELECT SUM(disk) FROM servers WHERE node_id = n.id), 0) + $3 <= n.disk * (1 + n.disk_overallocate / 100.0)
           FROM nodes n WHERE n.id = $1",
    )
    .bind(dest.id)
    .bind(locked.memory)
    .bind(locked.disk)
    .fetch_one(&mut *tx)
    .await?;
    if !viable {
        return Err(ApiError::display("DisplayException", NOT_VIABLE));
    }

    // The allocations must be free and on the target node. Upstream skips any that
    // are not (and still records them as the transfer's), so a finished transfer
    // could land the server on another server's port; we refuse them instead.
    let primary = match req.allocation_id {
        Some(a) => a,
        None => sqlx::query_scalar(
            "SELECT id FROM allocations WHERE node_id = $1 AND server_id IS NULL ORDER BY id LIMIT 1",
        )
        .bind(dest.id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            ApiError::display(
                "NoViableAllocationException",
                "The selected node has no free allocation for this server.",
            )
        })?,
    };
    let mut wanted = vec![primary];
    for a in &req.additional {
        if !wanted.contains(a) {
            wanted.push(*a);
        }
    }
    let reserved: Vec<i64> = sqlx::query_scalar(
        "UPDATE allocations SET server_id = $1 WHERE id = ANY($2) AND node_id = $3 AND server_id IS NULL RETURNING id",
    )
    .bind(s.id)
    .bind(&wanted)
    .bind(dest.id)
    .fetch_all(&mut *tx)
    .await?;
    if !reserved.contains(&primary) {
        return Err(ApiError::field(
            "allocation_id",
            "exists",
            "The selected allocation id is invalid.",
        ));
    }
    if let Some(i) = req.additional.iter().position(|a| !reserved.contains(a)) {
        return Err(ApiError::field(
            &format!("allocation_additional.{i}"),
            "exists",
            format!("The selected allocation_additional.{i} is invalid."),
        ));
    }
    let additional: Vec<i64> = wanted.iter().skip(1).copied().collect();
    let row: TransferRow = sqlx::query_as(
        "INSERT INTO server_transfers (server_id, old_node, new_node, old_allocation, new_allocation,
                                       old_additional_allocations, new_additional_allocations)
         VALUES ($1, $2, $3, $4, $5,
                 COALESCE((SELECT jsonb_agg(id ORDER BY id) FROM allocations WHERE server_id = $1 AND node_id = $2 AND id <> $4), '[]'),
                 $6)
         RETURNING *",
    )
    .bind(s.id)
    .bind(locked.node_id)
    .bind(dest.id)
    .bind(locked.allocation_id)
    .bind(primary)
    .bind(Value::from(additional))
    .fetch_one(&mut *tx)
    .await?;
    // Committed before the source is told: the destination reports success through
    // the Remote API, which must find the row.
    tx.commit().await?;

    let dest_conn = dest.conn(st)?;
    let uuid = s.uuid.to_string();
    let token = crate::jwt::mint_transfer(
        &dest_conn.token,
        &st.cfg.app_url,
        &dest_conn.base_url(),
        &uuid,
    );
    let url = format!("{}/api/transfers", dest_conn.base_url());
    let notified = match source.conn(st) {
        Ok(c) => st
            .daemon
            .transfer_notify(&c, &uuid, &url, &token)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = notified {
        let mut tx = st.db.begin().await?;
        sqlx::query(
            "UPDATE allocations SET server_id = NULL WHERE id = ANY($1) AND server_id = $2",
        )
        .bind(&reserved)
        .bind(s.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM server_transfers WHERE id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Err(e);
    }
    Ok(transform(row))
}

/// The body's shape, with upstream's rule wording.
fn validate(body: &Body) -> ApiResult<TransferRequest> {
    let mut v = Validator::new(&body.0);
    v.check("node_id", &[Rule::Required, Rule::Integer]);
    v.check("allocation_id", &[Rule::Nullable, Rule::Integer]);
    v.check("allocation_additional", &[Rule::Nullable, Rule::Array]);
    let extra: Vec<Value> = body
        .get("allocation_additional")
        .and_then(|a| a.as_array())
        .cloned()
        .unwrap_or_default();
    for (i, a) in extra.iter().enumerate() {
        if !is_integer(a) {
            v.add(
                &format!("allocation_additional.{i}"),
                "integer",
                format!("The allocation_additional.{i} must be an integer."),
            );
        }
    }
    v.finish()?;
    Ok(TransferRequest {
        node_id: as_i64(body.get("node_id")).unwrap_or_default(),
        allocation_id: as_i64(body.get("allocation_id")),
        additional: extra.iter().filter_map(|a| as_i64(Some(a))).collect(),
    })
}

#[utoipa::path(post, path = "/api/application/servers/{server}/transfer", tag = "servers",
    description = "Ferrodactyl extension (upstream offers transfers only in its admin UI): move a server to another node.",
    params(("server" = i64, Path)), request_body = openapi::application::TransferServerRequest,
    responses((status = 202, body = openapi::Item<openapi::application::ServerTransfer>),
              (status = 400, body = openapi::ErrorEnvelope), (status = 404, body = openapi::ErrorEnvelope),
              (status = 409, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope),
              (status = 504, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, WRITE)?;
    let req = validate(&body)?;
    let t = initiate(&st, &s, req).await?;
    Ok(fractal::respond(
        StatusCode::ACCEPTED,
        &fractal::item(
            "server_transfer",
            serde_json::to_value(t).map_err(ApiError::internal)?,
            None,
        ),
    ))
}

#[utoipa::path(get, path = "/api/application/servers/{server}/transfer", tag = "servers",
    description = "Ferrodactyl extension: the server's latest transfer (`successful` is null while it runs).",
    params(("server" = i64, Path)),
    responses((status = 200, body = openapi::Item<openapi::application::ServerTransfer>),
              (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let s = servers::find(&st, id(&raw)?).await?;
    auth.authorize(Acl::Servers, READ)?;
    let t = latest(&st, s.id).await?.ok_or_else(ApiError::not_found)?;
    Ok(fractal::ok(&fractal::item(
        "server_transfer",
        serde_json::to_value(t).map_err(ApiError::internal)?,
        None,
    )))
}

/// The server's newest transfer, if it ever had one.
pub async fn latest(
    st: &AppState,
    server_id: i64,
) -> ApiResult<Option<openapi::application::ServerTransfer>> {
    let row: Option<TransferRow> = sqlx::query_as(
        "SELECT * FROM server_transfers WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(server_id)
    .fetch_optional(&st.db)
    .await?;
    Ok(row.map(transform))
}
