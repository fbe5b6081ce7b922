//! Console helpers: upstream's line throttle (§3.7), "done" matchers (§6.2) and
//! ANSI stripping.

use regex::Regex;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// At most `lines` per `interval`; excess lines are dropped and one notice is due per
/// throttling episode.
#[derive(Debug)]
pub struct Throttle {
    lines: u64,
    interval: Duration,
    window_start: Instant,
    count: u64,
    throttled: bool,
}

pub enum Verdict {
    Pass,
    /// Dropped; the first drop of an episode asks for the notice.
    Drop {
        notify: bool,
    },
}

impl Throttle {
    pub fn new(lines: u64, interval_ms: u64) -> Throttle {
        Throttle {
            lines,
            interval: Duration::from_millis(interval_ms.max(1)),
            window_start: Instant::now(),
            count: 0,
            throttled: false,
        }
    }

    pub fn check(&mut self) -> Verdict {
        // Throttling off: every line passes, no clock to read.
        if self.lines == 0 {
            return Verdict::Pass;
        }
        let now = Instant::now();
        if now.duration_since(self.window_start) >= self.interval {
            self.window_start = now;
            self.count = 0;
            self.throttled = false;
        }
        self.count += 1;
        if self.count <= self.lines {
            return Verdict::Pass;
        }
        let notify = !self.throttled;
        self.throttled = true;
        Verdict::Drop { notify }
    }
}

/// One `startup.done` entry: substring, or regex when prefixed `regex:`.
#[derive(Clone, Debug)]
pub enum Matcher {
    Contains(String),
    Regex(Regex),
}

impl Matcher {
    pub fn compile(raw: &str) -> Matcher {
        if let Some(expr) = raw.strip_prefix("regex:").filter(|e| !e.is_empty()) {
            match Regex::new(expr) {
                Ok(r) => return Matcher::Regex(r),
                Err(e) => {
                    tracing::warn!(raw, error = %e, "failed to compile output line marked as being regex")
                }
            }
        }
        Matcher::Contains(raw.to_string())
    }

    pub fn matches(&self, line: &str) -> bool {
        match self {
            Matcher::Contains(s) => line.contains(s.as_str()),
            Matcher::Regex(r) => r.is_match(line),
        }
    }
}

static ANSI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\x1b\x9b][\[\]()#;?]*(?:(?:(?:[a-zA-Z\d]*(?:;[a-zA-Z\d]*)*)?\x07)|(?:(?:\d{1,4}(?:;\d{0,4})*)?[\dA-PRZcf-ntqry=><~]))")
        .expect("static regex")
});

pub fn strip_ansi(s: &str) -> String {
    ANSI.replace_all(s, "").into_owned()
}

/// Wings' own console notice: yellow bold `[<app> Daemon]:` prefix.
pub fn daemon_notice(app_name: &str, msg: &str) -> String {
    format!("\x1b[33m\x1b[1m[{app_name} Daemon]:\x1b[39m {msg}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_drops_after_limit_and_notifies_once() {
        let mut t = Throttle::new(3, 10_000);
        for _ in 0..3 {
            assert!(matches!(t.check(), Verdict::Pass));
        }
        assert!(matches!(t.check(), Verdict::Drop { notify: true }));
        assert!(matches!(t.check(), Verdict::Drop { notify: false }));
    }

    #[test]
    fn matchers_support_substrings_and_regex() {
        assert!(Matcher::compile(")! For help").matches("Done (1.2s)! For help, type"));
        assert!(Matcher::compile(r"regex:^Done \(").matches("Done (3s)"));
        assert!(!Matcher::compile(r"regex:^Done \(").matches("xDone (3s)"));
        assert_eq!(strip_ansi("\x1b[32mready\x1b[0m"), "ready");
    }
}
