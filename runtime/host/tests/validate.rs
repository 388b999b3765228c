//! Validation against the manifests the built-in steps really declare (not hand-written schemas).

use meridian_engine::ComponentRef;
use meridian_host::WasmExecutor;
use meridian_model::Diagnostic;

/// `meridian validate`'s checks of `yaml` against the components' own manifests.
async fn check(exec: &WasmExecutor, yaml: &str) -> Vec<Diagnostic> {
    let wf = meridian_model::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let schemas = exec.schemas_for(&wf).await;
    let lookup = |c: &ComponentRef| schemas.get(c).and_then(|r| r.as_ref().ok()).cloned();
    meridian_model::schema::check_steps(&wf, &lookup)
}

/// Regression: steps declare secret grants with the WIT's word `secret`, while the validator
/// matched `secrets`, so a missing secret grant was never warned about.
#[tokio::test]
async fn a_missing_secret_grant_is_warned_about() {
    let yaml = r#"
name: t
secrets: [AWS_ACCESS_KEY_ID]
steps:
  - id: dns
    uses: gslb-route53
    with:
      record: api.example.com
      mode: failover
      targets: [{region: eu, address: 192.0.2.1}]
      provider: {route53: {hosted_zone_id: Z1}}
    grants:
      http: ["https://route53.amazonaws.com"]
"#;
    let cache = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(Some(cache.path().to_path_buf())).unwrap();
    let diags = check(&exec, yaml).await;
    let secret_warnings: Vec<_> = diags
        .iter()
        .filter(|d| {
            d.message
                .contains("needs secret access to `AWS_ACCESS_KEY_ID`")
        })
        .collect();
    assert_eq!(secret_warnings.len(), 1, "{diags:#?}");
    assert!(
        diags.iter().any(|d| d
            .message
            .contains("needs secret access to `AWS_SECRET_ACCESS_KEY`")),
        "{diags:#?}"
    );
}

/// Regression: `gslb-route53` declared `https://route53.amazonaws.com` as its need, so a step
/// pointed at another endpoint (moto, a VPC endpoint) and granted exactly that endpoint was
/// still told to grant AWS.
#[tokio::test]
async fn a_granted_route53_endpoint_draws_no_http_warning() {
    let yaml = r#"
name: t
secrets: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
steps:
  - id: dns
    uses: gslb-route53
    with:
      action: apply
      zone: lab.meridian.test
      record: api.lab.meridian.test
      policy: failover
      regions:
        - {name: eu, endpoint: 203.0.113.10, primary: true}
        - {name: us, endpoint: 198.51.100.20}
      provider: {route53: {endpoint: "http://127.0.0.1:5000"}}
    grants:
      http: ["http://127.0.0.1:5000"]
      secrets: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
"#;
    let cache = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(Some(cache.path().to_path_buf())).unwrap();
    let diags = check(&exec, yaml).await;
    assert!(diags.is_empty(), "{diags:#?}");
    // Without any http grant the need is still reported.
    let bare = yaml.replace("      http: [\"http://127.0.0.1:5000\"]\n", "");
    let diags = check(&exec, &bare).await;
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("needs http access")),
        "{diags:#?}"
    );
}
