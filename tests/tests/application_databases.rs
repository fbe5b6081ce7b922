//! Application server databases (reference §6.9, §8.10–§8.11) against a real
//! MariaDB database host: the database and its user really exist, the password
//! works, rotation changes it, deletion drops both.

use ferrodactyl_tests::mariadb::MariaDb;
use ferrodactyl_tests::{assert_shape, closed_port, Panel};
use reqwest::Method;
use serde_json::json;
use sqlx::Connection;

const DB_SHAPE: &[(&str, &str)] = &[
    ("id", "int"),
    ("server", "int"),
    ("host", "int"),
    ("database", "string"),
    ("username", "string"),
    ("remote", "string"),
    ("max_connections", "?int"),
    ("created_at", "string"),
    ("updated_at", "string"),
];

async fn login(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<sqlx::MySqlConnection, sqlx::Error> {
    let opts = sqlx::mysql::MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(user)
        .password(password)
        .database(db);
    sqlx::MySqlConnection::connect_with(&opts).await
}

#[tokio::test]
async fn databases_are_created_rotated_and_dropped_on_a_real_host() {
    let maria = MariaDb::start()
        .expect("MariaDB (Debian's mariadb-server) must be installed for this test");
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "db").await.unwrap();
    sqlx::query("UPDATE servers SET database_limit = 1 WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    let host: i64 = sqlx::query_scalar(
        "INSERT INTO database_hosts (name, host, port, username, password, node_id) VALUES ('maria', '127.0.0.1', $1, 'root', $2, $3) RETURNING id",
    )
    .bind(maria.port as i32)
    .bind(p.state.enc.encrypt(""))
    .bind(node)
    .fetch_one(&p.db)
    .await
    .unwrap();
    let base = format!("/api/application/servers/{sid}/databases");

    let r = p
        .send(
            Method::POST,
            &base,
            &admin.key,
            &json!({"database": "bad name!", "remote": "not a host", "host": 999}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let rules: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["meta"]["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, vec!["alpha_dash", "regex", "exists"]);

    let r = p
        .send(
            Method::POST,
            &base,
            &admin.key,
            &json!({"database": "world", "remote": "%", "host": host}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_shape(&r.json["attributes"], DB_SHAPE);
    let db_id = r.json["attributes"]["id"].as_i64().unwrap();
    assert_eq!(r.json["attributes"]["database"], format!("s{sid}_world"));
    let username = r.json["attributes"]["username"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(username.starts_with(&format!("u{sid}_")));
    assert_eq!(
        r.json["meta"]["resource"],
        format!("{}/api/application/servers/{sid}/databases/{db_id}", p.url)
    );

    // The password include shows the working password.
    let r = p
        .get(&format!("{base}/{db_id}?include=password,host"), &admin.key)
        .await
        .unwrap();
    let password = r.json["attributes"]["relationships"]["password"]["attributes"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 24);
    assert_eq!(
        r.json["attributes"]["relationships"]["password"]["object"],
        "database_password"
    );
    assert_eq!(
        r.json["attributes"]["relationships"]["host"]["attributes"]["port"],
        maria.port as i64
    );
    let stored: String = sqlx::query_scalar("SELECT password FROM databases WHERE id = $1")
        .bind(db_id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert!(!stored.contains(&password), "encrypted at rest");
    login(maria.port, &username, &password, &format!("s{sid}_world"))
        .await
        .expect("the new user can log in");

    // The limit holds.
    let r = p
        .send(
            Method::POST,
            &base,
            &admin.key,
            &json!({"database": "second", "remote": "%", "host": host}),
        )
        .await
        .unwrap();
    r.assert_envelope(400, "TooManyDatabasesException");

    let r = p.get(&base, &admin.key).await.unwrap();
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    assert!(r.json.get("meta").is_none());

    // Rotation: old password stops working, new one works.
    let r = p
        .call(p.req(
            Method::POST,
            &format!("{base}/{db_id}/reset-password"),
            Some(&admin.key),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        login(maria.port, &username, &password, &format!("s{sid}_world"))
            .await
            .is_err()
    );
    let r = p
        .get(&format!("{base}/{db_id}?include=password"), &admin.key)
        .await
        .unwrap();
    let new_password = r.json["attributes"]["relationships"]["password"]["attributes"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    login(
        maria.port,
        &username,
        &new_password,
        &format!("s{sid}_world"),
    )
    .await
    .expect("rotated password works");

    // Deletion drops the database and the user.
    assert_eq!(
        p.call(p.req(Method::DELETE, &format!("{base}/{db_id}"), Some(&admin.key)))
            .await
            .unwrap()
            .status,
        204
    );
    assert!(login(maria.port, &username, &new_password, "mysql")
        .await
        .is_err());
    let mut root = maria.root().await.unwrap();
    let dbs: Vec<String> = sqlx::query_scalar("SHOW DATABASES")
        .fetch_all(&mut root)
        .await
        .unwrap();
    assert!(!dbs.contains(&format!("s{sid}_world")), "{dbs:?}");
    p.get(&format!("{base}/{db_id}"), &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
}

#[tokio::test]
async fn an_unreachable_database_host_leaves_no_row() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "db").await.unwrap();
    let host: i64 = sqlx::query_scalar(
        "INSERT INTO database_hosts (name, host, port, username, password) VALUES ('gone', '127.0.0.1', $1, 'root', $2) RETURNING id",
    )
    .bind(closed_port() as i32)
    .bind(p.state.enc.encrypt("x"))
    .fetch_one(&p.db)
    .await
    .unwrap();
    let r = p
        .send(
            Method::POST,
            &format!("/api/application/servers/{sid}/databases"),
            &admin.key,
            &json!({"database": "x", "remote": "%", "host": host}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases")
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn client_databases_are_created_rotated_and_dropped_on_a_real_host() {
    let maria = MariaDb::start()
        .expect("MariaDB (Debian's mariadb-server) must be installed for this test");
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let owner = p.account("dbowner", false, 1).await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(owner.id, node, egg, "db").await.unwrap();
    let short: String = sqlx::query_scalar("SELECT uuid_short FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    sqlx::query("UPDATE servers SET database_limit = 1 WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO database_hosts (name, host, port, username, password, node_id) VALUES ('maria', '127.0.0.1', $1, 'root', $2, $3)")
        .bind(maria.port as i32)
        .bind(p.state.enc.encrypt(""))
        .bind(node)
        .execute(&p.db)
        .await
        .unwrap();
    let base = format!("/api/client/servers/{short}/databases");
    let r = p
        .send(
            Method::POST,
            &base,
            &owner.key,
            &json!({"database": "world", "remote": "%"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let a = &r.json["attributes"];
    let hashid = a["id"].as_str().unwrap().to_string();
    assert!(
        hashid.len() >= 8 && hashid.chars().all(|c| c.is_ascii_alphanumeric()),
        "{hashid}"
    );
    assert_eq!(a["host"]["port"], maria.port as i64);
    assert_eq!(a["connections_from"], "%");
    let user = a["username"].as_str().unwrap().to_string();
    let name = a["name"].as_str().unwrap().to_string();
    assert_eq!(name, format!("s{sid}_world"));
    let password = a["relationships"]["password"]["attributes"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    // The credentials work on the real server.
    login(maria.port, &user, &password, &name)
        .await
        .expect("the new user logs in to its database");
    // The same name again: upstream's custom message; the limit: 400.
    let r = p
        .send(
            Method::POST,
            &base,
            &owner.key,
            &json!({"database": "world", "remote": "%"}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        r.error_detail(),
        "The database name you have selected is already in use by this server."
    );
    let r = p
        .send(
            Method::POST,
            &base,
            &owner.key,
            &json!({"database": "other", "remote": "%"}),
        )
        .await
        .unwrap();
    assert_eq!(r.error_code(), "TooManyDatabasesException");
    // A subuser without view_password sees a null_resource instead of the password.
    let sub = p.account("dbsub", false, 1).await.unwrap();
    sqlx::query("INSERT INTO subusers (user_id, server_id, permissions) VALUES ($1, $2, '[\"database.read\", \"database.update\"]')")
        .bind(sub.id)
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    let r = p
        .get(&format!("{base}?include=password"), &sub.key)
        .await
        .unwrap();
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["password"]["object"],
        "null_resource"
    );
    // Rotation changes the password on the host.
    let r = p
        .send(
            Method::POST,
            &format!("{base}/{hashid}/rotate-password"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let new_pw = r.json["attributes"]["relationships"]["password"]["attributes"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_pw, password);
    assert!(login(maria.port, &user, &password, &name).await.is_err());
    login(maria.port, &user, &new_pw, &name)
        .await
        .expect("the rotated password works");
    // Deleting drops database and user.
    let r = p
        .send(
            Method::DELETE,
            &format!("{base}/{hashid}"),
            &owner.key,
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(login(maria.port, &user, &new_pw, &name).await.is_err());
    let mut root = maria.root().await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(&name)
    .fetch_one(&mut root)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM activity_logs ORDER BY id")
        .fetch_all(&p.db)
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            "server:database.create",
            "server:database.rotate-password",
            "server:database.delete"
        ]
    );
}
