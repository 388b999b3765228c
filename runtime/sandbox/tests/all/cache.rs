//! The compile cache and digest pinning.

use std::path::Path;

use meridian_sandbox::{Sandbox, SandboxConfig, SandboxError, Stats};
use serde_json::json;

use crate::support::run;

fn sandbox_at(dir: &Path) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.to_owned()),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn second_sandbox_loads_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(meridian_artifacts::NOOP).unwrap();

    let first = sandbox_at(dir.path());
    let c = first.load(&bytes, None).unwrap();
    let s = first.stats();
    assert_eq!(
        (s.compiled, s.cache_hits, s.memory_hits, s.instantiations),
        (1, 0, 0, 0)
    );
    assert!(s.functions_compiled > 0, "{s:?}");
    first.load(&bytes, None).unwrap();
    assert_eq!(first.stats().memory_hits, 1);
    first.invoke(&c, run(json!({}))).await.unwrap();
    drop(first);

    let second = sandbox_at(dir.path());
    let c = second.load(&bytes, Some(c.digest())).unwrap();
    assert_eq!(
        second.stats(),
        Stats {
            compiled: 0,
            cache_hits: 1,
            memory_hits: 0,
            instantiations: 0,
            functions_reused: 0,
            functions_compiled: 0,
        }
    );
    let out = second.invoke(&c, run(json!({}))).await.unwrap();
    assert_eq!(out.output, json!({}));
}

#[tokio::test]
async fn corrupt_cache_entries_are_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(meridian_artifacts::NOOP).unwrap();
    sandbox_at(dir.path()).load(&bytes, None).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], b"not a compiled component").unwrap();

    let s = sandbox_at(dir.path());
    let c = s.load(&bytes, None).unwrap();
    assert_eq!((s.stats().compiled, s.stats().cache_hits), (1, 0));
    s.invoke(&c, run(json!({}))).await.unwrap();
    // The entry was rewritten and is good again.
    let s = sandbox_at(dir.path());
    s.load(&bytes, None).unwrap();
    assert_eq!((s.stats().compiled, s.stats().cache_hits), (0, 1));
}

/// A component never seen before compiles only the functions no earlier component had: steps
/// share the standard library, serde and the SDK, and Cranelift's incremental cache keeps each
/// compiled function on disk, for this process and the next.
#[test]
fn a_new_component_reuses_the_functions_others_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let first = sandbox_at(dir.path());
    first
        .load(&std::fs::read(meridian_artifacts::HELLO).unwrap(), None)
        .unwrap();
    let hello = first.stats();
    first
        .load(
            &std::fs::read(meridian_artifacts::HTTP_PROBE).unwrap(),
            None,
        )
        .unwrap();
    let probe = first.stats();
    let (reused, compiled) = (
        probe.functions_reused - hello.functions_reused,
        probe.functions_compiled - hello.functions_compiled,
    );
    assert!(
        reused > 0,
        "http-probe reused nothing from hello: {probe:?}"
    );
    drop(first);
    // Another process (a new sandbox) compiling a third component finds them on disk.
    let second = sandbox_at(dir.path());
    second
        .load(
            &std::fs::read(meridian_artifacts::REGION_LAB).unwrap(),
            None,
        )
        .unwrap();
    let lab = second.stats();
    assert_eq!(lab.compiled, 1);
    assert!(lab.functions_reused > 0, "{lab:?}");
    eprintln!(
        "http-probe after hello: {reused} functions reused, {compiled} compiled; region-lab in a new sandbox: {} reused, {} compiled",
        lab.functions_reused, lab.functions_compiled
    );
}

#[test]
fn digest_pins_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = sandbox_at(dir.path());
    let bytes = std::fs::read(meridian_artifacts::NOOP).unwrap();
    let digest = s.load(&bytes, None).unwrap().digest().to_owned();
    assert!(
        s.load(&bytes, Some(&format!("sha256:{}", digest.to_uppercase())))
            .is_ok()
    );

    let wrong = "0".repeat(64);
    match s.load(&bytes, Some(&wrong)) {
        Err(SandboxError::DigestMismatch { expected, actual }) => {
            assert_eq!(
                (expected.as_str(), actual.as_str()),
                (wrong.as_str(), digest.as_str())
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(matches!(
        s.load(&bytes, Some("sha256:1234")),
        Err(SandboxError::BadDigest(_))
    ));
    assert!(matches!(
        s.load(b"\0asm junk", None),
        Err(SandboxError::Compile { .. })
    ));
}

#[test]
fn non_step_components_are_refused_at_link_time() {
    // A component exporting nothing of the step world: the minimal empty component.
    let s = Sandbox::new(SandboxConfig::default()).unwrap();
    let empty_component = b"\0asm\x0d\0\x01\0";
    let err = s.load(empty_component, None).unwrap_err();
    assert!(
        matches!(&err, SandboxError::Link { message, .. } if message.contains("describe") || message.contains("export")),
        "{err}"
    );
}

#[test]
fn sandbox_config_is_checked() {
    let err = Sandbox::new(SandboxConfig {
        max_instances: 0,
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, SandboxError::Config(_)));
    let s = Sandbox::new(SandboxConfig {
        pooling: false,
        ..Default::default()
    })
    .unwrap();
    assert!(!s.pooling());
}
