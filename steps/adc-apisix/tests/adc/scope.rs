//! Label selectors and include/exclude resource types.

use adc_apisix::ids;
use serde_json::json;

use crate::fake::Fake;
use crate::{GATEWAY, base, events, sync_with, with};

#[test]
fn selector_leaves_other_teams_alone_and_labels_what_it_writes() {
    let f = Fake::apisix("3.12.0");
    // another team's service and route, and an unlabelled global rule
    f.seed(
        "upstreams",
        "other-up",
        json!({"nodes": [{"host": "o", "port": 80, "weight": 1}]}),
    );
    f.seed(
        "services",
        "other",
        json!({"name": "other", "labels": {"team": "payments"}, "upstream_id": "other-up"}),
    );
    f.seed(
        "routes",
        "other-r",
        json!({"name": "r", "uris": ["/pay"], "service_id": "other"}),
    );
    let input = with(base(GATEWAY), json!({"label_selector": {"team": "edge"}}));
    let out = sync_with(&f, &input).unwrap();
    assert_eq!(out.summary.delete, 0, "{:#?}", events(&out));
    assert!(f.get("services", "other").is_some());
    assert!(f.get("routes", "other-r").is_some());
    // every labelled object written carries the selector, so the next run selects it
    let sid = ids::service_id("httpbin-service");
    assert_eq!(f.get("upstreams", &sid).unwrap()["labels"]["team"], "edge");
    assert_eq!(
        f.get("routes", &ids::child_id("httpbin-service", "get-ip"))
            .unwrap()["labels"]["team"],
        "edge"
    );
    assert_eq!(
        f.get("ssls", &ids::ssl_id(&["api.example.com".into()]))
            .unwrap()["labels"]["team"],
        "edge"
    );
    assert_eq!(sync_with(&f, &input).unwrap().events.len(), 0);

    // with the selector, an empty file deletes only this team's resources ...
    let empty = with(base("{}"), json!({"label_selector": {"team": "edge"}}));
    let out = sync_with(&f, &empty).unwrap();
    assert!(out.events.iter().all(|e| e.name != "other"));
    assert!(f.get("services", "other").is_some());
    assert_eq!(f.count("services"), 1);
    // ... except global rules and plugin metadata, which labels do not scope (as in ADC)
    assert!(out.events.iter().any(|e| e.name == "prometheus"));
}

#[test]
fn exclude_keeps_types_out_of_the_reconciliation() {
    let f = Fake::apisix("3.12.0");
    f.seed("consumers", "someone", json!({"username": "someone"}));
    f.seed("global_rules", "1", json!({"plugins": {"cors": {}}}));
    let input = with(
        base(GATEWAY),
        json!({"exclude_resource_types": ["consumer", "consumer_credential", "global_rule"]}),
    );
    let out = sync_with(&f, &input).unwrap();
    assert!(out.events.iter().all(|e| !matches!(
        e.resource_type.as_str(),
        "consumer" | "consumer_credential" | "global_rule"
    )));
    assert!(
        f.get("consumers", "someone").is_some(),
        "not garbage-collected"
    );
    assert!(
        f.get("consumers", "internal-user").is_none(),
        "not created either"
    );
    assert!(f.get("global_rules", "1").is_some());
}

#[test]
fn include_limits_to_the_listed_types() {
    let f = Fake::apisix("3.12.0");
    f.seed("global_rules", "old", json!({"plugins": {"cors": {}}}));
    let input = with(
        base(GATEWAY),
        json!({"include_resource_types": ["global_rule"]}),
    );
    let out = sync_with(&f, &input).unwrap();
    assert_eq!(
        events(&out),
        ["delete global_rule cors", "create global_rule prometheus"]
    );
    assert_eq!(f.count("services"), 0);
}

#[test]
fn include_and_exclude_together_are_invalid() {
    let f = Fake::apisix("3.12.0");
    let input = with(
        base(GATEWAY),
        json!({"include_resource_types": ["route"], "exclude_resource_types": ["ssl"]}),
    );
    let e = sync_with(&f, &input).unwrap_err();
    assert_eq!(e.kind(), adc_apisix::ErrorKind::InvalidInput);
}

#[test]
fn managed_by_label_is_injected() {
    let f = Fake::apisix("3.12.0");
    sync_with(&f, &with(base(GATEWAY), json!({"managed_by": "adc"}))).unwrap();
    let sid = ids::service_id("httpbin-service");
    assert_eq!(
        f.get("services", &sid).unwrap()["labels"]["managed-by"],
        "adc"
    );
    assert!(
        f.get("global_rules", "prometheus")
            .unwrap()
            .get("labels")
            .is_none()
    );
}
