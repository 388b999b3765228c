//! Granted capabilities do what they promise, within their limits.

use std::sync::Arc;
use std::time::Duration;

use meridian_sandbox::{Call, Capabilities, HttpPolicy, KvStore, MemoryKv, Preopen, StepFailure};
use serde_json::json;

use crate::server::Server;
use crate::support::{TestPg, inv, load, run, sandbox, test_pg};

fn http_caps(server: &Server) -> Capabilities {
    Capabilities {
        http: HttpPolicy::allowing([server.origin()]),
        ..Capabilities::default()
    }
}

async fn get_results(caps: Capabilities, urls: &[String]) -> Vec<(String, String)> {
    let c = load(meridian_artifacts::HTTP_ESCAPE);
    let out = sandbox()
        .invoke(&c, Call::run(inv(json!({ "urls": urls })), caps))
        .await
        .unwrap();
    out.output["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["result"].as_str().unwrap().to_owned(),
                o["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn http_probe_step_against_a_local_server() {
    let server = Server::start();
    let probe = load(meridian_artifacts::HTTP_PROBE);
    let out = sandbox()
        .invoke(
            &probe,
            Call::run(inv(json!({"url": server.url("/ok")})), http_caps(&server)),
        )
        .await
        .unwrap();
    assert_eq!(out.output["status"], 200);
    assert_eq!(out.output["body_snippet"], "ok");
    assert!(out.output["latency_ms"].is_u64());

    let err = sandbox()
        .invoke(
            &probe,
            Call::run(
                inv(json!({"url": server.url("/ok"), "expect_status": [204]})),
                http_caps(&server),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StepFailure::Retryable(m) if m.contains("answered 200")),
        "{err:?}"
    );
}

#[tokio::test]
async fn http_limits() {
    let server = Server::start();
    let mut caps = http_caps(&server);
    caps.http.max_response_bytes = 1000;
    caps.http.timeout = Duration::from_millis(300);
    let r = get_results(
        caps,
        &[
            server.url("/big?n=1000"),
            server.url("/big?n=1001"),
            server.url("/slow?ms=3000"),
            server.url("/loop"),
        ],
    )
    .await;
    assert_eq!(r[0].0, "ok 200");
    assert_eq!(r[1], ("too-large".into(), "1000".into()));
    assert_eq!(r[2].0, "timeout");
    assert_eq!(r[3].0, "other");
    assert!(r[3].1.contains("more than 5 redirects"), "{}", r[3].1);
    // The loop was followed exactly 5 times after the first request.
    assert_eq!(
        server.seen().iter().filter(|s| s.path == "/loop").count(),
        6
    );
}

#[tokio::test]
async fn http_request_body_limit() {
    let server = Server::start();
    let mut caps = http_caps(&server);
    caps.http.max_request_bytes = 10;
    let c = load(meridian_artifacts::HTTP_WRITER);
    // The writer's POST body is larger than 10 bytes; its GET has no body and passes.
    let err = sandbox()
        .invoke(&c, Call::run(inv(json!({"base": server.url("")})), caps))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StepFailure::Fatal(m) if m.contains("body larger than the 10-byte limit")),
        "{err:?}"
    );
    assert_eq!(server.seen().len(), 1, "only the GET was sent");
}

/// Regression: a `*://` grant passed validation and was refused by the sandbox on every run.
/// It means http or https, each on its default port unless one is written.
#[tokio::test]
async fn a_wildcard_scheme_grant_allows_http_and_https() {
    let server = Server::start();
    let port = server.addr.port();
    let caps = Capabilities {
        http: HttpPolicy::allowing([server.pattern("*")]),
        ..Capabilities::default()
    };
    let r = get_results(
        caps,
        &[
            server.url("/ok"),
            format!("http://127.0.0.1:{}/ok", port.wrapping_add(1)),
        ],
    )
    .await;
    assert_eq!(r[0].0, "ok 200", "{r:?}");
    assert_eq!(r[1].0, "denied", "{r:?}");
}

#[tokio::test]
async fn writable_and_read_only_preopens() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(meridian_artifacts::FS_WRITER);
    let caps = |writable| Capabilities {
        fs: vec![Preopen {
            host: dir.path().to_owned(),
            guest: "/work".into(),
            writable,
        }],
        ..Capabilities::default()
    };
    let out = sandbox()
        .invoke(
            &c,
            Call::run(
                inv(json!({"path": "/work/a.txt", "content": "A"})),
                caps(true),
            ),
        )
        .await
        .unwrap();
    assert_eq!(out.output, json!({"write": "ok", "read_back": "A"}));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "A"
    );

    let out = sandbox()
        .invoke(
            &c,
            Call::run(
                inv(json!({"path": "/work/b.txt", "content": "B"})),
                caps(false),
            ),
        )
        .await
        .unwrap();
    assert_ne!(out.output["write"], "ok");
    assert!(!dir.path().join("b.txt").exists());
}

#[tokio::test]
async fn kv_is_shared_through_the_run_store() {
    let kv: Arc<MemoryKv> = Arc::new(MemoryKv::default());
    let caps = Capabilities {
        kv: kv.clone(),
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let ops = json!({"ops": [
        {"op": "kv-set", "key": "region/eu", "value": {"primary": true}},
        {"op": "kv-set", "key": "region/us", "value": 1},
        {"op": "kv-set", "key": "other", "value": 2},
    ]});
    sandbox()
        .invoke(&c, Call::run(inv(ops), caps.clone()))
        .await
        .unwrap();
    let ops = json!({"ops": [
        {"op": "kv-get", "key": "region/eu"},
        {"op": "kv-list", "prefix": "region/"},
        {"op": "kv-delete", "key": "other"},
        {"op": "kv-get", "key": "missing"},
    ]});
    let out = sandbox()
        .invoke(&c, Call::run(inv(ops), caps))
        .await
        .unwrap();
    assert_eq!(
        out.output["results"],
        json!([{"primary": true}, ["region/eu", "region/us"], true, null])
    );
    assert_eq!(kv.get("other").unwrap(), None);
    assert_eq!(kv.get("region/us").unwrap(), Some(b"1".to_vec()));
}

/// An invocation whose caller drops it (a cancelled run, the engine's own timeout) leaves what
/// the guest wrote so far in the log tap — its log lines and its stdout and stderr, masked —
/// and a finished one hands its lines over in the report, leaving the tap empty.
#[tokio::test]
async fn a_dropped_invocation_leaves_its_lines_in_the_tap() {
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let tap = meridian_sandbox::LogTap::default();
    let caps = Capabilities {
        mask: vec!["s3cr3t".into()],
        log: meridian_sandbox::LogContext {
            tap: tap.clone(),
            ..Default::default()
        },
        ..Capabilities::default()
    };
    let ops = |sleep: u64| {
        json!({"ops": [
            {"op": "log", "level": "info", "message": "waiting with s3cr3t"},
            {"op": "print", "message": "printed"},
            {"op": "sleep", "ms": sleep},
        ]})
    };
    let call = Call::run(inv(ops(30_000)), caps.clone());
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(1500),
        sandbox().invoke(&c, call),
    )
    .await;
    assert!(dropped.is_err(), "the call was still sleeping");
    let lines: Vec<String> = tap.take().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "info: waiting with *** op=log",
            "info: printed",
            "warn: printed (stderr)",
        ]
    );
    let done = sandbox()
        .invoke(&c, Call::run(inv(ops(0)), caps))
        .await
        .unwrap();
    assert_eq!(done.logs.len(), 3, "{:?}", done.logs);
    assert!(tap.take().is_empty(), "handed over in the report");
}

#[tokio::test]
async fn kv_limits() {
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let big = "x".repeat(2 << 20);
    let out = sandbox()
        .invoke(
            &c,
            run(json!({"ops": [{"op": "kv-set", "key": "k", "value": big}]})),
        )
        .await
        .unwrap();
    let r = out.output["results"][0].as_str().unwrap();
    assert!(r.contains("kv value is") && r.contains("limit"), "{r}");
}

#[tokio::test]
async fn step_errors_keep_their_kind() {
    let c = load(meridian_artifacts::KITCHEN_SINK);
    for (kind, want) in [
        ("retryable", StepFailure::Retryable("m".into())),
        ("fatal", StepFailure::Fatal("m".into())),
        ("invalid-input", StepFailure::InvalidInput("m".into())),
    ] {
        let err = sandbox()
            .invoke(
                &c,
                run(json!({"ops": [{"op": "fail", "kind": kind, "message": "m"}]})),
            )
            .await
            .unwrap_err();
        assert_eq!(err, want);
    }
}

#[tokio::test]
async fn failed_steps_keep_their_logs() {
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let report = sandbox()
        .execute(
            &c,
            run(json!({"ops": [
                {"op": "log", "level": "warn", "message": "about to fail"},
                {"op": "fail", "kind": "fatal", "message": "boom"},
            ]})),
        )
        .await;
    assert!(report.result.is_err());
    assert_eq!(report.logs[0].message, "about to fail");
    assert_eq!(report.logs[0].level, meridian_sandbox::Level::Warn);
}

#[tokio::test]
async fn compensate_and_invocation_identity() {
    let kv: Arc<MemoryKv> = Arc::new(MemoryKv::default());
    let caps = Capabilities {
        kv: kv.clone(),
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let mut invocation = inv(json!({"ops": [{"op": "invocation"}]}));
    invocation.attempt = 3;
    let out = sandbox()
        .invoke(&c, Call::run(invocation.clone(), caps.clone()))
        .await
        .unwrap();
    assert_eq!(
        out.output["results"][0],
        json!({"run_id": "run-1", "step_id": "step-1", "attempt": 3, "idempotency_key": "run-1/step-1", "plan": false})
    );
    let out = sandbox()
        .invoke(&c, Call::compensate(invocation, caps))
        .await
        .unwrap();
    assert_eq!(out.output, serde_json::Value::Null);
    assert_eq!(kv.get("compensated").unwrap(), Some(b"yes".to_vec()));
    let m = sandbox().describe(&c).await.unwrap();
    assert!(m.supports_compensate);
    // Needs come through `describe` with their kind and detail.
    let m = sandbox()
        .describe(&load(meridian_artifacts::HTTP_PROBE))
        .await
        .unwrap();
    assert_eq!(m.needs[0].kind, meridian_sandbox::GrantKind::Http);
    assert_eq!(
        m.needs[0].detail,
        "the origin (scheme://host:port) of `url`"
    );
}

#[tokio::test]
async fn every_invocation_gets_a_fresh_instance() {
    let c = load(meridian_artifacts::KITCHEN_SINK);
    for _ in 0..3 {
        let out = sandbox()
            .invoke(
                &c,
                run(json!({"ops": [{"op": "counter"}, {"op": "counter"}]})),
            )
            .await
            .unwrap();
        assert_eq!(
            out.output["results"],
            json!([1, 2]),
            "guest state leaked between invocations"
        );
    }
}

#[tokio::test]
async fn concurrent_invocations_beyond_the_pool_wait_for_a_slot() {
    let s = meridian_sandbox::Sandbox::new(meridian_sandbox::SandboxConfig {
        max_instances: 2,
        ..Default::default()
    })
    .unwrap();
    let c = s
        .load_file(std::path::Path::new(meridian_artifacts::KITCHEN_SINK), None)
        .unwrap();
    let calls = (0..8).map(|i| {
        let (s, c) = (s.clone(), c.clone());
        async move { s.invoke(&c, run(json!({"ops": [{"op": "sleep", "ms": 20}, {"op": "kv-get", "key": format!("{i}")}]}))).await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(s.stats().instantiations, 8);
}

/// The kitchen-sink step's output for `ops`, run in an 8 s call with `db` granted as `pg`.
async fn sql_ops_for_8s(pg: &TestPg, ops: serde_json::Value) -> serde_json::Value {
    let mut caps = Capabilities::default();
    caps.sql.insert("db".into(), pg.dsn());
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let call = Call {
        timeout: Duration::from_secs(8),
        ..Call::run(inv(ops), caps)
    };
    sandbox().invoke(&c, call).await.unwrap().output
}

#[tokio::test]
async fn sql_types_and_parameters() {
    let Some(pg) = test_pg("sql_types_and_parameters") else {
        return;
    };
    let statement = "SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float8 AS f8, 'x'::text AS t, true AS b, \
        '\\x0102'::bytea AS by, '{\"a\":[1]}'::jsonb AS j, 12345.678::numeric AS n, '16/B374D848'::pg_lsn AS lsn, \
        '2024-02-29 12:34:56.5+00'::timestamptz AS ts, '1 day 02:00:00'::interval AS iv, NULL::text AS nothing, \
        $1::int4 + 1 AS p_int, $2::text AS p_text, $3::jsonb AS p_json, $4::bool AS p_bool, $5::float8 AS p_float";
    let ops = json!({"ops": [
        {"op": "sql", "connection": "db", "statement": statement, "params": [41, "hi", {"json": {"k": "v"}}, false, 2.5]},
        {"op": "sql", "connection": "db", "statement": "SELECT $1::numeric AS n", "params": ["-0.0042"]},
        {"op": "sql", "connection": "db", "statement": "SELECT 'pg_class'::regclass AS rel", "params": []},
        {"op": "sql", "connection": "db", "statement": "SELECT * FROM no_such_table", "params": []},
        {"op": "sql", "connection": "db", "statement": "SELECT repeat('x', 1000000) FROM generate_series(1, 100)", "params": []},
        {"op": "sql", "connection": "db", "statement": "SELECT pg_sleep(10)", "params": []},
    ]});
    // The sleep is cut a tenth of the call's time (0.8 s) before the call's deadline, however
    // long the statements before it took on a loaded machine.
    let out = sql_ops_for_8s(&pg, ops).await;
    let r = &out["results"];
    assert_eq!(
        r[0]["rows"][0],
        json!({"i2": 1, "i4": 2, "i8": 3, "f8": 1.5, "t": "x", "b": true, "by": [1, 2], "j": {"a": [1]},
               "n": "12345.678", "lsn": "16/B374D848", "ts": "2024-02-29T12:34:56.5Z", "iv": "1 day 02:00:00",
               "nothing": null, "p_int": 42, "p_text": "hi", "p_json": {"k": "v"}, "p_bool": false, "p_float": 2.5})
    );
    assert_eq!(r[1]["rows"][0]["n"], "-0.0042");
    assert!(
        r[2]["error"].as_str().unwrap().contains("rel::text"),
        "{}",
        r[2]
    );
    assert!(
        r[3]["error"].as_str().unwrap().contains("42P01"),
        "{}",
        r[3]
    );
    assert!(
        r[4]["error"].as_str().unwrap().contains("54000"),
        "result size is capped: {}",
        r[4]
    );
    assert!(
        r[5]["error"].as_str().unwrap().contains("timed out"),
        "statement_timeout applies: {}",
        r[5]
    );
}

/// A statement's timeout counts from its start: one started late in the call is cut before the
/// call's deadline (so the step gets the error), not a fixed time after it began.
#[tokio::test]
async fn a_statement_started_late_still_ends_before_the_deadline() {
    let Some(pg) = test_pg("a_statement_started_late") else {
        return;
    };
    let ops = json!({"ops": [
        {"op": "sql", "connection": "db", "statement": "SELECT 1 AS one", "params": []},
        {"op": "sleep", "ms": 1500},
        {"op": "sql", "connection": "db", "statement": "SELECT pg_sleep(10)", "params": []},
    ]});
    // The statement is cut at 7.2 s, leaving the step 0.8 s to answer. Before, it was given
    // 7.2 s from its start at 1.5 s: the call timed out at 8 s instead.
    let out = sql_ops_for_8s(&pg, ops).await;
    let r = &out["results"];
    assert_eq!(r[0]["rows"][0], json!({"one": 1}));
    assert!(
        r[2]["error"].as_str().unwrap().contains("timed out"),
        "the late statement is cut and the step told: {}",
        r[2]
    );
}

#[tokio::test]
async fn sql_connect_failure_is_reported() {
    let mut caps = Capabilities::default();
    // Nothing listens on port 1.
    caps.sql.insert(
        "db".into(),
        "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2".into(),
    );
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let out = sandbox()
        .invoke(
            &c,
            Call::run(
                inv(json!({"ops": [{"op": "sql", "connection": "db", "statement": "SELECT 1"}]})),
                caps,
            ),
        )
        .await
        .unwrap();
    let e = out.output["results"][0]["error"].as_str().unwrap();
    assert!(e.starts_with("connection failed"), "{e}");
}

/// Regression: what a step stored in kv was journaled as it wrote it, so a secret's value a
/// step put there sat in the journal in clear. It is masked like outputs.
#[tokio::test]
async fn kv_values_are_masked_like_outputs() {
    let kv: Arc<MemoryKv> = Arc::new(MemoryKv::default());
    let caps = Capabilities {
        kv: kv.clone(),
        mask: vec!["hunter2".into()],
        ..Capabilities::default()
    };
    let c = load(meridian_artifacts::KITCHEN_SINK);
    let ops = json!({"ops": [
        {"op": "kv-set", "key": "token", "value": {"auth": "Bearer hunter2"}},
        {"op": "kv-get", "key": "token"},
    ]});
    let out = sandbox()
        .invoke(&c, Call::run(inv(ops), caps))
        .await
        .unwrap();
    assert_eq!(out.output["results"][1], json!({"auth": "Bearer ***"}));
    assert_eq!(
        kv.get("token").unwrap(),
        Some(br#"{"auth":"Bearer ***"}"#.to_vec())
    );
}
