//! The GSLB family through the real binary and sandbox: the same `with:` block, three vendors,
//! swapped by `uses:` alone — Route 53 against a real `moto_server`, Cloudflare against the
//! emulator of its documented API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::{Scratch, expect_code};

/// One HTTP/1.1 request over a plain socket (the test has no HTTP client of its own). moto does
/// not check SigV4 signatures but reads the access key from the Authorization header.
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Date: 20261127T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/route53/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The workflow: apply a failover record over two regions, then fail over to the second.
fn workflow(uses: &str, provider: &str, grant: &str, secrets: &str) -> String {
    format!(
        r#"
name: gslb-{uses}
secrets: [{secrets}]
steps:
  - id: apply
    uses: {uses}
    with: &gslb
      action: apply
      zone: lab.meridian.test
      record: api.lab.meridian.test
      policy: failover
      regions:
        - {{name: eu, endpoint: 203.0.113.10, primary: true}}
        - {{name: us, endpoint: 198.51.100.20}}
      provider: {provider}
    grants: {{http: ["{grant}"], secrets: [{secrets}]}}
  - id: failover
    uses: {uses}
    needs: apply
    with:
      action: failover
      target_region: us
      zone: lab.meridian.test
      record: api.lab.meridian.test
      policy: failover
      regions:
        - {{name: eu, endpoint: 203.0.113.10, primary: true}}
        - {{name: us, endpoint: 198.51.100.20}}
      provider: {provider}
    grants: {{http: ["{grant}"], secrets: [{secrets}]}}
"#
    )
}

fn run_json(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Json {
    let mut c = s.cmd();
    for (k, v) in env {
        c.env(k, v);
    }
    let (out, _) = expect_code(&c.args(args).output().unwrap(), 0);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn route53_against_moto() {
    let s = Scratch::new();
    let port = meridian_lab::free_port();
    let moto = match meridian_lab::Moto::start_with_log(port, &s.path().join("moto.log")) {
        Ok(m) => m,
        Err(e) if std::env::var_os("MERIDIAN_ALLOW_SKIP").is_some() => {
            eprintln!("SKIPPED: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let created = http(
        port,
        "POST",
        "/2013-04-01/hostedzone",
        r#"<CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>lab.meridian.test.</Name><CallerReference>e2e</CallerReference></CreateHostedZoneRequest>"#,
    );
    assert!(
        created.contains("201") || created.contains("200"),
        "{created}"
    );
    let wf = workflow(
        "gslb-route53",
        &format!("{{route53: {{endpoint: \"{}\"}}}}", moto.url()),
        &moto.url(),
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
    );
    s.write("wf.yaml", &wf);
    let env = [
        ("MERIDIAN_SECRET_AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "MERIDIAN_SECRET_AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];
    expect_code(&s.run(&["validate", "wf.yaml"]), 0);

    // Plan: nothing changes in Route 53.
    let plan = run_json(&s, &["--json", "plan", "wf.yaml"], &env);
    assert_eq!(plan["status"], "succeeded", "{plan}");
    let records = http(port, "GET", "/2013-04-01/hostedzone", "");
    let zone_id = records
        .split("<Id>/hostedzone/")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    let rrsets = http(
        port,
        "GET",
        &format!("/2013-04-01/hostedzone/{zone_id}/rrset"),
        "",
    );
    assert!(
        !rrsets.contains("198.51.100.20"),
        "plan changed Route 53: {rrsets}"
    );

    let run = run_json(&s, &["--json", "run", "wf.yaml"], &env);
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = &run["steps"][1]["legs"][0]["output"];
    assert_eq!(out["active"], serde_json::json!(["us"]), "{out}");
    let rrsets = http(
        port,
        "GET",
        &format!("/2013-04-01/hostedzone/{zone_id}/rrset"),
        "",
    );
    assert!(
        rrsets.contains("PRIMARY") && rrsets.contains("SECONDARY"),
        "{rrsets}"
    );
    // After the failover, us is PRIMARY.
    let us = rrsets
        .split("<ResourceRecordSet>")
        .find(|r| r.contains("198.51.100.20"))
        .unwrap();
    assert!(us.contains("<Failover>PRIMARY</Failover>"), "{us}");
    drop(moto);
}

#[test]
fn cloudflare_against_its_emulator() {
    use meridian_emulators::{Cloudflare, CloudflareConfig};
    let s = Scratch::new();
    let cfg = CloudflareConfig::default();
    let cf = Cloudflare::new(cfg.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = cf.router();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            meridian_emulators::serve(l, router, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let endpoint = format!("http://127.0.0.1:{port}/client/v4");
    let wf = workflow(
        "gslb-cloudflare",
        &format!(
            "{{cloudflare: {{endpoint: \"{endpoint}\", account_id: \"{}\", zone_id: \"{}\"}}}}",
            cfg.account_id, cfg.zones[0].id
        ),
        &format!("http://127.0.0.1:{port}"),
        "CLOUDFLARE_API_TOKEN",
    );
    s.write("wf.yaml", &wf);
    let env = [("MERIDIAN_SECRET_CLOUDFLARE_API_TOKEN", cfg.token.as_str())];
    let plan = run_json(&s, &["--json", "plan", "wf.yaml"], &env);
    assert_eq!(plan["status"], "succeeded", "{plan}");
    assert_eq!(
        cf.request_log().iter().filter(|(m, _)| m != "GET").count(),
        0
    );

    let run = run_json(&s, &["--json", "run", "wf.yaml"], &env);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["steps"][1]["legs"][0]["output"]["active"],
        serde_json::json!(["us"])
    );
    let res = cf
        .resolve("api.lab.meridian.test")
        .expect("a load balancer");
    assert_eq!(res.addresses, vec!["198.51.100.20".to_string()], "{res:?}");

    // A wrong token is a clear, fatal error.
    let mut c = s.cmd();
    c.env("MERIDIAN_SECRET_CLOUDFLARE_API_TOKEN", "wrong");
    let (_, err) = expect_code(&c.args(["run", "wf.yaml"]).output().unwrap(), 1);
    assert!(
        err.to_lowercase().contains("token") || err.contains("401") || err.contains("403"),
        "{err}"
    );

    let _ = stop_tx.send(());
    server.join().unwrap();
}
