//! The API7 EE control-plane emulator (domain.md §1.6, §3).

use meridian_emulators::{Api7Config, Api7Cp, Api7Error};
use serde_json::{Value, json};

use crate::common::{Server, client, json_of};

const TOKEN: &str = "a7ee-test-token";

struct Cp {
    cp: Api7Cp,
    srv: Server,
    http: reqwest::Client,
}

impl Cp {
    async fn new() -> Cp {
        let cp = Api7Cp::new(Api7Config {
            token: TOKEN.into(),
            version: "3.8.5".into(),
        });
        let srv = Server::start(cp.router()).await;
        Cp {
            cp,
            srv,
            http: client(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, self.srv.url(path))
            .header("X-API-KEY", key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        json_of(r.send().await.expect("request")).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, TOKEN, None).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, TOKEN, Some(body))
            .await
    }
}

#[tokio::test]
async fn status_and_version_need_no_key_everything_else_does() {
    let cp = Cp::new().await;
    let resp = cp.http.get(cp.srv.url("/api/status")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = cp
        .http
        .get(cp.srv.url("/api/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(resp).await, (200, json!({"value": "3.8.5"})));

    let resp = cp
        .http
        .get(cp.srv.url("/api/gateway_groups"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, body) = cp
        .call(reqwest::Method::GET, "/api/gateway_groups", "wrong", None)
        .await;
    assert_eq!(status, 401);
    assert!(body["error_msg"].is_string());
}

#[tokio::test]
async fn gateway_groups_tokens_keys_and_instances() {
    let cp = Cp::new().await;
    let (status, list) = cp.get("/api/gateway_groups").await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["list"][0]["id"], "default");

    let (status, created) = cp
        .call(
            reqwest::Method::POST,
            "/api/gateway_groups",
            TOKEN,
            Some(json!({"name": "eu-west-1", "description": "EU", "labels": {"region": "eu"}})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let gid = created["value"]["id"].as_str().unwrap().to_owned();
    assert_eq!(gid.len(), 36);
    let (status, _) = cp
        .call(
            reqwest::Method::POST,
            "/api/gateway_groups",
            TOKEN,
            Some(json!({"name": "eu-west-1"})),
        )
        .await;
    assert_eq!(status, 400, "duplicate names are refused");

    // ADC resolves a group by name with ?search=.
    let (_, found) = cp.get("/api/gateway_groups?search=eu-west").await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["list"][0]["id"], json!(gid));
    assert_eq!(cp.get("/api/gateway_groups?name=eu").await.1["total"], 0);

    let (status, tok) = cp
        .call(
            reqwest::Method::POST,
            &format!("/api/gateway_groups/{gid}/instance_token"),
            TOKEN,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let token = tok["value"]["token_plain_text"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = cp
        .http
        .post(cp.srv.url(&format!(
            "/api/gateway_groups/{gid}/instance_token?only_token=true"
        )))
        .header("X-API-KEY", TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.starts_with("a7ee-") && !raw.contains('{'), "{raw}");

    assert_eq!(cp.cp.register_instance(&token, "dp-1"), Ok(gid.clone()));
    assert_eq!(
        cp.cp.register_instance("bogus", "dp-2"),
        Err(Api7Error::UnknownInstanceToken("bogus".into()))
    );
    let (_, inst) = cp
        .get(&format!("/api/gateway_groups/{gid}/instances"))
        .await;
    assert_eq!(inst["total"], 1);
    assert_eq!(inst["list"][0]["hostname"], "dp-1");

    let (status, key) = cp
        .call(
            reqwest::Method::PUT,
            &format!("/api/gateway_groups/{gid}/admin_key"),
            TOKEN,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let admin_key = key["value"]["key"].as_str().unwrap().to_owned();
    assert!(admin_key.starts_with("a7adm-"));

    // The group admin key reaches its group's resources without gateway_group_id ...
    let (status, body) = cp
        .call(
            reqwest::Method::GET,
            "/apisix/admin/services",
            &admin_key,
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"list": [], "total": 0})));
    // ... but not the control-plane API.
    let (status, _) = cp
        .call(
            reqwest::Method::GET,
            "/api/gateway_groups",
            &admin_key,
            None,
        )
        .await;
    assert_eq!(status, 403);

    assert_eq!(
        cp.get("/api/gateway_groups/nope").await,
        (404, json!({"error_msg": "gateway group not found"}))
    );
    assert_eq!(
        cp.call(
            reqwest::Method::DELETE,
            &format!("/api/gateway_groups/{gid}"),
            TOKEN,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(cp.cp.gateway_groups().len(), 1);
}

#[tokio::test]
async fn runtime_resources_are_scoped_defaulted_and_cascade() {
    let cp = Cp::new().await;
    let q = "?gateway_group_id=default";
    assert_eq!(
        cp.get("/apisix/admin/services").await,
        (400, json!({"error_msg": "gateway_group_id is required"}))
    );
    assert_eq!(
        cp.get("/apisix/admin/services?gateway_group_id=missing")
            .await
            .0,
        404
    );

    let (status, svc) = cp
        .put(
            &format!("/apisix/admin/services/s1{q}"),
            json!({"name": "httpbin", "labels": {"team": "a"},
                   "upstream": {"nodes": [{"host": "127.0.0.1", "port": 80, "weight": 1}]}}),
        )
        .await;
    assert_eq!(status, 200, "{svc}");
    let v = &svc["value"];
    assert_eq!(v["id"], "s1");
    assert_eq!(v["type"], "http");
    assert_eq!(v["upstream"]["type"], "roundrobin");
    assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);

    // The defaults filled are the ones /api/schema/core advertises.
    let (_, schema) = cp.get("/api/schema/core").await;
    assert_eq!(
        schema["value"]["service"]["properties"]["type"]["default"],
        "http"
    );
    assert_eq!(
        schema["value"]["service"]["properties"]["upstream"]["properties"]["scheme"]["default"],
        "http"
    );
    assert_eq!(
        schema["value"]["route"]["properties"]["priority"]["default"],
        0
    );

    let route = |sid: &str| json!({"name": "get-ip", "paths": ["/ip"], "service_id": sid, "methods": ["GET"]});
    assert_eq!(
        cp.put(&format!("/apisix/admin/routes/r1{q}"), route("nope"))
            .await,
        (400, json!({"error_msg": "service [nope] not found"}))
    );
    let (status, r) = cp
        .put(&format!("/apisix/admin/routes/r1{q}"), route("s1"))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["value"]["priority"], 0);
    let (status, _) = cp
        .put(
            &format!("/apisix/admin/routes/r2{q}"),
            json!({"name": "x", "uris": ["/ip"], "service_id": "s1"}),
        )
        .await;
    assert_eq!(status, 400, "API7 routes take `paths`");

    let (_, routes) = cp
        .get(&format!("/apisix/admin/routes{q}&service_id=s1"))
        .await;
    assert_eq!(routes["total"], 1);
    assert_eq!(routes["list"][0]["id"], "r1", "lists hold bare values");
    assert_eq!(
        cp.get(&format!("/apisix/admin/services{q}&labels[team]=a"))
            .await
            .1["total"],
        1
    );
    assert_eq!(
        cp.get(&format!("/apisix/admin/services{q}&labels[team]=b"))
            .await
            .1["total"],
        0
    );
    let (status, one) = cp.get(&format!("/apisix/admin/services/s1{q}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["value"]["name"], "httpbin");

    let (status, up) = cp
        .put(
            &format!("/apisix/admin/services/s1/upstreams/u1{q}"),
            json!({"name": "canary", "nodes": [{"host": "127.0.0.2", "port": 80, "weight": 1}]}),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        cp.get(&format!("/apisix/admin/services/s1/upstreams{q}"))
            .await
            .1["total"],
        1
    );

    // Deleting the service removes its routes and upstreams.
    assert_eq!(
        cp.call(
            reqwest::Method::DELETE,
            &format!("/apisix/admin/services/s1{q}"),
            TOKEN,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        cp.get(&format!("/apisix/admin/routes{q}")).await.1["total"],
        0
    );
    assert_eq!(
        cp.get(&format!("/apisix/admin/services/s1/upstreams{q}"))
            .await
            .1["total"],
        0
    );
    assert_eq!(
        cp.call(
            reqwest::Method::DELETE,
            &format!("/apisix/admin/services/s1{q}"),
            TOKEN,
            None
        )
        .await,
        (404, json!({"error_msg": "service not found"}))
    );
    assert!(
        cp.cp
            .request_log()
            .iter()
            .any(|(m, p)| m == "DELETE" && p == "/apisix/admin/services/s1")
    );
}

#[tokio::test]
async fn consumers_credentials_ssls_and_metadata() {
    let cp = Cp::new().await;
    let q = "?gateway_group_id=default";
    let cred = json!({"name": "primary", "plugins": {"key-auth": {"key": "k"}}});
    assert_eq!(
        cp.put(
            &format!("/apisix/admin/consumers/jack/credentials/c1{q}"),
            cred.clone()
        )
        .await,
        (404, json!({"error_msg": "consumer not found"}))
    );
    assert_eq!(
        cp.put(
            &format!("/apisix/admin/consumers/jack{q}"),
            json!({"username": "jack"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        cp.put(
            &format!("/apisix/admin/consumers/jack{q}"),
            json!({"username": "jill"})
        )
        .await,
        (400, json!({"error_msg": "wrong username"}))
    );
    assert_eq!(
        cp.put(
            &format!("/apisix/admin/consumers/jack/credentials/c1{q}"),
            cred
        )
        .await
        .0,
        200
    );
    let (_, creds) = cp
        .get(&format!("/apisix/admin/consumers/jack/credentials{q}"))
        .await;
    assert_eq!(creds["total"], 1);
    assert_eq!(creds["list"][0]["id"], "c1");

    let cert = "C".repeat(200);
    let (status, ssl) = cp
        .put(
            &format!("/apisix/admin/ssls/x{q}"),
            json!({"snis": ["a.example.com"], "cert": cert, "key": "secret-key-material"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(ssl["value"].get("key").is_none(), "keys are never returned");
    assert_eq!(ssl["value"]["type"], "server");

    cp.put(
        &format!("/apisix/admin/plugin_metadata/http-logger{q}"),
        json!({"log_format": {"a": "$b"}}),
    )
    .await;
    let (_, meta) = cp.get(&format!("/apisix/admin/plugin_metadata{q}")).await;
    assert_eq!(
        meta,
        json!({"value": {"http-logger": {"log_format": {"a": "$b"}}}})
    );

    let snap = cp.cp.snapshot();
    assert!(snap["default"]["consumers"]["jack"].is_object());
    assert!(snap["default"]["credentials"]["jack/c1"].is_object());
}
