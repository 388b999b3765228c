//! Create / second sync / update / delete against the fake APISIX.

use std::cell::RefCell;

use adc_apisix::ids;
use adc_apisix::{Runtime, run};
use serde_json::json;

use crate::fake::{Fake, Recording};
use crate::{GATEWAY, base, events, input, sync_with, with};

fn writes_of(f: &Fake) -> Vec<String> {
    f.take_writes()
        .into_iter()
        .map(|(m, p)| format!("{m} {}", p.trim_start_matches("/apisix/admin/")))
        .collect()
}

#[test]
fn first_sync_creates_in_adc_order_and_second_sync_sends_nothing() {
    let f = Fake::apisix("3.12.0");
    let out = sync_with(&f, &input(GATEWAY)).unwrap();
    assert!(out.applied);
    assert_eq!(out.gateway_version, "3.12.0");
    assert_eq!(
        (out.summary.create, out.summary.update, out.summary.delete),
        (9, 0, 0)
    );
    assert_eq!(
        events(&out),
        [
            "create ssl api.example.com",
            "create service httpbin-service",
            "create route get-ip",
            "create route anything",
            "create consumer internal-user",
            "create upstream canary",
            "create global_rule prometheus",
            "create plugin_metadata http-logger",
            "create consumer_credential primary-key",
        ]
    );
    let sid = ids::service_id("httpbin-service");
    let w = writes_of(&f);
    assert_eq!(w.len(), 10, "{w:#?}");
    assert_eq!(
        w[1],
        format!("PUT upstreams/{sid}"),
        "the service's upstream goes first"
    );
    assert_eq!(w[2], format!("PUT services/{sid}"));
    assert_eq!(out.requests, 10);

    // what landed is what ADC would have written
    let svc = f.get("services", &sid).unwrap();
    assert_eq!(svc["upstream_id"], sid.as_str());
    assert_eq!(svc["desc"], "the demo service");
    let up = f.get("upstreams", &sid).unwrap();
    assert_eq!(up["name"], "httpbin-service");
    assert_eq!(
        up["keepalive_pool"],
        json!({"size": 64, "idle_timeout": 60, "requests": 1000})
    );
    let cred = f
        .get(
            "credentials",
            &format!(
                "internal-user/{}",
                ids::credential_id("internal-user", "primary-key")
            ),
        )
        .unwrap();
    assert_eq!(
        cred["plugins"]["key-auth"]["key"], "s3cr3t-api-key",
        "env substituted"
    );
    let route = f
        .get("routes", &ids::child_id("httpbin-service", "get-ip"))
        .unwrap();
    assert_eq!(route["service_id"], sid.as_str());

    // The gateway filled defaults and timestamps; nothing must look changed.
    let again = sync_with(&f, &input(GATEWAY)).unwrap();
    assert_eq!(again.events.len(), 0, "{:#?}", again.events);
    assert_eq!(again.requests, 0);
    assert!(writes_of(&f).is_empty());
}

#[test]
fn a_changed_node_updates_only_the_upstream() {
    let f = Fake::apisix("3.12.0");
    sync_with(&f, &input(GATEWAY)).unwrap();
    f.take_writes();
    let changed = GATEWAY.replace(
        "{host: httpbin.org, port: 80, weight: 100}",
        "{host: httpbin.org, port: 8080, weight: 100}",
    );
    let out = sync_with(&f, &input(&changed)).unwrap();
    assert_eq!(events(&out), ["update service httpbin-service"]);
    let diff = &out.events[0].diff;
    assert_eq!(diff.len(), 1, "{diff:#?}");
    assert_eq!(diff[0].path, "upstream.nodes[0].port");
    assert_eq!(
        (diff[0].old.clone(), diff[0].new.clone()),
        (Some(json!(80)), Some(json!(8080)))
    );
    assert_eq!(
        writes_of(&f),
        [format!(
            "PUT upstreams/{}",
            ids::service_id("httpbin-service")
        )]
    );
    assert_eq!(sync_with(&f, &input(&changed)).unwrap().events.len(), 0);
}

#[test]
fn route_and_plugin_changes_are_updates_with_a_diff() {
    let f = Fake::apisix("3.12.0");
    sync_with(&f, &input(GATEWAY)).unwrap();
    f.take_writes();
    let changed = GATEWAY
        .replace("uris: [/ip]", "uris: [/ip, /ip2]")
        .replace("count: 100", "count: 200");
    let out = sync_with(&f, &input(&changed)).unwrap();
    assert_eq!(
        events(&out),
        ["update route get-ip", "update service httpbin-service"]
    );
    assert_eq!(out.events[1].diff[0].path, "plugins.limit-count.count");
    assert_eq!(
        writes_of(&f),
        [
            format!("PUT routes/{}", ids::child_id("httpbin-service", "get-ip")),
            format!("PUT services/{}", ids::service_id("httpbin-service")),
        ]
    );
}

#[test]
fn out_of_band_drift_is_reverted() {
    let f = Fake::apisix("3.12.0");
    sync_with(&f, &input(GATEWAY)).unwrap();
    let rid = ids::child_id("httpbin-service", "get-ip");
    let mut route = f.get("routes", &rid).unwrap();
    route["hosts"] = json!(["evil.example.com"]);
    route["status"] = json!(0);
    f.store
        .borrow_mut()
        .get_mut("routes")
        .unwrap()
        .insert(rid.clone(), route);
    let out = sync_with(&f, &input(GATEWAY)).unwrap();
    assert_eq!(events(&out), ["update route get-ip"]);
    let paths: Vec<&str> = out.events[0].diff.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["hosts", "status"]);
    let fixed = f.get("routes", &rid).unwrap();
    assert!(fixed.get("hosts").is_none());
    assert_eq!(fixed["status"], 1);
}

#[test]
fn removing_a_service_deletes_children_first() {
    let f = Fake::apisix("3.12.0");
    sync_with(&f, &input(GATEWAY)).unwrap();
    f.take_writes();
    // the fake refuses to delete a service its routes still use, or an upstream a service uses
    let out = sync_with(&f, &input("consumers: []\n")).unwrap();
    let mut got = events(&out);
    got[..2].sort(); // two routes: gateway order
    assert_eq!(
        got,
        [
            "delete route anything",
            "delete route get-ip",
            "delete service httpbin-service",
            "delete upstream canary",
            "delete consumer internal-user",
            "delete ssl api.example.com",
            "delete global_rule prometheus",
            "delete plugin_metadata http-logger",
            "delete consumer_credential primary-key",
        ]
    );
    let sid = ids::service_id("httpbin-service");
    let w = writes_of(&f);
    let svc_at = w
        .iter()
        .position(|x| *x == format!("DELETE services/{sid}"))
        .unwrap();
    let up_at = w
        .iter()
        .position(|x| *x == format!("DELETE upstreams/{sid}"))
        .unwrap();
    assert!(svc_at < up_at, "{w:#?}");
    for coll in [
        "routes",
        "services",
        "upstreams",
        "ssls",
        "consumers",
        "global_rules",
        "plugin_metadata",
        "credentials",
    ] {
        assert_eq!(f.count(coll), 0, "{coll} left behind");
    }
}

#[test]
fn delete_of_an_already_gone_resource_succeeds() {
    let f = Fake::apisix("3.12.0");
    f.seed("global_rules", "cors", json!({"plugins": {"cors": {}}}));
    // The credential of a deleted consumer is gone with it: its DELETE answers 404.
    sync_with(&f, &input(GATEWAY)).unwrap();
    f.take_writes();
    let out = sync_with(&f, &input("global_rules: {prometheus: {}}\n")).unwrap();
    assert!(out.events.iter().any(|e| e.name == "primary-key"));
    assert!(out.applied);
    let w = writes_of(&f);
    let cred_delete = w.iter().find(|x| x.contains("/credentials/")).unwrap();
    assert!(
        cred_delete.starts_with("DELETE consumers/internal-user/credentials/"),
        "{w:?}"
    );
}

#[test]
fn diff_mode_writes_nothing_and_plan_mode_records() {
    let f = Fake::apisix("3.12.0");
    let out = sync_with(&f, &with(base(GATEWAY), json!({"mode": "diff"}))).unwrap();
    assert_eq!(out.summary.create, 9);
    assert!(!out.applied);
    assert_eq!(out.requests, 0);
    assert!(f.take_writes().is_empty());

    let rec = Recording {
        inner: &f,
        recorded: RefCell::new(Vec::new()),
    };
    let out = run(
        &input(GATEWAY),
        &Runtime {
            transport: &rec,
            token: Some("secret-key".into()),
            plan: true,
            now_ms: 0,
        },
    )
    .unwrap();
    assert!(!out.applied, "plan mode never claims to have applied");
    assert_eq!(out.summary.create, 9);
    assert_eq!(out.requests, 10);
    assert_eq!(rec.recorded.borrow().len(), 10);
    assert_eq!(f.count("services"), 0, "nothing reached the gateway");
}

#[test]
fn dump_round_trips() {
    let f = Fake::apisix("3.12.0");
    sync_with(&f, &input(GATEWAY)).unwrap();
    let out = sync_with(
        &f,
        &with(
            base(""),
            json!({"mode": "dump", "config": null, "files": []}),
        ),
    )
    .unwrap();
    assert!(out.events.is_empty() && out.requests == 0 && !out.applied);
    let mut dumped = out.dump.unwrap();
    assert_eq!(dumped["services"][0]["name"], "httpbin-service");
    assert_eq!(dumped["services"][0]["upstreams"][0]["name"], "canary");
    // secrets are not copied into the output
    let cred = &dumped["consumers"][0]["credentials"][0];
    assert_eq!(cred["config"]["key"], "<redacted>");
    assert!(
        !serde_json::to_string(&dumped)
            .unwrap()
            .contains("s3cr3t-api-key")
    );
    // SSL keys are not readable back and credentials come redacted: put the real key back,
    // and everything else syncs unchanged
    dumped.as_object_mut().unwrap().remove("ssls");
    dumped["consumers"][0]["credentials"][0]["config"]["key"] = json!("${API_KEY}");
    let text = serde_json::to_string_pretty(&dumped).unwrap();
    let again = sync_with(
        &f,
        &with(base(&text), json!({"exclude_resource_types": ["ssl"]})),
    )
    .unwrap();
    assert_eq!(again.events.len(), 0, "{:#?}", again.events);
}

/// The example files shipped under workflows/examples/adc/ load, sync and settle.
/// (`workflows/adc/lab.yaml` is the lab's own config, tested by the packaged workflows' e2e tests.)
#[test]
fn shipped_examples_sync_and_settle() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../workflows/examples/adc");
    let files = [
        format!("{dir}/gateway.yaml"),
        format!("{dir}/observability.yaml"),
    ];
    let input = with(
        base(""),
        json!({"config": null, "files": files, "env": {"UPSTREAM_HOST": "10.0.0.7", "INTERNAL_API_KEY": "k"}}),
    );
    let f = Fake::apisix("3.12.0");
    let out = sync_with(&f, &input).unwrap();
    assert!(out.summary.create >= 7, "{:#?}", out.events);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(sync_with(&f, &input).unwrap().events.len(), 0);
}
