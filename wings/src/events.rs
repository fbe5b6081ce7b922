//! Server events and their websocket encoding (reference §3.6). Each server owns a
//! broadcast bus; websocket connections subscribe to it.

use openapi::wings::{events, WebsocketMessage};

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
