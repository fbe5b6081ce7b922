//! Application users (reference §6.4, §8.1) and the list mechanics on them:
//! pagination, filters, sorts and includes (§4).

use ferrodactyl_tests::{assert_shape, assert_utc_iso, closed_port, Panel, USER_SHAPE};
use reqwest::Method;
use serde_json::{json, Value};

fn user_body(name: &str) -> Value {
    json!({"email": format!("{name}@example.com"), "username": name, "first_name": "First", "last_name": "Last"})
}

#[tokio::test]
async fn create_returns_201_with_upstreams_shape_and_resource_meta() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let mut body = user_body("newuser");
    body["external_id"] = json!("billing-42");
    body["password"] = json!("secretpass");
    let r = p
        .send(Method::POST, "/api/application/users", &admin.key, &body)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json["object"], "user");
    let a = &r.json["attributes"];
    assert_shape(a, USER_SHAPE);
    assert_eq!(a["username"], "newuser");
    assert_eq!(a["external_id"], "billing-42");
    assert_eq!(a["language"], "en");
    assert_eq!(a["root_admin"], false);
    assert_eq!(a["2fa"], false);
    assert_utc_iso(&a["created_at"]);
    let id = a["id"].as_i64().unwrap();
    assert_eq!(
        r.json["meta"]["resource"],
        format!("{}/api/application/users/{id}", p.url)
    );
    // Success bodies escape slashes as PHP does.
    assert!(r.text().contains(r#"http:\/\/127.0.0.1"#), "{}", r.text());
    // The password was hashed with bcrypt, never stored in the clear.
    let hash: String = sqlx::query_scalar("SELECT password FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert!(hash.starts_with("$2"), "{hash}");
    assert!(panel_api::crypto::verify_password("secretpass", &hash));
}

#[tokio::test]
async fn create_validates_like_upstream() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let r = p
        .send(
            Method::POST,
            "/api/application/users",
            &admin.key,
            &json!({"email": "not-an-email", "username": "-bad-"}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let errs: Vec<(String, String)> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["meta"]["source_field"].as_str().unwrap().to_string(),
                e["meta"]["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errs,
        vec![
            ("email".into(), "email".into()),
            ("username".into(), "p_username".into()),
            ("first_name".into(), "required".into()),
            ("last_name".into(), "required".into()),
        ]
    );
    assert_eq!(
        r.json["errors"][0]["detail"],
        "The email must be a valid email address."
    );
    assert_eq!(
        r.json["errors"][2]["detail"],
        "The first name field is required."
    );
    // Validation errors are compact JSON.
    assert!(r
        .text()
        .starts_with(r#"{"errors":[{"code":"ValidationException","status":"422""#));
}

#[tokio::test]
async fn duplicates_are_refused_case_insensitively() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    assert_eq!(
        p.send(
            Method::POST,
            "/api/application/users",
            &admin.key,
            &user_body("taken")
        )
        .await
        .unwrap()
        .status,
        201
    );
    let mut dup = user_body("TAKEN");
    dup["email"] = json!("Taken@Example.com");
    let r = p
        .send(Method::POST, "/api/application/users", &admin.key, &dup)
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let details: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        vec![
            "The email has already been taken.",
            "The username has already been taken."
        ]
    );
}

#[tokio::test]
async fn concurrent_creates_of_one_username_let_exactly_one_through() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut body = user_body("racer");
        body["email"] = json!(format!("racer{i}@example.com"));
        let rb = p
            .req(Method::POST, "/api/application/users", Some(&admin.key))
            .json(&body);
        tasks.push(tokio::spawn(async move { rb.send().await.unwrap() }));
    }
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match status {
            201 => created += 1,
            422 => assert_eq!(
                body["errors"][0]["detail"], "The username has already been taken.",
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username = 'racer'")
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn view_external_update_and_delete() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let mut body = user_body("alice");
    body["external_id"] = json!("ext-1");
    let id = p
        .send(Method::POST, "/api/application/users", &admin.key, &body)
        .await
        .unwrap()
        .json["attributes"]["id"]
        .as_i64()
        .unwrap();

    let r = p
        .get(&format!("/api/application/users/{id}"), &admin.key)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_shape(&r.json["attributes"], USER_SHAPE);
    assert!(r.json.get("meta").is_none(), "no empty meta");

    let r = p
        .get("/api/application/users/external/ext-1", &admin.key)
        .await
        .unwrap();
    assert_eq!(r.json["attributes"]["id"], id);
    p.get("/api/application/users/external/nope", &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");

    // PATCH needs the full rule set; omitting external_id leaves it alone.
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/users/{id}"),
            &admin.key,
            &json!({"email": "alice2@example.com"}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let mut upd = user_body("alice");
    upd["email"] = json!("alice2@example.com");
    upd["root_admin"] = json!(true);
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/users/{id}"),
            &admin.key,
            &upd,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["attributes"]["email"], "alice2@example.com");
    assert_eq!(r.json["attributes"]["root_admin"], true);
    assert_eq!(r.json["attributes"]["external_id"], "ext-1");

    let r = p
        .call(p.req(
            Method::DELETE,
            &format!("/api/application/users/{id}"),
            Some(&admin.key),
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(r.raw.is_empty());
    assert!(
        r.headers.get("content-type").is_none(),
        "204 has no content type"
    );
    p.get(&format!("/api/application/users/{id}"), &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
    p.get("/api/application/users/abc", &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
}

#[tokio::test]
async fn a_user_who_owns_servers_cannot_be_deleted() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let owner = p.account("owner", false, 1).await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    p.seed_server(owner.id, node, egg, "kept").await.unwrap();
    let r = p
        .call(p.req(
            Method::DELETE,
            &format!("/api/application/users/{}", owner.id),
            Some(&admin.key),
        ))
        .await
        .unwrap();
    r.assert_envelope(400, "DisplayException");
    assert_eq!(
        r.error_detail(),
        "Cannot delete a user with active servers attached to their account. Please delete their servers before continuing."
    );
}

#[tokio::test]
async fn lists_paginate_with_upstreams_meta() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    for i in 0..11 {
        p.account(&format!("user{i:02}"), false, 1).await.unwrap();
    }
    let r = p
        .get("/api/application/users?per_page=5&page=2", &admin.key)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json["object"], "list");
    let pg = &r.json["meta"]["pagination"];
    assert_eq!(pg["total"], 12);
    assert_eq!(pg["count"], 5);
    assert_eq!(pg["per_page"], 5);
    assert_eq!(pg["current_page"], 2);
    assert_eq!(pg["total_pages"], 3);
    assert_eq!(
        pg["links"]["previous"],
        format!("{}/api/application/users?page=1", p.url)
    );
    assert_eq!(
        pg["links"]["next"],
        format!("{}/api/application/users?page=3", p.url)
    );
    for item in r.json["data"].as_array().unwrap() {
        assert_eq!(item["object"], "user");
        assert_shape(&item["attributes"], USER_SHAPE);
    }
    // Past the end: empty data, right totals. Page 0 / negative / junk are page 1.
    let r = p
        .get("/api/application/users?per_page=5&page=9", &admin.key)
        .await
        .unwrap();
    assert_eq!(r.json["data"], json!([]));
    assert_eq!(r.json["meta"]["pagination"]["total"], 12);
    for page in ["0", "-3", "abc"] {
        let r = p
            .get(
                &format!("/api/application/users?per_page=5&page={page}"),
                &admin.key,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json["meta"]["pagination"]["current_page"], 1);
    }
    // One page only: links is an empty object.
    let r = p.get("/api/application/users", &admin.key).await.unwrap();
    assert_eq!(r.json["meta"]["pagination"]["links"], json!({}));
    assert_eq!(r.json["meta"]["pagination"]["per_page"], 50);
    // per_page=0 is Eloquent's 15.
    let r = p
        .get("/api/application/users?per_page=0", &admin.key)
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["per_page"], 15);
}

#[tokio::test]
async fn a_huge_or_bad_per_page_is_a_422_not_a_500() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    for (pp, rule) in [("100000000", "max"), ("-5", "min"), ("ten", "integer")] {
        let r = p
            .get(&format!("/api/application/users?per_page={pp}"), &admin.key)
            .await
            .unwrap();
        r.assert_envelope(422, "ValidationException");
        assert_eq!(r.json["errors"][0]["meta"]["source_field"], "per_page");
        assert_eq!(r.json["errors"][0]["meta"]["rule"], rule);
    }
}

#[tokio::test]
async fn filters_and_sorts_follow_upstream() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    for name in ["bravo", "alpha", "charlie_x"] {
        p.account(name, false, 1).await.unwrap();
    }
    let names = |r: &ferrodactyl_tests::Resp| -> Vec<String> {
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["attributes"]["username"].as_str().unwrap().to_string())
            .collect()
    };
    // Partial, case-insensitive, comma = OR; `_` is literal.
    let r = p
        .get(
            "/api/application/users?filter[username]=ALP,rav",
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["bravo", "alpha"]);
    let r = p
        .get("/api/application/users?filter%5Busername%5D=_", &admin.key)
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["charlie_x"]);
    let r = p
        .get("/api/application/users?filter[email]=%25", &admin.key)
        .await
        .unwrap();
    assert_eq!(names(&r), Vec::<String>::new(), "% is matched literally");
    let r = p
        .get("/api/application/users?sort=-id", &admin.key)
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["charlie_x", "alpha", "bravo", "admin"]);
    let r = p
        .get("/api/application/users?filter[password]=x", &admin.key)
        .await
        .unwrap();
    r.assert_envelope(400, "InvalidFilterQuery");
    assert_eq!(
        r.error_detail(),
        "Requested filter(s) `password` are not allowed. Allowed filter(s) are `email, uuid, username, external_id`."
    );
    let r = p
        .get("/api/application/users?sort=email", &admin.key)
        .await
        .unwrap();
    r.assert_envelope(400, "InvalidSortQuery");
    assert_eq!(
        r.error_detail(),
        "Requested sort(s) `email` is not allowed. Allowed sort(s) are `id, uuid`."
    );
}

#[tokio::test]
async fn the_servers_include_nests_inside_attributes() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "mine").await.unwrap();
    let r = p
        .get(
            &format!(
                "/api/application/users/{}?include=servers,unknown",
                admin.id
            ),
            &admin.key,
        )
        .await
        .unwrap();
    let rel = &r.json["attributes"]["relationships"];
    assert_eq!(
        rel.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["servers"],
        "unknown includes are ignored"
    );
    assert_eq!(rel["servers"]["object"], "list");
    assert_eq!(rel["servers"]["data"][0]["object"], "server");
    assert_eq!(rel["servers"]["data"][0]["attributes"]["id"], sid);
    assert!(
        rel["servers"].get("meta").is_none(),
        "relationship lists carry no pagination"
    );
    // Nested includes reach two levels.
    let r = p
        .get(
            &format!(
                "/api/application/users/{}?include=servers.allocations",
                admin.id
            ),
            &admin.key,
        )
        .await
        .unwrap();
    let allocs = &r.json["attributes"]["relationships"]["servers"]["data"][0]["attributes"]
        ["relationships"]["allocations"];
    assert_eq!(allocs["data"][0]["object"], "allocation");
}

#[tokio::test]
async fn bad_input_never_produces_a_500() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    // Malformed JSON: 400 before validation.
    let r = p
        .call(
            p.req(Method::POST, "/api/application/users", Some(&admin.key))
                .header("Content-Type", "application/json")
                .body("{\"email\": "),
        )
        .await
        .unwrap();
    r.assert_envelope(400, "BadRequestHttpException");
    assert_eq!(
        r.error_detail(),
        "The JSON data passed in the request appears to be malformed: Syntax error"
    );
    // Wrong JSON types.
    let r = p
        .send(
            Method::POST,
            "/api/application/users",
            &admin.key,
            &json!({"email": ["a"], "username": {"x": 1}, "first_name": 5, "last_name": true}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    // A JSON body without a JSON Content-Type is not read (upstream: "field is required").
    let r = p
        .call(
            p.req(Method::POST, "/api/application/users", Some(&admin.key))
                .header("Content-Type", "text/plain")
                .body(user_body("plain").to_string()),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(r.json["errors"][0]["rule"], Value::Null);
    assert_eq!(r.json["errors"][0]["meta"]["rule"], "required");
    // No Accept header: still the JSON envelope.
    let r = p
        .call(
            p.http
                .get(format!("{}/api/application/users/999", p.url))
                .bearer_auth(&admin.key),
        )
        .await
        .unwrap();
    r.assert_envelope(404, "NotFoundHttpException");
    // Non-ASCII, SQL metacharacters and over-long strings.
    let mut weird = user_body("zoe");
    weird["first_name"] = json!("Zoë 😀 '; DROP TABLE users; --");
    let r = p
        .send(Method::POST, "/api/application/users", &admin.key, &weird)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json["attributes"]["first_name"],
        "Zoë 😀 '; DROP TABLE users; --"
    );
    assert!(
        r.text().contains("Zo\\u00eb \\ud83d\\ude00"),
        "non-ASCII is \\u-escaped: {}",
        r.text()
    );
    let mut long = user_body("longname");
    long["last_name"] = json!("x".repeat(5000));
    let r = p
        .send(Method::POST, "/api/application/users", &admin.key, &long)
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        r.json["errors"][0]["detail"],
        "The last name must be between 1 and 191 characters."
    );
    let r = p
        .get(
            "/api/application/users?filter[username]=%27%22%3B--%00",
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Unknown routes and methods.
    let r = p
        .get("/api/application/nothing-here", &admin.key)
        .await
        .unwrap();
    r.assert_envelope(404, "NotFoundHttpException");
    assert_eq!(
        r.error_detail(),
        "The route api/application/nothing-here could not be found."
    );
    let r = p
        .call(p.req(Method::PUT, "/api/application/users", Some(&admin.key)))
        .await
        .unwrap();
    r.assert_envelope(405, "MethodNotAllowedHttpException");
    assert_eq!(r.error_detail(), "The PUT method is not supported for route api/application/users. Supported methods: GET, HEAD, POST.");
    // Trailing slashes are ignored.
    assert_eq!(
        p.get("/api/application/users/", &admin.key)
            .await
            .unwrap()
            .status,
        200
    );
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(count, 2, "only admin and zoe exist: nothing half-written");
}
