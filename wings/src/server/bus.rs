//! A server's event bus: a broadcast channel that also knows how far each of its
//! readers (the websocket sockets) has read, so the console reader can wait for
//! the sockets that read and leave out one that is stuck without leaving out the
//! others (see `Server::wait_for_sockets`).

use crate::events::Published;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub struct Bus {
    tx: broadcast::Sender<Arc<Published>>,
    /// Messages sent so far.
    sent: AtomicU64,
    readers: Mutex<Vec<Weak<Progress>>>,
}

/// How far one reader has read, and the console reader's record of its waits.
struct Progress {
    /// Messages sent before the reader subscribed, plus those it has taken or
    /// lost since: `sent - read` is how far behind it is.
    read: AtomicU64,
    wait: Mutex<ReaderWait>,
}

#[derive(Default)]
struct ReaderWait {
    /// Whole waits in a row during which the reader took nothing.
    still: u32,
    /// When it was last taken as stuck.
    stalled: Option<Instant>,
}

/// One reader of the bus (`Bus::subscribe`).
pub struct BusReceiver {
    rx: broadcast::Receiver<Arc<Published>>,
    progress: Arc<Progress>,
}

impl BusReceiver {
    /// The next message; `Lagged(n)` when the bus dropped `n` this reader had not
    /// read (the next call returns the oldest it still holds).
    pub async fn recv(&mut self) -> Result<Arc<Published>, RecvError> {
        let r = self.rx.recv().await;
        match &r {
            Ok(_) => self.took(1),
            Err(RecvError::Lagged(n)) => self.took(*n),
            Err(RecvError::Closed) => {}
        }
        r
    }

    /// The next message if one is already there.
    pub fn try_recv(&mut self) -> Result<Arc<Published>, TryRecvError> {
        let r = self.rx.try_recv();
        match &r {
            Ok(_) => self.took(1),
            Err(TryRecvError::Lagged(n)) => self.took(*n),
            Err(_) => {}
        }
        r
    }

    fn took(&self, n: u64) {
        self.progress.read.fetch_add(n, Ordering::Release);
    }
}

/// A reader the console reader waits for, with where it was when the wait began.
pub struct Laggard {
    progress: Arc<Progress>,
    mark: u64,
}

impl Bus {
    pub fn new(capacity: usize) -> Bus {
        let (tx, _) = broadcast::channel(capacity);
        Bus {
            tx,
            sent: AtomicU64::new(0),
            readers: Mutex::new(Vec::new()),
        }
    }

    pub fn subscribe(&self) -> BusReceiver {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        // A send under way may be counted late, so a new reader can look one
        // message further behind than it is; the wait's threshold is 128.
        let progress = Arc::new(Progress {
            read: AtomicU64::new(self.sent.load(Ordering::Acquire)),
            wait: Mutex::new(ReaderWait::default()),
        });
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(&progress));
        BusReceiver { rx, progress }
    }

    pub fn send(&self, p: Arc<Published>) {
        if self.tx.send(p).is_ok() {
            self.sent.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Messages the slowest reader has not read yet (stuck readers included).
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    fn behind(&self, p: &Progress) -> u64 {
        self.sent
            .load(Ordering::Acquire)
            .saturating_sub(p.read.load(Ordering::Acquire))
    }

    /// The readers more than `high` messages behind, leaving out those taken as
    /// stuck less than `holdoff` ago.
    pub fn laggards(&self, high: usize, holdoff: Duration) -> Vec<Laggard> {
        let readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|p| self.behind(p) > high as u64)
            .filter(|p| {
                let w = p.wait.lock().unwrap_or_else(|e| e.into_inner());
                w.stalled.is_none_or(|t| t.elapsed() >= holdoff)
            })
            .map(|progress| Laggard {
                mark: progress.read.load(Ordering::Acquire),
                progress,
            })
            .collect()
    }

    /// Whether every one of `laggards` is back within `high` messages.
    pub fn caught_up(&self, laggards: &[Laggard], high: usize) -> bool {
        laggards
            .iter()
            .all(|l| self.behind(&l.progress) <= high as u64)
    }

    /// After a whole wait for `laggards`: a reader that took nothing during it
    /// counts one still wait more, and after `still_waits` in a row it is taken
    /// as stuck (left out of the waits for the holdoff); one that took
    /// something starts counting again.
    pub fn waited(&self, laggards: &[Laggard], still_waits: u32) {
        for l in laggards {
            let mut w = l.progress.wait.lock().unwrap_or_else(|e| e.into_inner());
            if l.progress.read.load(Ordering::Acquire) != l.mark {
                w.still = 0;
                continue;
            }
            w.still += 1;
            if w.still >= still_waits {
                w.still = 0;
                w.stalled = Some(Instant::now());
            }
        }
    }

    /// After a wait that ended with every laggard caught up.
    pub fn moved(&self, laggards: &[Laggard]) {
        for l in laggards {
            l.progress
                .wait
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .still = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn line(n: usize) -> Arc<Published> {
        Published::new(Event::Console(format!("line {n}")))
    }

    #[test]
    fn a_reader_that_lost_messages_is_counted_where_it_is() {
        let bus = Bus::new(8);
        let mut r = bus.subscribe();
        for n in 0..20 {
            bus.send(line(n));
        }
        assert_eq!(bus.laggards(4, Duration::from_secs(2)).len(), 1);
        // It lost 12, then reads the 8 the bus kept: nothing left behind.
        assert!(matches!(r.try_recv(), Err(TryRecvError::Lagged(12))));
        let mut got = 0;
        while r.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 8);
        assert!(bus.laggards(0, Duration::from_secs(2)).is_empty());
        // A reader that subscribes later starts where the bus is.
        let _late = bus.subscribe();
        assert!(bus.laggards(0, Duration::from_secs(2)).is_empty());
        bus.send(line(20));
        assert_eq!(bus.laggards(0, Duration::from_secs(2)).len(), 2);
    }

    #[test]
    fn only_the_still_reader_is_left_out_and_only_for_the_holdoff() {
        let bus = Bus::new(64);
        let mut reading = bus.subscribe();
        let _stuck = bus.subscribe();
        for n in 0..40 {
            bus.send(line(n));
        }
        let holdoff = Duration::from_millis(300);
        for _ in 0..3 {
            let laggards = bus.laggards(8, holdoff);
            assert_eq!(laggards.len(), 2, "both are waited for until one is stuck");
            for _ in 0..2 {
                reading.try_recv().unwrap();
                bus.send(line(0));
            }
            bus.waited(&laggards, 3);
        }
        // Three still waits: the stuck one is left out, the reading one is not.
        let laggards = bus.laggards(8, holdoff);
        assert_eq!(laggards.len(), 1);
        assert!(!bus.caught_up(&laggards, 8));
        while reading.try_recv().is_ok() {}
        assert!(bus.caught_up(&laggards, 8));
        // A dropped reader is no longer waited for; the stuck one is again once
        // its holdoff is over.
        drop(reading);
        assert!(bus.laggards(8, holdoff).is_empty());
        std::thread::sleep(holdoff);
        assert_eq!(bus.laggards(8, holdoff).len(), 1);
    }
}
