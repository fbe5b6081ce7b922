//! Egg import: upstream's egg export format (PTDL_v1 and PTDL_v2), so operators can
//! bring the community's eggs.

use crate::db::Db;
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The nest an egg goes into: an existing id, or a name (created when missing).
pub enum NestRef {
    Id(i64),
    Name(String),
}

fn json_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn rules_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        ),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => s == "1" || s == "true",
        _ => false,
    }
}

/// Imports one egg export; returns the new egg's id.
pub async fn import(db: &Db, nest: NestRef, json: &str) -> Result<i64> {
    let egg: Value = serde_json::from_str(json).context("the egg file is not valid JSON")?;
    let version = egg
        .pointer("/meta/version")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if version != "PTDL_v1" && version != "PTDL_v2" {
        bail!("unsupported egg format {version:?}: expected PTDL_v1 or PTDL_v2 (meta.version)");
    }
    let name = egg
        .get("name")
        .and_then(|v| v.as_str())
        .context("the egg has no name")?;
    let author = egg
        .get("author")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown@unknown");
    // v2 has `docker_images` (label → image); v1 has `images` (list) or `image`.
    let images: serde_json::Map<String, Value> =
        if let Some(map) = egg.get("docker_images").and_then(|v| v.as_object()) {
            map.clone()
        } else if let Some(list) = egg.get("images").and_then(|v| v.as_array()) {
            list.iter()
                .filter_map(|i| i.as_str())
                .map(|i| (i.to_string(), Value::String(i.to_string())))
                .collect()
        } else if let Some(i) = egg.get("image").and_then(|v| v.as_str()) {
            [(i.to_string(), Value::String(i.to_string()))]
                .into_iter()
                .collect()
        } else {
            serde_json::Map::new()
        };
    let mut tx = db.begin().await?;
    let nest_id: i64 = match nest {
        NestRef::Id(id) => sqlx::query_scalar("SELECT id FROM nests WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?.context("no such nest")?,
        NestRef::Name(n) => match sqlx::query_scalar("SELECT id FROM nests WHERE name = $1").bind(&n).fetch_optional(&mut *tx).await? {
            Some(id) => id,
            None => {
                sqlx::query_scalar("INSERT INTO nests (uuid, author, name, description) VALUES ($1, $2, $3, $4) RETURNING id")
                    .bind(uuid::Uuid::new_v4())
                    .bind(author)
                    .bind(&n)
                    .bind(Option::<String>::None)
                    .fetch_one(&mut *tx)
                    .await?
            }
        },
    };
    let install = egg.pointer("/scripts/installation");
    let egg_id: i64 = sqlx::query_scalar(
        "INSERT INTO eggs (uuid, nest_id, author, name, description, features, docker_images, file_denylist, update_url,
            config_files, config_startup, config_logs, config_stop, startup, script_container, script_entry,
            script_is_privileged, script_install)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) RETURNING id",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(nest_id)
    .bind(author)
    .bind(name)
    .bind(egg.get("description").and_then(|v| v.as_str()))
    .bind(egg.get("features").filter(|v| v.is_array()))
    .bind(Value::Object(images))
    .bind(egg.get("file_denylist").filter(|v| v.is_array()))
    .bind(egg.pointer("/meta/update_url").and_then(|v| v.as_str()))
    .bind(json_text(egg.pointer("/config/files")))
    .bind(json_text(egg.pointer("/config/startup")))
    .bind(json_text(egg.pointer("/config/logs")))
    .bind(json_text(egg.pointer("/config/stop")))
    .bind(egg.get("startup").and_then(|v| v.as_str()))
    .bind(install.and_then(|i| i.get("container")).and_then(|v| v.as_str()).unwrap_or("alpine:3.4"))
    .bind(install.and_then(|i| i.get("entrypoint")).and_then(|v| v.as_str()).unwrap_or("ash"))
    .bind(true)
    .bind(install.and_then(|i| i.get("script")).and_then(|v| v.as_str()))
    .fetch_one(&mut *tx)
    .await?;
    for var in egg
        .get("variables")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let env = var
            .get("env_variable")
            .and_then(|v| v.as_str())
            .context("a variable has no env_variable")?;
        sqlx::query(
            "INSERT INTO egg_variables (egg_id, name, description, env_variable, default_value, user_viewable, user_editable, rules)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(egg_id)
        .bind(var.get("name").and_then(|v| v.as_str()).unwrap_or(env))
        .bind(var.get("description").and_then(|v| v.as_str()).unwrap_or(""))
        .bind(env)
        .bind(json_text(var.get("default_value")).unwrap_or_default())
        .bind(truthy(var.get("user_viewable")))
        .bind(truthy(var.get("user_editable")))
        .bind(rules_text(var.get("rules")))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(egg_id)
}

/// Ferrodactyl's own small generic egg, seeded by the quick start.
pub const GENERIC_EGG: &str = include_str!("../eggs/generic-shell.json");
