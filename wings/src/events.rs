//! Server events and their websocket encoding (reference §3.6). Each server owns a
//! broadcast bus; websocket connections subscribe to it.

use axum::extract::ws::Utf8Bytes;
use openapi::wings::{events, WebsocketMessage};
use std::sync::{Arc, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Offline,
    Starting,
    Running,
    Stopping,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Offline => "offline",
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "offline" => State::Offline,
            "starting" => State::Starting,
            "running" => State::Running,
            "stopping" => State::Stopping,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Status(State),
    /// JSON of `ResourceUsage`.
    Stats(String),
    Console(String),
    InstallOutput(String),
    InstallStarted,
    InstallCompleted,
    DaemonMessage(String),
    /// Published upstream as `backup completed:<uuid>`; the bus strips the suffix.
    BackupCompleted(String),
    BackupRestoreCompleted,
    TransferLogs(String),
    TransferStatus(String),
    Deleted,
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Status(_) => events::STATUS,
            Event::Stats(_) => events::STATS,
            Event::Console(_) => events::CONSOLE_OUTPUT,
            Event::InstallOutput(_) => events::INSTALL_OUTPUT,
            Event::InstallStarted => events::INSTALL_STARTED,
            Event::InstallCompleted => events::INSTALL_COMPLETED,
            Event::DaemonMessage(_) => events::DAEMON_MESSAGE,
            Event::BackupCompleted(_) => events::BACKUP_COMPLETED,
            Event::BackupRestoreCompleted => events::BACKUP_RESTORE_COMPLETED,
            Event::TransferLogs(_) => events::TRANSFER_LOGS,
            Event::TransferStatus(_) => events::TRANSFER_STATUS,
            Event::Deleted => events::DELETED,
        }
    }

    pub fn to_message(&self) -> WebsocketMessage {
        let args = match self {
            Event::Status(s) => vec![s.as_str().to_string()],
            Event::Stats(s)
            | Event::Console(s)
            | Event::InstallOutput(s)
            | Event::DaemonMessage(s)
            | Event::BackupCompleted(s)
            | Event::TransferLogs(s)
            | Event::TransferStatus(s) => vec![s.clone()],
            Event::InstallStarted | Event::InstallCompleted | Event::BackupRestoreCompleted => {
                vec![String::new()]
            }
            Event::Deleted => vec!["null".to_string()],
        };
        WebsocketMessage::new(self.name(), args)
    }

    /// The extra permission a socket needs to receive this event.
    pub fn permission(&self) -> Option<&'static str> {
        match self {
            Event::InstallOutput(_) => Some("admin.websocket.install"),
            Event::BackupCompleted(_) => Some("backup.read"),
            Event::TransferLogs(_) => Some("admin.websocket.transfer"),
            _ => None,
        }
    }
}

/// An event as it travels on a server's bus: one allocation shared by every
/// subscriber, its websocket text encoded once (by the first socket that sends it)
/// instead of once per socket.
#[derive(Debug)]
pub struct Published {
    pub event: Event,
    text: OnceLock<Utf8Bytes>,
}

impl Published {
    pub fn new(event: Event) -> Arc<Published> {
        Arc::new(Published {
            event,
            text: OnceLock::new(),
        })
    }

    /// The event's websocket message as JSON text (a shared, reference-counted
    /// buffer: cloning it copies nothing).
    pub fn text(&self) -> Utf8Bytes {
        self.text
            .get_or_init(|| {
                serde_json::to_string(&self.event.to_message())
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_text_is_the_message_json() {
        for ev in [
            Event::Console("line with \"quotes\" and \u{1b}[33m colour".into()),
            Event::Status(State::Running),
            Event::InstallCompleted,
            Event::Deleted,
        ] {
            let p = Published::new(ev.clone());
            let want = serde_json::to_string(&ev.to_message()).unwrap();
            assert_eq!(p.text().as_str(), want);
            assert_eq!(p.text().as_str(), want, "cached text is the same");
        }
    }
}
