//! HTTPS.

use super::*;

/// HTTPS with a certificate the test makes (a CA and a leaf for 127.0.0.1, by `openssl`):
/// a client that trusts the CA gets answers; one that does not, and plain HTTP, get none.
#[test]
fn tls_with_a_generated_certificate() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("wf")).unwrap();
    crate::support::test_certificates(s.path());
    let served = Served::start(
        &s,
        &[
            "--workflows",
            "wf",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ],
    );
    assert!(
        served.base.starts_with("https://127.0.0.1:"),
        "{}",
        served.base
    );
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(s.path().join("ca.pem")).unwrap()).unwrap();
    rt().block_on(async {
        let trusting = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let r = trusting
            .get(served.url("/api/v1/workflows"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let stranger = reqwest::Client::new();
        assert!(stranger.get(served.url("/healthz")).send().await.is_err());
        let plain = served.url("/healthz").replace("https://", "http://");
        let timeout = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        match timeout.get(&plain).send().await {
            Err(_) => {}
            Ok(r) => panic!("plain HTTP got an answer: {}", r.status()),
        }
    });
}
