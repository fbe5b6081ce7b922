//! Activity events recorded by the daemon (reference §8.2): websocket power actions
//! and console commands, signed uploads and SFTP file events. Queued on disk
//! (`<root_directory>/activity.jsonl`, one event per line; upstream uses SQLite) and
//! sent to the Panel's `POST /api/remote/activity` every `activity_send_interval`
//! seconds by two passes, as upstream's two crons (`internal/cron/activity_cron.go`,
//! `sftp_cron.go`):
//!
//! 1. up to `activity_send_count` non-SFTP events, sent as they are;
//! 2. SFTP events (`server:sftp.*`) merged per (user, server, ip, event, UTC minute)
//!    into one event whose `files` list is every merged event's `files` and whose
//!    timestamp is the group's earliest, up to `activity_send_count` merged events.
//!
//! Rows are dropped only after a successful POST; what did not fit waits for the
//! next tick.

use crate::remote::RemoteClient;
use openapi::remote::{ActivityBatch, ActivityEvent};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

pub const SFTP_PREFIX: &str = "server:sftp.";

struct Queue {
    /// Pending events with a sequence number that identifies them across flushes.
    events: Vec<(u64, ActivityEvent)>,
    next: u64,
    /// The queue file, kept open for appending (one write per event).
    file: Option<std::fs::File>,
}

pub struct ActivityLog {
    path: PathBuf,
    queue: Mutex<Queue>,
}

impl ActivityLog {
    /// Opens the queue, reloading events that were not sent before a restart.
    pub fn open(path: PathBuf) -> ActivityLog {
        let events: Vec<(u64, ActivityEvent)> = std::fs::read_to_string(&path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<ActivityEvent>(l).ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i as u64, e))
            .collect();
        ActivityLog {
            path,
            queue: Mutex::new(Queue {
                next: events.len() as u64,
                events,
                file: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one `server:*` event. `ip` may carry a port (it is stripped).
    pub fn record(
        &self,
        server: &str,
        event: &str,
        user: Option<String>,
        ip: Option<std::net::IpAddr>,
        metadata: serde_json::Value,
    ) {
        let e = ActivityEvent {
            user,
            server: server.to_string(),
            event: event.to_string(),
            metadata,
            ip: ip.map(|i| i.to_string()),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        let mut q = self.lock();
        if q.file.is_none() {
            q.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        if let Some(f) = q.file.as_mut() {
            if f.write_all(&line).is_err() {
                q.file = None;
            }
        }
        let id = q.next;
        q.next += 1;
        q.events.push((id, e));
    }

    pub fn pending(&self) -> Vec<ActivityEvent> {
        self.lock().events.iter().map(|(_, e)| e.clone()).collect()
    }

    /// Drops the delivered events and rewrites the queue file with the rest.
    fn remove(&self, sent: &HashSet<u64>) {
        let mut q = self.lock();
        q.events.retain(|(id, _)| !sent.contains(id));
        let mut text = Vec::new();
        for (_, e) in &q.events {
            if let Ok(line) = serde_json::to_vec(e) {
                text.extend_from_slice(&line);
                text.push(b'\n');
            }
        }
        // The append handle keeps working on the rewritten file (O_APPEND).
        let _ = std::fs::write(&self.path, text);
    }

    /// Runs both passes once; returns how many queued events were delivered.
    pub async fn flush(&self, remote: &RemoteClient, max: usize) -> anyhow::Result<usize> {
        let max = max.max(1);
        let (plain, sftp) = {
            let q = self.lock();
            let plain: Vec<(u64, ActivityEvent)> = q
                .events
                .iter()
                .filter(|(_, e)| !e.event.starts_with(SFTP_PREFIX))
                .take(max)
                .cloned()
                .collect();
            let sftp = merge_sftp(
                q.events
                    .iter()
                    .filter(|(_, e)| e.event.starts_with(SFTP_PREFIX)),
                max,
            );
            (plain, sftp)
        };
        let mut delivered = 0;
        if !plain.is_empty() {
            let ids: HashSet<u64> = plain.iter().map(|(id, _)| *id).collect();
            let data = plain.into_iter().map(|(_, e)| e).collect();
            remote.send_activity(&ActivityBatch { data }).await?;
            delivered += ids.len();
            self.remove(&ids);
        }
        if !sftp.events.is_empty() {
            remote
                .send_activity(&ActivityBatch { data: sftp.events })
                .await?;
            delivered += sftp.ids.len();
            self.remove(&sftp.ids);
        }
        Ok(delivered)
    }
}

/// SFTP events merged for one POST, and the queued events they stand for.
pub struct Merged {
    pub events: Vec<ActivityEvent>,
    pub ids: HashSet<u64>,
}

/// Merges SFTP events per (user, server, ip, event, UTC minute of the timestamp),
/// at most `max` merged events; events of further groups stay queued.
fn merge_sftp<'a>(events: impl Iterator<Item = &'a (u64, ActivityEvent)>, max: usize) -> Merged {
    type Key = (Option<String>, String, Option<String>, String, String);
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut out: Vec<ActivityEvent> = Vec::new();
    let mut ids = HashSet::new();
    for (id, e) in events {
        // RFC 3339 in UTC: the first 16 characters are `YYYY-MM-DDTHH:MM`.
        let minute = e.timestamp.get(..16).unwrap_or(&e.timestamp).to_string();
        let key = (
            e.user.clone(),
            e.server.clone(),
            e.ip.clone(),
            e.event.clone(),
            minute,
        );
        let slot = match index.get(&key) {
            Some(i) => *i,
            None => {
                if out.len() >= max {
                    continue;
                }
                let mut first = e.clone();
                first.metadata = serde_json::json!({ "files": [] });
                out.push(first);
                index.insert(key, out.len() - 1);
                out.len() - 1
            }
        };
        ids.insert(*id);
        let m = &mut out[slot];
        if e.timestamp < m.timestamp {
            m.timestamp = e.timestamp.clone();
        }
        if let Some(files) = e.metadata.get("files").and_then(|f| f.as_array()) {
            if let Some(list) = m.metadata["files"].as_array_mut() {
                list.extend(files.iter().cloned());
            }
        }
    }
    Merged { events: out, ids }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(user: &str, event: &str, ip: &str, ts: &str, files: serde_json::Value) -> ActivityEvent {
        ActivityEvent {
            user: Some(user.into()),
            server: "s-1".into(),
            event: event.into(),
            metadata: json!({ "files": files }),
            ip: Some(ip.into()),
            timestamp: ts.into(),
        }
    }

    #[test]
    fn sftp_events_merge_per_user_ip_event_and_minute() {
        let q: Vec<(u64, ActivityEvent)> = [
            ev(
                "u",
                "server:sftp.create",
                "1.2.3.4",
                "2026-01-01T10:00:05.000000000Z",
                json!(["/a"]),
            ),
            ev(
                "u",
                "server:sftp.create",
                "1.2.3.4",
                "2026-01-01T10:00:01.000000000Z",
                json!(["/b"]),
            ),
            ev(
                "u",
                "server:sftp.create",
                "1.2.3.4",
                "2026-01-01T10:01:00.000000000Z",
                json!(["/c"]),
            ),
            ev(
                "u",
                "server:sftp.delete",
                "1.2.3.4",
                "2026-01-01T10:00:07.000000000Z",
                json!(["/a"]),
            ),
            ev(
                "v",
                "server:sftp.create",
                "1.2.3.4",
                "2026-01-01T10:00:08.000000000Z",
                json!(["/d"]),
            ),
            ev(
                "u",
                "server:sftp.create",
                "5.6.7.8",
                "2026-01-01T10:00:09.000000000Z",
                json!(["/e"]),
            ),
            ev(
                "u",
                "server:sftp.rename",
                "1.2.3.4",
                "2026-01-01T10:00:09.000000000Z",
                json!([{"from": "/a", "to": "/b"}]),
            ),
            ev(
                "u",
                "server:sftp.rename",
                "1.2.3.4",
                "2026-01-01T10:00:10.000000000Z",
                json!([{"from": "/b", "to": "/c"}]),
            ),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e))
        .collect();
        let m = merge_sftp(q.iter(), 100);
        assert_eq!(m.ids.len(), 8);
        assert_eq!(m.events.len(), 6);
        let first = &m.events[0];
        assert_eq!(first.metadata, json!({"files": ["/a", "/b"]}));
        assert_eq!(first.timestamp, "2026-01-01T10:00:01.000000000Z");
        assert_eq!(m.events[1].metadata, json!({"files": ["/c"]}));
        let rename = m
            .events
            .iter()
            .find(|e| e.event == "server:sftp.rename")
            .unwrap();
        assert_eq!(
            rename.metadata,
            json!({"files": [{"from": "/a", "to": "/b"}, {"from": "/b", "to": "/c"}]})
        );

        // At most `max` merged events; members of further groups stay queued.
        let m = merge_sftp(q.iter(), 2);
        assert_eq!(m.events.len(), 2);
        assert_eq!(m.ids, [0u64, 1, 2].into_iter().collect());
    }
}
