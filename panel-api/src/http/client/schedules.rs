//! Schedules and their tasks on the client API (reference §7.4 "Schedules"): CRUD,
//! run-now and task ordering. The runner lives in `crate::schedules`.

use super::{active, atom, atom_opt, numeric, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::http::auth::Auth;
use crate::http::fractal;
use crate::http::input::Body;
use crate::schedules::{tasks_of, ScheduleRow, TaskRow};
use crate::state::AppState;
use crate::validate::{as_bool, as_i64, Rule, Validator};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/servers/{server}/schedules", get(index).post(store))
        .route(
            "/servers/{server}/schedules/{schedule}",
            get(view).post(update).delete(destroy),
        )
        .route(
            "/servers/{server}/schedules/{schedule}/execute",
            post(execute),
        )
        .route(
            "/servers/{server}/schedules/{schedule}/tasks",
            post(task_store),
        )
        .route(
            "/servers/{server}/schedules/{schedule}/tasks/{task}",
            post(task_update).delete(task_delete),
        )
}

pub fn task_attrs(t: &TaskRow) -> Value {
    json!({
        "id": t.id, "sequence_id": t.sequence_id, "action": t.action, "payload": t.payload,
        "time_offset": t.time_offset, "is_queued": t.is_queued, "continue_on_failure": t.continue_on_failure,
        "created_at": atom(&t.created_at), "updated_at": atom(&t.updated_at),
    })
}

fn schedule_attrs(s: &ScheduleRow, tasks: &[TaskRow]) -> Value {
    json!({
        "id": s.id, "name": s.name,
        "cron": {"day_of_week": s.cron_day_of_week, "day_of_month": s.cron_day_of_month, "month": s.cron_month,
                 "hour": s.cron_hour, "minute": s.cron_minute},
        "is_active": s.is_active, "is_processing": s.is_processing, "only_when_online": s.only_when_online,
        "last_run_at": atom_opt(&s.last_run_at), "next_run_at": atom_opt(&s.next_run_at),
        "created_at": atom(&s.created_at), "updated_at": atom(&s.updated_at),
        "relationships": {"tasks": fractal::list("schedule_task", tasks.iter().map(task_attrs))},
    })
}

async fn item(st: &AppState, s: &ScheduleRow) -> ApiResult<Response> {
    let tasks = tasks_of(st, s.id).await?;
    Ok(fractal::ok(&fractal::item(
        "server_schedule",
        schedule_attrs(s, &tasks),
        None,
    )))
}

async fn find(st: &AppState, ctx: &Ctx, raw: &str) -> ApiResult<ScheduleRow> {
    sqlx::query_as("SELECT * FROM schedules WHERE id = $1 AND server_id = $2")
        .bind(numeric(raw)?)
        .bind(ctx.server.id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

struct Fields {
    name: String,
    minute: String,
    hour: String,
    dom: String,
    month: String,
    dow: String,
    is_active: bool,
    only_when_online: bool,
}

/// Validates a schedule body. Upstream does not validate `month` and answers 500
/// without it; here it is required like the other cron fields (422).
fn fields(body: &Body) -> ApiResult<(Fields, crate::cron::Cron)> {
    let mut v = Validator::new(&body.0);
    v.check("name", &[Rule::Required, Rule::String, Rule::Max(191.0)]);
    for f in ["minute", "hour", "day_of_month", "month", "day_of_week"] {
        v.check(f, &[Rule::Required, Rule::String, Rule::Max(191.0)]);
    }
    v.check("is_active", &[Rule::Filled, Rule::Boolean]);
    v.finish()?;
    let s = |k: &str| {
        body.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string()
    };
    let f = Fields {
        name: s("name"),
        minute: s("minute"),
        hour: s("hour"),
        dom: s("day_of_month"),
        month: s("month"),
        dow: s("day_of_week"),
        is_active: as_bool(body.get("is_active")).unwrap_or(false),
        only_when_online: as_bool(body.get("only_when_online")).unwrap_or(false),
    };
    // Upstream answers an invalid expression with a 400 after validation (and a 500
    // for some); the issue asks for a validation error, which every client shows the
    // same way: a 422 on the offending field, with upstream's sentence.
    let invalid = || {
        let field = crate::cron::Cron::invalid_field(&f.minute, &f.hour, &f.dom, &f.month, &f.dow)
            .unwrap_or("minute");
        ApiError::field(
            field,
            "cron",
            "The cron data provided does not evaluate to a valid expression.",
        )
    };
    let cron = crate::cron::Cron::parse(&f.minute, &f.hour, &f.dom, &f.month, &f.dow)
        .ok_or_else(invalid)?;
    Ok((f, cron))
}

#[utoipa::path(get, path = "/api/client/servers/{server}/schedules", tag = "client schedules",
    params(("server" = String, Path)), responses((status = 200, description = "list of `server_schedule`")), security(("api_key" = [])))]
pub async fn index(
    State(st): State<AppState>,
    auth: Auth,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("schedule.read")?;
    let rows: Vec<ScheduleRow> =
        sqlx::query_as("SELECT * FROM schedules WHERE server_id = $1 ORDER BY id")
            .bind(ctx.server.id)
            .fetch_all(&st.db)
            .await?;
    let ids: Vec<i64> = rows.iter().map(|s| s.id).collect();
    let tasks: Vec<TaskRow> =
        sqlx::query_as("SELECT * FROM tasks WHERE schedule_id = ANY($1) ORDER BY sequence_id, id")
            .bind(&ids)
            .fetch_all(&st.db)
            .await?;
    let items = rows.iter().map(|s| {
        let mine: Vec<TaskRow> = tasks
            .iter()
            .filter(|t| t.schedule_id == s.id)
            .cloned()
            .collect();
        schedule_attrs(s, &mine)
    });
    Ok(fractal::ok(&fractal::list("server_schedule", items)))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/schedules", tag = "client schedules",
    params(("server" = String, Path)), request_body = Object,
    responses((status = 200, description = "`server_schedule`"), (status = 400, body = openapi::ErrorEnvelope), (status = 422, body = openapi::ErrorEnvelope)),
    security(("api_key" = [])))]
pub async fn store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path(server): Path<String>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    ctx.require("schedule.create")?;
    let (f, cron) = fields(&body)?;
    let s: ScheduleRow = sqlx::query_as(
        "INSERT INTO schedules (server_id, name, cron_day_of_week, cron_month, cron_day_of_month, cron_hour, cron_minute,
            is_active, only_when_online, next_run_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
    )
    .bind(ctx.server.id)
    .bind(&f.name)
    .bind(&f.dow)
    .bind(&f.month)
    .bind(&f.dom)
    .bind(&f.hour)
    .bind(&f.minute)
    .bind(f.is_active)
    .bind(f.only_when_online)
    .bind(cron.next_after(chrono::Utc::now()))
    .fetch_one(&st.db)
    .await?;
    ctx.log(&st, "server:schedule.create", json!({"name": s.name}))
        .await;
    item(&st, &s).await
}

#[utoipa::path(get, path = "/api/client/servers/{server}/schedules/{schedule}", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path)), responses((status = 200, description = "`server_schedule`")), security(("api_key" = [])))]
pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, schedule)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    ctx.require("schedule.read")?;
    item(&st, &s).await
}

#[utoipa::path(post, path = "/api/client/servers/{server}/schedules/{schedule}", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path)), request_body = Object,
    responses((status = 200, description = "`server_schedule`")), security(("api_key" = [])))]
pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path((server, schedule)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    ctx.require("schedule.update")?;
    let (f, cron) = fields(&body)?;
    // Toggling `is_active` clears a stuck `is_processing`, as upstream.
    let processing = if f.is_active != s.is_active {
        false
    } else {
        s.is_processing
    };
    let s: ScheduleRow = sqlx::query_as(
        "UPDATE schedules SET name = $2, cron_day_of_week = $3, cron_month = $4, cron_day_of_month = $5, cron_hour = $6,
            cron_minute = $7, is_active = $8, only_when_online = $9, next_run_at = $10, is_processing = $11, updated_at = now()
         WHERE id = $1 RETURNING *",
    )
    .bind(s.id)
    .bind(&f.name)
    .bind(&f.dow)
    .bind(&f.month)
    .bind(&f.dom)
    .bind(&f.hour)
    .bind(&f.minute)
    .bind(f.is_active)
    .bind(f.only_when_online)
    .bind(cron.next_after(chrono::Utc::now()))
    .bind(processing)
    .fetch_one(&st.db)
    .await?;
    ctx.log(&st, "server:schedule.update", json!({"name": s.name}))
        .await;
    item(&st, &s).await
}

#[utoipa::path(post, path = "/api/client/servers/{server}/schedules/{schedule}/execute", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path)),
    responses((status = 202, description = "`[]`"), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn execute(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, schedule)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    ctx.require("schedule.update")?;
    crate::schedules::execute_now(&st, &s).await?;
    ctx.log(&st, "server:schedule.execute", json!({"name": s.name}))
        .await;
    Ok(super::settings::accepted())
}

#[utoipa::path(delete, path = "/api/client/servers/{server}/schedules/{schedule}", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path)), responses((status = 204)), security(("api_key" = [])))]
pub async fn destroy(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, schedule)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    ctx.require("schedule.delete")?;
    sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(s.id)
        .execute(&st.db)
        .await?;
    ctx.log(&st, "server:schedule.delete", json!({"name": s.name}))
        .await;
    Ok(fractal::no_content())
}

// ---- tasks ------------------------------------------------------------------------

struct TaskFields {
    action: String,
    payload: String,
    time_offset: i32,
    sequence_id: Option<i32>,
    continue_on_failure: Option<bool>,
}

fn task_fields(ctx: &Ctx, body: &Body) -> ApiResult<TaskFields> {
    let mut v = Validator::new(&body.0);
    v.check(
        "action",
        &[Rule::Required, Rule::In(&["command", "power", "backup"])],
    );
    let action = body
        .get("action")
        .and_then(|a| a.as_str())
        .unwrap_or("")
        .to_string();
    if action != "backup" {
        let missing = body.get("payload").is_none_or(|p| p.is_null());
        if missing {
            v.add(
                "payload",
                "required_unless",
                "The payload field is required unless action is in backup.",
            );
        }
    }
    v.check("payload", &[Rule::Nullable, Rule::String]);
    v.check(
        "time_offset",
        &[Rule::Required, Rule::Numeric, Rule::Between(0.0, 900.0)],
    );
    v.check(
        "sequence_id",
        &[
            Rule::Sometimes,
            Rule::Required,
            Rule::Numeric,
            Rule::Min(1.0),
        ],
    );
    v.check(
        "continue_on_failure",
        &[Rule::Sometimes, Rule::Required, Rule::Boolean],
    );
    v.finish()?;
    if action == "power" {
        let p = body.get("payload").and_then(|p| p.as_str()).unwrap_or("");
        if !matches!(p, "start" | "stop" | "restart" | "kill") {
            return Err(ApiError::field(
                "payload",
                "in",
                "The selected payload is invalid.",
            ));
        }
    }
    if action == "backup" && ctx.server.backup_limit == 0 {
        return Err(ApiError::http(
            StatusCode::FORBIDDEN,
            "HttpForbiddenException",
            "A backup task cannot be created when the server's backup limit is set to 0.",
        ));
    }
    Ok(TaskFields {
        payload: body
            .get("payload")
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_string(),
        action,
        time_offset: as_i64(body.get("time_offset")).unwrap_or(0) as i32,
        sequence_id: as_i64(body.get("sequence_id")).map(|n| n.max(1) as i32),
        continue_on_failure: as_bool(body.get("continue_on_failure")),
    })
}

async fn find_task(st: &AppState, s: &ScheduleRow, raw: &str) -> ApiResult<TaskRow> {
    sqlx::query_as("SELECT * FROM tasks WHERE id = $1 AND schedule_id = $2")
        .bind(numeric(raw)?)
        .bind(s.id)
        .fetch_optional(&st.db)
        .await?
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(post, path = "/api/client/servers/{server}/schedules/{schedule}/tasks", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path)), request_body = Object,
    responses((status = 200, description = "`schedule_task`"), (status = 400, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn task_store(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path((server, schedule)): Path<(String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    ctx.require("schedule.update")?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE schedule_id = $1")
        .bind(s.id)
        .fetch_one(&st.db)
        .await?;
    if count >= st.cfg.schedule_task_limit {
        return Err(ApiError::display(
            "ServiceLimitExceededException",
            format!(
                "Schedules may not have more than {} tasks associated with them. Creating this task would put this schedule over the limit.",
                st.cfg.schedule_task_limit
            ),
        ));
    }
    let f = task_fields(&ctx, &body)?;
    let mut tx = st.db.begin().await?;
    // Serialise task edits of one schedule.
    sqlx::query("SELECT id FROM schedules WHERE id = $1 FOR UPDATE")
        .bind(s.id)
        .execute(&mut *tx)
        .await?;
    let last: Option<i32> =
        sqlx::query_scalar("SELECT MAX(sequence_id) FROM tasks WHERE schedule_id = $1")
            .bind(s.id)
            .fetch_one(&mut *tx)
            .await?;
    let seq = match f.sequence_id {
        Some(n) if n <= last.unwrap_or(0) => {
            sqlx::query("UPDATE tasks SET sequence_id = sequence_id + 1 WHERE schedule_id = $1 AND sequence_id >= $2")
                .bind(s.id)
                .bind(n)
                .execute(&mut *tx)
                .await?;
            n
        }
        _ => last.unwrap_or(0) + 1,
    };
    let t: TaskRow = sqlx::query_as(
        "INSERT INTO tasks (schedule_id, sequence_id, action, payload, time_offset, continue_on_failure)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .bind(s.id)
    .bind(seq)
    .bind(&f.action)
    .bind(&f.payload)
    .bind(f.time_offset)
    .bind(f.continue_on_failure.unwrap_or(false))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    ctx.log(
        &st,
        "server:task.create",
        json!({"name": s.name, "action": t.action, "payload": t.payload}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "schedule_task",
        task_attrs(&t),
        None,
    )))
}

#[utoipa::path(post, path = "/api/client/servers/{server}/schedules/{schedule}/tasks/{task}", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path), ("task" = i64, Path)), request_body = Object,
    responses((status = 200, description = "`schedule_task`")), security(("api_key" = [])))]
pub async fn task_update(
    State(st): State<AppState>,
    auth: Auth,
    body: Body,
    Path((server, schedule, task)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    let t = find_task(&st, &s, &task).await?;
    ctx.require("schedule.update")?;
    let f = task_fields(&ctx, &body)?;
    let mut tx = st.db.begin().await?;
    sqlx::query("SELECT id FROM schedules WHERE id = $1 FOR UPDATE")
        .bind(s.id)
        .execute(&mut *tx)
        .await?;
    let mut seq = t.sequence_id;
    if let Some(n) = f.sequence_id {
        if n != t.sequence_id {
            let last: i32 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(sequence_id), 1) FROM tasks WHERE schedule_id = $1",
            )
            .bind(s.id)
            .fetch_one(&mut *tx)
            .await?;
            let n = n.min(last);
            if n < t.sequence_id {
                sqlx::query("UPDATE tasks SET sequence_id = sequence_id + 1 WHERE schedule_id = $1 AND sequence_id >= $2 AND sequence_id < $3")
                    .bind(s.id).bind(n).bind(t.sequence_id).execute(&mut *tx).await?;
            } else {
                sqlx::query("UPDATE tasks SET sequence_id = sequence_id - 1 WHERE schedule_id = $1 AND sequence_id > $2 AND sequence_id <= $3")
                    .bind(s.id).bind(t.sequence_id).bind(n).execute(&mut *tx).await?;
            }
            seq = n;
        }
    }
    let updated: TaskRow = sqlx::query_as(
        "UPDATE tasks SET sequence_id = $2, action = $3, payload = $4, time_offset = $5, continue_on_failure = $6, updated_at = now()
         WHERE id = $1 RETURNING *",
    )
    .bind(t.id)
    .bind(seq)
    .bind(&f.action)
    .bind(&f.payload)
    .bind(f.time_offset)
    .bind(f.continue_on_failure.unwrap_or(t.continue_on_failure))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    ctx.log(
        &st,
        "server:task.update",
        json!({"name": s.name, "action": updated.action, "payload": updated.payload}),
    )
    .await;
    Ok(fractal::ok(&fractal::item(
        "schedule_task",
        task_attrs(&updated),
        None,
    )))
}

#[utoipa::path(delete, path = "/api/client/servers/{server}/schedules/{schedule}/tasks/{task}", tag = "client schedules",
    params(("server" = String, Path), ("schedule" = i64, Path), ("task" = i64, Path)),
    responses((status = 204), (status = 403, body = openapi::ErrorEnvelope)), security(("api_key" = [])))]
pub async fn task_delete(
    State(st): State<AppState>,
    auth: Auth,
    Path((server, schedule, task)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let ctx = active(&st, &auth, &server).await?;
    let s = find(&st, &ctx, &schedule).await?;
    let t = find_task(&st, &s, &task).await?;
    if !ctx.can("schedule.update") {
        return Err(ApiError::http(
            StatusCode::FORBIDDEN,
            "HttpForbiddenException",
            "You do not have permission to perform this action.",
        ));
    }
    let mut tx = st.db.begin().await?;
    sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE tasks SET sequence_id = sequence_id - 1 WHERE schedule_id = $1 AND sequence_id > $2")
        .bind(s.id)
        .bind(t.sequence_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    ctx.log(
        &st,
        "server:task.delete",
        json!({"name": s.name, "action": t.action, "payload": t.payload}),
    )
    .await;
    Ok(fractal::no_content())
}
