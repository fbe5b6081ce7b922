//! The benchmark's data set, written with set-based SQL (`INSERT … SELECT
//! generate_series`) so that seeding takes seconds: users, one location, one node
//! whose daemon token is encrypted with the panel's APP_KEY, the generic egg,
//! allocations, servers each holding one allocation (with their egg variables), and
//! an admin with an application key.

use anyhow::{Context, Result};
use panel_api::crypto::Encrypter;
use panel_api::db::Db;

#[derive(Debug)]
pub struct Seeded {
    pub users: i64,
    pub servers: i64,
    pub admin_id: i64,
    /// The admin's `ptla_` bearer token.
    pub application_key: String,
}

pub async fn seed(db: &Db, app_key: &str, users: i64, servers: i64) -> Result<Seeded> {
    // One bcrypt hash for everyone: hashing 10,000 passwords would only time bcrypt.
    let hash = panel_api::crypto::hash_password("benchmark-password")?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO users (uuid, username, email, name_first, name_last, password)
         SELECT gen_random_uuid(), 'user' || g, 'user' || g || '@example.com', 'Bench', 'User ' || g, $1
         FROM generate_series(1, $2) g",
    )
    .bind(&hash)
    .bind(users)
    .execute(&mut *tx)
    .await
    .context("seeding users")?;
    let admin_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (uuid, username, email, name_first, name_last, password, root_admin)
         VALUES (gen_random_uuid(), 'admin', 'admin@example.com', 'Bench', 'Admin', $1, TRUE) RETURNING id",
    )
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await?;
    let location: i64 = sqlx::query_scalar(
        "INSERT INTO locations (short, long) VALUES ('bench', 'Benchmark') RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await?;
    let enc = Encrypter::new(app_key)?;
    let node: i64 = sqlx::query_scalar(
        "INSERT INTO nodes (uuid, name, location_id, fqdn, scheme, memory, disk, daemon_token_id, daemon_token)
         VALUES (gen_random_uuid(), 'bench-node', $1, '127.0.0.1', 'http', 1048576, 10485760, $2, $3) RETURNING id",
    )
    .bind(location)
    .bind(panel_api::crypto::random_string(16))
    .bind(enc.encrypt(&panel_api::crypto::random_string(64)))
    .fetch_one(&mut *tx)
    .await?;
    // A tenth more allocations than servers, so some are free as on a real node.
    sqlx::query(
        "INSERT INTO allocations (node_id, ip, port)
         SELECT $1, '127.0.0.1', 20000 + g FROM generate_series(0, $2 - 1) g",
    )
    .bind(node)
    .bind(servers + servers / 10)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    let egg = panel_api::eggs::import(
        db,
        panel_api::eggs::NestRef::Name("Benchmark".into()),
        panel_api::eggs::GENERIC_EGG,
    )
    .await
    .context("importing the generic egg")?;

    let mut tx = db.begin().await?;
    // Server n takes allocation port 20000+n-1 and belongs to user n (mod users); the
    // short id is the uuid's first 8 hex digits, made unique by putting n there.
    sqlx::query(
        "INSERT INTO servers (uuid, uuid_short, node_id, name, owner_id, memory, swap, disk, io, cpu,
                              allocation_id, nest_id, egg_id, startup, image)
         SELECT x.u, left(x.u::text, 8), $1, 'server-' || x.n, u0.first + (x.n - 1) % $2,
                1024, 0, 5120, 500, 100, x.alloc, e.nest_id, e.id,
                'sh ./start.sh', 'ghcr.io/ferrodactyl/generic:latest'
         FROM (SELECT (lpad(to_hex(a.port - 20000 + 1), 8, '0') || substr(gen_random_uuid()::text, 9))::uuid AS u,
                      a.port - 20000 + 1 AS n, a.id AS alloc
               FROM allocations a WHERE a.node_id = $1 AND a.port < 20000 + $3) x
         CROSS JOIN (SELECT min(id) AS first FROM users WHERE NOT root_admin) u0
         CROSS JOIN eggs e WHERE e.id = $4",
    )
    .bind(node)
    .bind(users)
    .bind(servers)
    .bind(egg)
    .execute(&mut *tx)
    .await
    .context("seeding servers")?;
    sqlx::query(
        "UPDATE allocations a SET server_id = s.id FROM servers s WHERE s.allocation_id = a.id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO server_variables (server_id, variable_id, variable_value)
         SELECT s.id, v.id, v.default_value FROM servers s JOIN egg_variables v ON v.egg_id = s.egg_id",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(db).await?;

    let key = panel_api::apikeys::create(db, admin_id, 2, "benchmark", &[])
        .await
        .map_err(|e| anyhow::anyhow!("creating the application key: {e:?}"))?;
    let users_total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await?;
    let servers_total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers")
        .fetch_one(db)
        .await?;
    Ok(Seeded {
        users: users_total,
        servers: servers_total,
        admin_id,
        application_key: key.token(),
    })
}

/// The Client API benchmark's user: a seeded non-admin who owns some servers and is
/// a subuser of others, with a `ptlc_` key.
#[derive(Debug)]
pub struct ClientUser {
    pub id: i64,
    pub username: String,
    /// The `ptlc_` bearer token.
    pub client_key: String,
    /// 8-character identifiers of the servers they own, in id order.
    pub owned: Vec<String>,
    /// Identifiers of the servers they are a subuser of, in id order.
    pub shared: Vec<String>,
    /// What every subuser row grants them.
    pub permissions: Vec<String>,
}

/// Makes the first seeded user the owner of `owned` and a subuser of `shared` of
/// the first `owned + shared` servers (every fifth and the one after it are shared,
/// so both kinds are spread over the list), and gives them a client key.
pub async fn client_user(db: &Db, owned: i64, shared: i64) -> Result<ClientUser> {
    let (id, username): (i64, String) =
        sqlx::query_as("SELECT id, username FROM users WHERE NOT root_admin ORDER BY id LIMIT 1")
            .fetch_one(db)
            .await?;
    let total = owned + shared;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, uuid_short FROM servers ORDER BY id LIMIT $1")
            .bind(total)
            .fetch_all(db)
            .await?;
    if rows.len() as i64 != total {
        anyhow::bail!("{total} servers needed, {} seeded", rows.len());
    }
    let (mut own, mut share) = (Vec::new(), Vec::new());
    for (i, (sid, short)) in rows.into_iter().enumerate() {
        let shared_slot = i % 5 < 2 && (share.len() as i64) < shared;
        if shared_slot || own.len() as i64 >= owned {
            share.push((sid, short));
        } else {
            own.push((sid, short));
        }
    }
    let permissions: Vec<String> = [
        "control.console",
        "control.start",
        "control.stop",
        "control.restart",
        "websocket.connect",
        "file.read",
        "file.read-content",
        "backup.read",
    ]
    .map(String::from)
    .to_vec();
    let mut tx = db.begin().await?;
    let own_ids: Vec<i64> = own.iter().map(|(i, _)| *i).collect();
    sqlx::query("UPDATE servers SET owner_id = $1 WHERE id = ANY($2)")
        .bind(id)
        .bind(&own_ids)
        .execute(&mut *tx)
        .await?;
    let share_ids: Vec<i64> = share.iter().map(|(i, _)| *i).collect();
    // Shared servers stay owned by someone else.
    sqlx::query(
        "UPDATE servers SET owner_id = (SELECT max(id) FROM users WHERE NOT root_admin)
         WHERE id = ANY($1) AND owner_id = $2",
    )
    .bind(&share_ids)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO subusers (user_id, server_id, permissions) SELECT $1, s, $3 FROM unnest($2::bigint[]) s",
    )
    .bind(id)
    .bind(&share_ids)
    .bind(serde_json::json!(permissions))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE servers, subusers").execute(db).await?;
    let key = panel_api::apikeys::create(db, id, 1, "client benchmark", &[])
        .await
        .map_err(|e| anyhow::anyhow!("creating the client key: {e:?}"))?;
    Ok(ClientUser {
        id,
        username,
        client_key: key.token(),
        owned: own.into_iter().map(|(_, s)| s).collect(),
        shared: share.into_iter().map(|(_, s)| s).collect(),
        permissions,
    })
}
