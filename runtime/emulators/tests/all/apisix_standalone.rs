//! The APISIX emulator's API-driven standalone flavour (domain.md §1.7).

use meridian_emulators::{ApisixConfig, ApisixFlavor};
use serde_json::{Value, json};

use crate::apisix::{Gw, KEY};
use crate::common::echo_upstream;

#[tokio::test]
async fn standalone_configs_replace_whole_configuration() {
    let gw = Gw::start(ApisixConfig {
        api_key: KEY.into(),
        backend: ApisixFlavor::Standalone,
        ..ApisixConfig::default()
    })
    .await;
    let up = echo_upstream("sa").await;

    let (status, empty) = gw.get("/configs").await;
    assert_eq!(status, 200);
    assert_eq!(empty["routes_conf_version"], 0);
    assert_eq!(empty["consumers_conf_version"], 0);
    assert!(empty.get("routes").is_none());

    let config1 = json!({"routes": [{"id": "r1", "uri": "/r1",
        "upstream": {"nodes": {format!("127.0.0.1:{}", up.port()): 1}, "type": "roundrobin"}}]});
    let resp = gw
        .req(reqwest::Method::PUT, "/configs")
        .header("X-Digest", "d1")
        .json(&config1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    let resp = gw
        .req(reqwest::Method::GET, "/configs")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-last-modified").is_some());
    assert_eq!(resp.headers()["x-digest"], "d1");
    let dump: Value = resp.json().await.unwrap();
    assert_eq!(dump["routes_conf_version"], 1);
    assert_eq!(dump["ssls_conf_version"], 1);
    assert_eq!(
        dump["routes"], config1["routes"],
        "standalone returns exactly what was pushed"
    );
    assert_eq!(gw.proxy(reqwest::Method::GET, "/r1").await.status(), 200);

    // Same digest: skipped entirely.
    let resp = gw
        .req(reqwest::Method::PUT, "/configs")
        .header("X-Digest", "d1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(gw.get("/configs").await.1["routes_conf_version"], 1);

    // Only routes_conf_version given: routes jump to it, the rest bump by one.
    let resp = gw
        .req(reqwest::Method::PUT, "/configs")
        .json(&json!({"routes_conf_version": 15}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (_, dump) = gw.get("/configs").await;
    assert_eq!(dump["routes_conf_version"], 15);
    assert_eq!(dump["services_conf_version"], 2);
    assert_eq!(
        gw.proxy(reqwest::Method::GET, "/r1").await.status(),
        404,
        "routes replaced by none"
    );

    assert_eq!(
        gw.put("/configs", json!({"routes_conf_version": 3})).await,
        (
            400,
            json!({"error_msg": "routes_conf_version must be greater than or equal to (15)"})
        )
    );
    assert_eq!(
        gw.put("/configs", json!({"routes_conf_version": "abc"}))
            .await,
        (
            400,
            json!({"error_msg": "routes_conf_version must be a number"})
        )
    );
    assert_eq!(
        gw.put(
            "/configs",
            json!({"routes": [{"id": "r1", "uri": 123, "upstream": {"nodes": {"a:1": 1}}}]})
        )
        .await,
        (
            400,
            json!({"error_msg": "invalid routes at index 0, err: property \"uri\" validation failed: wrong type: expected string, got number"})
        )
    );
    assert_eq!(
        gw.call(reqwest::Method::PUT, "/configs", None).await,
        (
            400,
            json!({"error_msg": "invalid request body: empty request body"})
        )
    );
    // Consumers carry their credentials as `<username>/credentials/<id>` items.
    let resp = gw
        .req(reqwest::Method::PUT, "/configs")
        .json(&json!({"consumers": [
            {"username": "john"},
            {"id": "john/credentials/a", "plugins": {"key-auth": {"key": "auth-a"}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let snap = gw.apisix.snapshot();
    assert!(snap["consumers"]["john"].is_object(), "{snap}");
    assert_eq!(
        snap["credentials"]["john/credentials/a"]["plugins"]["key-auth"]["key"],
        "auth-a"
    );

    // The per-resource endpoints do not exist in this mode.
    assert_eq!(gw.get("/routes").await.0, 404);

    // YAML in and out.
    let resp = gw
        .req(reqwest::Method::PUT, "/configs")
        .header("Content-Type", "application/yaml")
        .body("routes:\n  - id: y1\n    uri: /y1\n    upstream:\n      nodes:\n        \"127.0.0.1:1\": 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = gw
        .req(reqwest::Method::GET, "/configs")
        .header("Accept", "application/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("id: y1") && !text.starts_with("---"),
        "{text}"
    );
}

#[tokio::test]
async fn standalone_keeps_items_whose_modified_index_did_not_move() {
    let gw = Gw::start(ApisixConfig {
        api_key: KEY.into(),
        backend: ApisixFlavor::Standalone,
        ..ApisixConfig::default()
    })
    .await;
    let up = echo_upstream("mi").await;
    let nodes = json!({format!("127.0.0.1:{}", up.port()): 1});
    let c1 = json!({"routes": [{"id": "r1", "uri": "/r1", "modifiedIndex": 1, "upstream": {"nodes": nodes}}]});
    let mut c2 = c1.clone();
    c2["routes"][0]["uri"] = json!("/r2");
    let mut c3 = c2.clone();
    c3["routes"][0]["modifiedIndex"] = json!(2);

    for (cfg, r1, r2) in [(c1, 200, 404), (c2, 200, 404), (c3, 404, 200)] {
        let resp = gw
            .req(reqwest::Method::PUT, "/configs")
            .json(&cfg)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        assert_eq!(gw.proxy(reqwest::Method::GET, "/r1").await.status(), r1);
        assert_eq!(gw.proxy(reqwest::Method::GET, "/r2").await.status(), r2);
    }
}
