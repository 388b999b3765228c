//! Grants: resolved and normalised before they reach the executor.

use meridian_engine::{RunStatus, StepError};

use crate::harness::{go, opts};

/// Every form of `grants.http` reaches the executor as an origin pattern: connections and
/// expressions resolved, a URL cut to its origin; an expression giving no origin fails the leg
/// before it runs.
#[tokio::test(start_paused = true)]
async fn http_grants_reach_the_executor_as_origin_patterns() {
    let (r, exec) = go(
        r#"
name: grants
inputs:
  ip: {default: 127.0.0.3}
  admin: {default: "http://127.0.0.1:9180/apisix/admin"}
connections:
  api: {url: "https://API.example.com:8443/v1"}
steps:
  - id: a
    uses: test-ok
    grants:
      http: ["https://*.example.com", api, "http://${{ inputs.ip }}:*", "${{ inputs.admin }}"]
  - id: bad
    uses: test-ok
    continue-on-error: true
    grants: {http: ["${{ inputs.ip }}"]}
"#,
        opts(),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(
        exec.runs_of("a")[0].http,
        [
            "https://*.example.com",
            "https://api.example.com:8443",
            "http://127.0.0.3:*",
            "http://127.0.0.1:9180"
        ]
    );
    assert!(exec.runs_of("bad").is_empty());
    let err = r.step("bad").unwrap().legs[0].error.clone();
    assert!(
        matches!(&err, Some(StepError::InvalidInput(m)) if m.contains("gave `127.0.0.3`")),
        "{err:?}"
    );
}

/// A step's `with:` is evaluated with only the secrets it grants, whatever its expressions do:
/// `toJSON(secrets)` shows the granted one alone. (Validation refuses such a workflow first —
/// `secrets` read as a whole needs every secret granted —; the grant is taken back after
/// parsing to see what the run itself does.) `toJSON(secrets)` gave every secret's value.
#[tokio::test(start_paused = true)]
async fn with_sees_only_the_secrets_the_step_grants() {
    use std::sync::Arc;
    let mut wf = crate::harness::workflow(
        r#"
name: grants
secrets: [API_KEY, OTHER]
steps:
  - id: a
    uses: test-ok
    grants: {secrets: [API_KEY, OTHER]}
    with: {all: "${{ toJSON(secrets) }}"}
"#,
    );
    Arc::make_mut(&mut wf).steps[0]
        .grants
        .secrets
        .retain(|g| g.value == "API_KEY");
    let mut o = opts();
    o.secrets = [("API_KEY", "key-1"), ("OTHER", "other-2")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    o.inputs = meridian_engine::inputs::resolve(&wf, &Default::default()).unwrap();
    let exec = Arc::new(crate::harness::TestExec::default());
    let r = meridian_engine::run(wf, Arc::new(crate::harness::Shared(exec)), o)
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded);
    let all = &r.step("a").unwrap().legs[0].output["echo"]["all"];
    // The value is masked in the report; its keys say which secrets were there.
    let seen: serde_json::Value = serde_json::from_str(all.as_str().unwrap()).unwrap();
    assert_eq!(seen, serde_json::json!({"API_KEY": "***"}), "{all}");
}
