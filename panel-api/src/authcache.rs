//! The API keys this process has authenticated, kept in memory with their user, so
//! that a request authenticates without a statement.
//!
//! Staleness is what matters for a cache of credentials, so it answers only while it
//! can be sure to hear about every change:
//!
//! * triggers on `api_keys` and `users` (migration 0003) `NOTIFY ferrodactyl_auth` in
//!   the writing transaction, whoever writes (any replica, the CLI, psql), and
//!   [`AuthCache::run`] LISTENs on a connection of its own and drops what changed;
//! * the cache serves nothing until that connection has proved it receives: a
//!   heartbeat notification sent through the pool every few seconds must come back
//!   within [`HEARTBEAT_TIMEOUT`]. A lost connection or a missed heartbeat (a
//!   transaction-pooling PgBouncer, which does not carry LISTEN, never passes it)
//!   forgets everything and sends requests to the database until it listens again;
//! * a row read before an invalidation and stored after it would undo it: every
//!   invalidation bumps an epoch, and a fill whose epoch moved is not stored;
//! * handlers that change a user or key in this process forget it themselves right
//!   after their commit, so a client sees its own change on the next request;
//! * every entry expires after `PANEL_AUTH_CACHE_TTL` seconds (default 60; 0 turns
//!   the cache off) whatever happens, for writes that skip triggers (a restore run
//!   with `session_replication_role = replica`).
//!
//! Another replica sees a change once its listener has read the notice, well under a
//! millisecond after the commit on one database server; [`AuthCache::settle`] waits
//! for that point.

use crate::db::Db;
use crate::http::auth::KeyRow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The NOTIFY channel of migration 0003's triggers.
pub const CHANNEL: &str = "ferrodactyl_auth";
/// How often the listener proves it still receives.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a heartbeat (or a [`AuthCache::settle`]) may take to come back.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many keys are kept (about 300 bytes each).
const MAX_ENTRIES: usize = 10_000;

/// A cached key row.
pub struct Entry {
    pub row: Arc<KeyRow>,
    filled: Instant,
    /// When this process last wrote the key's `last_used_at` (ms since the epoch).
    last_used_ms: AtomicI64,
}

impl Entry {
    /// Whether this request should write `last_used_at` (at most once a second per
    /// key and process); only one of the requests that ask at the same time is told so.
    pub fn claim_last_used(&self, now_ms: i64) -> bool {
        let prev = self.last_used_ms.load(Ordering::Relaxed);
        now_ms - prev >= 1000
            && self
                .last_used_ms
                .compare_exchange(prev, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AuthCache(Arc<Shared>);

struct Shared {
    ttl: Duration,
    map: RwLock<HashMap<Box<str>, Arc<Entry>>>,
    /// Bumped by every invalidation (under the map's write lock).
    epoch: AtomicU64,
    /// The listener has proved it receives; entries may be served and stored.
    listening: AtomicBool,
    /// This process's mark on its own `sync:` notifications.
    nonce: String,
    next_sync: AtomicU64,
    /// Round trips waiting for their `sync:` notification to come back.
    waiters: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl AuthCache {
    /// A cache whose entries live `ttl`; `Duration::ZERO` turns it off.
    pub fn new(ttl: Duration) -> AuthCache {
        AuthCache(Arc::new(Shared {
            ttl,
            map: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            nonce: crate::crypto::random_string(16),
            next_sync: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
        }))
    }

    pub fn enabled(&self) -> bool {
        !self.0.ttl.is_zero()
    }

    /// Whether the cache currently serves (its listener has proved it receives).
    pub fn is_listening(&self) -> bool {
        self.0.listening.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<Entry>>> {
        self.0.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Arc<Entry>>> {
        self.0.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached row of key `identifier`, when the cache serves and has a fresh one.
    pub fn get(&self, identifier: &str) -> Option<Arc<Entry>> {
        if !self.is_listening() {
            return None;
        }
        let e = self.read().get(identifier).cloned()?;
        (e.filled.elapsed() < self.0.ttl).then_some(e)
    }

    /// The epoch to pass to [`Self::insert`]: read it before the statement.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// Stores `row`, read by a statement that started after [`Self::epoch`] returned
    /// `epoch`, unless something was invalidated since (or the cache does not serve).
    /// Returns the entry the request goes on with.
    pub fn insert(&self, epoch: u64, row: KeyRow) -> Arc<Entry> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let entry = Arc::new(Entry {
            last_used_ms: AtomicI64::new(
                row.last_used_at
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(i64::MIN / 2)
                    .min(now_ms),
            ),
            row: Arc::new(row),
            filled: Instant::now(),
        });
        if !self.enabled() || !self.is_listening() {
            return entry;
        }
        let mut map = self.write();
        if self.0.epoch.load(Ordering::Acquire) != epoch || !self.is_listening() {
            return entry;
        }
        if map.len() >= MAX_ENTRIES {
            let ttl = self.0.ttl;
            map.retain(|_, e| e.filled.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(entry.row.identifier.as_str().into(), entry.clone());
        entry
    }

    fn invalidate(&self, f: impl FnOnce(&mut HashMap<Box<str>, Arc<Entry>>)) {
        let mut map = self.write();
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        f(&mut map);
    }

    /// Drops key `identifier`.
    pub fn forget_key(&self, identifier: &str) {
        self.invalidate(|m| {
            m.remove(identifier);
        });
    }

    /// Drops every key of user `user_id`.
    pub fn forget_user(&self, user_id: i64) {
        self.invalidate(|m| m.retain(|_, e| e.row.user_id != user_id));
    }

    /// Drops everything.
    pub fn forget_all(&self) {
        self.invalidate(|m| m.clear());
    }

    /// Applies one notification of the channel.
    fn apply(&self, payload: &str) {
        if let Some(id) = payload.strip_prefix("k:") {
            self.forget_key(id.trim_end());
        } else if let Some(user) = payload.strip_prefix("u:") {
            match user.parse() {
                Ok(u) => self.forget_user(u),
                Err(_) => self.forget_all(),
            }
        } else if let Some(rest) = payload.strip_prefix("sync:") {
            // Another process's round trips are none of ours.
            if let Some(n) = rest
                .strip_prefix(self.0.nonce.as_str())
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                let waiter = self
                    .0
                    .waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&n);
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
            }
        } else {
            // `*`, or anything this version does not know: the safe answer.
            self.forget_all();
        }
    }

    /// Sends a notification through the pool and waits until the listener has read
    /// it: every change committed before the call has then been applied.
    async fn round_trip(&self, db: &Db) -> anyhow::Result<()> {
        let n = self.0.next_sync.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.0
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n, tx);
        let payload = format!("sync:{}:{n}", self.0.nonce);
        let sent = tokio::time::timeout(HEARTBEAT_TIMEOUT, async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&payload)
                .execute(db)
                .await?;
            rx.await
                .map_err(|_| anyhow::anyhow!("the listener stopped"))?;
            Ok::<_, anyhow::Error>(())
        })
        .await;
        self.0
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n);
        match sent {
            Ok(r) => r,
            Err(_) => anyhow::bail!("no notification back within {HEARTBEAT_TIMEOUT:?}"),
        }
    }

    /// Waits until every change to keys and users committed before this call has
    /// reached this process's cache. Returns at once when the cache does not serve
    /// (then nothing is read from it).
    pub async fn settle(&self, db: &Db) -> anyhow::Result<()> {
        if !self.is_listening() {
            return Ok(());
        }
        self.round_trip(db).await
    }

    fn stop_serving(&self) {
        self.0.listening.store(false, Ordering::Release);
        self.forget_all();
    }

    /// Listens for changes for as long as the returned future runs (it never ends
    /// by itself): reconnects after a loss, with the cache off meanwhile.
    pub async fn run(self, db: Db) {
        if !self.enabled() {
            return std::future::pending().await;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            let why = self.session(&db).await;
            self.stop_serving();
            tracing::warn!(error = %why, "auth cache off until its listener is back");
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One listening connection, until it fails. The connection is dropped, never
    /// reused, when this returns, so cancelling a read on it is harmless.
    async fn session(&self, db: &Db) -> anyhow::Error {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(db.connect_options().clone());
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => return e.into(),
        };
        // A lost connection ends the session (a reconnect inside sqlx would hide
        // the notices lost meanwhile).
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        if let Err(e) = listener.listen(CHANNEL).await {
            return e.into();
        }
        let receive = async {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => self.apply(n.payload()),
                    Ok(None) => return anyhow::anyhow!("the listening connection was lost"),
                    Err(e) => return e.into(),
                }
            }
        };
        let heartbeat = async {
            let mut first = true;
            loop {
                if let Err(e) = self.round_trip(db).await {
                    return e.context("heartbeat");
                }
                if first {
                    // Received from here on: what was read before may be stale.
                    self.forget_all();
                    self.0.listening.store(true, Ordering::Release);
                    first = false;
                }
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            }
        };
        tokio::select! {
            e = receive => e,
            e = heartbeat => e,
        }
    }
}
