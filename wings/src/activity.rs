//! Activity events recorded by the daemon (reference §8.2): websocket power actions
//! and console commands. Queued on disk (`<root_directory>/activity.jsonl`; upstream
//! uses SQLite) and sent to the Panel's `POST /api/remote/activity` every
//! `activity_send_interval` seconds, at most `activity_send_count` per batch; rows
//! are dropped only after a successful POST.

use crate::remote::RemoteClient;
use openapi::remote::{ActivityBatch, ActivityEvent};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct ActivityLog {
    path: PathBuf,
    queue: Mutex<Vec<ActivityEvent>>,
}

impl ActivityLog {
    /// Opens the queue, reloading events that were not sent before a restart.
    pub fn open(path: PathBuf) -> ActivityLog {
        let queue = std::fs::read_to_string(&path)
            .map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<ActivityEvent>(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        ActivityLog {
            path,
            queue: Mutex::new(queue),
        }
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
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(line) = serde_json::to_string(&e) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                let _ = writeln!(f, "{line}");
            }
        }
        q.push(e);
    }

    pub fn pending(&self) -> Vec<ActivityEvent> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn rewrite(&self, q: &[ActivityEvent]) {
        let mut text = String::new();
        for e in q {
            if let Ok(line) = serde_json::to_string(e) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let _ = std::fs::write(&self.path, text);
    }

    /// Sends one batch; returns how many events were delivered.
    pub async fn flush(&self, remote: &RemoteClient, max: usize) -> anyhow::Result<usize> {
        let batch: Vec<ActivityEvent> = {
            let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.iter().take(max.max(1)).cloned().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        remote.send_activity(&ActivityBatch { data: batch }).await?;
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let take = n.min(q.len());
        q.drain(..take);
        self.rewrite(&q);
        Ok(n)
    }
}
