//! Application servers (reference §6.8, §8.2). Creating a server reaches the node's
//! daemon; here the daemon is unreachable, so these tests pin upstream's answers on
//! that path (the success path with a real wings is in the daemon-protocol tests).

use ferrodactyl_tests::{assert_shape, assert_utc_iso, closed_port, Panel, SERVER_SHAPE};
use reqwest::Method;
use serde_json::{json, Value};

fn create_body(user: i64, egg: i64, allocation: i64) -> Value {
    json!({
        "name": "My Server", "user": user, "egg": egg, "docker_image": "ferrodactyl/test-base:latest",
        "startup": "sh ./start.sh", "environment": {"SERVER_MESSAGE": "hi"},
        "limits": {"memory": 512, "swap": 0, "disk": 1024, "io": 500, "cpu": 100},
        "feature_limits": {"databases": 1, "backups": 2}, "allocation": {"default": allocation}
    })
}

async fn free_allocation(p: &Panel) -> i64 {
    sqlx::query_scalar("SELECT id FROM allocations WHERE server_id IS NULL ORDER BY id LIMIT 1")
        .fetch_one(&p.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_with_an_unreachable_daemon_answers_504_and_leaves_nothing_behind() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, _node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let alloc = free_allocation(&p).await;
    let r = p
        .send(
            Method::POST,
            "/api/application/servers",
            &admin.key,
            &create_body(admin.id, egg, alloc),
        )
        .await
        .unwrap();
    r.assert_envelope(504, "DaemonConnectionException");
    assert_eq!(
        r.error_detail(),
        "Could not establish a connection to the machine running this server. Please try again."
    );
    let servers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM servers")
        .fetch_one(&p.db)
        .await
        .unwrap();
    let vars: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM server_variables")
        .fetch_one(&p.db)
        .await
        .unwrap();
    let taken: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM allocations WHERE server_id IS NOT NULL")
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!((servers, vars, taken), (0, 0, 0));
}

#[tokio::test]
async fn create_validates_fields_egg_variables_and_allocations() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let r = p
        .send(
            Method::POST,
            "/api/application/servers",
            &admin.key,
            &json!({}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let fields: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["meta"]["source_field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "name",
            "user",
            "egg",
            "docker_image",
            "startup",
            "environment",
            "limits",
            "limits.memory",
            "limits.swap",
            "limits.disk",
            "limits.io",
            "limits.cpu",
            "feature_limits",
            "feature_limits.databases",
            "feature_limits.backups",
            "allocation.default"
        ]
    );
    assert_eq!(
        r.json["errors"][5]["detail"],
        "The environment field must be present."
    );

    // Egg variables are validated with their own rules.
    let alloc = free_allocation(&p).await;
    let mut body = create_body(admin.id, egg, alloc);
    body["environment"] = json!({"SERVER_MESSAGE": "x".repeat(65)});
    body["limits"]["io"] = json!(5);
    let r = p
        .send(Method::POST, "/api/application/servers", &admin.key, &body)
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let errs: Vec<(&str, &str)> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["meta"]["source_field"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        errs.contains(&("limits.io", "The limits.io must be between 10 and 1000.")),
        "{errs:?}"
    );
    assert!(
        errs.contains(&(
            "environment.SERVER_MESSAGE",
            "The Greeting variable may not be greater than 64 characters."
        )),
        "{errs:?}"
    );

    // An allocation already in use, an unknown user and egg.
    let used_by = p.seed_server(admin.id, node, egg, "holder").await.unwrap();
    let used: i64 = sqlx::query_scalar("SELECT allocation_id FROM servers WHERE id = $1")
        .bind(used_by)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let mut body = create_body(9999, 9999, used);
    body["egg"] = json!(9999);
    let r = p
        .send(Method::POST, "/api/application/servers", &admin.key, &body)
        .await
        .unwrap();
    let details: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        details,
        vec![
            "The selected user is invalid.",
            "The selected egg is invalid.",
            "The selected allocation.default is invalid."
        ]
    );

    // Automatic deployment with nowhere to go.
    let mut body = create_body(admin.id, egg, 0);
    body.as_object_mut().unwrap().remove("allocation");
    body["deploy"] = json!({"locations": [424242], "dedicated_ip": false, "port_range": []});
    let r = p
        .send(Method::POST, "/api/application/servers", &admin.key, &body)
        .await
        .unwrap();
    r.assert_envelope(400, "NoViableNodeException");
}

#[tokio::test]
async fn view_shape_environment_and_every_include() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (nest, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "shape").await.unwrap();
    let r = p
        .get(&format!("/api/application/servers/{sid}"), &admin.key)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let a = &r.json["attributes"];
    assert_shape(a, SERVER_SHAPE);
    assert_utc_iso(&a["created_at"]);
    assert_eq!(
        a["identifier"].as_str().unwrap(),
        &a["uuid"].as_str().unwrap()[..8]
    );
    assert_eq!(a["suspended"], false);
    assert_eq!(a["container"]["installed"], 1);
    assert_eq!(a["nest"], nest);
    let env = a["container"]["environment"].as_object().unwrap();
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        vec![
            "SERVER_MESSAGE",
            "STARTUP",
            "P_SERVER_LOCATION",
            "P_SERVER_UUID",
            "P_SERVER_ALLOCATION_LIMIT"
        ]
    );
    assert_eq!(
        env["SERVER_MESSAGE"], "Hello from Ferrodactyl",
        "default when the server has no value"
    );
    assert_eq!(env["P_SERVER_LOCATION"], "loc1");
    assert_eq!(
        a["limits"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![
            "memory",
            "swap",
            "disk",
            "io",
            "cpu",
            "threads",
            "oom_disabled"
        ]
    );
    assert_eq!(
        a["feature_limits"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["databases", "allocations", "backups"]
    );

    let r = p
        .get(&format!("/api/application/servers/{sid}?include=allocations,user,subusers,nest,egg,variables,location,node,databases"), &admin.key)
        .await
        .unwrap();
    let rel = r.json["attributes"]["relationships"].as_object().unwrap();
    assert_eq!(rel["allocations"]["data"][0]["object"], "allocation");
    assert_eq!(rel["user"]["object"], "user");
    assert_eq!(rel["subusers"], json!({"object": "list", "data": []}));
    assert_eq!(rel["nest"]["object"], "nest");
    assert_eq!(rel["egg"]["object"], "egg");
    assert_eq!(rel["variables"]["data"][0]["object"], "server_variable");
    assert_eq!(
        rel["variables"]["data"][0]["attributes"]["server_value"],
        Value::Null
    );
    assert!(
        rel["variables"]["data"][0]["attributes"]["created_at"]
            .as_str()
            .unwrap()
            .ends_with(".000000Z")
            || rel["variables"]["data"][0]["attributes"]["created_at"]
                .as_str()
                .unwrap()
                .ends_with('Z')
    );
    assert_eq!(rel["location"]["object"], "location");
    assert_eq!(rel["node"]["object"], "node");
    assert_eq!(rel["databases"], json!({"object": "list", "data": []}));

    p.get("/api/application/servers/999999", &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
    sqlx::query("UPDATE servers SET external_id = 'whmcs-7' WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    assert_eq!(
        p.get("/api/application/servers/external/whmcs-7", &admin.key)
            .await
            .unwrap()
            .json["attributes"]["id"],
        sid
    );
}

#[tokio::test]
async fn server_lists_paginate_filter_sort_and_include() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    for name in ["alpha", "beta", "gamma"] {
        p.seed_server(admin.id, node, egg, name).await.unwrap();
    }
    let r = p
        .get(
            "/api/application/servers?per_page=2&include=allocations",
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 3);
    assert_eq!(r.json["meta"]["pagination"]["total_pages"], 2);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["allocations"]["data"][0]["attributes"]
            ["assigned"],
        true
    );
    // The list folds environments and allocations into its page statement; the
    // single view loads them separately. Both must answer the same server alike, with
    // plain and with nested allocation includes (the latter not folded).
    for include in ["allocations", "allocations.node"] {
        let list = p
            .get(
                &format!("/api/application/servers?include={include}"),
                &admin.key,
            )
            .await
            .unwrap();
        let items = list.json["data"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        for item in items {
            let id = item["attributes"]["id"].as_i64().unwrap();
            let view = p
                .get(
                    &format!("/api/application/servers/{id}?include={include}"),
                    &admin.key,
                )
                .await
                .unwrap();
            assert_eq!(
                item["attributes"], view.json["attributes"],
                "server {id}, include={include}"
            );
            assert!(!item["attributes"]["container"]["environment"]
                .as_object()
                .unwrap()
                .is_empty());
        }
    }
    let r = p
        .get(
            "/api/application/servers?filter[name]=ET&sort=-id",
            &admin.key,
        )
        .await
        .unwrap();
    let names: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attributes"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["beta"]);
    let r = p
        .get("/api/application/servers?sort=-id", &admin.key)
        .await
        .unwrap();
    assert_eq!(r.json["data"][0]["attributes"]["name"], "gamma");
    p.get("/api/application/servers?filter[owner]=1", &admin.key)
        .await
        .unwrap()
        .assert_envelope(400, "InvalidFilterQuery");
    let long = "s".repeat(101);
    p.get(
        &format!("/api/application/servers?search={long}"),
        &admin.key,
    )
    .await
    .unwrap()
    .assert_envelope(422, "ValidationException");
}

#[tokio::test]
async fn details_build_and_startup_updates() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let other = p.account("other", false, 1).await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "edit").await.unwrap();
    sqlx::query("UPDATE servers SET external_id = 'keep?' WHERE id = $1")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();

    // details: a full replace; omitting external_id clears it.
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/details"),
            &admin.key,
            &json!({"name": "Renamed", "user": other.id}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["attributes"]["name"], "Renamed");
    assert_eq!(r.json["attributes"]["user"], other.id);
    assert_eq!(r.json["attributes"]["external_id"], Value::Null);
    assert_eq!(r.json["attributes"]["description"], "");
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/details"),
            &admin.key,
            &json!({"name": ""}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");

    // build: legacy top-level limits; the daemon being down is only logged.
    let primary: i64 = sqlx::query_scalar("SELECT allocation_id FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let extra = free_allocation(&p).await;
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/build"),
            &admin.key,
            &json!({"allocation": primary, "memory": 2048, "swap": -1, "disk": 4096, "io": 700, "cpu": 200, "threads": "0-1",
                "add_allocations": [extra], "feature_limits": {"databases": null, "allocations": 3, "backups": null}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let a = &r.json["attributes"];
    assert_eq!(a["limits"]["memory"], 2048);
    assert_eq!(a["limits"]["swap"], -1);
    assert_eq!(a["limits"]["threads"], "0-1");
    assert_eq!(
        a["feature_limits"],
        json!({"databases": null, "allocations": 3, "backups": 0})
    );
    let owned: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM allocations WHERE server_id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(owned, 2);
    // nested limits; an allocation the server does not own as primary → 400.
    let foreign = free_allocation(&p).await;
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/build"),
            &admin.key,
            &json!({"allocation": foreign, "limits": {"memory": 1, "swap": 0, "disk": 1, "io": 10, "cpu": 0}, "feature_limits": {"databases": 0, "backups": 0}}),
        )
        .await
        .unwrap();
    r.assert_envelope(400, "DisplayException");
    assert_eq!(
        r.error_detail(),
        "The requested default allocation is not currently assigned to this server."
    );
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/build"),
            &admin.key,
            &json!({"allocation": primary}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        r.json["errors"][0]["detail"],
        "The memory field is required when limits is not present."
    );

    // startup: environment checked against the egg; values stored.
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/startup"),
            &admin.key,
            &json!({"startup": "sh ./start.sh --fast", "environment": {"SERVER_MESSAGE": "changed"}, "egg": egg,
                "image": "ferrodactyl/test-base:2", "skip_scripts": false}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json["attributes"]["container"]["environment"]["SERVER_MESSAGE"],
        "changed"
    );
    assert_eq!(
        r.json["attributes"]["container"]["image"],
        "ferrodactyl/test-base:2"
    );
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/servers/{sid}/startup"),
            &admin.key,
            &json!({"startup": "x", "environment": {"SERVER_MESSAGE": null}, "egg": egg, "image": "bad image!!", "skip_scripts": false}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    let fields: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["meta"]["source_field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"image") && fields.contains(&"environment.SERVER_MESSAGE"),
        "{fields:?}"
    );
}

#[tokio::test]
async fn power_state_routes_roll_back_when_the_daemon_is_unreachable() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "state").await.unwrap();
    let status = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT status FROM servers WHERE id = $1")
            .bind(sid)
            .fetch_one(&p.db)
            .await
            .unwrap()
    };
    let post = |path: String| p.call(p.req(Method::POST, &path, Some(&admin.key)));

    // Unsuspending a server that is not suspended is a no-op.
    assert_eq!(
        post(format!("/api/application/servers/{sid}/unsuspend"))
            .await
            .unwrap()
            .status,
        204
    );
    post(format!("/api/application/servers/{sid}/suspend"))
        .await
        .unwrap()
        .assert_envelope(504, "DaemonConnectionException");
    assert_eq!(status().await, None, "suspension rolled back");
    post(format!("/api/application/servers/{sid}/reinstall"))
        .await
        .unwrap()
        .assert_envelope(504, "DaemonConnectionException");
    assert_eq!(status().await, None, "reinstall rolled back");
    // A transfer in progress blocks suspension toggles.
    sqlx::query("INSERT INTO server_transfers (server_id, old_node, new_node, old_allocation, new_allocation) VALUES ($1, 1, 2, 1, 2)")
        .bind(sid)
        .execute(&p.db)
        .await
        .unwrap();
    let r = post(format!("/api/application/servers/{sid}/suspend"))
        .await
        .unwrap();
    r.assert_envelope(409, "ConflictHttpException");
    assert_eq!(
        r.error_detail(),
        "Cannot toggle suspension status on a server that is currently being transferred."
    );
}

#[tokio::test]
async fn delete_needs_the_daemon_unless_forced() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "doomed").await.unwrap();
    let del = |path: String| p.call(p.req(Method::DELETE, &path, Some(&admin.key)));
    del(format!("/api/application/servers/{sid}"))
        .await
        .unwrap()
        .assert_envelope(504, "DaemonConnectionException");
    assert_eq!(
        p.get(&format!("/api/application/servers/{sid}"), &admin.key)
            .await
            .unwrap()
            .status,
        200,
        "still there"
    );
    // Upstream would delete the server here; we refuse the method (bug fixed), and any
    // other segment than `force` is not a route.
    del(format!("/api/application/servers/{sid}/databases"))
        .await
        .unwrap()
        .assert_envelope(405, "MethodNotAllowedHttpException");
    del(format!("/api/application/servers/{sid}/other"))
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
    assert_eq!(
        p.get(&format!("/api/application/servers/{sid}"), &admin.key)
            .await
            .unwrap()
            .status,
        200,
        "still there"
    );
    let r = del(format!("/api/application/servers/{sid}/force"))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    p.get(&format!("/api/application/servers/{sid}"), &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
    let freed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM allocations WHERE server_id IS NOT NULL")
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!(freed, 0);
}
