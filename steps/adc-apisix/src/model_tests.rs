//! Unit tests of `model`: building the desired resources from ADC configuration.

use super::*;
use crate::load::{Source, load};
use crate::yaml::Env;

pub(crate) fn desired(text: &str, opts: &BuildOptions) -> Desired {
    let cfg = load(
        &[Source {
            name: "t.yaml".into(),
            text: text.into(),
        }],
        &Env::new(),
    )
    .unwrap();
    build(&cfg, opts).unwrap()
}

fn admin() -> BuildOptions {
    BuildOptions {
        flavor: Flavor::AdminApi,
        selector: BTreeMap::new(),
        managed_by: None,
    }
}

const EXAMPLE: &str = r#"
services:
  - name: httpbin-service
    description: demo
    labels: {team: [a, b]}
    upstream:
      name: Default Upstream
      nodes: [{host: httpbin.org, port: 80, weight: 100}]
      checks: {active: {http_request_headers: ["Host: x"]}}
    upstreams:
      - name: canary
        nodes: [{host: canary, port: 80, weight: 1}]
    routes:
      - name: get-ip
        uris: [/ip]
        methods: [GET]
consumers:
  - username: internal-user
    credentials:
      - name: primary-key
        type: key-auth
        config: {key: k}
ssls:
  - snis: [a.example.com, b.example.com]
    certificates:
      - {certificate: "$env://CERT", key: "$env://KEY"}
      - {certificate: "$env://CERT2", key: "$env://KEY2"}
global_rules: {prometheus: {}}
plugin_metadata: {http-logger: {log_format: {host: "$host"}}}
"#;

#[test]
fn service_split_into_upstream_and_service() {
    let d = desired(EXAMPLE, &admin());
    let svc = &d.resources[0];
    assert_eq!(svc.rtype, ResourceType::Service);
    assert_eq!(svc.id, "e809a925f903711c0e5d248bd8392cc87c64c7fc");
    assert_eq!(svc.parts.len(), 2);
    let up = svc.part(PartRole::Upstream).unwrap();
    assert_eq!(
        up.path,
        "upstreams/e809a925f903711c0e5d248bd8392cc87c64c7fc"
    );
    assert_eq!(up.body["id"], svc.id.as_str());
    assert_eq!(up.body["name"], "httpbin-service");
    assert_eq!(
        up.body["checks"]["active"]["req_headers"],
        json!(["Host: x"])
    );
    let main = svc.part(PartRole::Main).unwrap();
    assert_eq!(
        main.body,
        json!({"id": svc.id, "name": "httpbin-service", "desc": "demo",
                   "labels": {"team": "[\"a\",\"b\"]"}, "upstream_id": svc.id})
    );
}

#[test]
fn children_ids_and_bodies() {
    let d = desired(EXAMPLE, &admin());
    let by = |t| d.resources.iter().find(|r| r.rtype == t).unwrap();
    let route = by(ResourceType::Route);
    assert_eq!(route.id, "8fd8aec3863cb7e05cccafaed6b41ec93a4a499d");
    assert_eq!(
        route.parent.as_deref(),
        Some("e809a925f903711c0e5d248bd8392cc87c64c7fc")
    );
    assert_eq!(route.parts[0].body["status"], 1);
    assert_eq!(
        route.parts[0].body["service_id"],
        "e809a925f903711c0e5d248bd8392cc87c64c7fc"
    );
    assert_eq!(route.parts[0].body["methods"], json!(["GET"]));
    let up = by(ResourceType::Upstream);
    assert_eq!(up.id, ids::child_id("httpbin-service", "canary"));
    assert_eq!(
        up.parts[0].body["labels"][UPSTREAM_SERVICE_LABEL],
        "e809a925f903711c0e5d248bd8392cc87c64c7fc"
    );
    let cred = by(ResourceType::ConsumerCredential);
    assert_eq!(cred.id, "ea1f1c93d75c826cde440646ed24b87b379929ea");
    assert_eq!(
        cred.parts[0].path,
        "consumers/internal-user/credentials/ea1f1c93d75c826cde440646ed24b87b379929ea"
    );
    assert_eq!(
        cred.parts[0].body["plugins"],
        json!({"key-auth": {"key": "k"}})
    );
    let ssl = by(ResourceType::Ssl);
    assert_eq!(ssl.id, "3ba2e9503733b5dd9f77fce92ff1e912fb293f38");
    assert_eq!(ssl.parts[0].body["cert"], "$env://CERT");
    assert_eq!(ssl.parts[0].body["certs"], json!(["$env://CERT2"]));
    assert_eq!(ssl.parts[0].body["keys"], json!(["$env://KEY2"]));
    let gr = by(ResourceType::GlobalRule);
    assert_eq!(gr.parts[0].body, json!({"plugins": {"prometheus": {}}}));
    let pm = by(ResourceType::PluginMetadata);
    assert_eq!(pm.parts[0].path, "plugin_metadata/http-logger");
    assert_eq!(pm.parts[0].body, json!({"log_format": {"host": "$host"}}));
}

#[test]
fn standalone_inlines_the_upstream() {
    let d = desired(
        EXAMPLE,
        &BuildOptions {
            flavor: Flavor::Standalone,
            ..admin()
        },
    );
    let svc = &d.resources[0];
    assert_eq!(svc.parts.len(), 1);
    assert_eq!(
        svc.parts[0].body["upstream"]["nodes"][0]["host"],
        "httpbin.org"
    );
    assert!(svc.parts[0].body.get("upstream_id").is_none());
}

#[test]
fn api7_shapes() {
    let d = desired(
        EXAMPLE,
        &BuildOptions {
            flavor: Flavor::Api7,
            ..admin()
        },
    );
    let svc = &d.resources[0];
    assert_eq!(svc.parts.len(), 1);
    assert_eq!(svc.parts[0].body["type"], "http");
    assert_eq!(
        svc.parts[0].body["upstream"]["nodes"][0]["host"],
        "httpbin.org"
    );
    let by = |t| d.resources.iter().find(|r| r.rtype == t).unwrap();
    let route = &by(ResourceType::Route).parts[0].body;
    assert_eq!(route["paths"], json!(["/ip"]));
    assert!(route.get("uris").is_none() && route.get("status").is_none());
    let up = by(ResourceType::Upstream);
    assert_eq!(
        up.parts[0].path,
        format!("services/{}/upstreams/{}", svc.id, up.id)
    );
    assert!(up.parts[0].body.get("labels").is_none());
    let stream = desired(
        "services: [{name: s, upstream: {scheme: tcp, nodes: [{host: a, port: 1, weight: 1}]}, routes: [{name: r, uris: [/], hosts: [a]}]}]",
        &BuildOptions {
            flavor: Flavor::Api7,
            ..admin()
        },
    );
    assert_eq!(stream.resources[0].parts[0].body["type"], "stream");
    assert_eq!(stream.warnings.len(), 1, "{:?}", stream.warnings);
}

#[test]
fn selector_and_managed_by_labels_are_injected_everywhere_but_plugin_maps() {
    let opts = BuildOptions {
        selector: [("env".to_string(), "prod".to_string())].into(),
        managed_by: Some("adc".into()),
        ..admin()
    };
    let d = desired(
        "services:\n  - name: s\n    labels: {env: dev}\n    upstream: {nodes: [{host: a, port: 1, weight: 1}]}\n    routes: [{name: r, uris: [/]}]\nglobal_rules: {cors: {}}\n",
        &opts,
    );
    for r in &d.resources {
        if r.rtype == ResourceType::GlobalRule {
            assert!(r.parts[0].body.get("labels").is_none());
            continue;
        }
        for p in &r.parts {
            assert_eq!(p.body["labels"]["env"], "prod", "selector wins: {p:?}");
            assert_eq!(p.body["labels"]["managed-by"], "adc");
        }
    }
}

#[test]
fn id_collisions_are_errors() {
    let text =
        "services:\n  - name: a\n  - name: b\n    id: 86f7e437faa5a7fce15d1ddcb9eaeaea377667b8\n";
    let cfg = load(
        &[Source {
            name: "t.yaml".into(),
            text: text.into(),
        }],
        &Env::new(),
    )
    .unwrap();
    let e = build(&cfg, &admin()).unwrap_err();
    assert!(
        e.to_string()
            .contains("already used by the service at t.yaml:2:5"),
        "{e}"
    );
}

#[test]
fn consumer_groups_and_path_prefix_warn() {
    let d = desired(
        "services: [{name: s, path_prefix: /api}]\nconsumer_groups: [{name: g, plugins: {}}]\n",
        &admin(),
    );
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
}

/// A service's own upstream is named after the service: another name written for it is
/// said to be dropped (renaming it gave "no changes", silently).
#[test]
fn a_name_given_to_a_services_own_upstream_is_said_to_be_dropped() {
    let up = "nodes: [{host: a, port: 1, weight: 1}]";
    let d = desired(
        &format!("services: [{{name: s, upstream: {{name: s-up, {up}}}}}]\n"),
        &admin(),
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0].contains("name `s-up` is not kept"),
        "{:?}",
        d.warnings
    );
    let d = desired(
        &format!("services: [{{name: s, upstream: {{name: s, {up}}}}}]\n"),
        &admin(),
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}
