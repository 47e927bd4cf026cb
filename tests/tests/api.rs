//! The admin API as a reference, end to end on a real peer: request bodies that name a
//! field their schema does not are refused (400, the field named, nothing written), and
//! `/v1/openapi.json` documents the routes the peer serves, behind the API's access rules.

use std::time::Duration;

use knit_tests::{Cluster, Peer, cluster_lock};

const LIMIT: Duration = Duration::from_secs(10);

/// POSTs `body` to `path`, which must be refused with 400: the API's error message.
fn refused(peer: &Peer, path: &str, body: &serde_json::Value) -> String {
    let error = peer
        .api_post(path, &body.to_string(), LIMIT)
        .expect_err("the API refuses the body");
    let text = format!("{error:#}");
    let (_, answer) = text
        .split_once("status 400: ")
        .unwrap_or_else(|| panic!("not a 400: {text}"));
    let answer: serde_json::Value = serde_json::from_str(answer.trim())
        .unwrap_or_else(|e| panic!("the answer is not the API's JSON error ({e}): {answer}"));
    answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"error\" in {answer}"))
        .to_owned()
}

fn service_names(peer: &Peer) -> Vec<String> {
    peer.services()
        .expect("service ls")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_misspelled_field_is_refused_and_nothing_is_written() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").expect("a peer");
    let peer = &cluster.peers[0];
    let spec = serde_json::json!({
        "name": "web",
        "driver": "process",
        "command": ["sleep", "600"],
    });

    // `"replica": 3` used to be dropped silently, leaving one replica.
    let mut body = spec.clone();
    body["replica"] = 3.into();
    let message = refused(peer, "/v1/services", &body);
    assert!(
        message.starts_with(r#"unknown field "replica" in the service spec"#),
        "{message}"
    );
    assert!(
        message.contains("mode") && message.contains("expected one of: name, driver, image,"),
        "{message}"
    );
    // So is a misspelling deep inside the spec.
    let mut body = spec.clone();
    body["ports"] = serde_json::json!([{"published": 18080, "target": 80, "proxy": true}]);
    let message = refused(peer, "/v1/services", &body);
    assert!(
        message.starts_with(r#"unknown field "proxy" in the service spec at ports[0]"#),
        "{message}"
    );
    // A wrong type says where it is.
    let mut body = spec.clone();
    body["mode"] = serde_json::json!({"replicated": {"replicas": "3"}});
    let message = refused(peer, "/v1/services", &body);
    assert!(
        message.starts_with("the service spec is not valid at mode.replicated.replicas"),
        "{message}"
    );
    assert!(
        service_names(peer).is_empty(),
        "a refused create wrote nothing"
    );

    // The same spec, spelled right, is taken.
    let mut body = spec.clone();
    body["mode"] = serde_json::json!({"replicated": {"replicas": 2}});
    let created: serde_json::Value = serde_json::from_str(
        &peer
            .api_post("/v1/services", &body.to_string(), LIMIT)
            .expect("a create"),
    )
    .expect("the stored spec");
    assert_eq!(created["mode"]["replicated"]["replicas"], 2);
    assert_eq!(service_names(peer), ["web"]);

    // An update is checked the same way, its spec included, and changes nothing.
    let version = created["version"].as_u64().expect("a version");
    let mut update = serde_json::json!({"spec": created.clone(), "from_version": version});
    update["spec"]["env"] = serde_json::json!({"A": "1"});
    update["spec"]["helth"] = serde_json::json!({"probe": {"command": ["true"]}});
    let message = refused(peer, "/v1/services/web", &update);
    assert!(
        message.starts_with(
            r#"unknown field "helth" in the update request at spec (did you mean "health"?)"#
        ),
        "{message}"
    );
    let stored = peer.spec("web").expect("inspect").expect("the service");
    assert_eq!(stored["version"].as_u64(), Some(version));
    assert_eq!(stored["env"], serde_json::json!({}));

    // Other bodies too: a node's spec, the cluster's limits.
    let message = refused(
        peer,
        "/v1/nodes/p0/spec",
        &serde_json::json!({"availability": "drain", "lables": {}}),
    );
    assert!(
        message.starts_with(r#"unknown field "lables" in the node spec"#),
        "{message}"
    );
    let message = refused(
        peer,
        "/v1/cluster/limits",
        &serde_json::json!({"replicas_max": 10, "slot_max": 20}),
    );
    assert!(
        message.starts_with(r#"unknown field "slot_max" in the cluster limits"#),
        "{message}"
    );
    let node: serde_json::Value =
        serde_json::from_str(&peer.api_get("/v1/nodes/p0", LIMIT).expect("the node"))
            .expect("JSON");
    assert_eq!(
        node["availability"], "active",
        "a refused node update wrote nothing"
    );
}

#[test]
fn the_openapi_document_describes_what_the_peer_serves() {
    let _lock = cluster_lock();
    let cluster = Cluster::start(1, "fast").expect("a peer");
    let peer = &cluster.peers[0];

    let text = peer
        .api_get("/v1/openapi.json", LIMIT)
        .expect("the document");
    let document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let version = document["openapi"].as_str().expect("an OpenAPI version");
    assert!(version.starts_with("3."), "OpenAPI {version}");
    let create = &document["paths"]["/v1/services"]["post"];
    assert!(create.is_object(), "POST /v1/services is documented");
    assert!(create["requestBody"].is_object());
    assert!(document["components"]["schemas"]["ServiceSpec"]["properties"]["mode"].is_object());

    // Every documented GET without parameters answers (the event stream never ends).
    let paths = document["paths"].as_object().expect("paths");
    let mut fetched = 0;
    for (path, item) in paths {
        if item.get("get").is_none() || path.contains('{') || path == "/v1/events" {
            continue;
        }
        peer.api_get(path, LIMIT)
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
        fetched += 1;
    }
    assert!(fetched >= 5, "only {fetched} documented GETs");

    // The document is behind the API's access rules: another Host is refused.
    let socket = peer.api.to_str().expect("a UTF-8 path");
    let status = knit_tests::curl_status(&[
        "--unix-socket",
        socket,
        "-H",
        "Host: evil.example",
        "http://localhost/v1/openapi.json",
    ])
    .expect("curl runs");
    assert_eq!(status, "403");
}
