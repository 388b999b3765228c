//! End-to-end tests of the sync logic against an in-memory APISIX (see `fake`).

mod backends;
mod errors;
mod fake;
mod scope;
mod sync;

use adc_apisix::sync::Input;
use adc_apisix::{Output, Runtime, SyncError, run};
use meridian_sdk::http::Transport;
use serde_json::{Value, json};

/// A representative configuration: a service with an inline and a named upstream and two
/// routes, an SSL, a consumer with a credential, a global rule and plugin metadata.
pub(crate) const GATEWAY: &str = r#"
services:
  - name: httpbin-service
    description: the demo service
    labels: {team: edge}
    upstream:
      scheme: http
      nodes:
        - {host: httpbin.org, port: 80, weight: 100}
      timeout: {connect: 60, send: 60, read: 60}
      keepalive_pool: {size: 64}
      checks:
        active:
          http_path: /status
          healthy: {interval: 2}
    upstreams:
      - name: canary
        nodes: [{host: canary.internal, port: 8080, weight: 1}]
    plugins:
      limit-count: {count: 100, time_window: 60, key: remote_addr, rejected_code: 429, policy: local}
    routes:
      - name: get-ip
        uris: [/ip]
        methods: [GET]
      - name: anything
        uris: ["/anything/*"]
        methods: [GET, POST]
        plugins:
          proxy-rewrite: {uri: /get}
ssls:
  - snis: [api.example.com]
    certificates:
      - certificate: "$env://API_CERT"
        key: "$env://API_KEY"
consumers:
  - username: internal-user
    plugins:
      limit-count: {count: 10, time_window: 60, key: remote_addr, rejected_code: 429, policy: local}
    credentials:
      - name: primary-key
        type: key-auth
        config: {key: "${API_KEY}"}
global_rules:
  prometheus: {}
plugin_metadata:
  http-logger:
    log_format: {host: "$host", client_ip: "$remote_addr"}
"#;

pub(crate) fn input(config: &str) -> Input {
    serde_json::from_value(json!({
        "server": fake::BASE,
        "token_secret": "gw-admin-key",
        "config": config,
        "env": {"API_KEY": "s3cr3t-api-key"},
    }))
    .unwrap()
}

pub(crate) fn with(mut base: Value, extra: Value) -> Input {
    #![allow(clippy::needless_pass_by_value)] // reads as `with(base(..), json!({..}))`
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

pub(crate) fn base(config: &str) -> Value {
    json!({
        "server": fake::BASE,
        "token_secret": "gw-admin-key",
        "config": config,
        "env": {"API_KEY": "s3cr3t-api-key"},
    })
}

pub(crate) fn sync_with(t: &dyn Transport, input: &Input) -> Result<Output, SyncError> {
    run(
        input,
        &Runtime {
            transport: t,
            token: Some("secret-key".into()),
            plan: false,
            now_ms: 1_700_000_000_000,
        },
    )
}

pub(crate) fn events(out: &Output) -> Vec<String> {
    out.events
        .iter()
        .map(|e| format!("{:?} {} {}", e.kind, e.resource_type, e.name).to_lowercase())
        .collect()
}
