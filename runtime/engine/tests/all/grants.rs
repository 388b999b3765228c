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
