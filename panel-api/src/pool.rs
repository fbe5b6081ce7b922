//! panel-api's PostgreSQL connection pool.
//!
//! sqlx's own pool sends a ping (a Sync round trip) every time a connection goes
//! back to the pool, whatever happened on it. That round trip is the single largest
//! cost PostgreSQL sees on our short routes. This pool sends the ping only when it is
//! needed: when a statement did not run to completion (the future or stream was
//! dropped midway, or it failed) or when a write is still queued (a transaction
//! dropped without commit queues its ROLLBACK). A connection whose every statement
//! completed goes straight back to the idle list.
//!
//! `&Db` is a sqlx `Executor`, so `query(..).fetch_all(&state.db)` works as with
//! `PgPool`; `begin()` gives a transaction whose `&mut *tx` is a `PgConnection`.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection, Describe, Either, Execute, Executor, PgConnection, Postgres};
use sqlx::{Error, TransactionManager};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the release ping of a connection in doubt may take before the
/// connection is closed instead.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of PostgreSQL connections (cheap to clone: one `Arc`).
#[derive(Clone)]
pub struct Db(Arc<Shared>);

struct Shared {
    opts: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
    closed: AtomicBool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("available", &self.0.permits.available_permits())
            .field("idle", &self.0.idle.lock().map(|v| v.len()).unwrap_or(0))
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Db {
    /// A pool of at most `max` connections; none is opened until one is needed.
    pub fn new(opts: PgConnectOptions, max: u32, acquire_timeout: Duration) -> Db {
        Db(Arc::new(Shared {
            opts,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1) as usize)),
            acquire_timeout,
            closed: AtomicBool::new(false),
        }))
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Where and how the pool connects (for connections kept outside it).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.0.opts
    }

    /// A connection of the pool for the caller's own use. Whatever the caller does
    /// with it, it is pinged before it is reused.
    pub async fn acquire(&self) -> Result<DbConn, Error> {
        if self.is_closed() {
            return Err(Error::PoolClosed);
        }
        let shared = &self.0;
        let got = tokio::time::timeout(shared.acquire_timeout, async {
            let permit = shared
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::PoolClosed)?;
            let idle = shared.idle.lock().ok().and_then(|mut v| v.pop());
            let conn = match idle {
                Some(c) => c,
                None => PgConnection::connect_with(&shared.opts).await?,
            };
            Ok::<_, Error>((conn, permit))
        })
        .await;
        match got {
            Ok(Ok((conn, permit))) => Ok(DbConn {
                conn: Some(conn),
                clean: false,
                db: self.clone(),
                _permit: Some(permit),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::PoolTimedOut),
        }
    }

    /// Opens one connection now (and keeps it idle), so a bad URL or an unreachable
    /// server is reported at start-up rather than on the first request.
    pub async fn warm(&self) -> Result<(), Error> {
        let mut c = self.acquire().await?;
        c.clean = true;
        Ok(())
    }

    /// Starts a transaction: `BEGIN` on a pooled connection. Dropped without
    /// `commit`, it rolls back.
    pub async fn begin(&self) -> Result<DbTx, Error> {
        let mut conn = self.acquire().await?;
        sqlx::postgres::PgTransactionManager::begin(&mut *conn, None).await?;
        Ok(DbTx { conn, open: true })
    }

    /// Refuses new acquisitions and closes the idle connections; connections in use
    /// are closed when they are released.
    pub async fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.permits.close();
        let idle = std::mem::take(&mut *self.0.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for c in idle {
            let _ = c.close().await;
        }
    }

    fn put_back(&self, conn: PgConnection) {
        if self.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.0.idle.lock() {
            idle.push(conn);
        }
    }
}

/// A connection taken from a [`Db`]; it goes back to the pool on drop.
pub struct DbConn {
    conn: Option<PgConnection>,
    /// Every statement run on the connection completed: no ping on release.
    clean: bool,
    db: Db,
    _permit: Option<OwnedSemaphorePermit>,
}

impl DbConn {
    /// The statement's result; a connection whose statement succeeded to the end
    /// goes back to the pool without a ping.
    fn finished<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        self.clean = r.is_ok();
        r
    }
}

impl std::fmt::Debug for DbConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConn")
            .field("clean", &self.clean)
            .finish()
    }
}

impl std::ops::Deref for DbConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl std::ops::DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for DbConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let permit = self._permit.take();
        if self.db.is_closed() {
            // Closing sends Terminate; without a runtime the socket just closes.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = conn.close().await;
                });
            }
            return;
        }
        if self.clean && !conn.should_flush() {
            self.db.put_back(conn);
            drop(permit);
            return;
        }
        // In doubt: ping it (which also flushes a queued ROLLBACK) before anyone else
        // gets it; the permit is held until then, so the pool never over-commits.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let db = self.db.clone();
        rt.spawn(async move {
            match tokio::time::timeout(PING_TIMEOUT, conn.ping()).await {
                Ok(Ok(())) => db.put_back(conn),
                _ => drop(conn),
            }
            drop(permit);
        });
    }
}

/// A transaction on a pooled connection. `&mut *tx` is the `PgConnection` to run
/// statements on; `commit` ends it, and dropping it uncommitted rolls it back.
pub struct DbTx {
    conn: DbConn,
    open: bool,
}

impl std::fmt::Debug for DbTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTx").field("open", &self.open).finish()
    }
}

impl DbTx {
    pub async fn commit(mut self) -> Result<(), Error> {
        sqlx::postgres::PgTransactionManager::commit(&mut self.conn).await?;
        self.open = false;
        self.conn.clean = true;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), Error> {
        sqlx::postgres::PgTransactionManager::rollback(&mut self.conn).await?;
        self.open = false;
        self.conn.clean = true;
        Ok(())
    }
}

impl std::ops::Deref for DbTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for DbTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for DbTx {
    fn drop(&mut self) {
        if self.open {
            // Queues the ROLLBACK in the write buffer; the connection's release sees
            // it pending and sends it (with its ping) before the connection is reused.
            self.conn.clean = false;
            sqlx::postgres::PgTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

impl<'p> Executor<'p> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let db = self.clone();
        Box::pin(sqlx_core::ext::async_stream::TryAsyncStream::new(
            move |yielder| async move {
                let mut conn = db.acquire().await?;
                {
                    let mut s = conn.fetch_many(query);
                    while let Some(v) = s.next().await {
                        yielder.r#yield(v?).await;
                    }
                }
                conn.clean = true;
                Ok(())
            },
        ))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let db = self.clone();
        Box::pin(async move {
            let mut conn = db.acquire().await?;
            let r = conn.fetch_optional(query).await;
            conn.finished(r)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>> {
        let db = self.clone();
        Box::pin(async move {
            let mut conn = db.acquire().await?;
            let r = conn.prepare_with(sql, parameters).await;
            conn.finished(r)
        })
    }

    #[doc(hidden)]
    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, Error>> {
        let db = self.clone();
        Box::pin(async move {
            let mut conn = db.acquire().await?;
            let r = conn.describe(sql).await;
            conn.finished(r)
        })
    }
}
