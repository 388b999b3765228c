//! Tests of [`check`](super::check) across the resource families.

use serde_json::json;

use super::*;

fn run(kind: Kind, mut v: Value) -> Result<Value, CheckError> {
    check(kind, &mut v, &Ctx { store: None })?;
    Ok(v)
}

#[test]
fn route_gets_defaults_including_inline_upstream() {
    let v = run(
        Kind::Routes,
        json!({"uri": "/a", "upstream": {"nodes": [{"host": "127.0.0.1", "port": 80, "weight": 1}]}}),
    )
    .unwrap();
    assert_eq!(v["priority"], 0);
    assert_eq!(v["status"], 1);
    assert_eq!(v["upstream"]["type"], "roundrobin");
    assert_eq!(v["upstream"]["scheme"], "http");
    assert_eq!(v["upstream"]["pass_host"], "pass");
    assert_eq!(v["upstream"]["hash_on"], "vars");
    assert_eq!(v["upstream"]["nodes"][0]["priority"], 0);
}

#[test]
fn route_without_uri_fails_like_apisix() {
    let e = run(Kind::Routes, json!({"upstream_id": "1"})).unwrap_err();
    assert_eq!(
        e.admin_message(),
        "invalid configuration: allOf 1 failed: value should match only one schema, but matches none"
    );
    let e = run(Kind::Routes, json!({"uri": "/a"})).unwrap_err();
    assert_eq!(e.raw(), "object matches none of the required");
}

#[test]
fn upstream_needs_nodes_or_discovery() {
    let e = run(Kind::Upstreams, json!({"type": "roundrobin"})).unwrap_err();
    assert_eq!(
        e.admin_message(),
        "invalid configuration: value should match only one schema, but matches none"
    );
    assert!(
        run(
            Kind::Upstreams,
            json!({"service_name": "svc", "discovery_type": "dns"})
        )
        .is_ok()
    );
    let e = run(Kind::Upstreams, json!({"nodes": {"a:1": 1}, "bogus": 1})).unwrap_err();
    assert_eq!(e.raw(), "additional properties forbidden, found bogus");
}

#[test]
fn upstream_semantic_checks() {
    let e = run(
        Kind::Upstreams,
        json!({"nodes": {"a:1": 1}, "type": "chash"}),
    )
    .unwrap_err();
    assert_eq!(e, CheckError::Plain("missing key".into()));
    let e = run(
        Kind::Upstreams,
        json!({"nodes": {"a:1": 1}, "pass_host": "rewrite"}),
    )
    .unwrap_err();
    assert!(e.raw().contains("upstream_host"));
    let e = run(Kind::Upstreams, json!({"nodes": {"a:99999": 1}})).unwrap_err();
    assert_eq!(e.raw(), "invalid port 99999");
}

#[test]
fn type_errors_use_lua_wording() {
    let e = run(Kind::Routes, json!({"uri": 123, "plugins": {}})).unwrap_err();
    assert_eq!(
        e.raw(),
        "property \"uri\" validation failed: wrong type: expected string, got number"
    );
    let e = run(
        Kind::Consumers,
        json!({"username": "jack", "labels": {"env": ["a"]}}),
    )
    .unwrap_err();
    assert_eq!(
        e.admin_message(),
        "invalid configuration: property \"labels\" validation failed: failed to validate env (matching \".*\"): wrong type: expected string, got table"
    );
}

#[test]
fn unknown_plugins_are_rejected() {
    let e = run(Kind::Routes, json!({"uri": "/", "plugins": {"nope": {}}})).unwrap_err();
    assert_eq!(e, CheckError::Plain("unknown plugin [nope]".into()));
    let e = run(Kind::Credentials, json!({"plugins": {"limit-count": {}}})).unwrap_err();
    assert_eq!(
        e.raw(),
        "only supports auth type plugins in consumer credential"
    );
}

#[test]
fn ssl_defaults_and_requirements() {
    let cert = "C".repeat(200);
    let key = "K".repeat(64);
    let v = run(
        Kind::Ssls,
        json!({"snis": ["a.example.com"], "cert": cert, "key": key}),
    )
    .unwrap();
    assert_eq!(v["type"], "server");
    assert_eq!(v["status"], 1);
    let e = run(Kind::Ssls, json!({"sni": "foo.com"})).unwrap_err();
    assert_eq!(
        e.admin_message(),
        "invalid configuration: value should match only one schema, but matches none"
    );
}

#[test]
fn health_check_defaults_fill_when_present() {
    let v = run(
        Kind::Upstreams,
        json!({"nodes": {"a:1": 1}, "checks": {"active": {"healthy": {}}}}),
    )
    .unwrap();
    assert_eq!(v["checks"]["active"]["http_path"], "/");
    assert_eq!(
        v["checks"]["active"]["healthy"]["http_statuses"],
        json!([200, 302])
    );
    let e = run(
        Kind::Upstreams,
        json!({"nodes": {"a:1": 1}, "checks": {"passive": {}}}),
    )
    .unwrap_err();
    assert!(e.raw().contains("object matches none of the required"));
}
