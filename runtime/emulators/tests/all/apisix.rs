//! The APISIX emulator: the test gateway [`Gw`] shared with `apisix_data_plane` and
//! `apisix_standalone`, and the Admin API semantics (domain.md §1.5, §2).

use meridian_emulators::{Apisix, ApisixConfig};
use serde_json::{Value, json};

use crate::common::{Server, client, json_of};

pub(crate) const KEY: &str = "test-admin-key";

pub(crate) struct Gw {
    pub(crate) apisix: Apisix,
    admin: Server,
    pub(crate) data: Server,
    pub(crate) http: reqwest::Client,
}

impl Gw {
    pub(crate) async fn start(cfg: ApisixConfig) -> Gw {
        let apisix = Apisix::new(cfg);
        let admin = Server::start(apisix.admin_router()).await;
        let data = Server::start(apisix.data_plane_router()).await;
        Gw {
            apisix,
            admin,
            data,
            http: client(),
        }
    }

    pub(crate) async fn new() -> Gw {
        Gw::start(ApisixConfig {
            api_key: KEY.into(),
            ..ApisixConfig::default()
        })
        .await
    }

    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.admin.url(&format!("/apisix/admin{path}")))
            .header("X-API-KEY", KEY)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        json_of(r.send().await.expect("admin request")).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub(crate) async fn proxy(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.http
            .request(method, self.data.url(path))
            .send()
            .await
            .expect("data-plane request")
    }
}

pub(crate) fn node(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port, "weight": 1})
}

#[tokio::test]
async fn auth_is_required_and_reported_like_apisix() {
    let gw = Gw::new().await;
    let url = gw.admin.url("/apisix/admin/routes");

    let resp = gw.http.get(&url).send().await.unwrap();
    assert_eq!(resp.headers()["server"], "APISIX/3.12.0");
    assert_eq!(
        json_of(resp).await,
        (
            401,
            json!({"error_msg": "failed to check token", "description": "missing apikey"})
        )
    );
    let resp = gw
        .http
        .get(&url)
        .header("X-API-KEY", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(resp).await.1["description"], "wrong apikey");

    // The query argument and the cookie work too.
    let resp = gw
        .http
        .get(format!("{url}?api_key={KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = gw
        .http
        .get(&url)
        .header("Cookie", format!("X-API-KEY={KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // ADC's standalone ping: HEAD /apisix/admin needs no key.
    let resp = gw
        .http
        .head(gw.admin.url("/apisix/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn put_creates_then_replaces_with_defaults_and_timestamps() {
    let gw = Gw::new().await;
    let route = json!({"uri": "/ip", "upstream": {"nodes": [node(1980)]}});

    let (status, body) = gw.put("/routes/r1", route.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], "/apisix/routes/r1");
    assert!(
        body.get("createdIndex").is_none(),
        "PUT answers {{key, value}} only"
    );
    let v = &body["value"];
    assert_eq!(v["id"], "r1");
    assert_eq!(v["priority"], 0);
    assert_eq!(v["status"], 1);
    assert_eq!(v["upstream"]["type"], "roundrobin");
    assert_eq!(v["upstream"]["scheme"], "http");
    assert_eq!(v["upstream"]["pass_host"], "pass");
    assert_eq!(v["upstream"]["hash_on"], "vars");
    assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);
    let created = v["create_time"].as_i64().unwrap();
    assert!(created > 1_700_000_000);
    assert!(v["update_time"].as_i64().unwrap() >= created);
    assert_ne!(
        v, &route,
        "read-back differs from what was written: the spurious-diff trap"
    );

    let (_, first) = gw.get("/routes/r1").await;
    assert_eq!(first["key"], "/apisix/routes/r1");
    assert_eq!(first["value"], *v);
    let first_mod = first["modifiedIndex"].as_u64().unwrap();
    assert_eq!(first["createdIndex"].as_u64().unwrap(), first_mod);

    let (status, body) = gw.put("/routes/r1", route).await;
    assert_eq!(status, 200, "replacing answers 200");
    assert_eq!(body["value"]["create_time"].as_i64().unwrap(), created);
    let (_, second) = gw.get("/routes/r1").await;
    assert_eq!(second["createdIndex"], first["createdIndex"]);
    assert!(second["modifiedIndex"].as_u64().unwrap() > first_mod);

    // The id may come from the body instead of the path, but must agree with it.
    let (status, _) = gw
        .put(
            "/routes",
            json!({"id": "r2", "uri": "/b", "upstream": {"nodes": [node(1)]}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = gw
        .put(
            "/routes/r3",
            json!({"id": "other", "uri": "/b", "upstream": {"nodes": [node(1)]}}),
        )
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"error_msg": "wrong route id"}))
    );
    let (status, body) = gw.put("/routes", json!({"uri": "/b", "plugins": {}})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error_msg": "missing route id"}))
    );
}

#[tokio::test]
async fn list_get_delete_and_not_found_shapes() {
    let gw = Gw::new().await;
    let (_, empty) = gw.get("/routes").await;
    assert_eq!(empty, json!({"total": 0, "list": []}));
    for id in ["a", "b"] {
        gw.put(
            &format!("/routes/{id}"),
            json!({"uri": format!("/{id}"), "upstream": {"nodes": [node(1)]}}),
        )
        .await;
    }
    let (status, list) = gw.get("/routes").await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 2);
    let items = list["list"].as_array().unwrap();
    assert_eq!(items[0]["key"], "/apisix/routes/a");
    assert_eq!(items[1]["value"]["uri"], "/b");
    assert!(items[0]["createdIndex"].is_u64() && items[0]["modifiedIndex"].is_u64());

    assert_eq!(
        gw.get("/routes/zzz").await,
        (404, json!({"message": "Key not found"}))
    );
    assert_eq!(
        gw.delete("/routes/a").await,
        (200, json!({"deleted": "1", "key": "/apisix/routes/a"}))
    );
    assert_eq!(
        gw.delete("/routes/a").await,
        (404, json!({"message": "Key not found"}))
    );
    assert_eq!(gw.get("/routes").await.1["total"], 1);
    assert_eq!(
        gw.delete("/routes").await,
        (400, json!({"error_msg": "missing route id"}))
    );
}

#[tokio::test]
async fn post_generates_ids_and_refuses_given_ones() {
    let gw = Gw::new().await;
    let (status, body) = gw
        .call(
            reqwest::Method::POST,
            "/upstreams",
            Some(json!({"nodes": {"127.0.0.1:80": 1}})),
        )
        .await;
    assert_eq!(status, 201);
    let id = body["value"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20);
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(body["key"], format!("/apisix/upstreams/{id}"));
    assert_eq!(gw.get(&format!("/upstreams/{id}")).await.0, 200);

    let (status, body) = gw
        .call(
            reqwest::Method::POST,
            "/upstreams",
            Some(json!({"id": "x", "nodes": {"127.0.0.1:80": 1}})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error_msg": "wrong upstream id, do not need it"})
        )
    );
    let (status, body) = gw
        .call(
            reqwest::Method::POST,
            "/consumers",
            Some(json!({"username": "jack"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            405,
            json!({"error_msg": "not supported `POST` method for consumer"})
        )
    );
}

#[tokio::test]
async fn patch_merges_deletes_nulls_replaces_arrays_and_sub_paths() {
    let gw = Gw::new().await;
    gw.put(
        "/routes/1",
        json!({"uri": "/p", "methods": ["GET", "POST"], "desc": "d", "labels": {"a": "1"},
               "upstream": {"nodes": {"127.0.0.1:80": 1}}}),
    )
    .await;
    let (status, body) = gw
        .call(
            reqwest::Method::PATCH,
            "/routes/1",
            Some(json!({"methods": ["PUT"], "desc": null, "labels": {"b": "2"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let v = &body["value"];
    assert_eq!(v["methods"], json!(["PUT"]));
    assert!(v.get("desc").is_none());
    assert_eq!(v["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(v["uri"], "/p");

    let (status, body) = gw
        .call(
            reqwest::Method::PATCH,
            "/routes/1/upstream/nodes",
            Some(json!({"127.0.0.1:81": 2})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["value"]["upstream"]["nodes"],
        json!({"127.0.0.1:81": 2})
    );

    assert_eq!(
        gw.call(
            reqwest::Method::PATCH,
            "/routes/none",
            Some(json!({"uri": "/x"}))
        )
        .await,
        (404, json!({"message": "Key not found"}))
    );
    // A PATCH that breaks the schema is refused and changes nothing.
    let (status, _) = gw
        .call(reqwest::Method::PATCH, "/routes/1", Some(json!({"uri": 5})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(gw.get("/routes/1").await.1["value"]["uri"], "/p");
}

#[tokio::test]
async fn validation_errors_are_400_with_error_msg() {
    let gw = Gw::new().await;
    let cases = [
        (
            "/routes/1",
            json!({"upstream_id": "u"}),
            "invalid configuration: allOf 1 failed: value should match only one schema, but matches none",
        ),
        (
            "/upstreams/1",
            json!({"type": "roundrobin"}),
            "invalid configuration: value should match only one schema, but matches none",
        ),
        (
            "/routes/1",
            json!({"uri": "/x", "upstream_id": "missing"}),
            "failed to fetch upstream info by upstream id [missing], response code: 404",
        ),
        (
            "/routes/1",
            json!({"uri": "/x", "service_id": "missing"}),
            "failed to fetch service info by service id [missing], response code: 404",
        ),
        (
            "/routes/1",
            json!({"uri": "/x", "plugins": {}, "create_time": 1}),
            "the property is forbidden:  create_time",
        ),
        (
            "/routes/1",
            json!({"uri": "/x", "plugins": {"no-such-plugin": {}}}),
            "unknown plugin [no-such-plugin]",
        ),
        (
            "/upstreams/1",
            json!({"nodes": {"a:1": 1}, "type": "chash"}),
            "missing key",
        ),
        (
            "/global_rules/1",
            json!({}),
            "invalid configuration: property \"plugins\" is required",
        ),
        (
            "/plugin_metadata/not-a-plugin",
            json!({"x": 1}),
            "invalid plugin name",
        ),
    ];
    for (path, body, msg) in cases {
        let (status, got) = gw.put(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}");
        assert_eq!(got["error_msg"], msg, "{path} {body}");
    }

    let (status, body) = gw.get("/foo").await;
    assert_eq!(
        (status, body),
        (404, json!({"error_msg": "Unsupported resource type: foo"}))
    );

    let resp = gw
        .req(reqwest::Method::PUT, "/routes/1")
        .body("{abcd")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 400);
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap()
            .starts_with("invalid request body")
    );
    assert_eq!(body["req_body"], "{abcd");

    let (status, body) = gw.call(reqwest::Method::PUT, "/routes/1", None).await;
    assert_eq!(
        (status, body),
        (400, json!({"error_msg": "missing configurations"}))
    );
    assert!(
        gw.apisix.snapshot()["routes"]
            .as_object()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn referenced_resources_cannot_be_deleted_without_force() {
    let gw = Gw::new().await;
    gw.put("/upstreams/u1", json!({"nodes": {"127.0.0.1:80": 1}}))
        .await;
    gw.put("/services/s1", json!({"upstream_id": "u1"})).await;
    gw.put("/routes/r1", json!({"uri": "/x", "service_id": "s1"}))
        .await;

    assert_eq!(
        gw.delete("/upstreams/u1").await,
        (
            400,
            json!({"error_msg": "can not delete this upstream, service [s1] is still using it now"})
        )
    );
    assert_eq!(
        gw.delete("/services/s1").await,
        (
            400,
            json!({"error_msg": "can not delete this service directly, route [r1] is still using it now"})
        )
    );
    assert_eq!(gw.delete("/services/s1?force=true").await.0, 200);
    // Deleting in dependency order works without force (ADC's ordering).
    gw.delete("/routes/r1").await;
    assert_eq!(gw.delete("/upstreams/u1").await.0, 200);
}

#[tokio::test]
async fn consumers_and_credentials() {
    let gw = Gw::new().await;
    let (status, body) = gw
        .put("/consumers", json!({"username": "jack", "desc": "d"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], "/apisix/consumers/jack");
    assert!(
        body["value"].get("id").is_none(),
        "consumers are keyed by username"
    );
    assert_eq!(
        gw.put("/consumers/jack", json!({"username": "jack"}))
            .await
            .0,
        200
    );
    assert_eq!(
        gw.put("/consumers/jill", json!({"username": "jack"})).await,
        (400, json!({"error_msg": "wrong username"}))
    );

    let cred = json!({"plugins": {"key-auth": {"key": "secret"}}});
    assert_eq!(
        gw.put("/consumers/nobody/credentials/c1", cred.clone())
            .await,
        (404, json!({"error_msg": "consumer not found"}))
    );
    let (status, body) = gw.put("/consumers/jack/credentials/c1", cred.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"], "/apisix/consumers/jack/credentials/c1");
    assert_eq!(body["value"]["id"], "c1");
    let (status, body) = gw
        .put(
            "/consumers/jack/credentials/c2",
            json!({"plugins": {"limit-count": {"count": 1}}}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error_msg": "only supports auth type plugins in consumer credential"})
        )
    );
    assert_eq!(
        gw.call(
            reqwest::Method::PATCH,
            "/consumers/jack/credentials/c1",
            Some(cred)
        )
        .await
        .0,
        405
    );

    let (_, creds) = gw.get("/consumers/jack/credentials").await;
    assert_eq!(creds["total"], 1);
    assert_eq!(
        creds["list"][0]["value"]["plugins"]["key-auth"]["key"],
        "secret"
    );
    let (_, consumers) = gw.get("/consumers").await;
    assert_eq!(
        consumers["total"], 1,
        "credentials are not listed as consumers"
    );

    assert_eq!(gw.delete("/consumers/jack").await.0, 200);
    assert_eq!(gw.get("/consumers/jack/credentials").await.1["total"], 0);
}

#[tokio::test]
async fn stream_routes_need_stream_mode() {
    let gw = Gw::new().await;
    let (status, body) = gw.get("/stream_routes").await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error_msg": "stream mode is disabled, can not add stream routes"})
        )
    );

    let gw = Gw::start(ApisixConfig {
        api_key: KEY.into(),
        stream_mode: true,
        ..ApisixConfig::default()
    })
    .await;
    let (status, body) = gw
        .put(
            "/stream_routes/s1",
            json!({"server_port": 9100, "upstream": {"nodes": {"127.0.0.1:5432": 1}, "scheme": "tcp"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(gw.get("/stream_routes").await.1["total"], 1);
}

#[tokio::test]
async fn global_rules_plugin_metadata_and_ssl_keys() {
    let gw = Gw::new().await;
    let (status, body) = gw
        .put(
            "/global_rules/prometheus",
            json!({"plugins": {"prometheus": {}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        gw.call(
            reqwest::Method::POST,
            "/global_rules",
            Some(json!({"plugins": {"prometheus": {}}}))
        )
        .await
        .0,
        405
    );
    // Deleting a missing global rule is a 404 (ADC clients must treat it as success).
    assert_eq!(gw.delete("/global_rules/nope").await.0, 404);

    let (status, body) = gw
        .put(
            "/plugin_metadata/http-logger",
            json!({"log_format": {"host": "$host"}}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["key"], "/apisix/plugin_metadata/http-logger");
    assert_eq!(body["value"]["id"], "http-logger");
    assert!(
        body["value"].get("create_time").is_none(),
        "plugin metadata has no timestamps"
    );

    let cert = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
        "A".repeat(150)
    );
    let key = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
        "B".repeat(60)
    );
    let (status, body) = gw
        .put(
            "/ssls/s1",
            json!({"snis": ["a.example.com"], "cert": cert, "key": key}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["value"]["type"], "server");
    assert_ne!(
        body["value"]["key"],
        json!(key),
        "keys are stored encrypted"
    );
    let (_, one) = gw.get("/ssls/s1").await;
    assert!(
        one["value"].get("key").is_none(),
        "a single SSL never returns its key"
    );
    assert_eq!(one["value"]["cert"], json!(cert));
    let (_, list) = gw.get("/ssls").await;
    assert_ne!(list["list"][0]["value"]["key"], json!(key));
}

#[tokio::test]
async fn list_filters_and_pagination() {
    let gw = Gw::new().await;
    for i in 0..12 {
        gw.put(
            &format!("/routes/r{i:02}"),
            json!({"uri": format!("/p{i}"), "name": format!("route-{i}"), "plugins": {},
                   "labels": if i % 2 == 0 { json!({"team": "a"}) } else { json!({"team": "b"}) }}),
        )
        .await;
    }
    let (_, page1) = gw.get("/routes?page=1&page_size=10").await;
    assert_eq!(page1["total"], 12);
    assert_eq!(page1["list"].as_array().unwrap().len(), 10);
    let (_, page2) = gw.get("/routes?page=2&page_size=10").await;
    assert_eq!(page2["list"].as_array().unwrap().len(), 2);
    assert_eq!(page2["list"][1]["value"]["id"], "r11");

    let resp = gw
        .req(reqwest::Method::GET, "/routes?page=1&page_size=5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        "page_size must be between 10 and 500"
    );

    assert_eq!(
        gw.get("/routes?name=route-1").await.1["total"],
        3,
        "route-1, -10, -11"
    );
    assert_eq!(gw.get("/routes?label=team:a").await.1["total"], 6);
    assert_eq!(gw.get("/routes?uri=/p3").await.1["total"], 1);
}

#[tokio::test]
async fn request_log_snapshot_and_server_header() {
    let gw = Gw::start(ApisixConfig {
        api_key: KEY.into(),
        version: "3.9.1".into(),
        ..ApisixConfig::default()
    })
    .await;
    let resp = gw
        .req(reqwest::Method::GET, "/routes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["server"], "APISIX/3.9.1");
    assert_eq!(resp.headers()["x-api-version"], "v3");
    gw.put("/upstreams/u", json!({"nodes": {"127.0.0.1:1": 1}}))
        .await;
    gw.delete("/upstreams/nope").await;
    assert_eq!(
        gw.apisix.request_log(),
        vec![
            ("PUT".to_owned(), "/apisix/admin/upstreams/u".to_owned()),
            (
                "DELETE".to_owned(),
                "/apisix/admin/upstreams/nope".to_owned()
            ),
        ]
    );
    let snap = gw.apisix.snapshot();
    assert_eq!(snap["upstreams"]["u"]["type"], "roundrobin");
    assert!(snap["routes"].as_object().unwrap().is_empty());
    gw.apisix.clear_request_log();
    assert!(gw.apisix.request_log().is_empty());

    // The data plane reports the same server, even on 404.
    let resp = gw.proxy(reqwest::Method::GET, "/nothing").await;
    assert_eq!(resp.headers()["server"], "APISIX/3.9.1");
}
