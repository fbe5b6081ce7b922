//! Application locations (reference §6.7, transformer §8.4).

use super::{id, nodes, servers, unique_violation};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::{Acl, Auth, READ, WRITE};
use crate::http::fractal::{self, FilterKind, FilterSpec, Includes, Page};
use crate::http::input::{Body, Params};
use crate::state::AppState;
use crate::validate::{as_string, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/locations", get(index).post(store))
        .route(
            "/locations/{location}",
            get(view).patch(update).delete(delete),
        )
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LocationRow {
    pub id: i64,
    pub short: String,
    pub long: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, short, long, created_at, updated_at";

pub fn transform(l: &LocationRow) -> openapi::application::Location {
    openapi::application::Location {
        id: l.id,
        short: l.short.clone(),
        long: l.long.clone(),
        updated_at: l.updated_at,
        created_at: l.created_at,
        relationships: None,
    }
}

pub async fn load(st: &AppState, ids: &[i64]) -> ApiResult<Vec<LocationRow>> {
    Ok(sqlx::query_as::<_, LocationRow>(&format!(
        "SELECT {COLUMNS} FROM locations WHERE id = ANY($1) ORDER BY id"
    ))
    .bind(ids)
    .fetch_all(&st.db)
    .await?)
}

async fn find(st: &AppState, raw: &str) -> ApiResult<LocationRow> {
    sqlx::query_as::<_, LocationRow>(&format!("SELECT {COLUMNS} FROM locations WHERE id = $1"))
        .bind(id(raw)?)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// Locations with `nodes` / `servers`.
pub fn render<'a>(
    st: &'a AppState,
    auth: &'a Auth,
    rows: Vec<LocationRow>,
    inc: &'a Includes,
) -> BoxFuture<'a, ApiResult<Vec<Value>>> {
    async move {
        let ids: Vec<i64> = rows.iter().map(|l| l.id).collect();
        let mut nodes_by: HashMap<i64, Vec<Value>> = HashMap::new();
        let mut servers_by: HashMap<i64, Vec<Value>> = HashMap::new();
        if inc.has("nodes") && auth.can_include(Acl::Nodes) {
            let n = nodes::load_where(st, "n.location_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = n.iter().map(|x| x.location_id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(nodes::render(st, auth, n, &inc.nested("nodes")).await?)
            {
                nodes_by.entry(k).or_default().push(v);
            }
        }
        if inc.has("servers") && auth.can_include(Acl::Servers) {
            let s = servers::load_where(st, "n.location_id = ANY($1)", &ids).await?;
            let keys: Vec<i64> = s.iter().map(|x| x.location_id).collect();
            for (k, v) in keys
                .into_iter()
                .zip(servers::render(st, auth, s, &inc.nested("servers")).await?)
            {
                servers_by.entry(k).or_default().push(v);
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for l in rows {
            let mut v = serde_json::to_value(transform(&l)).map_err(ApiError::internal)?;
            let mut rel = Map::new();
            for (name, acl, map, obj) in [
                ("nodes", Acl::Nodes, &mut nodes_by, "node"),
                ("servers", Acl::Servers, &mut servers_by, "server"),
            ] {
                if inc.has(name) {
                    let val = if auth.can_include(acl) {
                        fractal::list(obj, map.remove(&l.id).unwrap_or_default())
                    } else {
                        fractal::null_resource()
                    };
                    rel.insert(name.into(), val);
                }
            }
            if !rel.is_empty() {
                v["relationships"] = Value::Object(rel);
            }
            out.push(v);
        }
        Ok(out)
    }
    .boxed()
}

const FILTERS: &[FilterSpec] = &[
    FilterSpec {
        name: "short",
        column: "short",
        kind: FilterKind::Partial,
    },
    FilterSpec {
        name: "long",
        column: "long",
        kind: FilterKind::Partial,
    },
];

#[utoipa::path(get, path = "/api/application/locations", tag = "locations",
    params(("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("include" = Option<String>, Query, description = "nodes, servers"),
           ("filter[short]" = Option<String>, Query), ("filter[long]" = Option<String>, Query), ("sort" = Option<String>, Query)),
    responses((status = 200, body = openapi::List<openapi::application::Location>)), security(("api_key" = [])))]
pub async fn index(State(st): State<AppState>, auth: Auth, p: Params) -> ApiResult<Response> {
    auth.authorize(Acl::Locations, READ)?;
    let page = Page::from_params(&p, 50, fractal::MAX_PER_PAGE)?;
    let (rows, total): (Vec<LocationRow>, i64) = fractal::ListQuery {
        count: "SELECT COUNT(*) FROM locations WHERE TRUE",
        select: &format!("SELECT {COLUMNS} FROM locations WHERE TRUE"),
        filters: FILTERS,
        sorts: &[("id", "id")],
        default_order: "id",
    }
    .fetch(&st.db, &p, &page)
    .await?;
    let items = render(&st, &auth, rows, &Includes::from_params(&p)).await?;
    Ok(fractal::page_response(
        "location",
        items,
        total,
        &page,
        &format!("{}/api/application/locations", st.cfg.app_url),
    ))
}

async fn one(
    st: &AppState,
    auth: &Auth,
    row: LocationRow,
    p: &Params,
    status: StatusCode,
    meta: Option<Value>,
) -> ApiResult<Response> {
    let attrs = render(st, auth, vec![row], &Includes::from_params(p))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)?;
    Ok(fractal::respond(
        status,
        &fractal::item("location", attrs, meta),
    ))
}

#[utoipa::path(get, path = "/api/application/locations/{location}", tag = "locations", params(("location" = i64, Path)),
    responses((status = 200, body = openapi::Item<openapi::application::Location>), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, &raw).await?;
    auth.authorize(Acl::Locations, READ)?;
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

async fn validate(st: &AppState, body: &Body, ignore: i64) -> ApiResult<()> {
    let mut v = Validator::new(&body.0);
    let seq = v.next_seq();
    let short_ok = v.check_as(
        "short",
        "Location Identifier",
        &[Rule::Required, Rule::String, Rule::Between(1.0, 60.0)],
    );
    v.check_as(
        "long",
        "Location Description",
        &[Rule::Nullable, Rule::String, Rule::Between(1.0, 191.0)],
    );
    if short_ok {
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM locations WHERE short = $1 AND id <> $2)",
        )
        .bind(as_string(body.get("short")))
        .bind(ignore)
        .fetch_one(&st.db)
        .await?;
        if taken {
            v.add_after(
                seq,
                "short",
                "unique",
                "The Location Identifier has already been taken.",
            );
        }
    }
    v.finish()
}

const UNIQUES: &[(&str, &str, &str)] = &[("locations_short_key", "short", "Location Identifier")];

/// Creates a location (shared with the operator CLI).
pub async fn create(st: &AppState, body: &Body) -> ApiResult<LocationRow> {
    validate(st, body, 0).await?;
    sqlx::query_as::<_, LocationRow>(&format!(
        "INSERT INTO locations (short, long) VALUES ($1, $2) RETURNING {COLUMNS}"
    ))
    .bind(as_string(body.get("short")))
    .bind(as_string(body.get("long")))
    .fetch_one(&st.db)
    .await
    .map_err(|e| unique_violation(&e, UNIQUES).unwrap_or_else(|| e.into()))
}

#[utoipa::path(post, path = "/api/application/locations", tag = "locations", request_body = openapi::application::LocationRequest,
    responses((status = 201, body = openapi::Item<openapi::application::Location>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
) -> ApiResult<Response> {
    auth.authorize(Acl::Locations, WRITE)?;
    let row = create(&st, &body).await?;
    let meta =
        json!({"resource": format!("{}/api/application/locations/{}", st.cfg.app_url, row.id)});
    one(&st, &auth, row, &p, StatusCode::CREATED, Some(meta)).await
}

#[utoipa::path(patch, path = "/api/application/locations/{location}", tag = "locations", params(("location" = i64, Path)),
    request_body = openapi::application::LocationRequest,
    responses((status = 200, body = openapi::Item<openapi::application::Location>), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    p: Params,
    body: Body,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, &raw).await?;
    auth.authorize(Acl::Locations, WRITE)?;
    validate(&st, &body, row.id).await?;
    let long_present = body.0.get("long").is_some();
    let row = sqlx::query_as::<_, LocationRow>(&format!(
        "UPDATE locations SET short = $2, long = CASE WHEN $3 THEN $4 ELSE long END, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(row.id)
    .bind(as_string(body.get("short")))
    .bind(long_present)
    .bind(as_string(body.get("long")))
    .fetch_one(&st.db)
    .await
    .map_err(|e| unique_violation(&e, UNIQUES).unwrap_or_else(|| e.into()))?;
    one(&st, &auth, row, &p, StatusCode::OK, None).await
}

#[utoipa::path(delete, path = "/api/application/locations/{location}", tag = "locations", params(("location" = i64, Path)),
    responses((status = 204), (status = 400, body = openapi::ErrorEnvelope), (status = 404, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let row = find(&st, &raw).await?;
    auth.authorize(Acl::Locations, WRITE)?;
    let res = sqlx::query("DELETE FROM locations WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM nodes WHERE location_id = $1)")
        .bind(row.id)
        .execute(&st.db)
        .await;
    let has_nodes = || {
        ApiError::display(
            "HasActiveNodesException",
            "Cannot delete a location that has active nodes attached to it.",
        )
    };
    super::delete_outcome(res, has_nodes)
}
