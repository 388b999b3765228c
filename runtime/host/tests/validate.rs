//! Validation against the manifests the built-in steps really declare (not hand-written schemas).

use meridian_host::WasmExecutor;

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
    let wf = meridian_model::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let cache = tempfile::tempdir().unwrap();
    let exec = WasmExecutor::new(Some(cache.path().to_path_buf())).unwrap();
    let schemas = exec.schemas_for(&wf, std::path::Path::new(".")).await;
    let lookup = |u: &str| schemas.get(u).and_then(|r| r.as_ref().ok()).cloned();
    let diags = meridian_model::schema::check_steps(&wf, &lookup);
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
