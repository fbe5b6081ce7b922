//! panel-api's connection pool (`panel_api::db::Db`) against real PostgreSQL: it
//! reuses clean connections without a round trip, and never hands out a connection
//! left mid-statement or mid-transaction by a cancelled request.

use ferrodactyl_tests::fresh_database;
use panel_api::db::Db;
use std::time::{Duration, Instant};

async fn pid(db: &Db) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(db)
        .await
        .unwrap()
}

/// One connection of the pool at a time, so each statement sees the previous one's.
async fn single() -> Db {
    let (url, p) = fresh_database().await.unwrap();
    p.close().await;
    panel_api::db::connect_url(&url, 1).await.unwrap()
}

#[tokio::test]
async fn clean_connections_are_reused_and_statements_see_each_other() {
    let db = single().await;
    let first = pid(&db).await;
    sqlx::query("CREATE TABLE t (v int)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1), (2), (3)")
        .execute(&db)
        .await
        .unwrap();
    let rows: Vec<i32> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(rows, vec![1, 2, 3]);
    assert_eq!(pid(&db).await, first, "the same backend serves the pool");
    // A failed statement does not poison the connection either.
    let e = sqlx::query("SELECT * FROM missing").execute(&db).await;
    assert!(e.is_err());
    assert_eq!(pid(&db).await, first);
}

#[tokio::test]
async fn a_dropped_transaction_rolls_back_and_releases_its_locks() {
    let (url, p) = fresh_database().await.unwrap();
    p.close().await;
    let db = panel_api::db::connect_url(&url, 2).await.unwrap();
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1, 0)")
        .execute(&db)
        .await
        .unwrap();
    {
        let mut tx = db.begin().await.unwrap();
        sqlx::query("UPDATE t SET v = 99 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .unwrap();
        // dropped uncommitted, as when a client disconnects mid-request
    }
    // Another connection can lock the row at once: the ROLLBACK was sent, not left
    // queued in an idle connection.
    let other = panel_api::db::connect_url(&url, 1).await.unwrap();
    let start = Instant::now();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '3s'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let v: i32 = sqlx::query_scalar("SELECT v FROM t WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .expect("the row lock was released");
    assert_eq!(v, 0, "the dropped transaction's update is gone");
    assert!(start.elapsed() < Duration::from_secs(2));
    tx.commit().await.unwrap();
    // Committed work stays, and the pool's connections are usable afterwards.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE t SET v = 7 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let v: i32 = sqlx::query_scalar("SELECT v FROM t WHERE id = 1")
        .fetch_one(&other)
        .await
        .unwrap();
    assert_eq!(v, 7);
    for _ in 0..4 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}

#[tokio::test]
async fn a_cancelled_statement_leaves_no_stale_result_behind() {
    let db = single().await;
    // The request is cancelled while PostgreSQL is still working on the statement.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        sqlx::query_scalar::<_, i32>("SELECT 41 FROM pg_sleep(0.6)").fetch_one(&db),
    )
    .await;
    assert!(cancelled.is_err(), "timed out");
    // The next statement on the (only) connection gets its own answer, not 41.
    let v: i32 = sqlx::query_scalar("SELECT 42")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(v, 42);
    // A stream dropped after its first row: the rest is not read by the next user.
    {
        use futures::StreamExt;
        let mut s = sqlx::query_scalar::<_, i32>("SELECT generate_series(1, 100000)").fetch(&db);
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
    }
    let v: Vec<i32> = sqlx::query_scalar("SELECT generate_series(7, 9)")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(v, vec![7, 8, 9]);
}

#[tokio::test]
async fn the_pool_never_opens_more_than_its_size_and_times_out_clearly() {
    let (url, p) = fresh_database().await.unwrap();
    p.close().await;
    let db = panel_api::db::lazy_url(&url, 3).unwrap();
    let mut pids = std::collections::HashSet::new();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid() FROM pg_sleep(0.05)")
                .fetch_one(&db)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        pids.insert(t.await.unwrap());
    }
    assert!(
        (1..=3).contains(&pids.len()),
        "{} backends for a pool of 3",
        pids.len()
    );
    // All three held: a fourth acquisition waits for one of them.
    let held = vec![
        db.acquire().await.unwrap(),
        db.acquire().await.unwrap(),
        db.acquire().await.unwrap(),
    ];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), db.acquire())
            .await
            .is_err(),
        "a fourth connection was handed out"
    );
    // Past its acquire timeout, the wait fails with the pool's error.
    let short = panel_api::db::Db::new(url.parse().unwrap(), 1, Duration::from_millis(300));
    let _one = short.acquire().await.unwrap();
    let e = short.acquire().await.unwrap_err();
    assert!(matches!(e, sqlx::Error::PoolTimedOut), "{e:?}");
    drop(held);
    db.close().await;
    let e = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
    assert!(matches!(e, sqlx::Error::PoolClosed), "{e:?}");
}
