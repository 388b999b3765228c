//! Shared helpers: a sandbox per test, invocations, the guest components.

use std::sync::{Arc, OnceLock};

use meridian_sandbox::{
    Call, Capabilities, Invocation, Mode, Sandbox, SandboxConfig, StepComponent,
};

/// One sandbox (and compile cache) shared by the tests of this binary: compiling each guest once
/// keeps the suite fast on 2 cores. Tests that need their own sandbox make one.
pub(crate) fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("meridian-sandbox-tests-{}", std::process::id()));
        Sandbox::new(SandboxConfig {
            cache_dir: Some(dir),
            ..Default::default()
        })
        .expect("sandbox")
    })
}

pub(crate) fn load(path: &str) -> Arc<StepComponent> {
    sandbox()
        .load_file(std::path::Path::new(path), None)
        .expect("load component")
}

pub(crate) fn inv(input: serde_json::Value) -> Invocation {
    Invocation {
        run_id: "run-1".into(),
        step_id: "step-1".into(),
        attempt: 1,
        idempotency_key: "run-1/step-1".into(),
        mode: Mode::Apply,
        input,
    }
}

pub(crate) fn plan_inv(input: serde_json::Value) -> Invocation {
    Invocation {
        mode: Mode::Plan,
        ..inv(input)
    }
}

pub(crate) fn run(input: serde_json::Value) -> Call {
    Call::run(inv(input), Capabilities::default())
}

/// After a hostile guest failed, a normal step in the same sandbox must still work.
pub(crate) async fn assert_still_healthy() {
    let hello = load(meridian_artifacts::HELLO);
    let out = sandbox()
        .invoke(&hello, run(serde_json::json!({"name": "after"})))
        .await
        .expect("sandbox still healthy");
    assert_eq!(out.output["greeting"], "Hello, after!");
}

/// The PostgreSQL DSN for SQL tests, or `None` (with a notice) when MERIDIAN_TEST_PG is unset.
pub(crate) fn test_pg(test: &str) -> Option<String> {
    match std::env::var("MERIDIAN_TEST_PG") {
        Ok(dsn) if !dsn.trim().is_empty() => Some(dsn),
        _ => {
            // Written to the real stderr (the harness captures only `eprintln!`), so the skip shows.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set MERIDIAN_TEST_PG to a PostgreSQL DSN to run SQL tests"
            );
            None
        }
    }
}
