//! Push, pull, cache, tamper and sign against a real registry (Debian's docker-registry) on
//! loopback.

use meridian_oci::policy::TrustPolicy;
use meridian_oci::testkit::TestRegistry;
use meridian_oci::{Cache, OciError, OciRef, fetch, push, sign_and_publish};

/// Not a runnable step, but a component header: what the registry layer checks.
fn component(tag: u8) -> Vec<u8> {
    let mut b = b"\0asm\x0d\0\x01\0".to_vec();
    b.extend(std::iter::repeat_n(tag, 4096));
    b
}

fn at(reg: &TestRegistry, repo_tag: &str) -> OciRef {
    OciRef::parse(&format!("oci://{}/{repo_tag}", reg.host)).unwrap()
}

#[tokio::test]
async fn push_pull_cache_then_offline() {
    let reg = TestRegistry::start();
    let bytes = component(1);
    let pushed = push(&bytes, &at(&reg, "acme/notify:1.0")).await.unwrap();
    assert!(
        pushed
            .reference
            .to_string()
            .ends_with(&format!("acme/notify:1.0@{}", pushed.manifest_digest))
    );
    // The artifact follows the Wasm OCI layout.
    let manifest = std::fs::read(reg.blob_file(&pushed.manifest_digest)).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let first = fetch(&pushed.reference, &cache, None, false).await.unwrap();
    assert_eq!(first.component, bytes);
    assert!(!first.from_cache);
    let second = fetch(&pushed.reference, &cache, None, false).await.unwrap();
    assert!(second.from_cache);
    // A tag is refused unless allowed, then resolved to the same digest.
    let tag = at(&reg, "acme/notify:1.0");
    assert!(matches!(
        fetch(&tag, &cache, None, false).await,
        Err(OciError::Unpinned { .. })
    ));
    let by_tag = fetch(&tag, &cache, None, true).await.unwrap();
    assert_eq!(by_tag.manifest_digest, pushed.manifest_digest);
    drop(reg);
    // Offline: the pinned reference still resolves from the cache.
    let offline = fetch(&pushed.reference, &cache, None, false).await.unwrap();
    assert_eq!(offline.component, bytes);
    assert!(offline.from_cache);
    // Not in the cache, with the registry gone: said as a connection refused, with what to
    // check (it was the HTTP client's "error sending request for url (…)").
    let empty = tempfile::tempdir().unwrap();
    let err = fetch(&pushed.reference, &Cache::new(empty.path()), None, false)
        .await
        .expect_err("no registry");
    assert!(
        err.to_string().contains("cannot connect")
            && err.to_string().contains("is the registry up"),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_blobs_are_refused() {
    let reg = TestRegistry::start();
    let pushed = push(&component(2), &at(&reg, "acme/canary:1"))
        .await
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    // The component's bytes changed in the registry's storage.
    let blob = reg.blob_file(&pushed.component_digest);
    let mut evil = std::fs::read(&blob).unwrap();
    *evil.last_mut().unwrap() ^= 0xff;
    std::fs::write(&blob, &evil).unwrap();
    let err = fetch(&pushed.reference, &cache, None, false)
        .await
        .expect_err("refused");
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&pushed.component_digest), "{err}");
    assert!(
        err.to_string()
            .contains("digest mismatch for the component of oci://"),
        "{err}"
    );

    // Far more bytes than the manifest declares: the download stops at the declared size (it
    // was read whole into memory, then refused by its digest).
    let mut huge = std::fs::read(&blob).unwrap();
    huge.extend(std::iter::repeat_n(0u8, 8 << 20));
    std::fs::write(&blob, &huge).unwrap();
    let err = fetch(
        &pushed.reference,
        &Cache::new(&cache_dir.path().join("h")),
        None,
        false,
    )
    .await
    .expect_err("refused");
    assert!(
        err.to_string()
            .contains("more than the 4104 bytes the manifest declares"),
        "{err}"
    );

    // The manifest's bytes changed: the pinned digest no longer matches.
    let reg2 = TestRegistry::start();
    let pushed = push(&component(3), &at(&reg2, "acme/canary:2"))
        .await
        .unwrap();
    let mf = reg2.blob_file(&pushed.manifest_digest);
    // Still valid JSON, other bytes.
    let mut text = std::fs::read_to_string(&mf).unwrap();
    text.push('\n');
    std::fs::write(&mf, text).unwrap();
    let cache2 = Cache::new(&cache_dir.path().join("two"));
    let err = fetch(&pushed.reference, &cache2, None, false)
        .await
        .expect_err("refused");
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}

#[tokio::test]
async fn signatures_under_a_policy() {
    let reg = TestRegistry::start();
    let keys = tempfile::tempdir().unwrap();
    let acme_key = keys.path().join("acme.key");
    meridian_oci::sign::generate(&acme_key).unwrap();
    let mallory_key = keys.path().join("mallory.key");
    meridian_oci::sign::generate(&mallory_key).unwrap();
    let policy_file = keys.path().join("policy.toml");
    std::fs::write(
        &policy_file,
        format!(
            "unmatched = \"refuse\"\n[[rule]]\nscope = \"{}/acme\"\nkeys = [\"acme.key.pub\"]\n",
            reg.host
        ),
    )
    .unwrap();
    let policy = TrustPolicy::load(&policy_file).unwrap();

    let pushed = push(&component(4), &at(&reg, "acme/notify:2.0"))
        .await
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    // Unsigned: refused, naming the step, its digest and the rule.
    let err = fetch(&pushed.reference, &cache, Some(&policy), false)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("not signed"), "{err}");
    assert!(err.contains(&pushed.manifest_digest), "{err}");
    assert!(err.contains("acme/notify"), "{err}");
    assert!(err.contains(&format!("rule `{}/acme`", reg.host)), "{err}");

    // Signed by a key the policy does not trust: still refused.
    let mallory = meridian_oci::sign::load_signing_key(&mallory_key).unwrap();
    sign_and_publish(&pushed.reference, &mallory).await.unwrap();
    let err = fetch(&pushed.reference, &cache, Some(&policy), false)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("does not trust"), "{err}");

    // Signed by acme: accepted, and then offline too (the signature is cached and re-verified).
    let acme = meridian_oci::sign::load_signing_key(&acme_key).unwrap();
    sign_and_publish(&pushed.reference, &acme).await.unwrap();
    let ok = fetch(&pushed.reference, &cache, Some(&policy), false)
        .await
        .unwrap();
    assert_eq!(ok.signed_by.as_deref(), Some("acme.key.pub"));

    // A signature is for one digest: another artifact in the same repository is not covered.
    let other = push(&component(5), &at(&reg, "acme/notify:2.1"))
        .await
        .unwrap();
    assert!(
        fetch(&other.reference, &cache, Some(&policy), false)
            .await
            .is_err()
    );
    // Outside every rule, with `unmatched = "refuse"`.
    let stray = push(&component(6), &at(&reg, "stray/x:1")).await.unwrap();
    let err = fetch(&stray.reference, &cache, Some(&policy), false)
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("unmatched"), "{err}");
    drop(reg);
    let offline = fetch(&pushed.reference, &cache, Some(&policy), false)
        .await
        .unwrap();
    assert!(offline.from_cache && offline.signed_by.is_some());
}
