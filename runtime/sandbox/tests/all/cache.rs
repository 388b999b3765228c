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
    assert_eq!(
        first.stats(),
        Stats {
            compiled: 1,
            cache_hits: 0,
            memory_hits: 0,
            instantiations: 0
        }
    );
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
            instantiations: 0
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
