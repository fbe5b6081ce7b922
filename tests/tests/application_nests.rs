//! Nests and eggs (reference §6.10, §8.6–§8.8) and egg import in upstream's export
//! formats (PTDL_v1, PTDL_v2).

use ferrodactyl_tests::{assert_shape, Panel, EGG_SHAPE, EGG_VARIABLE_SHAPE, NEST_SHAPE};
use serde_json::json;

const PTDL_V1: &str = r#"{
    "_comment": "an old-style export",
    "meta": {"version": "PTDL_v1"},
    "name": "Legacy Egg", "author": "someone@example.com", "description": null,
    "image": "quay.io/example/legacy:latest",
    "startup": "./run",
    "config": {"files": "{\"server.properties\":{\"parser\":\"properties\",\"find\":{\"server-port\":\"{{server.build.default.port}}\"}}}",
               "startup": "{\"done\":\")! For help, type \"}", "logs": "{}", "stop": "stop"},
    "scripts": {"installation": {"script": "echo hi", "container": "debian:bookworm", "entrypoint": "bash"}},
    "variables": [{"name": "Version", "description": "Which version", "env_variable": "VERSION", "default_value": "latest",
                   "user_viewable": 1, "user_editable": 0, "rules": "required|string|max:20"}]
}"#;

#[tokio::test]
async fn nests_and_eggs_are_listed_with_upstreams_shapes() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let (nest, egg) = p.egg().await.unwrap();
    let r = p.get("/api/application/nests", &admin.key).await.unwrap();
    assert_eq!(r.status, 200);
    assert_shape(&r.json["data"][0]["attributes"], NEST_SHAPE);
    assert_eq!(r.json["meta"]["pagination"]["total"], 1);

    let r = p
        .get(
            &format!("/api/application/nests/{nest}?include=eggs,servers"),
            &admin.key,
        )
        .await
        .unwrap();
    assert_eq!(
        r.json["attributes"]["relationships"]["eggs"]["data"][0]["object"],
        "egg"
    );

    let r = p
        .get(&format!("/api/application/nests/{nest}/eggs"), &admin.key)
        .await
        .unwrap();
    assert!(
        r.json.get("meta").is_none(),
        "the egg list is not paginated"
    );
    let e = &r.json["data"][0]["attributes"];
    assert_shape(e, EGG_SHAPE);
    assert_eq!(e["docker_image"], "ferrodactyl/test-base:latest");
    assert_eq!(
        e["docker_images"],
        json!({"Busybox": "ferrodactyl/test-base:latest"})
    );
    assert_eq!(e["config"]["startup"], json!({"done": "Server is ready"}));
    assert_eq!(e["config"]["files"], json!({}));
    assert_eq!(
        e["config"]["logs"],
        json!([]),
        "an empty JSON object prints as []"
    );
    assert_eq!(e["config"]["stop"], "stop");
    assert_eq!(e["script"]["entry"], "sh");
    assert_eq!(
        e["config"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![
            "files",
            "startup",
            "stop",
            "logs",
            "file_denylist",
            "extends"
        ]
    );

    let r = p
        .get(
            &format!(
                "/api/application/nests/{nest}/eggs/{egg}?include=variables,nest,config,script"
            ),
            &admin.key,
        )
        .await
        .unwrap();
    let rel = &r.json["attributes"]["relationships"];
    assert_shape(
        &rel["variables"]["data"][0]["attributes"],
        EGG_VARIABLE_SHAPE,
    );
    assert!(rel["variables"]["data"][0]["attributes"]["created_at"]
        .as_str()
        .unwrap()
        .ends_with(".000000Z"));
    assert_eq!(rel["nest"]["attributes"]["id"], nest);
    assert_eq!(
        rel["config"],
        json!({"object": "null_resource", "attributes": null}),
        "only eggs that extend another"
    );
    // An egg of another nest is not found under this one.
    p.get(
        &format!("/api/application/nests/{}/eggs/{egg}", nest + 1),
        &admin.key,
    )
    .await
    .unwrap()
    .assert_envelope(404, "NotFoundHttpException");
    p.get("/api/application/nests/999", &admin.key)
        .await
        .unwrap()
        .assert_envelope(404, "NotFoundHttpException");
}

#[tokio::test]
async fn ptdl_v1_exports_import_with_their_images_and_variables() {
    let p = Panel::start().await.unwrap();
    let admin = p.admin().await.unwrap();
    let egg = panel_api::eggs::import(
        &p.db,
        panel_api::eggs::NestRef::Name("Legacy".into()),
        PTDL_V1,
    )
    .await
    .unwrap();
    let nest: i64 = sqlx::query_scalar("SELECT nest_id FROM eggs WHERE id = $1")
        .bind(egg)
        .fetch_one(&p.db)
        .await
        .unwrap();
    let r = p
        .get(
            &format!("/api/application/nests/{nest}/eggs/{egg}?include=variables"),
            &admin.key,
        )
        .await
        .unwrap();
    let e = &r.json["attributes"];
    assert_eq!(
        e["docker_images"],
        json!({"quay.io/example/legacy:latest": "quay.io/example/legacy:latest"})
    );
    assert_eq!(
        e["config"]["files"]["server.properties"]["parser"],
        "properties"
    );
    assert_eq!(e["script"]["container"], "debian:bookworm");
    let v = &e["relationships"]["variables"]["data"][0]["attributes"];
    assert_eq!(v["env_variable"], "VERSION");
    assert_eq!(v["user_viewable"], true);
    assert_eq!(v["user_editable"], false);
    assert_eq!(v["rules"], "required|string|max:20");
}

#[tokio::test]
async fn unknown_egg_formats_are_refused() {
    let p = Panel::start().await.unwrap();
    let err = panel_api::eggs::import(
        &p.db,
        panel_api::eggs::NestRef::Name("X".into()),
        r#"{"meta":{"version":"PTDL_v9"},"name":"x"}"#,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("PTDL_v1 or PTDL_v2"), "{err}");
    assert!(panel_api::eggs::import(
        &p.db,
        panel_api::eggs::NestRef::Name("X".into()),
        "not json"
    )
    .await
    .is_err());
    let eggs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM eggs")
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(eggs, 0);
}

#[tokio::test]
async fn the_openapi_document_lists_every_application_route() {
    let p = Panel::start().await.unwrap();
    let r = p
        .call(p.req(reqwest::Method::GET, "/openapi.json", None))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.json["paths"].as_object().unwrap();
    let count = |prefix: &str| -> usize {
        paths
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, p)| p.as_object().unwrap().len())
            .sum()
    };
    assert_eq!(
        count("/api/application/"),
        42 + 2,
        "one operation per Application API route, plus our transfer extension (POST, GET)"
    );
    assert_eq!(
        count("/api/client"),
        69,
        "one operation per Client API route"
    );
    assert!(
        paths.contains_key("/api/application/servers/{server}/databases/{database}/reset-password")
    );
    assert!(r.json["components"]["schemas"]["Server"].is_object());
}
