//! Error kinds and messages the engine acts on.

use adc_apisix::{ErrorKind, Runtime, run};
use serde_json::json;

use crate::fake::Fake;
use crate::{GATEWAY, base, input, sync_with, with};

#[test]
fn wrong_admin_key_is_fatal_and_names_the_server() {
    let f = Fake::apisix("3.12.0");
    let e = run(
        &input(GATEWAY),
        &Runtime {
            transport: &f,
            token: Some("wrong".into()),
            plan: false,
            now_ms: 0,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert_eq!(
        e.to_string(),
        "admin key rejected by http://gw.test:9180: check grants/secrets (HTTP 401)"
    );
}

#[test]
fn server_errors_are_retryable() {
    let f = Fake::apisix("3.12.0");
    f.fail_with.set(Some(503));
    let e = sync_with(&f, &input(GATEWAY)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Retryable, "{e}");
}

#[test]
fn a_failure_mid_sync_says_how_far_it_got_and_a_retry_finishes() {
    let f = Fake::apisix("3.12.0");
    // A route whose `uris` the gateway refuses is impossible to write from a valid file, so
    // break the gateway instead: no stream mode, and the file has a stream route.
    let text = "services:\n  - name: tcp\n    upstream: {scheme: tcp, nodes: [{host: db, port: 5432, weight: 1}]}\n    stream_routes: [{name: pg, server_port: 5432}]\n";
    let no_stream = Fake {
        stream_mode: false,
        ..Fake::apisix("3.12.0")
    };
    let e = sync_with(&no_stream, &input(text)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(
        e.to_string()
            .starts_with("1 of 2 changes were applied before a failure"),
        "{e}"
    );
    assert!(e.to_string().contains("stream mode is disabled"), "{e}");
    // the service landed; enabling stream mode and retrying only adds the stream route
    drop(f);
    let fixed = Fake {
        stream_mode: true,
        ..no_stream
    };
    let out = sync_with(&fixed, &input(text)).unwrap();
    assert_eq!(crate::events(&out), ["create stream_route pg"]);
}

#[test]
fn schema_errors_are_invalid_input_with_positions() {
    let f = Fake::apisix("3.12.0");
    let text = "services:\n  - name: s\n    upstream:\n      nodes: [{host: a, port: 80, weight: 1}]\n      tiemout: {connect: 1, send: 1, read: 1}\n";
    let e = sync_with(&f, &input(text)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .contains("<config>:5:7: unknown field `tiemout`"),
        "{e}"
    );
    assert!(
        f.urls.borrow().is_empty(),
        "nothing is fetched for an invalid file"
    );
}

#[test]
fn missing_files_are_invalid_input() {
    let f = Fake::apisix("3.12.0");
    let e = sync_with(
        &f,
        &with(
            base(""),
            json!({"config": null, "files": ["/nonexistent/adc.yaml"]}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("grants.fs"), "{e}");
    let e = sync_with(&f, &with(base(""), json!({"config": null}))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn old_gateways_refuse_what_they_cannot_store() {
    let f = Fake::apisix("3.10.0");
    let e = sync_with(&f, &input(GATEWAY)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(
        e.to_string()
            .contains("needs APISIX 3.11 or newer (the gateway is 3.10.0)"),
        "{e}"
    );
    assert!(
        f.take_writes().is_empty(),
        "refused before writing anything"
    );
}

#[test]
fn stream_mode_off_reads_as_no_stream_routes() {
    let f = Fake {
        stream_mode: false,
        ..Fake::apisix("3.12.0")
    };
    let out = sync_with(&f, &input(GATEWAY)).unwrap();
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("no stream_routes read")),
        "{:?}",
        out.warnings
    );
}
