//! The SDK's contract end to end: describe, input parsing, outputs, errors, logs, kv.

use meridian_sandbox::{Level, LogSource, StepFailure};
use serde_json::json;

use crate::support::{load, run, sandbox};

#[tokio::test]
async fn hello_describe_and_run() {
    let hello = load(meridian_artifacts::HELLO);
    let m = sandbox().describe(&hello).await.unwrap();
    assert_eq!(m.name, "hello");
    assert!(m.supports_plan);
    assert_eq!(m.input_schema["properties"]["name"]["type"], "string");
    assert_eq!(m.output_schema["required"], json!(["greeting"]));

    let out = sandbox()
        .invoke(&hello, run(json!({"name": "Ada"})))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"greeting": "Hello, Ada!"}));
    assert!(out.plan.is_empty());
    let line = &out.logs[0];
    assert_eq!(
        (line.level, line.source, line.message.as_str()),
        (Level::Info, LogSource::Guest, "greeting")
    );
    assert_eq!(line.fields, vec![("name".to_owned(), "Ada".to_owned())]);
}

#[tokio::test]
async fn bad_input_is_invalid_input_with_path() {
    let hello = load(meridian_artifacts::HELLO);
    let err = sandbox()
        .invoke(&hello, run(json!({"name": 42})))
        .await
        .unwrap_err();
    match err {
        StepFailure::InvalidInput(m) => assert!(m.starts_with("with.name: invalid type"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let err = sandbox()
        .invoke(&hello, run(json!({"nmae": "x"})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StepFailure::InvalidInput(m) if m.contains("unknown field `nmae`")),
        "{err:?}"
    );
}
