//! The step contract's promise, through the real engine and sandbox: what crosses into and out
//! of a step is checked against the schemas the step declares, at run time (after `${{ }}`
//! expressions are evaluated, and whatever the component returns).

use std::sync::Arc;

use meridian_engine::{Outcome, RunOptions, RunReport, RunStatus};
use meridian_host::WasmExecutor;

async fn run(yaml: &str, inputs: serde_json::Value) -> RunReport {
    let wf = Arc::new(meridian_model::parse("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}")));
    let cache = tempfile::tempdir().unwrap();
    let exec = Arc::new(WasmExecutor::new(Some(cache.path().to_path_buf())).unwrap());
    let mut opts = RunOptions::new("r1");
    opts.inputs = inputs.as_object().cloned().unwrap_or_default();
    meridian_engine::run(wf, exec, opts).await.unwrap()
}

fn error_of(report: &RunReport, step: &str) -> String {
    let leg = &report
        .steps
        .iter()
        .find(|s| s.id == step)
        .unwrap_or_else(|| panic!("no step {step}"))
        .legs[0];
    assert_eq!(leg.outcome, Outcome::Failure, "{leg:?}");
    leg.error.as_ref().expect("an error").to_string()
}

#[tokio::test]
async fn an_output_that_breaks_its_declared_schema_fails_the_step() {
    let yaml = format!(
        "name: t\nsteps:\n  - id: lie\n    uses: {}\n    with: {{what: wrong-output}}\n  \
         - id: after\n    needs: [lie]\n    uses: {}\n    with: {{what: shadow-stack}}\n",
        meridian_artifacts::MISBEHAVE,
        meridian_artifacts::MISBEHAVE
    );
    let report = run(&yaml, serde_json::json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    let err = error_of(&report, "lie");
    assert!(
        err.contains("`outputs.recorded` must be an integer, found a string")
            && err.contains("`outputs.token` is not a declared property")
            && err.contains("fault of the step component"),
        "{err}"
    );
    // Problems name where, never what: the output may hold what masking has not seen.
    assert!(!err.contains("s3cr3t") && !err.contains("many"), "{err}");
    // The output is not handed on: the next step never ran.
    assert!(
        report
            .step("after")
            .is_none_or(|s| s.legs.iter().all(|l| l.outcome != Outcome::Success)),
        "{report:?}"
    );
}

#[tokio::test]
async fn an_evaluated_input_of_the_wrong_type_is_refused_before_the_step_runs() {
    // `${{ }}` alone keeps the expression's type: here a number where `what` takes a string.
    // The component would have reported its own parse error; the engine names the input.
    let yaml = format!(
        "name: t\ninputs:\n  mode: {{type: number, default: 7}}\nsteps:\n  - id: s\n    uses: {}\n    \
         with: {{what: \"${{{{ inputs.mode }}}}\"}}\n",
        meridian_artifacts::MISBEHAVE
    );
    let report = run(&yaml, serde_json::json!({"mode": 7})).await;
    assert_eq!(report.status, RunStatus::Failed);
    let err = error_of(&report, "s");
    assert!(
        err.contains("`with.what` must be a string, found an integer"),
        "{err}"
    );
    let leg = &report.steps[0].legs[0];
    assert!(
        matches!(leg.error, Some(meridian_engine::StepError::InvalidInput(_))),
        "{leg:?}"
    );
}
