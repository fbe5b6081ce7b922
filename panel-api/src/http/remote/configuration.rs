//! What a node's daemon is told about a server (wings-protocol §6.1, §6.2): the
//! `settings` structure and the egg's `process_configuration`, with upstream's
//! placeholder substitution in egg configuration files.

use crate::error::{ApiError, ApiResult};
use crate::http::application::{nests, servers};
use crate::state::AppState;
use indexmap::IndexMap;
use openapi::remote::*;
use serde_json::{json, Map, Value};

/// Settings + process configuration for each server (one round of queries for all).
pub async fn build(st: &AppState, rows: &[servers::ServerRow]) -> ApiResult<Vec<RawServerData>> {
    let ids: Vec<i64> = rows.iter().map(|s| s.id).collect();
    let envs = servers::environments(st, &ids).await?;
    let allocs: Vec<(i64, i64, String, i32)> = sqlx::query_as(
        "SELECT id, server_id, ip, port FROM allocations WHERE server_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&st.db)
    .await?;
    let egg_ids: Vec<i64> = rows.iter().map(|s| s.egg_id).collect();
    let mut eggs: std::collections::HashMap<i64, nests::EggRow> = Default::default();
    let mut parent_ids = Vec::new();
    for e in nests::load_eggs_where(st, "e.id = ANY($1)", &egg_ids).await? {
        parent_ids.extend(e.config_from);
        parent_ids.extend(e.copy_script_from);
        eggs.insert(e.id, e);
    }
    for e in nests::load_eggs_where(st, "e.id = ANY($1)", &parent_ids).await? {
        eggs.entry(e.id).or_insert(e);
    }
    let mut out = Vec::with_capacity(rows.len());
    for s in rows {
        let egg = eggs.get(&s.egg_id).ok_or_else(ApiError::not_found)?;
        let parent = egg.config_from.and_then(|p| eggs.get(&p));
        let mut environment: IndexMap<String, Value> = IndexMap::new();
        for (k, v) in envs.get(&s.id).map(Vec::as_slice).unwrap_or(&[]) {
            environment.insert(k.clone(), Value::String(v.clone()));
        }
        environment.insert("STARTUP".into(), Value::String(s.startup.clone()));
        environment.insert(
            "P_SERVER_LOCATION".into(),
            Value::String(s.location_short.clone()),
        );
        environment.insert("P_SERVER_UUID".into(), Value::String(s.uuid.to_string()));
        environment.insert(
            "P_SERVER_ALLOCATION_LIMIT".into(),
            json!(s.allocation_limit.unwrap_or(0)),
        );
        let mut mappings: IndexMap<String, Vec<i64>> = IndexMap::new();
        let mut default = AllocationDefault::default();
        for (id, sid, ip, port) in allocs.iter().filter(|a| a.1 == s.id) {
            let _ = sid;
            mappings.entry(ip.clone()).or_default().push(*port as i64);
            if *id == s.allocation_id {
                default = AllocationDefault {
                    ip: ip.clone(),
                    port: *port as i64,
                };
            }
        }
        let denylist: Vec<String> = egg
            .file_denylist
            .as_ref()
            .or(parent.and_then(|p| p.file_denylist.as_ref()))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let settings = ServerSettings {
            uuid: s.uuid.to_string(),
            meta: ServerMeta {
                name: s.name.clone(),
                description: s.description.clone(),
            },
            suspended: s.status.as_deref() == Some("suspended"),
            environment,
            invocation: s.startup.clone(),
            skip_egg_scripts: s.skip_scripts,
            build: BuildSettings {
                memory_limit: s.memory,
                swap: s.swap,
                io_weight: s.io.clamp(0, u16::MAX as i64) as u16,
                cpu_limit: s.cpu,
                threads: s.threads.clone(),
                disk_space: s.disk,
                oom_disabled: s.oom_disabled,
            },
            container: ContainerSettings {
                image: s.image.clone(),
                oom_disabled: Some(s.oom_disabled),
                requires_rebuild: Some(false),
            },
            allocations: Allocations {
                force_outgoing_ip: egg.force_outgoing_ip,
                default,
                mappings,
            },
            mounts: Vec::new(),
            egg: EggSettings {
                id: egg.uuid.to_string(),
                file_denylist: denylist,
            },
            labels: None,
            crash_detection_enabled: None,
        };
        let process = process_configuration(&settings, egg, parent);
        out.push(RawServerData {
            uuid: s.uuid.to_string(),
            settings,
            process_configuration: process,
        });
    }
    Ok(out)
}

fn inherit<'a>(
    own: &'a Option<String>,
    parent: Option<&'a nests::EggRow>,
    pick: fn(&nests::EggRow) -> &Option<String>,
) -> Option<&'a str> {
    own.as_deref()
        .or_else(|| parent.and_then(|p| pick(p).as_deref()))
}

/// `process_configuration` from the egg (inheriting from `config_from`).
pub fn process_configuration(
    settings: &ServerSettings,
    egg: &nests::EggRow,
    parent: Option<&nests::EggRow>,
) -> ProcessConfiguration {
    let startup: Value = inherit(&egg.config_startup, parent, |e| &e.config_startup)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    let done = match startup.get("done") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let user_interaction = startup
        .get("userInteraction")
        .or_else(|| startup.get("user_interaction"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let strip_ansi = startup
        .get("strip_ansi")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let stop_raw = inherit(&egg.config_stop, parent, |e| &e.config_stop).unwrap_or("");
    let stop = match stop_raw.strip_prefix('^') {
        Some(sig) => ProcessStop {
            kind: "signal".into(),
            value: sig.to_uppercase(),
        },
        None => ProcessStop {
            kind: "command".into(),
            value: stop_raw.to_string(),
        },
    };
    let files: Value = inherit(&egg.config_files, parent, |e| &e.config_files)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    let legacy = legacy_structure(settings);
    let mut configs = Vec::new();
    if let Value::Object(files) = files {
        for (file, data) in files {
            let Some(find) = data.get("find").and_then(|f| f.as_object()) else {
                continue;
            };
            let parser = data
                .get("parser")
                .and_then(|p| p.as_str())
                .unwrap_or("file")
                .to_string();
            let mut replace = Vec::new();
            for (matches, value) in find {
                match value {
                    Value::Object(cases) => {
                        for (if_value, with) in cases {
                            replace.push(ConfigurationReplacement {
                                matches: matches.clone(),
                                if_value: Some(if_value.clone()),
                                replace_with: substitute(with, &legacy),
                            });
                        }
                    }
                    other => replace.push(ConfigurationReplacement {
                        matches: matches.clone(),
                        if_value: None,
                        replace_with: substitute(other, &legacy),
                    }),
                }
            }
            configs.push(ConfigurationFile {
                file,
                parser,
                replace,
            });
        }
    }
    ProcessConfiguration {
        startup: ProcessStartup {
            done,
            user_interaction,
            strip_ansi,
        },
        stop,
        configs,
    }
}

/// Upstream's "legacy" server structure, which egg placeholders
/// (`{{server.build.default.port}}`, `{{env.X}}`) are looked up in.
fn legacy_structure(s: &ServerSettings) -> Value {
    let env: Map<String, Value> = s
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "uuid": s.uuid,
        "build": {
            "default": {"ip": s.allocations.default.ip, "port": s.allocations.default.port},
            "ports": s.allocations.mappings,
            "env": env,
            "oom_disabled": s.build.oom_disabled,
            "memory": s.build.memory_limit,
            "swap": s.build.swap,
            "io": s.build.io_weight,
            "cpu": s.build.cpu_limit,
            "threads": s.build.threads,
            "disk": s.build.disk_space,
            "image": s.container.image,
        },
        "service": {"egg": s.egg.id, "skip_scripts": s.skip_egg_scripts},
        "container": {"requires_rebuild": false},
        "suspended": s.suspended,
    })
}

fn pluck(structure: &Value, path: &str) -> String {
    let mut cur = structure;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => {
            if *b {
                "1".into()
            } else {
                String::new()
            }
        }
        other => other.to_string(),
    }
}

/// Replaces `{{server.*}}` and `{{env.*}}` in string values; `{{config.*}}` is left
/// for the daemon, which resolves it against its own configuration.
fn substitute(v: &Value, structure: &Value) -> Value {
    let Value::String(s) = v else {
        return v.clone();
    };
    let re = crate::regex!(r"\{\{(?P<key>[\w.-]*)\}\}");
    let out = re.replace_all(s, |c: &regex::Captures| {
        let key = &c["key"];
        if let Some(rest) = key.strip_prefix("server.") {
            pluck(structure, rest)
        } else if let Some(rest) = key.strip_prefix("env.") {
            pluck(structure, &format!("build.env.{rest}"))
        } else {
            c[0].to_string()
        }
    });
    Value::String(out.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_come_from_the_legacy_structure() {
        let mut s = ServerSettings::default();
        s.allocations.default = AllocationDefault {
            ip: "10.0.0.1".into(),
            port: 25565,
        };
        s.build.memory_limit = 1024;
        s.environment.insert("MOTD".into(), json!("hi"));
        let legacy = legacy_structure(&s);
        assert_eq!(
            substitute(&json!("{{server.build.default.port}}"), &legacy),
            json!("25565")
        );
        assert_eq!(
            substitute(&json!("-Xmx{{server.build.memory}}M {{env.MOTD}}"), &legacy),
            json!("-Xmx1024M hi")
        );
        assert_eq!(
            substitute(&json!("{{config.docker.interface}}"), &legacy),
            json!("{{config.docker.interface}}")
        );
        assert_eq!(substitute(&json!(true), &legacy), json!(true));
    }
}
