//! Server events and their websocket encoding (reference §3.6). Each server owns a
//! broadcast bus; websocket connections subscribe to it. An event travels with its
//! websocket frames, encoded once for every socket.

use crate::http::ws::wire;
use bytes::Bytes;
use openapi::wings::{events, WebsocketMessage};
use std::sync::Arc;

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
    /// as one bus message (one wake-up, one token check and one write per socket);
    /// on the wire each is still its own `console output` message, as upstream sends.
    ConsoleLines(ConsoleFrames),
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

    /// The websocket message of an event that is one message. `ConsoleLines` is
    /// one message per line, already framed; it never comes here (the arm below
    /// only keeps the match whole).
    fn to_message(&self) -> WebsocketMessage {
        let args = match self {
            Event::ConsoleLines(_) => vec![],
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
/// subscriber, with the complete websocket bytes of its messages, framed once for
/// every socket instead of once per socket.
#[derive(Debug)]
pub struct Published {
    pub event: Event,
    wire: Bytes,
}

impl Published {
    pub fn new(event: Event) -> Arc<Published> {
        let wire = match &event {
            Event::ConsoleLines(frames) => frames.wire.clone(),
            Event::Console(line) => {
                let mut b = ConsoleFramesBuilder::default();
                b.push(line);
                b.take().wire
            }
            ev => message_frame(&ev.to_message()),
        };
        Arc::new(Published { event, wire })
    }

    /// The event's websocket frames, in order: one text frame for every event but
    /// `ConsoleLines`, which has one per line. Cloning it copies nothing.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

/// One text frame carrying `m`'s JSON.
pub fn message_frame(m: &WebsocketMessage) -> Bytes {
    // A message of strings always serialises.
    let json = serde_json::to_vec(m).unwrap_or_default();
    wire::frame(wire::OP_TEXT, &json)
}

/// Console lines framed as websocket messages, one unfragmented
/// `{"event":"console output","args":[LINE]}` text frame per line: the bytes every
/// socket writes.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleFrames {
    wire: Bytes,
    lines: usize,
}

impl ConsoleFrames {
    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn wire(&self) -> &Bytes {
        &self.wire
    }
}

/// Frames console lines as they are read (see [`ConsoleFrames`]).
#[derive(Debug, Default)]
pub struct ConsoleFramesBuilder {
    wire: Vec<u8>,
    lines: usize,
    json: Vec<u8>,
}

impl ConsoleFramesBuilder {
    /// Appends the line's frame: the same JSON serde writes for a
    /// `WebsocketMessage`, without building one.
    pub fn push(&mut self, line: &str) {
        const HEAD: &[u8] = br#"{"event":"console output","args":["#;
        self.json.clear();
        self.json.extend_from_slice(HEAD);
        // Serialising a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.json, line);
        self.json.extend_from_slice(b"]}");
        wire::push_header(&mut self.wire, wire::OP_TEXT, self.json.len());
        self.wire.extend_from_slice(&self.json);
        self.lines += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Lines so far.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Bytes of frames so far.
    pub fn bytes(&self) -> usize {
        self.wire.len()
    }

    /// The frames so far; the builder starts again empty.
    pub fn take(&mut self) -> ConsoleFrames {
        let lines = std::mem::take(&mut self.lines);
        let next = Vec::with_capacity(self.wire.len());
        let wire = std::mem::replace(&mut self.wire, next);
        ConsoleFrames {
            wire: wire.into(),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits unmasked, unfragmented frames into (first byte, payload).
    fn frames(mut b: &[u8]) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (len, at) = match b[1] {
                126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push((b[0], String::from_utf8(b[at..at + len].to_vec()).unwrap()));
            b = &b[at + len..];
        }
        out
    }

    #[test]
    fn published_frame_is_the_message_json() {
        for ev in [
            Event::Console("line with \"quotes\" and \u{1b}[33m colour".into()),
            Event::Status(State::Running),
            Event::InstallCompleted,
            Event::Deleted,
        ] {
            let p = Published::new(ev.clone());
            let want = serde_json::to_string(&ev.to_message()).unwrap();
            assert_eq!(frames(p.wire()), vec![(0x81, want)]);
        }
    }

    #[test]
    fn console_lines_are_one_text_frame_each_in_order() {
        let lines = vec![
            "first \\ line".to_string(),
            "\u{1b}[1mbold\u{1b}[0m \"quoted\" \t tab".to_string(),
            String::new(),
            "ünïcödé ✓".to_string(),
            // Long enough for the 16-bit and the 64-bit length forms.
            "x".repeat(300),
            "\u{1}".repeat(12_000),
        ];
        let mut b = ConsoleFramesBuilder::default();
        for l in &lines {
            b.push(l);
        }
        let frames_of = b.take();
        assert_eq!(frames_of.lines(), lines.len());
        assert!(b.is_empty() && b.bytes() == 0, "take starts a new batch");
        let p = Published::new(Event::ConsoleLines(frames_of));
        let want: Vec<(u8, String)> = lines
            .iter()
            .map(|l| {
                let m = WebsocketMessage::new(events::CONSOLE_OUTPUT, vec![l.clone()]);
                (0x81, serde_json::to_string(&m).unwrap())
            })
            .collect();
        assert_eq!(frames(p.wire()), want);
    }
}
