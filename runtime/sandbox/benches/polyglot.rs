//! What a step costs per call in each language, compiled component cached in memory: a fresh
//! instance and one `run`, the way every attempt of a step runs.
//!
//! - `rust_hello`: the Rust built-in `hello` (a 0.2 MB component).
//! - `js_notify_webhook_plan`: the JavaScript built-in `notify-webhook` in plan mode (its POST is
//!   recorded, not sent): SpiderMonkey's snapshot instantiated, the payload built.
//! - `python_pg_canary_unreachable`: the Python built-in `pg-canary` until its first SQL call
//!   fails (nothing listens on the granted connection's port): CPython's snapshot instantiated,
//!   the input read, one refused connection.
//!
//! The components are compiled once before measuring (17–22 s for the JS and Python ones on 2
//! cores). Run: `cargo bench -p meridian-sandbox --bench polyglot`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meridian_sandbox::{
    Call, Capabilities, HttpPolicy, Invocation, Mode, OriginPattern, Sandbox, SandboxConfig,
};

fn invocation(step: &str, mode: Mode, input: serde_json::Value) -> Invocation {
    Invocation {
        run_id: "bench".into(),
        step_id: step.into(),
        attempt: 1,
        idempotency_key: format!("bench/{step}"),
        mode,
        input,
    }
}

fn per_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let load = |name: &str| {
        let bytes = meridian_artifacts::builtin(name).expect("built-in");
        sandbox.load(bytes, None).expect("compile")
    };
    let hello = load("hello");
    let notify = load("notify-webhook");
    let canary = load("pg-canary");

    let mut g = c.benchmark_group("per_call");
    g.sample_size(20);
    g.bench_function("rust_hello", |b| {
        b.iter(|| {
            let call = Call::run(
                invocation("hello", Mode::Apply, serde_json::json!({"name": "bench"})),
                Capabilities::default(),
            );
            black_box(rt.block_on(sandbox.invoke(&hello, call)).expect("hello"))
        });
    });
    let http = Capabilities {
        http: HttpPolicy::allowing([OriginPattern::parse("http://127.0.0.1:9").expect("origin")]),
        ..Capabilities::default()
    };
    g.bench_function("js_notify_webhook_plan", |b| {
        b.iter(|| {
            let input = serde_json::json!({
                "url": "http://127.0.0.1:9/hook", "format": "slack",
                "title": "DR drill", "text": "failover done", "fields": {"region": "us"}
            });
            let call = Call::run(invocation("notify", Mode::Plan, input), http.clone());
            black_box(rt.block_on(sandbox.invoke(&notify, call)).expect("notify"))
        });
    });
    let sql = Capabilities {
        sql: [(
            "primary".to_string(),
            "host=127.0.0.1 port=9 user=postgres dbname=postgres sslmode=disable connect_timeout=1"
                .to_string(),
        )]
        .into(),
        ..Capabilities::default()
    };
    let first = rt.block_on(sandbox.invoke(
        &canary,
        Call::run(
            invocation(
                "canary",
                Mode::Apply,
                serde_json::json!({"connection": "primary", "label": "bench"}),
            ),
            sql.clone(),
        ),
    ));
    assert!(
        first.is_err(),
        "pg-canary reached a database on port 9: {first:?}"
    );
    g.bench_function("python_pg_canary_unreachable", |b| {
        b.iter(|| {
            let input = serde_json::json!({"connection": "primary", "label": "bench"});
            let call = Call::run(invocation("canary", Mode::Apply, input), sql.clone());
            // Fails at its first SQL call: nothing listens there.
            black_box(rt.block_on(sandbox.invoke(&canary, call)).is_err())
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = per_call
}
criterion_main!(benches);
