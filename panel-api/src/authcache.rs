//! The API keys this process has authenticated, kept in memory with their user, so
//! that a request authenticates without a statement.
//!
//! Staleness is what matters for a cache of credentials, so it answers only while it
//! can be sure to hear about every change:
//!
//! * triggers on `api_keys` and `users` (migration 0003) `NOTIFY ferrodactyl_auth` in
//!   the writing transaction, whoever writes (any replica, the CLI, psql), and
//!   [`AuthCache::run`] LISTENs on a connection of its own and drops what changed;
//!   a session starts only when those triggers exist and are enabled, and ends at
//!   the first heartbeat that finds one disabled or gone;
//! * the cache serves on a lease: every [`HEARTBEAT_INTERVAL`] a notification is sent
//!   on a second connection of its own, and each one the listener receives lets the
//!   cache serve until [`LEASE`] after it was sent. PostgreSQL delivers a
//!   connection's notifications in commit order, so a heartbeat that came back
//!   proves every change committed before it was applied. A listener that stops
//!   receiving without an error (a black-holed connection, a failover that left it
//!   on the old server) therefore stops the cache within [`LEASE`]; a lost
//!   connection, or a heartbeat not back within [`ROUND_TRIP_TIMEOUT`] (a
//!   transaction-pooling PgBouncer, which does not carry LISTEN, never passes it),
//!   forgets everything and sends requests to the database until a new session has
//!   proved itself;
//! * a row read before an invalidation and stored after it would undo it: every
//!   invalidation bumps an epoch, and a fill whose epoch moved is not stored;
//! * handlers that change a user or key in this process forget it themselves right
//!   after their commit, so a client sees its own change on the next request;
//! * every entry expires after `PANEL_AUTH_CACHE_TTL` seconds (default 60; 0 turns
//!   the cache off) whatever happens, for writes that skip triggers (a restore run
//!   with `session_replication_role = replica`). A migration that rewrites `users`
//!   or `api_keys` without firing row triggers must end with
//!   `SELECT pg_notify('ferrodactyl_auth', '*')`.
//!
//! Another replica sees a change once its listener has read the notice, well under a
//! millisecond after the commit on one database server; [`AuthCache::settle`] waits
//! for that point.
//!
//! The same session also keeps the client API's server views (`GET
//! /api/client/servers/{server}`: the row its one statement reads, by user and by
//! the server key as written), under the same lease, epoch and TTL. Their tables
//! (`VIEW_TABLES`) have statement triggers (migration 0004) that send `d` on the
//! same channel on any insert, update, delete or truncate, which drops every view;
//! the views are served only while all of those triggers are enabled (checked with
//! every heartbeat). A write made through this process's own HTTP API drops them
//! before its answer leaves (`http::forget_views_after_writes`), so a client reads
//! its own change at once.

use crate::db::Db;
use crate::http::auth::KeyRow;
use crate::http::client::servers::ClientRow;
use sqlx::{Connection, Executor, PgConnection, Postgres};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The NOTIFY channel of migration 0003's triggers.
pub const CHANNEL: &str = "ferrodactyl_auth";
/// How often the listener proves it still receives.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long after a heartbeat was sent the cache may serve on its strength: the
/// longest a silently dead listener can leave a change unapplied.
pub const LEASE: Duration = Duration::from_secs(2);
/// A heartbeat (or a [`AuthCache::settle`]) not back by then ends the session.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many keys are kept (each a few hundred bytes, more with long
/// `allowed_ips` lists).
const MAX_ENTRIES: usize = 10_000;
/// Migration 0003's triggers: update, delete and truncate on both tables.
const TRIGGERS: i64 = 6;
/// At most this many server views are kept (a few KiB each)...
const MAX_VIEWS: usize = 10_000;
/// ...and at most about this many bytes of them.
const MAX_VIEW_BYTES: usize = 16 << 20;
/// The tables the client server view reads; migration 0004 gives each one the
/// statement trigger `<table>_view_cache`.
pub const VIEW_TABLES: [&str; 9] = [
    "servers",
    "nodes",
    "locations",
    "eggs",
    "allocations",
    "egg_variables",
    "server_variables",
    "subusers",
    "server_transfers",
];
/// The payload of migration 0004's triggers: drop every server view.
pub const VIEWS_CHANGED: &str = "d";

/// A cached server view.
struct ViewEntry {
    row: Arc<ClientRow>,
    filled: Instant,
    bytes: usize,
}

/// A cached key row.
pub struct Entry {
    pub row: Arc<KeyRow>,
    filled: Instant,
    /// When this process last wrote the key's `last_used_at` (ms since the epoch).
    last_used_ms: AtomicI64,
}

impl Entry {
    fn new(row: KeyRow) -> Entry {
        let now_ms = chrono::Utc::now().timestamp_millis();
        Entry {
            last_used_ms: AtomicI64::new(
                row.last_used_at
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(i64::MIN / 2)
                    .min(now_ms),
            ),
            row: Arc::new(row),
            filled: Instant::now(),
        }
    }

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

/// The entries, by identifier and by user (a user's notice drops all their keys
/// without a scan).
#[derive(Default)]
struct Store {
    keys: HashMap<Box<str>, Arc<Entry>>,
    by_user: HashMap<i64, Vec<Box<str>>>,
    /// Server views by user, then by the server key as the request wrote it.
    views: HashMap<i64, HashMap<Box<str>, ViewEntry>>,
    view_count: usize,
    view_bytes: usize,
}

impl Store {
    fn insert(&mut self, e: Arc<Entry>) {
        let id: Box<str> = e.row.identifier.as_str().into();
        let user = e.row.user_id;
        match self.keys.insert(id.clone(), e) {
            Some(old) if old.row.user_id == user => {}
            Some(old) => {
                self.unindex(old.row.user_id, &id);
                self.by_user.entry(user).or_default().push(id);
            }
            None => self.by_user.entry(user).or_default().push(id),
        }
    }

    fn unindex(&mut self, user: i64, id: &str) {
        if let Some(ids) = self.by_user.get_mut(&user) {
            ids.retain(|x| &**x != id);
            if ids.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }

    fn remove_key(&mut self, id: &str) {
        if let Some(e) = self.keys.remove(id) {
            self.unindex(e.row.user_id, id);
        }
    }

    fn remove_user(&mut self, user: i64) {
        for id in self.by_user.remove(&user).unwrap_or_default() {
            self.keys.remove(&id);
        }
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.by_user.clear();
        self.clear_views();
    }

    fn clear_views(&mut self) {
        self.views.clear();
        self.view_count = 0;
        self.view_bytes = 0;
    }

    fn recount_views(&mut self) {
        self.views.retain(|_, m| !m.is_empty());
        self.view_count = self.views.values().map(HashMap::len).sum();
        self.view_bytes = self
            .views
            .values()
            .flat_map(HashMap::values)
            .map(|v| v.bytes)
            .sum();
    }

    fn views_full(&self, adding: usize) -> bool {
        self.view_count >= MAX_VIEWS || self.view_bytes + adding > MAX_VIEW_BYTES
    }

    fn insert_view(&mut self, user: i64, server: &str, e: ViewEntry, ttl: Duration) {
        if e.bytes > MAX_VIEW_BYTES / 100 {
            return; // an outsized row is read each time instead
        }
        if self.views_full(e.bytes) {
            for m in self.views.values_mut() {
                m.retain(|_, v| v.filled.elapsed() < ttl);
            }
            self.recount_views();
        }
        if self.views_full(e.bytes) {
            // Still full of fresh views: drop whole users until a tenth is free.
            let (mut count, mut bytes) = (0, 0);
            let victims: Vec<i64> = self
                .views
                .iter()
                .take_while(|(_, m)| {
                    let go = count < MAX_VIEWS / 10 && bytes < MAX_VIEW_BYTES / 10;
                    count += m.len();
                    bytes += m.values().map(|v| v.bytes).sum::<usize>();
                    go
                })
                .map(|(u, _)| *u)
                .collect();
            for u in victims {
                self.views.remove(&u);
            }
            self.recount_views();
        }
        let bytes = e.bytes;
        match self.views.entry(user).or_default().insert(server.into(), e) {
            None => {
                self.view_count += 1;
                self.view_bytes += bytes;
            }
            Some(old) => self.view_bytes = self.view_bytes + bytes - old.bytes,
        }
    }

    /// Drops expired entries, then an arbitrary tenth if that is not enough.
    fn make_room(&mut self, ttl: Duration) {
        let expired: Vec<Box<str>> = self
            .keys
            .iter()
            .filter(|(_, e)| e.filled.elapsed() >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.remove_key(&k);
        }
        if self.keys.len() >= MAX_ENTRIES {
            let victims: Vec<Box<str>> = self.keys.keys().take(MAX_ENTRIES / 10).cloned().collect();
            for k in victims {
                self.remove_key(&k);
            }
        }
    }
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AuthCache(Arc<Shared>);

struct Shared {
    ttl: Duration,
    store: RwLock<Store>,
    /// Whether this session found every trigger of migration 0004 enabled.
    views_heard: AtomicBool,
    /// Bumped by every invalidation (under the store's write lock).
    epoch: AtomicU64,
    /// The cache serves until this instant (ns since `base`); 0 = not at all.
    proven_until: AtomicU64,
    base: Instant,
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
            store: RwLock::new(Store::default()),
            views_heard: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            proven_until: AtomicU64::new(0),
            base: Instant::now(),
            nonce: crate::crypto::random_string(16),
            next_sync: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
        }))
    }

    pub fn enabled(&self) -> bool {
        !self.0.ttl.is_zero()
    }

    fn now_ns(&self) -> u64 {
        // +1: 0 means "not serving".
        u64::try_from(self.0.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Whether the cache serves now (its lease runs).
    pub fn is_listening(&self) -> bool {
        let until = self.0.proven_until.load(Ordering::Acquire);
        until != 0 && self.now_ns() < until
    }

    /// How long the lease still runs.
    pub fn lease_left(&self) -> Duration {
        let until = self.0.proven_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.now_ns()))
    }

    /// Extends the lease to `LEASE` after `sent_ns`, when a heartbeat sent then came
    /// back.
    fn prove(&self, sent_ns: u64) {
        let until = sent_ns.saturating_add(u64::try_from(LEASE.as_nanos()).unwrap_or(u64::MAX));
        self.0.proven_until.fetch_max(until, Ordering::AcqRel);
    }

    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.0.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.0.store.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached row of key `identifier`, when the cache serves and has a fresh one.
    pub fn get(&self, identifier: &str) -> Option<Arc<Entry>> {
        if !self.is_listening() {
            return None;
        }
        let e = self.read().keys.get(identifier).cloned()?;
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
        let entry = Arc::new(Entry::new(row));
        if !self.enabled() || !self.is_listening() {
            return entry;
        }
        let mut store = self.write();
        if self.0.epoch.load(Ordering::Acquire) != epoch || !self.is_listening() {
            return entry;
        }
        if store.keys.len() >= MAX_ENTRIES {
            store.make_room(self.0.ttl);
        }
        store.insert(entry.clone());
        entry
    }

    fn invalidate(&self, f: impl FnOnce(&mut Store)) {
        let mut store = self.write();
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        f(&mut store);
    }

    /// Drops key `identifier`.
    pub fn forget_key(&self, identifier: &str) {
        self.invalidate(|s| s.remove_key(identifier));
    }

    /// Drops every key of user `user_id`.
    pub fn forget_user(&self, user_id: i64) {
        self.invalidate(|s| s.remove_user(user_id));
    }

    /// Drops everything.
    pub fn forget_all(&self) {
        self.invalidate(Store::clear);
    }

    /// Whether server views are served now: the lease runs and every view trigger
    /// was found enabled.
    pub fn views_serve(&self) -> bool {
        self.0.views_heard.load(Ordering::Acquire) && self.is_listening()
    }

    /// The cached view of `server` (the key as the request wrote it) for `user`.
    pub fn get_view(&self, user: i64, server: &str) -> Option<Arc<ClientRow>> {
        if !self.views_serve() {
            return None;
        }
        let store = self.read();
        let e = store.views.get(&user)?.get(server)?;
        (e.filled.elapsed() < self.0.ttl).then(|| e.row.clone())
    }

    /// Stores the view `row` of `server` for `user`, read by a statement that
    /// started after [`Self::epoch`] returned `epoch`, unless something was
    /// invalidated since. Returns the row the request goes on with.
    pub fn insert_view(
        &self,
        epoch: u64,
        user: i64,
        server: &str,
        row: ClientRow,
    ) -> Arc<ClientRow> {
        let row = Arc::new(row);
        if !self.enabled() || !self.views_serve() {
            return row;
        }
        let bytes = row.approx_bytes();
        let mut store = self.write();
        if self.0.epoch.load(Ordering::Acquire) != epoch || !self.views_serve() {
            return row;
        }
        let entry = ViewEntry {
            bytes,
            row: row.clone(),
            filled: Instant::now(),
        };
        store.insert_view(user, server, entry, self.0.ttl);
        row
    }

    /// Drops every server view.
    pub fn forget_views(&self) {
        self.invalidate(Store::clear_views);
    }

    /// How many server views are kept.
    pub fn view_count(&self) -> usize {
        self.read().view_count
    }

    /// Applies one notification of the channel.
    fn apply(&self, payload: &str) {
        if payload == VIEWS_CHANGED {
            self.forget_views();
        } else if let Some(id) = payload.strip_prefix("k:") {
            self.forget_key(id);
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

    /// Sends a notification on `conn` and waits until the listener has read it:
    /// every change committed before the call has then been applied.
    async fn round_trip<'c, E>(&self, conn: E) -> anyhow::Result<()>
    where
        E: Executor<'c, Database = Postgres>,
    {
        let n = self.0.next_sync.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.0
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n, tx);
        let payload = format!("sync:{}:{n}", self.0.nonce);
        let sent = tokio::time::timeout(ROUND_TRIP_TIMEOUT, async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&payload)
                .execute(conn)
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
            Err(_) => anyhow::bail!("no notification back within {ROUND_TRIP_TIMEOUT:?}"),
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
        self.0.proven_until.store(0, Ordering::Release);
        self.0.views_heard.store(false, Ordering::Release);
        self.forget_all();
    }

    /// Listens for changes for as long as the returned future runs (it never ends
    /// by itself): reconnects after a loss, with the cache off meanwhile, and turns
    /// it off when the future is dropped.
    pub async fn run(self, db: Db) {
        struct OffOnDrop(AuthCache);
        impl Drop for OffOnDrop {
            fn drop(&mut self) {
                self.0.stop_serving();
            }
        }
        if !self.enabled() {
            return std::future::pending().await;
        }
        let _off = OffOnDrop(self.clone());
        let mut backoff = Duration::from_millis(100);
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let why = self.session(&db).await;
            self.stop_serving();
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
                failures = 0;
            }
            failures = failures.saturating_add(1);
            // Say it loudly the first time and then now and again, not every retry
            // (behind a transaction-pooling PgBouncer it fails every time).
            if failures.is_power_of_two() {
                tracing::warn!(error = %why.error, failures, "key cache off until its listener is back");
            } else {
                tracing::debug!(error = %why.error, failures, "key cache still off");
            }
            tokio::time::sleep(backoff.max(why.retry_after)).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One listening connection and one heartbeat connection, until either fails.
    async fn session(&self, db: &Db) -> SessionEnd {
        let opts = db.connect_options();
        let mut beat = match PgConnection::connect_with(opts).await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
        let (triggers, view_triggers) = match trigger_counts(&mut beat).await {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        if triggers != TRIGGERS {
            return SessionEnd {
                error: anyhow::anyhow!(
                    "{triggers} of the {TRIGGERS} key-cache triggers of migration 0003 are enabled; \
                     the cache stays off while any is missing or disabled"
                ),
                retry_after: Duration::from_secs(30),
            };
        }
        let mut views = view_triggers == VIEW_TABLES.len() as i64;
        if !views {
            warn_views_off(view_triggers);
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(opts.clone());
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => return e.into(),
        };
        // A lost connection ends the session (a reconnect inside sqlx would hide
        // the notices lost meanwhile). The listener is never read from again once
        // the session ends, so cancelling a read on it is harmless; dropping it
        // makes sqlx send `UNLISTEN *` on it from a task of its own, which on a
        // black-holed TCP connection lingers until the OS gives the socket up.
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
                let sent = self.now_ns();
                if let Err(e) = self.round_trip(&mut beat).await {
                    return e.context("heartbeat");
                }
                if first {
                    // Everything is heard from here on; what was read before may
                    // be stale (and the epoch refuses fills that started before).
                    self.forget_all();
                    self.0.views_heard.store(views, Ordering::Release);
                    first = false;
                } else {
                    // A trigger disabled (or dropped) since the session began: the
                    // keys' end the session, the views' turn the views off, within a
                    // heartbeat; re-enabled, views come back with a fresh epoch.
                    let (triggers, view_triggers) = match trigger_counts(&mut beat).await {
                        Ok(n) => n,
                        Err(e) => return anyhow::Error::from(e).context("trigger check"),
                    };
                    if triggers != TRIGGERS {
                        return anyhow::anyhow!(
                            "{triggers} of the {TRIGGERS} key-cache triggers are enabled now"
                        );
                    }
                    let now = view_triggers == VIEW_TABLES.len() as i64;
                    if now != views {
                        if !now {
                            warn_views_off(view_triggers);
                        }
                        self.0.views_heard.store(false, Ordering::Release);
                        self.forget_views();
                        self.0.views_heard.store(now, Ordering::Release);
                        views = now;
                    }
                }
                self.prove(sent);
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            }
        };
        let error = tokio::select! {
            e = receive => e,
            e = heartbeat => e,
        };
        SessionEnd {
            error,
            retry_after: Duration::ZERO,
        }
    }
}

/// How many of migration 0003's (keys) and 0004's (views) triggers exist and are
/// enabled.
async fn trigger_counts(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM pg_trigger
                  WHERE tgrelid IN (to_regclass('api_keys'), to_regclass('users'))
                    AND tgname LIKE '%\\_auth\\_cache\\_%' AND tgenabled IN ('O', 'A')),
                (SELECT COUNT(*) FROM unnest($1::text[]) AS v(tab)
                   JOIN pg_trigger t ON t.tgrelid = to_regclass(v.tab)
                    AND t.tgname = v.tab || '_view_cache'
                  WHERE t.tgenabled IN ('O', 'A'))",
    )
    .bind(&VIEW_TABLES[..])
    .fetch_one(conn)
    .await
}

fn warn_views_off(enabled: i64) {
    tracing::warn!(
        "{enabled} of the {} server-view triggers of migration 0004 are enabled; \
         server views are read from the database on every request",
        VIEW_TABLES.len()
    );
}

/// Why a listening session ended, and how long to wait at least before the next.
struct SessionEnd {
    error: anyhow::Error,
    retry_after: Duration,
}

impl From<sqlx::Error> for SessionEnd {
    fn from(e: sqlx::Error) -> SessionEnd {
        SessionEnd {
            error: e.into(),
            retry_after: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(identifier: &str, user_id: i64) -> KeyRow {
        KeyRow {
            key_id: 1,
            key_type: 1,
            identifier: identifier.into(),
            token_hash: vec![],
            allowed_ips: serde_json::json!([]),
            expires_at: None,
            last_used_at: None,
            r_servers: 0,
            r_nodes: 0,
            r_allocations: 0,
            r_users: 0,
            r_locations: 0,
            r_nests: 0,
            r_eggs: 0,
            r_database_hosts: 0,
            r_server_databases: 0,
            user_id,
            user_uuid: uuid::Uuid::nil(),
            username: "u".into(),
            email: "u@example.com".into(),
            root_admin: false,
            use_totp: false,
            name_first: "U".into(),
            name_last: "U".into(),
            language: "en".into(),
        }
    }

    /// A cache that serves, as after a heartbeat that just came back.
    fn serving() -> AuthCache {
        let c = AuthCache::new(Duration::from_secs(60));
        c.prove(c.now_ns());
        c
    }

    #[test]
    fn nothing_is_served_or_stored_without_a_lease() {
        let c = AuthCache::new(Duration::from_secs(60));
        assert!(!c.is_listening());
        c.insert(c.epoch(), row("aaaaaaaaaaaaaaaa", 1));
        assert!(c.is_empty() && c.get("aaaaaaaaaaaaaaaa").is_none());
    }

    #[test]
    fn a_lease_runs_out_by_itself() {
        let c = AuthCache::new(Duration::from_secs(60));
        c.prove(c.now_ns());
        c.insert(c.epoch(), row("aaaaaaaaaaaaaaaa", 1));
        assert!(c.get("aaaaaaaaaaaaaaaa").is_some());
        // A heartbeat sent longer than a lease ago proves nothing now.
        c.0.proven_until.store(1, Ordering::Release);
        assert!(!c.is_listening());
        assert!(c.get("aaaaaaaaaaaaaaaa").is_none());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_not_stored() {
        let c = serving();
        let epoch = c.epoch();
        // The row is read, then a notice for an unrelated key arrives, then the
        // fill completes: the row may predate a change, so it is not kept.
        c.apply("k:bbbbbbbbbbbbbbbb");
        c.insert(epoch, row("aaaaaaaaaaaaaaaa", 1));
        assert!(c.get("aaaaaaaaaaaaaaaa").is_none());
        c.insert(c.epoch(), row("aaaaaaaaaaaaaaaa", 1));
        assert!(c.get("aaaaaaaaaaaaaaaa").is_some());
    }

    #[test]
    fn notices_drop_a_key_a_users_keys_or_everything() {
        let c = serving();
        for (id, user) in [
            ("k1k1k1k1k1k1k1k1", 1),
            ("k2k2k2k2k2k2k2k2", 1),
            ("k3k3k3k3k3k3k3k3", 2),
        ] {
            c.insert(c.epoch(), row(id, user));
        }
        c.apply("k:k1k1k1k1k1k1k1k1");
        assert!(c.get("k1k1k1k1k1k1k1k1").is_none() && c.get("k2k2k2k2k2k2k2k2").is_some());
        c.apply("u:2");
        assert!(c.get("k3k3k3k3k3k3k3k3").is_none() && c.get("k2k2k2k2k2k2k2k2").is_some());
        c.insert(c.epoch(), row("k3k3k3k3k3k3k3k3", 2));
        c.apply("u:1");
        assert!(c.get("k2k2k2k2k2k2k2k2").is_none() && c.get("k3k3k3k3k3k3k3k3").is_some());
        // Another process's heartbeat changes nothing; anything unknown drops all.
        c.apply("sync:someoneelse:3");
        assert_eq!(c.len(), 1);
        c.apply("something new");
        assert!(c.is_empty());
        c.insert(c.epoch(), row("k3k3k3k3k3k3k3k3", 2));
        c.apply("*");
        assert!(c.is_empty());
        // An identifier is matched exactly, trailing blanks included.
        c.insert(c.epoch(), row("k4k4k4k4k4k4k4 ", 3));
        c.apply("k:k4k4k4k4k4k4k4");
        assert_eq!(c.len(), 1);
        c.apply("k:k4k4k4k4k4k4k4 ");
        assert!(c.is_empty());
    }

    #[test]
    fn a_key_moved_to_another_user_is_indexed_under_the_new_one() {
        let c = serving();
        c.insert(c.epoch(), row("k1k1k1k1k1k1k1k1", 1));
        c.insert(c.epoch(), row("k1k1k1k1k1k1k1k1", 2));
        c.apply("u:1");
        assert!(c.get("k1k1k1k1k1k1k1k1").is_some());
        c.apply("u:2");
        assert!(c.is_empty());
        assert!(c.read().by_user.is_empty());
    }

    #[test]
    fn a_full_cache_makes_room_instead_of_growing() {
        let c = serving();
        for i in 0..MAX_ENTRIES + 5 {
            c.insert(c.epoch(), row(&format!("{i:016}"), i as i64 % 50));
        }
        assert!(c.len() <= MAX_ENTRIES);
        assert!(
            c.len() > MAX_ENTRIES / 2,
            "one overflow drops a tenth, not all"
        );
        let s = c.read();
        let indexed: usize = s.by_user.values().map(Vec::len).sum();
        assert_eq!(indexed, s.keys.len());
    }

    #[test]
    fn last_used_at_is_claimed_once_a_second() {
        let e = Entry::new(row("aaaaaaaaaaaaaaaa", 1));
        let now = chrono::Utc::now().timestamp_millis();
        assert!(e.claim_last_used(now));
        assert!(!e.claim_last_used(now + 10));
        assert!(!e.claim_last_used(now + 999));
        assert!(e.claim_last_used(now + 1000));
        // Written a moment ago (the row says so): not again yet.
        let mut r = row("aaaaaaaaaaaaaaaa", 1);
        r.last_used_at = Some(chrono::Utc::now());
        let e = Entry::new(r);
        assert!(!e.claim_last_used(chrono::Utc::now().timestamp_millis()));
    }

    /// A cache that serves keys and server views.
    fn serving_views() -> AuthCache {
        let c = serving();
        c.0.views_heard.store(true, Ordering::Release);
        c
    }

    fn view(c: &AuthCache, user: i64, server: &str) -> Option<i64> {
        c.get_view(user, server).map(|r| r.server.id)
    }

    #[test]
    fn views_are_served_only_while_every_view_trigger_was_found() {
        let c = serving();
        c.insert_view(c.epoch(), 1, "0000000a", ClientRow::sample(10, 1));
        assert_eq!(view(&c, 1, "0000000a"), None);
        assert_eq!(c.view_count(), 0);
        c.0.views_heard.store(true, Ordering::Release);
        c.insert_view(c.epoch(), 1, "0000000a", ClientRow::sample(10, 1));
        assert_eq!(view(&c, 1, "0000000a"), Some(10));
        // Nor without the lease, whatever the triggers.
        c.0.proven_until.store(1, Ordering::Release);
        assert_eq!(view(&c, 1, "0000000a"), None);
    }

    #[test]
    fn a_view_is_kept_per_user_and_per_key_as_written() {
        let c = serving_views();
        c.insert_view(c.epoch(), 1, "0000000a", ClientRow::sample(10, 1));
        assert_eq!(view(&c, 1, "0000000a"), Some(10));
        assert_eq!(view(&c, 2, "0000000a"), None);
        assert_eq!(view(&c, 1, "0000000A"), None);
        c.insert_view(c.epoch(), 1, "0000000a", ClientRow::sample(10, 1));
        assert_eq!(c.view_count(), 1);
    }

    #[test]
    fn a_views_notice_drops_the_views_and_keeps_the_keys() {
        let c = serving_views();
        c.insert(c.epoch(), row("aaaaaaaaaaaaaaaa", 1));
        c.insert_view(c.epoch(), 1, "0000000a", ClientRow::sample(10, 1));
        c.apply("k:bbbbbbbbbbbbbbbb");
        assert_eq!(view(&c, 1, "0000000a"), Some(10));
        c.apply(VIEWS_CHANGED);
        assert_eq!(view(&c, 1, "0000000a"), None);
        assert!(c.get("aaaaaaaaaaaaaaaa").is_some());
        c.insert_view(c.epoch(), 1, "0000000a", ClientRow::sample(10, 1));
        c.apply("*");
        assert_eq!(view(&c, 1, "0000000a"), None);
        assert!(c.is_empty() && c.view_count() == 0);
    }

    #[test]
    fn a_view_fill_that_raced_an_invalidation_is_not_stored() {
        let c = serving_views();
        let epoch = c.epoch();
        c.forget_views();
        let row = c.insert_view(epoch, 1, "0000000a", ClientRow::sample(10, 1));
        assert_eq!(
            row.server.id, 10,
            "the request still goes on with what it read"
        );
        assert_eq!(view(&c, 1, "0000000a"), None);
    }

    #[test]
    fn full_views_make_room_instead_of_growing() {
        let c = serving_views();
        for i in 0..MAX_VIEWS + 5 {
            c.insert_view(
                c.epoch(),
                i as i64 % 97,
                &format!("{i:08x}"),
                ClientRow::sample(i as i64, 1),
            );
        }
        let n = c.view_count();
        assert!(n <= MAX_VIEWS && n > MAX_VIEWS / 2, "{n} views kept");
        let s = c.read();
        assert_eq!(n, s.views.values().map(HashMap::len).sum::<usize>());
        let bytes: usize = s
            .views
            .values()
            .flat_map(HashMap::values)
            .map(|v| v.bytes)
            .sum();
        assert_eq!(s.view_bytes, bytes);
    }

    #[test]
    fn views_are_bounded_by_bytes_too() {
        let c = serving_views();
        // An outsized row is not kept at all.
        let mut big = ClientRow::sample(1, 1);
        big.server.description = "x".repeat(MAX_VIEW_BYTES / 50);
        c.insert_view(c.epoch(), 1, "00000001", big);
        assert_eq!(c.view_count(), 0);
        // Rows of 100 KiB: the budget holds about 160 of them, not MAX_VIEWS.
        for i in 0..400i64 {
            let mut r = ClientRow::sample(i, 1);
            r.server.description = "y".repeat(100 << 10);
            c.insert_view(c.epoch(), i % 7, &format!("{i:08x}"), r);
        }
        let s = c.read();
        assert!(
            s.view_bytes <= MAX_VIEW_BYTES,
            "{} bytes kept",
            s.view_bytes
        );
        assert!(s.view_count > 50, "{} views kept", s.view_count);
    }
}
