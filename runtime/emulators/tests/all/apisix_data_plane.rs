//! The APISIX emulator's data plane: routing to upstreams, balancing, failover and readiness.

use serde_json::{Value, json};

use crate::apisix::{Gw, node};
use crate::common::{dead_port, echo_upstream, json_of};

#[tokio::test]
async fn data_plane_routes_to_upstreams() {
    let gw = Gw::new().await;
    let up_a = echo_upstream("a").await;
    let up_b = echo_upstream("b").await;

    let resp = gw.proxy(reqwest::Method::GET, "/ip").await;
    assert_eq!(
        json_of(resp).await,
        (404, json!({"error_msg": "404 Route Not Found"}))
    );

    gw.put(
        "/routes/ip",
        json!({"uri": "/ip", "methods": ["GET"], "upstream": {"nodes": [node(up_a.port())]}}),
    )
    .await;
    let resp = gw.proxy(reqwest::Method::GET, "/ip?x=1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["server"],
        "APISIX/3.12.0",
        "nginx hides the upstream's Server"
    );
    assert_eq!(resp.headers()["x-upstream"], "a");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["uri"], "/ip?x=1");
    assert_eq!(body["x_forwarded_for"], "127.0.0.1");
    assert_eq!(body["x_real_ip"], "127.0.0.1");
    assert_eq!(
        body["host"],
        format!("127.0.0.1:{}", gw.data.port()),
        "pass_host=pass keeps the client's Host"
    );
    assert_eq!(
        gw.proxy(reqwest::Method::POST, "/ip").await.status(),
        404,
        "methods filter"
    );

    // Prefix match through a service's upstream, with proxy-rewrite.
    gw.put(
        "/upstreams/ub",
        json!({"nodes": [node(up_b.port())], "pass_host": "node"}),
    )
    .await;
    gw.put("/services/svc", json!({"upstream_id": "ub"})).await;
    gw.put(
        "/routes/any",
        json!({"uri": "/anything/*", "service_id": "svc",
               "plugins": {"proxy-rewrite": {"uri": "/get", "headers": {"set": {"X-Custom": "yes"}}}}}),
    )
    .await;
    let body: Value = gw
        .proxy(reqwest::Method::GET, "/anything/deep/path?q=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["upstream"], "b");
    assert_eq!(body["uri"], "/get?q=2");
    assert_eq!(body["x_custom"], "yes");
    assert_eq!(
        body["host"],
        format!("127.0.0.1:{}", up_b.port()),
        "pass_host=node"
    );

    // Hosts restrict matching.
    gw.put(
        "/routes/hosted",
        json!({"uri": "/h", "hosts": ["api.example.com", "*.example.org"], "upstream": {"nodes": [node(up_a.port())]}}),
    )
    .await;
    let with_host = |h: &'static str| gw.http.get(gw.data.url("/h")).header("Host", h).send();
    assert_eq!(with_host("api.example.com").await.unwrap().status(), 200);
    assert_eq!(with_host("x.example.org").await.unwrap().status(), 200);
    assert_eq!(with_host("other.example.com").await.unwrap().status(), 404);

    // Disabled routes do not match.
    gw.call(
        reqwest::Method::PATCH,
        "/routes/ip",
        Some(json!({"status": 0})),
    )
    .await;
    assert_eq!(gw.proxy(reqwest::Method::GET, "/ip").await.status(), 404);
}

#[tokio::test]
async fn data_plane_balances_fails_over_and_reports_502() {
    let gw = Gw::new().await;
    let up_a = echo_upstream("a").await;
    let up_b = echo_upstream("b").await;
    gw.put(
        "/routes/rr",
        json!({"uri": "/rr", "upstream": {"nodes": [node(up_a.port()), node(up_b.port())]}}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = gw.proxy(reqwest::Method::GET, "/rr").await;
        seen.push(r.headers()["x-upstream"].to_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["a", "b", "a", "b"], "equal weights alternate");

    // A dead primary (higher priority) falls back to the lower-priority node.
    let dead = dead_port().await;
    gw.put(
        "/routes/fo",
        json!({"uri": "/fo", "upstream": {"nodes": [
            {"host": "127.0.0.1", "port": dead, "weight": 1, "priority": 10},
            {"host": "127.0.0.1", "port": up_b.port(), "weight": 1, "priority": 0}]}}),
    )
    .await;
    let r = gw.proxy(reqwest::Method::GET, "/fo").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "b");

    // Every node down: 502 with APISIX's error page.
    gw.put(
        "/routes/down",
        json!({"uri": "/down", "upstream": {"nodes": {format!("127.0.0.1:{dead}"): 1}}}),
    )
    .await;
    let r = gw.proxy(reqwest::Method::GET, "/down").await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("502 Bad Gateway"));
}

#[tokio::test]
async fn status_ready_follows_set_ready() {
    let gw = Gw::new().await;
    let resp = gw.proxy(reqwest::Method::GET, "/status/ready").await;
    assert_eq!(json_of(resp).await, (200, json!({"status": "ok"})));
    gw.apisix.set_ready(false);
    assert!(!gw.apisix.is_ready());
    let resp = gw.proxy(reqwest::Method::GET, "/status/ready").await;
    assert_eq!(
        json_of(resp).await,
        (
            503,
            json!({"status": "error", "error": "worker id: 0 has not received configuration"})
        )
    );
    assert_eq!(
        json_of(gw.proxy(reqwest::Method::GET, "/status").await).await,
        (200, json!({"status": "ok"}))
    );
    gw.apisix.set_ready(true);
    assert_eq!(
        gw.proxy(reqwest::Method::GET, "/status/ready")
            .await
            .status(),
        200
    );
}
