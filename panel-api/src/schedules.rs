//! The schedule runner: finds due schedules, claims each run in PostgreSQL (`FOR
//! UPDATE SKIP LOCKED`, so any number of panel-api replicas run every schedule
//! exactly once), and executes its tasks in sequence with their time offsets —
//! command, power and backup — honouring `only_when_online` and
//! `continue_on_failure`, as upstream's ProcessScheduleService and RunTaskJob do.

use crate::error::{ApiError, ApiResult};
use crate::http::application::{nodes, servers};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use std::time::Duration;

#[derive(sqlx::FromRow, Clone, Debug)]
pub struct ScheduleRow {
    pub id: i64,
    pub server_id: i64,
    pub name: String,
    pub cron_day_of_week: String,
    pub cron_month: String,
    pub cron_day_of_month: String,
    pub cron_hour: String,
    pub cron_minute: String,
    pub is_active: bool,
    pub is_processing: bool,
    pub only_when_online: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow, Clone, Debug)]
pub struct TaskRow {
    pub id: i64,
    pub schedule_id: i64,
    pub sequence_id: i32,
    pub action: String,
    pub payload: String,
    pub time_offset: i32,
    pub is_queued: bool,
    pub continue_on_failure: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ScheduleRow {
    pub fn cron(&self) -> Option<crate::cron::Cron> {
        crate::cron::Cron::parse(
            &self.cron_minute,
            &self.cron_hour,
            &self.cron_day_of_month,
            &self.cron_month,
            &self.cron_day_of_week,
        )
    }

    pub fn next_run(&self) -> Option<DateTime<Utc>> {
        self.cron().and_then(|c| c.next_after(Utc::now()))
    }
}

pub async fn tasks_of(st: &AppState, schedule_id: i64) -> ApiResult<Vec<TaskRow>> {
    Ok(
        sqlx::query_as("SELECT * FROM tasks WHERE schedule_id = $1 ORDER BY sequence_id, id")
            .bind(schedule_id)
            .fetch_all(&st.db)
            .await?,
    )
}

/// Claims every due schedule (at most `batch`) and starts its run.
pub async fn tick(st: &AppState, batch: i64) -> ApiResult<usize> {
    let mut tx = st.db.begin().await?;
    let due: Vec<ScheduleRow> = sqlx::query_as(
        "SELECT sc.* FROM schedules sc JOIN servers s ON s.id = sc.server_id
         WHERE sc.is_active AND NOT sc.is_processing AND sc.next_run_at <= now()
           AND (s.status IS NULL OR s.status <> 'suspended')
         ORDER BY sc.next_run_at LIMIT $1 FOR UPDATE OF sc SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let mut started = Vec::new();
    for s in due {
        let has_tasks: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE schedule_id = $1)")
                .bind(s.id)
                .fetch_one(&mut *tx)
                .await?;
        let next = s.next_run();
        sqlx::query(
            "UPDATE schedules SET is_processing = $2, next_run_at = $3, updated_at = now() WHERE id = $1",
        )
        .bind(s.id)
        .bind(has_tasks)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if has_tasks {
            started.push(s);
        }
    }
    tx.commit().await?;
    let n = started.len();
    for s in started {
        let st = st.clone();
        tokio::spawn(async move {
            if let Err(e) = run(&st, &s, false).await {
                tracing::warn!(schedule = s.id, error = ?e, "schedule run failed");
            }
        });
    }
    Ok(n)
}

/// Claims one schedule for a manual run (the execute route). Errors when it has no
/// tasks; the run itself happens in the background.
pub async fn execute_now(st: &AppState, s: &ScheduleRow) -> ApiResult<()> {
    let tasks = tasks_of(st, s.id).await?;
    if tasks.is_empty() {
        return Err(ApiError::display(
            "DisplayException",
            "Cannot process schedule for task execution: no tasks are registered.",
        ));
    }
    sqlx::query(
        "UPDATE schedules SET is_processing = TRUE, next_run_at = $2, updated_at = now() WHERE id = $1",
    )
    .bind(s.id)
    .bind(s.next_run())
    .execute(&st.db)
    .await?;
    let st = st.clone();
    let s = s.clone();
    tokio::spawn(async move {
        if let Err(e) = run(&st, &s, true).await {
            tracing::warn!(schedule = s.id, error = ?e, "manual schedule run failed");
        }
    });
    Ok(())
}

async fn finish(st: &AppState, schedule_id: i64) -> ApiResult<()> {
    sqlx::query("UPDATE schedules SET is_processing = FALSE, last_run_at = now(), updated_at = now() WHERE id = $1")
        .bind(schedule_id)
        .execute(&st.db)
        .await?;
    sqlx::query("UPDATE tasks SET is_queued = FALSE WHERE schedule_id = $1")
        .bind(schedule_id)
        .execute(&st.db)
        .await?;
    Ok(())
}

/// Runs a claimed schedule's tasks in order. `manual` runs the first task without
/// its offset and runs even an inactive schedule, as upstream's "run now".
pub async fn run(st: &AppState, s: &ScheduleRow, manual: bool) -> ApiResult<()> {
    let result = run_inner(st, s, manual).await;
    finish(st, s.id).await?;
    result
}

async fn run_inner(st: &AppState, s: &ScheduleRow, manual: bool) -> ApiResult<()> {
    let server = servers::find(st, s.server_id).await?;
    let node = nodes::find(st, server.node_id).await?;
    let conn = node.conn(st)?;
    let uuid = server.uuid.to_string();
    if s.only_when_online {
        let state = st
            .daemon
            .server_details(&conn, &uuid)
            .await
            .ok()
            .and_then(|d| d.get("state").and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_else(|| "offline".into());
        if !matches!(state.as_str(), "running" | "starting") {
            return Ok(());
        }
    }
    let tasks = tasks_of(st, s.id).await?;
    for (i, task) in tasks.iter().enumerate() {
        if !(manual && i == 0) && task.time_offset > 0 {
            tokio::time::sleep(Duration::from_secs(task.time_offset as u64)).await;
        }
        // A schedule switched off mid-run stops (unless run by hand), as upstream.
        let active: Option<bool> =
            sqlx::query_scalar("SELECT is_active FROM schedules WHERE id = $1")
                .bind(s.id)
                .fetch_optional(&st.db)
                .await?;
        match active {
            None => return Ok(()),
            Some(false) if !manual => return Ok(()),
            _ => {}
        }
        let server = servers::find(st, s.server_id).await?;
        if server.status.as_deref() == Some("suspended") {
            return Ok(());
        }
        sqlx::query("UPDATE tasks SET is_queued = TRUE WHERE id = $1")
            .bind(task.id)
            .execute(&st.db)
            .await?;
        let outcome: ApiResult<()> = match task.action.as_str() {
            "command" => st
                .daemon
                .commands(&conn, &uuid, std::slice::from_ref(&task.payload))
                .await
                .map_err(Into::into),
            "power" => st
                .daemon
                .power(&conn, &uuid, &task.payload)
                .await
                .map_err(Into::into),
            "backup" => crate::http::client::backups::initiate(
                st,
                &server,
                None,
                &task.payload,
                false,
                true,
            )
            .await
            .map(|_| ()),
            other => Err(ApiError::internal(anyhow::anyhow!(
                "unknown task action {other}"
            ))),
        };
        sqlx::query("UPDATE tasks SET is_queued = FALSE WHERE id = $1")
            .bind(task.id)
            .execute(&st.db)
            .await?;
        if let Err(e) = outcome {
            tracing::warn!(schedule = s.id, task = task.id, error = ?e, "schedule task failed");
            if !task.continue_on_failure {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The background loop: every `every`, claim and start what is due.
pub fn spawn_runner(st: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick_iv = tokio::time::interval(every);
        tick_iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick_iv.tick().await;
            if let Err(e) = tick(&st, 50).await {
                tracing::warn!(error = ?e, "schedule runner tick failed");
            }
        }
    })
}
