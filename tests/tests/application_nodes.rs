//! Application locations, nodes, allocations and the deployable listing
//! (reference §6.5–§6.7, §8.3–§8.5).

use ferrodactyl_tests::{
    assert_shape, assert_utc_iso, closed_port, Panel, ALLOCATION_SHAPE, LOCATION_SHAPE, NODE_SHAPE,
};
use reqwest::Method;
use serde_json::json;

fn node_body(location: i64, port: u16) -> serde_json::Value {
    json!({"name": "node-a", "location_id": location, "fqdn": "127.0.0.1", "scheme": "http", "memory": 2048,
        "memory_overallocate": 0, "disk": 5000, "disk_overallocate": 0, "daemon_listen": port, "daemon_sftp": 2022})
}

#[tokio::test]
async fn locations_crud_with_upstreams_rules() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let r = p
        .send(
            Method::POST,
            "/api/application/locations",
            &admin.key,
            &json!({"short": "us.east", "long": "Virginia"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_shape(&r.json["attributes"], LOCATION_SHAPE);
    assert_utc_iso(&r.json["attributes"]["updated_at"]);
    let id = r.json["attributes"]["id"].as_i64().unwrap();
    assert_eq!(
        r.json["meta"]["resource"],
        format!("{}/api/application/locations/{id}", p.url)
    );

    let r = p
        .send(
            Method::POST,
            "/api/application/locations",
            &admin.key,
            &json!({"short": "us.east"}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(
        r.error_detail(),
        "The Location Identifier has already been taken."
    );
    let r = p
        .send(
            Method::POST,
            "/api/application/locations",
            &admin.key,
            &json!({"short": "x".repeat(61)}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.error_detail(),
        "The Location Identifier must be between 1 and 60 characters."
    );

    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/locations/{id}"),
            &admin.key,
            &json!({"short": "us.east", "long": null}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["attributes"]["long"], serde_json::Value::Null);

    let r = p
        .get(
            "/api/application/locations?filter[short]=EAST&include=nodes,servers",
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["nodes"],
        json!({"object": "list", "data": []})
    );
    let r = p
        .get("/api/application/locations?sort=short", &admin.key)
        .await
        .unwrap();
    r.assert_envelope(400, "InvalidSortQuery");

    // A location with nodes cannot be deleted.
    p.send(
        Method::POST,
        "/api/application/nodes",
        &admin.key,
        &node_body(id, 8080),
    )
    .await
    .unwrap();
    let r = p
        .call(p.req(
            Method::DELETE,
            &format!("/api/application/locations/{id}"),
            Some(&admin.key),
        ))
        .await
        .unwrap();
    r.assert_envelope(400, "HasActiveNodesException");
    assert_eq!(
        r.error_detail(),
        "Cannot delete a location that has active nodes attached to it."
    );
    p.get("/api/application/locations/424242", &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
}

#[tokio::test]
async fn nodes_create_view_configuration_and_delete() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let loc = p
        .send(
            Method::POST,
            "/api/application/locations",
            &admin.key,
            &json!({"short": "l"}),
        )
        .await
        .unwrap()
        .json["attributes"]["id"]
        .as_i64()
        .unwrap();
    let mut body = node_body(loc, 8443);
    body["scheme"] = json!("https");
    body["fqdn"] = json!("Node1.Example.COM");
    body["description"] = json!("dropped, as upstream");
    let r = p
        .send(Method::POST, "/api/application/nodes", &admin.key, &body)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let a = &r.json["attributes"];
    assert_shape(a, NODE_SHAPE);
    assert_eq!(a["description"], serde_json::Value::Null);
    assert_eq!(a["upload_size"], 100);
    assert_eq!(a["daemon_base"], "/var/lib/pterodactyl/volumes");
    assert_eq!(a["public"], true);
    assert_eq!(a["allocated_resources"], json!({"memory": 0, "disk": 0}));
    assert!(
        a.get("daemon_token").is_none() && a.get("daemon_token_id").is_none(),
        "tokens stay hidden"
    );
    let id = a["id"].as_i64().unwrap();

    let r = p
        .get(
            &format!("/api/application/nodes/{id}/configuration"),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let c = &r.json;
    assert_eq!(c["debug"], false);
    assert_eq!(c["token_id"].as_str().unwrap().len(), 16);
    assert_eq!(c["token"].as_str().unwrap().len(), 64);
    assert_eq!(c["api"]["port"], 8443);
    assert_eq!(c["api"]["ssl"]["enabled"], true);
    assert_eq!(
        c["api"]["ssl"]["cert"],
        "/etc/letsencrypt/live/node1.example.com/fullchain.pem"
    );
    assert_eq!(
        c["system"],
        json!({"data": "/var/lib/pterodactyl/volumes", "sftp": {"bind_port": 2022}})
    );
    assert_eq!(c["remote"], p.url);
    assert!(
        r.text().contains(r#""cert":"\/etc\/letsencrypt"#),
        "raw JSON escapes slashes: {}",
        r.text()
    );
    // The daemon token is encrypted at rest.
    let stored: String = sqlx::query_scalar("SELECT daemon_token FROM nodes WHERE id = $1")
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert!(!stored.contains(c["token"].as_str().unwrap()));

    let r = p
        .get(
            &format!("/api/application/nodes/{id}?include=location,allocations,servers"),
            &admin.key,
        )
        .await
        .unwrap();
    let rel = &r.json["attributes"]["relationships"];
    assert_eq!(rel["location"]["object"], "location");
    assert_eq!(rel["allocations"]["object"], "list");

    let r = p
        .get(
            "/api/application/nodes?filter[fqdn]=example&sort=-memory",
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 1);

    assert_eq!(
        p.call(p.req(
            Method::DELETE,
            &format!("/api/application/nodes/{id}"),
            Some(&admin.key)
        ))
        .await
        .unwrap()
        .status,
        204
    );
    p.get(&format!("/api/application/nodes/{id}"), &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
}

#[tokio::test]
async fn node_validation_and_unreachable_daemon_on_update() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let r = p
        .send(
            Method::POST,
            "/api/application/nodes",
            &admin.key,
            &json!({"name": "bad/name", "location_id": 999, "memory": 0, "daemon_listen": 70000}),
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
            "location_id",
            "fqdn",
            "scheme",
            "memory",
            "memory_overallocate",
            "disk",
            "disk_overallocate",
            "daemon_sftp",
            "daemon_listen"
        ]
    );
    assert_eq!(
        r.json["errors"][1]["detail"],
        "The selected location id is invalid."
    );
    assert_eq!(
        r.json["errors"][4]["detail"],
        "The memory must be at least 1."
    );
    assert_eq!(
        r.json["errors"][9]["detail"],
        "The daemon listen must be between 1 and 65535."
    );

    // PATCH keeps the change in the database when the daemon cannot be told.
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let loc: i64 = sqlx::query_scalar("SELECT location_id FROM nodes WHERE id = $1")
        .bind(node)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let mut body = node_body(loc, closed_port());
    body["name"] = json!("renamed");
    body["memory"] = json!("4096");
    let r = p
        .send(
            Method::PATCH,
            &format!("/api/application/nodes/{node}"),
            &admin.key,
            &body,
        )
        .await
        .unwrap();
    r.assert_envelope(400, "ConfigurationNotPersistedException");
    let (name, memory): (String, i64) =
        sqlx::query_as("SELECT name, memory FROM nodes WHERE id = $1")
            .bind(node)
            .fetch_one(&p.db)
            .await
            .unwrap();
    assert_eq!((name.as_str(), memory), ("renamed", 4096));
}

#[tokio::test]
async fn allocations_are_added_listed_filtered_and_deleted() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (_, node) = p.node(&admin, closed_port()).await.unwrap();
    let path = format!("/api/application/nodes/{node}/allocations");
    // CIDR blocks expand; duplicates are ignored.
    let r = p
        .send(
            Method::POST,
            &path,
            &admin.key,
            &json!({"ip": "10.0.0.0/30", "alias": "lan", "ports": ["25565", "25570-25571"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.raw.is_empty());
    let r = p
        .send(
            Method::POST,
            &path,
            &admin.key,
            &json!({"ip": "10.0.0.1", "ports": ["25565"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = p
        .get(&format!("{path}?per_page=100"), &admin.key)
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 10 + 6);
    assert_shape(&r.json["data"][0]["attributes"], ALLOCATION_SHAPE);

    let r = p
        .get(
            &format!("{path}?filter[ip]=10.0.0.2&filter[port]=25571"),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 1);
    assert_eq!(r.json["data"][0]["attributes"]["alias"], "lan");
    assert_eq!(r.json["data"][0]["attributes"]["assigned"], false);

    // server_id: digits → that server; anything else → unassigned.
    let (_, egg) = p.egg().await.unwrap();
    let sid = p.seed_server(admin.id, node, egg, "s").await.unwrap();
    let r = p
        .get(
            &format!("{path}?filter[server_id]={sid}&include=server,node"),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 1);
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["server"]["attributes"]["id"],
        sid
    );
    assert_eq!(
        r.json["data"][0]["attributes"]["relationships"]["node"]["object"],
        "node"
    );
    let r = p
        .get(
            &format!("{path}?filter[server_id]=false&per_page=100"),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 15);

    // Upstream's port and CIDR rules.
    for (body, code) in [
        (
            json!({"ip": "10.0.0.9", "ports": ["80"]}),
            "PortOutOfRangeException",
        ),
        (
            json!({"ip": "10.0.0.9", "ports": ["2000-3500"]}),
            "TooManyPortsInRangeException",
        ),
        (
            json!({"ip": "10.0.0.9", "ports": ["25565-abc"]}),
            "InvalidPortMappingException",
        ),
        (
            json!({"ip": "10.0.0.0/16", "ports": ["25565"]}),
            "CidrOutOfRangeException",
        ),
    ] {
        p.send(Method::POST, &path, &admin.key, &body)
            .await
            .unwrap()
            .assert_envelope(400, code);
    }
    let r = p
        .send(
            Method::POST,
            &path,
            &admin.key,
            &json!({"ip": "10.0.0.9", "ports": [25565]}),
        )
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(r.json["errors"][0]["meta"]["source_field"], "ports.0");
    assert_eq!(
        r.json["errors"][0]["detail"],
        "The ports.0 must be a string."
    );

    // Assigned allocations cannot be deleted; free ones can; other nodes' are 404.
    let used: i64 = sqlx::query_scalar("SELECT allocation_id FROM servers WHERE id = $1")
        .bind(sid)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let r = p
        .call(p.req(Method::DELETE, &format!("{path}/{used}"), Some(&admin.key)))
        .await
        .unwrap();
    r.assert_envelope(400, "ServerUsingAllocationException");
    let free: i64 = sqlx::query_scalar(
        "SELECT id FROM allocations WHERE server_id IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_one(&p.db)
    .await
    .unwrap();
    assert_eq!(
        p.call(p.req(Method::DELETE, &format!("{path}/{free}"), Some(&admin.key)))
            .await
            .unwrap()
            .status,
        204
    );
    p.call(p.req(
        Method::DELETE,
        &format!("/api/application/nodes/{}/allocations/{used}", node + 1000),
        Some(&admin.key),
    ))
    .await
    .unwrap()
    .assert_envelope(404, "NotFoundHttpException");

    // A node with servers cannot be deleted.
    let r = p
        .call(p.req(
            Method::DELETE,
            &format!("/api/application/nodes/{node}"),
            Some(&admin.key),
        ))
        .await
        .unwrap();
    r.assert_envelope(400, "HasActiveServersException");
}

#[tokio::test]
async fn deployable_nodes_respect_capacity_and_locations() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (loc, node) = p.node(&admin, closed_port()).await.unwrap();
    let r = p
        .get(
            &format!(
                "/api/application/nodes/deployable?memory=1024&disk=1000&location_ids[]={loc}"
            ),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["data"][0]["attributes"]["id"], node);
    assert!(r.json.get("meta").is_none(), "unpaginated without page");
    let a = &r.json["data"][0]["attributes"];
    let keys: Vec<&String> = a.as_object().unwrap().keys().collect();
    let pos = |k: &str| keys.iter().position(|x| *x == k).unwrap();
    assert!(pos("updated_at") < pos("sum_memory") && pos("sum_disk") < pos("allocated_resources"));
    assert_eq!(a["sum_memory"], "0");
    let r = p
        .get(
            "/api/application/nodes/deployable?memory=1024&disk=1000&page=1",
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(r.json["meta"]["pagination"]["total"], 1);
    let r = p
        .get(
            "/api/application/nodes/deployable?memory=999999&disk=1",
            &admin.key,
        )
        .await
        .unwrap();
    r.assert_envelope(400, "NoViableNodeException");
    let r = p
        .get("/api/application/nodes/deployable?disk=1", &admin.key)
        .await
        .unwrap();
    r.assert_envelope(422, "ValidationException");
    assert_eq!(r.error_detail(), "The memory field is required.");
}
