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
    /// Consecutive console lines from one read of the container's output, published
    /// as one bus message (one wake-up, one token check and one flush per socket);
    /// on the wire each is still its own `console output` message, as upstream sends.
    ConsoleLines(Vec<String>),
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
            Event::Console(_) | Event::ConsoleLines(_) => events::CONSOLE_OUTPUT,
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

    /// The websocket message of an event that is one message. `ConsoleLines` is one
    /// message per line, which [`Published::texts`] writes itself; it never calls this
    /// for them (the arm below, the first line, only keeps the match whole).
    fn to_message(&self) -> WebsocketMessage {
        let args = match self {
            Event::ConsoleLines(lines) => vec![lines.first().cloned().unwrap_or_default()],
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
/// subscriber, its websocket texts encoded once (by the first socket that sends it)
/// instead of once per socket.
#[derive(Debug)]
pub struct Published {
    pub event: Event,
    texts: OnceLock<Box<[Utf8Bytes]>>,
}

impl Published {
    pub fn new(event: Event) -> Arc<Published> {
        Arc::new(Published {
            event,
            texts: OnceLock::new(),
        })
    }

    /// The event's websocket messages as JSON texts, in order: one for every event
    /// but `ConsoleLines`, which has one per line. Each is a shared, reference-counted
    /// buffer: cloning it copies nothing.
    pub fn texts(&self) -> &[Utf8Bytes] {
        self.texts.get_or_init(|| match &self.event {
            Event::ConsoleLines(lines) => lines.iter().map(|l| console_text(l)).collect(),
            Event::Console(line) => Box::new([console_text(line)]),
            ev => Box::new([serde_json::to_string(&ev.to_message())
                .unwrap_or_default()
                .into()]),
        })
    }
}

/// `{"event":"console output","args":[LINE]}` written directly: the same bytes
/// serde would produce from a `WebsocketMessage`, without building one (which
/// copies the line into a fresh `Vec<String>`).
fn console_text(line: &str) -> Utf8Bytes {
    const HEAD: &str = r#"{"event":"console output","args":["#;
    let mut out = Vec::with_capacity(HEAD.len() + line.len() + 8);
    out.extend_from_slice(HEAD.as_bytes());
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, line);
    out.extend_from_slice(b"]}");
    // serde_json writes valid UTF-8 for a &str.
    String::from_utf8(out).unwrap_or_default().into()
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
            assert_eq!(p.texts().len(), 1);
            assert_eq!(p.texts()[0].as_str(), want);
            assert_eq!(p.texts()[0].as_str(), want, "cached text is the same");
        }
    }

    #[test]
    fn console_lines_are_one_message_each_in_order() {
        let lines = vec![
            "first \\ line".to_string(),
            "\u{1b}[1mbold\u{1b}[0m \"quoted\" \t tab".to_string(),
            String::new(),
            "ünïcödé ✓".to_string(),
        ];
        let p = Published::new(Event::ConsoleLines(lines.clone()));
        let texts: Vec<&str> = p.texts().iter().map(|t| t.as_str()).collect();
        let want: Vec<String> = lines
            .iter()
            .map(|l| {
                serde_json::to_string(&WebsocketMessage::new(
                    events::CONSOLE_OUTPUT,
                    vec![l.clone()],
                ))
                .unwrap()
            })
            .collect();
        assert_eq!(texts, want);
    }
}
