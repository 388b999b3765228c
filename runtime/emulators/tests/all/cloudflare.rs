//! The Cloudflare Load Balancing emulator (domain.md §5).

use meridian_emulators::{Apisix, ApisixConfig, Cloudflare, CloudflareConfig};
use serde_json::{Value, json};

use crate::common::{Server, client, dead_port, echo_upstream, json_of};

struct Cf {
    cf: Cloudflare,
    srv: Server,
    http: reqwest::Client,
    account: String,
    zone: String,
    token: String,
}

impl Cf {
    async fn new() -> Cf {
        let cfg = CloudflareConfig::default();
        let cf = Cloudflare::new(cfg.clone());
        let srv = Server::start(cf.router()).await;
        Cf {
            cf,
            srv,
            http: client(),
            account: cfg.account_id,
            zone: cfg.zones[0].id.clone(),
            token: cfg.token,
        }
    }

    fn acct(&self, rest: &str) -> String {
        format!("/client/v4/accounts/{}/load_balancers{rest}", self.account)
    }

    fn zone(&self, rest: &str) -> String {
        format!("/client/v4/zones/{}/load_balancers{rest}", self.zone)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, self.srv.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        json_of(r.send().await.expect("request")).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["success"], true);
        v["result"].clone()
    }

    async fn monitor(&self, port: u16, path: &str) -> String {
        let m = self
            .post(
                &self.acct("/monitors"),
                json!({"type": "http", "method": "GET", "path": path, "port": port,
                       "expected_codes": "200", "interval": 60, "timeout": 2, "retries": 0}),
            )
            .await;
        m["id"].as_str().unwrap().to_owned()
    }

    async fn pool(&self, name: &str, address: &str, monitor: Option<&str>) -> String {
        let p = self
            .post(
                &self.acct("/pools"),
                json!({"name": name, "monitor": monitor, "check_regions": ["WEU"],
                       "origins": [{"name": format!("{name}-1"), "address": address}]}),
            )
            .await;
        p["id"].as_str().unwrap().to_owned()
    }

    async fn health(&self, pool: &str) -> Value {
        let (status, v) = self
            .call(
                reqwest::Method::GET,
                &self.acct(&format!("/pools/{pool}/health")),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["result"].clone()
    }
}

fn first_error(v: &Value) -> (u64, String) {
    (
        v["errors"][0]["code"].as_u64().unwrap(),
        v["errors"][0]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn auth_and_scope_errors_use_the_envelope() {
    let cf = Cf::new().await;
    let url = cf.srv.url(&cf.acct("/pools"));
    let (status, v) = json_of(cf.http.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(v["success"], false);
    assert_eq!(v["result"], Value::Null);
    assert_eq!(first_error(&v).0, 9106);
    let (status, v) = json_of(cf.http.get(&url).bearer_auth("nope").send().await.unwrap()).await;
    assert_eq!(
        (status, first_error(&v)),
        (403, (10000, "Authentication error".into()))
    );

    let other = "/client/v4/accounts/ffffffffffffffffffffffffffffffff/load_balancers/pools";
    let (status, v) = cf.call(reqwest::Method::GET, other, None).await;
    assert_eq!((status, first_error(&v).0), (403, 9109));
    let (status, v) = cf
        .call(reqwest::Method::GET, &cf.acct("/pools/not-an-id"), None)
        .await;
    assert_eq!((status, first_error(&v).0), (404, 7003));
    let (status, v) = cf
        .call(
            reqwest::Method::GET,
            &cf.acct("/pools/0123456789abcdef0123456789abcdef"),
            None,
        )
        .await;
    assert_eq!((status, first_error(&v).0), (404, 1001));
    let (status, v) = cf
        .call(reqwest::Method::GET, "/client/v4/nowhere", None)
        .await;
    assert_eq!((status, first_error(&v).0), (404, 7000));
}

#[tokio::test]
async fn monitors_crud_defaults_and_validation() {
    let cf = Cf::new().await;
    let m = cf
        .post(
            &cf.acct("/monitors"),
            json!({"type": "https", "path": "/status/ready", "port": 7085, "expected_codes": "200",
                   "header": {"Host": ["api.example.com"]}, "description": "apisix ready"}),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_owned();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(m["method"], "GET");
    assert_eq!(m["interval"], 60);
    assert_eq!(m["retries"], 2);
    assert_eq!(m["timeout"], 5);
    assert_eq!(m["follow_redirects"], false);
    assert!(m["created_on"].as_str().unwrap().ends_with('Z'));

    let (status, list) = cf
        .call(reqwest::Method::GET, &cf.acct("/monitors"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["result_info"]["count"], 1);
    assert_eq!(list["result_info"]["total_count"], 1);
    assert_eq!(list["result"][0]["id"], json!(id));

    let (status, patched) = cf
        .call(
            reqwest::Method::PATCH,
            &cf.acct(&format!("/monitors/{id}")),
            Some(json!({"interval": 30})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["result"]["interval"], 30);
    assert_eq!(
        patched["result"]["path"], "/status/ready",
        "PATCH keeps other fields"
    );
    assert_eq!(patched["result"]["created_on"], m["created_on"]);

    let (status, put) = cf
        .call(
            reqwest::Method::PUT,
            &cf.acct(&format!("/monitors/{id}")),
            Some(json!({"type": "tcp", "port": 5432})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(put["result"]["method"], "connection_established");
    assert!(put["result"].get("path").is_none(), "PUT replaces");

    let (status, v) = cf
        .call(
            reqwest::Method::POST,
            &cf.acct("/monitors"),
            Some(json!({"type": "http"})),
        )
        .await;
    assert_eq!(status, 400);
    let (code, msg) = first_error(&v);
    assert_eq!(code, 1002);
    assert!(msg.ends_with(": validation failed"), "{msg}");
    let (status, _) = cf
        .call(
            reqwest::Method::POST,
            &cf.acct("/monitors"),
            Some(json!({"type": "http", "expected_codes": "200", "timeout": 11})),
        )
        .await;
    assert_eq!(status, 400);

    let (status, del) = cf
        .call(
            reqwest::Method::DELETE,
            &cf.acct(&format!("/monitors/{id}")),
            None,
        )
        .await;
    assert_eq!((status, del["result"].clone()), (200, json!({"id": id})));
    let (status, _) = cf
        .call(
            reqwest::Method::GET,
            &cf.acct(&format!("/monitors/{id}")),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(cf.cf.request_log().len(), 6);
}

#[tokio::test]
async fn pools_and_load_balancers_validate_references() {
    let cf = Cf::new().await;
    let mon = cf.monitor(80, "/").await;
    let (status, v) = cf
        .call(
            reqwest::Method::POST,
            &cf.acct("/pools"),
            Some(json!({"name": "eu west", "origins": [{"name": "a", "address": "127.0.0.2"}]})),
        )
        .await;
    assert_eq!((status, first_error(&v).0), (400, 1002));
    let (status, v) = cf
        .call(
            reqwest::Method::POST,
            &cf.acct("/pools"),
            Some(json!({"name": "eu", "origins": []})),
        )
        .await;
    assert_eq!(
        (status, first_error(&v).1),
        (
            400,
            "the origin list length must be in range [1, 0]: validation failed".into()
        )
    );
    let (status, _) = cf
        .call(
            reqwest::Method::POST,
            &cf.acct("/pools"),
            Some(
                json!({"name": "eu", "monitor": "0123456789abcdef0123456789abcdef",
                        "origins": [{"name": "a", "address": "127.0.0.2"}]}),
            ),
        )
        .await;
    assert_eq!(status, 400, "unknown monitor");

    let eu = cf.pool("eu-west-1", "127.0.0.2", Some(&mon)).await;
    let us = cf.pool("us-east-1", "127.0.0.3", Some(&mon)).await;
    let (_, filtered) = cf
        .call(
            reqwest::Method::GET,
            &format!("{}?monitor={mon}", cf.acct("/pools")),
            None,
        )
        .await;
    assert_eq!(filtered["result"].as_array().unwrap().len(), 2);

    let lb_body = |name: &str| {
        json!({"name": name, "default_pools": [eu, us], "fallback_pool": us,
               "region_pools": {"WEU": [eu]}, "proxied": false})
    };
    let lb = cf
        .post(&cf.zone(""), lb_body("api.lab.meridian.test"))
        .await;
    assert_eq!(lb["ttl"], 30);
    assert_eq!(lb["steering_policy"], "off");
    assert_eq!(lb["session_affinity"], "none");
    assert_eq!(lb["enabled"], true);
    let (status, v) = cf
        .call(
            reqwest::Method::POST,
            &cf.zone(""),
            Some(lb_body("api.lab.meridian.test")),
        )
        .await;
    assert_eq!((status, first_error(&v).0), (400, 1003));
    let (status, v) = cf
        .call(
            reqwest::Method::POST,
            &cf.zone(""),
            Some(lb_body("api.other.example")),
        )
        .await;
    assert_eq!(status, 400);
    assert!(first_error(&v).1.starts_with("invalid hostname"));
    let (status, _) = cf
        .call(
            reqwest::Method::POST,
            &cf.zone(""),
            Some(json!({"name": "x.lab.meridian.test", "default_pools": ["0123456789abcdef0123456789abcdef"], "fallback_pool": us})),
        )
        .await;
    assert_eq!(status, 400, "unknown pool");

    let (status, v) = cf
        .call(
            reqwest::Method::DELETE,
            &cf.acct(&format!("/pools/{us}")),
            None,
        )
        .await;
    assert_eq!(
        (status, first_error(&v).0),
        (400, 1002),
        "pool used by a load balancer"
    );
    let (status, _) = cf
        .call(
            reqwest::Method::DELETE,
            &cf.acct(&format!("/monitors/{mon}")),
            None,
        )
        .await;
    assert_eq!(status, 400, "monitor used by pools");

    let lb_id = lb["id"].as_str().unwrap();
    let (status, got) = cf
        .call(reqwest::Method::GET, &cf.zone(&format!("/{lb_id}")), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["result"]["default_pools"], json!([eu, us]));
    let (status, _) = cf
        .call(
            reqwest::Method::DELETE,
            &cf.zone(&format!("/{lb_id}")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = cf
        .call(
            reqwest::Method::DELETE,
            &cf.acct(&format!("/pools/{us}")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(cf.cf.snapshot()["pools"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn marking_origins_unhealthy_fails_over() {
    let cf = Cf::new().await;
    let mon = cf.monitor(80, "/status/ready").await;
    let eu = cf.pool("eu", "127.0.0.2", Some(&mon)).await;
    let us = cf.pool("us", "127.0.0.3", Some(&mon)).await;
    let lb = cf
        .post(
            &cf.zone(""),
            json!({"name": "api.lab.meridian.test", "default_pools": [eu, us], "fallback_pool": us}),
        )
        .await;

    let h = cf.health(&eu).await;
    assert_eq!(h["pool_id"], json!(eu));
    assert_eq!(h["pop_health"]["WEU"]["healthy"], true);
    let r = cf.cf.resolve("api.lab.meridian.test.").unwrap();
    assert_eq!((r.pool_id.as_str(), r.fallback), (eu.as_str(), false));
    assert_eq!(r.load_balancer_id, lb["id"].as_str().unwrap());
    assert_eq!(r.addresses, ["127.0.0.2"]);

    cf.cf.set_origin_health("127.0.0.2", false);
    let h = cf.health(&eu).await;
    assert_eq!(h["pop_health"]["WEU"]["healthy"], false);
    assert_eq!(
        h["pop_health"]["WEU"]["origins"][0]["127.0.0.2"]["healthy"],
        false
    );
    assert_eq!(cf.cf.pool_healthy(&eu), Some(false));
    let r = cf.cf.resolve("api.lab.meridian.test").unwrap();
    assert_eq!((r.pool_name.as_str(), r.fallback), ("us", false));

    cf.cf.set_origin_health("127.0.0.3", false);
    let r = cf.cf.resolve("api.lab.meridian.test").unwrap();
    assert_eq!(
        (r.pool_id.as_str(), r.fallback),
        (us.as_str(), true),
        "fallback pool answers"
    );

    cf.cf.clear_origin_health("127.0.0.2");
    assert_eq!(cf.cf.resolve("api.lab.meridian.test").unwrap().pool_id, eu);
    assert!(cf.cf.resolve("unknown.lab.meridian.test").is_none());

    // A pool without a monitor has no health information.
    let bare = cf.pool("bare", "127.0.0.4", None).await;
    let (status, _) = cf
        .call(
            reqwest::Method::GET,
            &cf.acct(&format!("/pools/{bare}/health")),
            None,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn monitors_really_probe_origins() {
    let cf = Cf::new().await;
    // The origin is an emulated gateway's data plane; its /status/ready is the health target.
    let gw = Apisix::new(ApisixConfig::default());
    let dp = Server::start(gw.data_plane_router()).await;
    let mon = cf.monitor(dp.port(), "/status/ready").await;
    let pool = cf.pool("dp", "127.0.0.1", Some(&mon)).await;

    cf.cf.probe_now().await;
    let h = cf.health(&pool).await;
    let origin = &h["pop_health"]["WEU"]["origins"][0]["127.0.0.1"];
    assert_eq!(origin["healthy"], true, "{h}");
    assert_eq!(origin["response_code"], 200);

    gw.set_ready(false);
    cf.cf.probe_now().await;
    let h = cf.health(&pool).await;
    let origin = &h["pop_health"]["WEU"]["origins"][0]["127.0.0.1"];
    assert_eq!(origin["healthy"], false, "{h}");
    assert_eq!(origin["response_code"], 503);
    assert_eq!(h["pop_health"]["WEU"]["healthy"], false);

    // An origin nobody listens on is unhealthy with a connection failure.
    let dead = dead_port().await;
    let mon2 = cf.monitor(dead, "/").await;
    let pool2 = cf.pool("dead", "127.0.0.1", Some(&mon2)).await;
    cf.cf.probe_now().await;
    let h = cf.health(&pool2).await;
    let origin = &h["pop_health"]["WEU"]["origins"][0]["127.0.0.1"];
    assert_eq!(origin["healthy"], false);
    assert!(
        origin["failure_reason"]
            .as_str()
            .unwrap()
            .contains("TCP connection failed")
    );

    // expected_body is checked too.
    let up = echo_upstream("body").await;
    let m = cf
        .post(
            &cf.acct("/monitors"),
            json!({"type": "http", "port": up.port(), "expected_codes": "2xx",
                   "expected_body": "no-such-text", "timeout": 2, "retries": 0}),
        )
        .await;
    let pool3 = cf.pool("body", "127.0.0.1", m["id"].as_str()).await;
    cf.cf.probe_now().await;
    let h = cf.health(&pool3).await;
    assert_eq!(
        h["pop_health"]["WEU"]["origins"][0]["127.0.0.1"]["healthy"],
        false
    );
}
