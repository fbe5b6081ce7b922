//! Activity logs (reference §9.2): one row per event with its subjects, written by
//! the APIs and ingested from daemons.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

/// A subject of an event (`server`, `user`, `backup`, …) by id.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub kind: &'a str,
    pub id: i64,
}

/// One event to record.
pub struct Event<'a> {
    pub event: &'a str,
    pub actor_user: Option<i64>,
    pub api_key_id: Option<i64>,
    pub ip: Option<&'a str>,
    pub properties: Value,
    pub subjects: &'a [Subject<'a>],
    pub timestamp: Option<DateTime<Utc>>,
    pub batch: Option<uuid::Uuid>,
}

impl<'a> Event<'a> {
    pub fn new(event: &'a str) -> Self {
        Event {
            event,
            actor_user: None,
            api_key_id: None,
            ip: None,
            properties: Value::Object(Default::default()),
            subjects: &[],
            timestamp: None,
            batch: None,
        }
    }
}

/// Writes one event and its subjects in a single statement.
pub async fn log<'e>(db: impl PgExecutor<'e>, e: &Event<'_>) -> Result<i64, sqlx::Error> {
    let kinds: Vec<&str> = e.subjects.iter().map(|s| s.kind).collect();
    let ids: Vec<i64> = e.subjects.iter().map(|s| s.id).collect();
    sqlx::query_scalar(
        "WITH l AS (
            INSERT INTO activity_logs (batch, event, ip, actor_type, actor_id, api_key_id, properties, timestamp)
            VALUES ($1, $2, $3, CASE WHEN $4::BIGINT IS NULL THEN NULL ELSE 'user' END, $4, $5, $6, COALESCE($7, now()))
            RETURNING id
         ), s AS (
            INSERT INTO activity_log_subjects (activity_log_id, subject_type, subject_id)
            SELECT l.id, k, i FROM l, UNNEST($8::TEXT[], $9::BIGINT[]) AS t(k, i)
         )
         SELECT id FROM l",
    )
    .bind(e.batch)
    .bind(e.event)
    .bind(e.ip)
    .bind(e.actor_user)
    .bind(e.api_key_id)
    .bind(&e.properties)
    .bind(e.timestamp)
    .bind(&kinds)
    .bind(&ids)
    .fetch_one(db)
    .await
}
