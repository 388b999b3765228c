//! The `api7ee` and `apisix-standalone` backends.

use adc_apisix::ids;
use serde_json::{Value, json};

use crate::fake::{BASE, Fake};
use crate::{GATEWAY, base, events, sync_with, with};

fn api7() -> Fake {
    Fake {
        api7: true,
        gateway_group: Some(("gg-42".into(), "prod".into())),
        ..Fake::apisix("3.5.2")
    }
}

#[test]
fn api7ee_resolves_the_gateway_group_and_scopes_every_admin_call() {
    let f = api7();
    let input = with(
        base(GATEWAY),
        json!({"backend": "api7ee", "gateway_group": "prod"}),
    );
    let out = sync_with(&f, &input).unwrap();
    assert_eq!(out.gateway_version, "3.5.2");
    assert_eq!(out.summary.create, 9);
    let urls = f.urls.borrow().clone();
    assert_eq!(urls[0], format!("{BASE}/api/version"));
    assert_eq!(
        urls[1],
        format!("{BASE}/api/gateway_groups?search=prod&name=prod")
    );
    assert_eq!(urls[2], format!("{BASE}/api/schema/core"));
    assert!(
        urls[3..]
            .iter()
            .all(|u| u.ends_with("?gateway_group_id=gg-42")),
        "{urls:#?}"
    );
    // ADC's backend-api7 shapes
    let sid = ids::service_id("httpbin-service");
    let svc = f.get("services", &sid).unwrap();
    assert_eq!(svc["upstream"]["nodes"][0]["host"], "httpbin.org");
    assert_eq!(svc["type"], "http");
    let canary = ids::child_id("httpbin-service", "canary");
    assert!(
        f.get("service_upstreams", &format!("{sid}/{canary}"))
            .is_some()
    );
    let route = f
        .get("routes", &ids::child_id("httpbin-service", "get-ip"))
        .unwrap();
    assert_eq!(route["paths"], json!(["/ip"]));

    let again = sync_with(&f, &input).unwrap();
    assert_eq!(again.events.len(), 0, "{:#?}", again.events);

    // removing everything: routes first, then the service (API7 takes its upstreams along)
    let out = sync_with(
        &f,
        &with(
            base("{}"),
            json!({"backend": "api7ee", "gateway_group": "prod"}),
        ),
    )
    .unwrap();
    assert_eq!(out.summary.delete, 9);
    assert_eq!(
        f.count("services") + f.count("routes") + f.count("service_upstreams"),
        0
    );
}

#[test]
fn api7ee_unknown_gateway_group_is_invalid_input() {
    let f = api7();
    let input = with(
        base(GATEWAY),
        json!({"backend": "api7ee", "gateway_group": "staging"}),
    );
    let e = sync_with(&f, &input).unwrap_err();
    assert_eq!(e.kind(), adc_apisix::ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("gateway group `staging` not found"),
        "{e}"
    );
}

#[test]
fn api7ee_group_scoped_admin_key_skips_the_lookup() {
    let f = Fake {
        api_key: Some("a7adm-xyz".into()),
        gateway_group: None,
        ..api7()
    };
    let input = with(base(GATEWAY), json!({"backend": "api7ee"}));
    let rt = adc_apisix::Runtime {
        transport: &f,
        token: Some("a7adm-xyz".into()),
        plan: false,
        now_ms: 0,
    };
    let out = adc_apisix::run(&input, &rt).unwrap();
    assert_eq!(out.summary.create, 9);
    assert!(
        f.urls
            .borrow()
            .iter()
            .all(|u| !u.contains("gateway_groups") && !u.contains("gateway_group_id"))
    );
}

fn doc(f: &Fake) -> Value {
    f.standalone.borrow().clone().unwrap()
}

#[test]
fn standalone_puts_the_whole_config_once_and_then_nothing() {
    let f = Fake::apisix("3.13.0");
    let input = with(base(GATEWAY), json!({"backend": "apisix-standalone"}));
    let out = sync_with(&f, &input).unwrap();
    assert_eq!(out.summary.create, 9);
    assert_eq!(
        f.take_writes(),
        [("PUT".to_string(), "/apisix/admin/configs".to_string())]
    );
    let d = doc(&f);
    let sid = ids::service_id("httpbin-service");
    assert_eq!(d["services"][0]["id"], sid.as_str());
    assert_eq!(
        d["services"][0]["upstream"]["nodes"][0]["host"], "httpbin.org",
        "inline upstream"
    );
    assert_eq!(d["services_conf_version"], 1_700_000_000_000u64);
    let cred_id = format!(
        "internal-user/credentials/{}",
        ids::credential_id("internal-user", "primary-key")
    );
    assert!(
        d["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cred_id.as_str())
    );
    assert_eq!(d["plugin_metadata"][0]["id"], "http-logger");

    let again = sync_with(&f, &input).unwrap();
    assert_eq!(again.events.len(), 0, "{:#?}", again.events);
    assert!(f.take_writes().is_empty());
}

#[test]
fn standalone_bumps_only_changed_collections_and_keeps_the_rest() {
    let f = Fake::apisix("3.13.0");
    *f.standalone.borrow_mut() = Some(json!({
        "routes": [{"id": "legacy", "uris": ["/legacy"], "modifiedIndex": 3}],
        "routes_conf_version": 3,
        "protos": [{"id": "p1", "content": "syntax = \"proto3\";"}],
        "protos_conf_version": 9,
    }));
    let input = with(base(GATEWAY), json!({"backend": "apisix-standalone"}));
    sync_with(&f, &input).unwrap();
    let first = doc(&f);
    assert!(
        first["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "legacy"),
        "route outside ADC's model kept"
    );
    assert_eq!(first["protos"][0]["id"], "p1", "unmanaged collections kept");
    assert_eq!(first["protos_conf_version"], 9);

    let changed = GATEWAY.replace("uris: [/ip]", "uris: [/ip4]");
    let out = sync_with(
        &f,
        &with(base(&changed), json!({"backend": "apisix-standalone"})),
    )
    .unwrap();
    assert_eq!(events(&out), ["update route get-ip"]);
    let second = doc(&f);
    let v1 = first["routes_conf_version"].as_u64().unwrap();
    assert!(
        second["routes_conf_version"].as_u64().unwrap() > v1,
        "monotonic even with the same clock"
    );
    assert_eq!(
        second["services_conf_version"], first["services_conf_version"],
        "untouched collection keeps its version"
    );
    assert_eq!(second["services"], first["services"]);
}

#[test]
fn standalone_selector_keeps_unselected_items() {
    let f = Fake::apisix("3.13.0");
    *f.standalone.borrow_mut() = Some(json!({
        "services": [{"id": "theirs", "name": "theirs", "labels": {"team": "payments"}, "upstream": {"nodes": []}}],
        "services_conf_version": 1,
    }));
    let input = with(
        base(GATEWAY),
        json!({"backend": "apisix-standalone", "label_selector": {"team": "edge"}}),
    );
    let out = sync_with(&f, &input).unwrap();
    assert_eq!(out.summary.delete, 0);
    let services = doc(&f)["services"].as_array().unwrap().clone();
    assert_eq!(services.len(), 2);
    assert!(services.iter().any(|s| s["id"] == "theirs"));
}
