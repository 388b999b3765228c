//! Runs a list of operations given as input (log, print, kv, secret, sleep, fail, counter, sql) so
//! tests can drive every host interface from one guest.
use std::sync::atomic::{AtomicU64, Ordering};

use meridian_sdk::sql::Value;
use meridian_sdk::{Ctx, Error, JsonSchema, Level, ManifestInfo, Step};
use serde::{Deserialize, Serialize};

/// One operation.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Log a message at a level.
    Log {
        /// `trace`..`error`.
        level: String,
        /// Message.
        message: String,
    },
    /// Set a kv key to a JSON value.
    KvSet {
        /// Key.
        key: String,
        /// Value.
        value: serde_json::Value,
    },
    /// Read a kv key.
    KvGet {
        /// Key.
        key: String,
    },
    /// Delete a kv key.
    KvDelete {
        /// Key.
        key: String,
    },
    /// List kv keys.
    KvList {
        /// Prefix.
        prefix: String,
    },
    /// Read a secret (reports only whether it worked and its length).
    Secret {
        /// Name.
        name: String,
    },
    /// Print a line on stdout and one on stderr.
    Print {
        /// The line.
        message: String,
    },
    /// Sleep (WASI monotonic clock).
    Sleep {
        /// Milliseconds.
        ms: u64,
    },
    /// Fail with an error of `kind` (`retryable`, `fatal`, `invalid-input`).
    Fail {
        /// Kind.
        kind: String,
        /// Message.
        message: String,
    },
    /// Report the invocation.
    Invocation,
    /// Increment a static counter and report it: proves each invocation gets a fresh instance.
    Counter,
    /// Run SQL with JSON parameters (null, bool, integer, float, string; `{"bytes": [..]}`,
    /// `{"json": ..}`); reports rows as JSON objects (query) or rows affected (execute).
    Sql {
        /// Connection name.
        connection: String,
        /// Statement.
        statement: String,
        /// Parameters.
        #[serde(default)]
        params: Vec<serde_json::Value>,
        /// Use `execute` instead of `query`.
        #[serde(default)]
        execute: bool,
    },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn to_sql_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN)), Value::Int),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Object(o) if o.contains_key("bytes") => Value::Bytes(
            o["bytes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|b| b.as_u64())
                        .map(|b| u8::try_from(b).unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        serde_json::Value::Object(o) if o.contains_key("json") => {
            Value::Json(o["json"].to_string())
        }
        other => Value::Json(other.to_string()),
    }
}

/// Inputs.
#[derive(Deserialize, JsonSchema)]
pub struct Input {
    /// Operations, run in order.
    pub ops: Vec<Op>,
    /// Compensation appends the run's kv value under `undo` (or `none`) to this file (in a
    /// writable preopen), so tests can see what state compensation found.
    #[serde(default)]
    pub undo_record: Option<String>,
}

/// Outputs.
#[derive(Serialize, JsonSchema)]
pub struct Output {
    /// One result per operation.
    pub results: Vec<serde_json::Value>,
}

/// Kitchen sink.
pub struct KitchenSink;

impl Step for KitchenSink {
    type Input = Input;
    type Output = Output;
    fn manifest() -> ManifestInfo {
        // No declared needs: which grants it uses depends on its `ops`, and a test that leaves
        // one out wants to see the sandbox deny it at run time.
        ManifestInfo::new("kitchen-sink", "0.1.0").supports_compensate(true)
    }
    fn run(ctx: &Ctx, input: Input) -> Result<Output, Error> {
        let mut results = Vec::new();
        for op in input.ops {
            let r = match op {
                Op::Log { level, message } => {
                    let level = match level.as_str() {
                        "trace" => Level::Trace,
                        "debug" => Level::Debug,
                        "warn" => Level::Warn,
                        "error" => Level::Error,
                        _ => Level::Info,
                    };
                    ctx.log.log(level, &message, &[("op", "log")]);
                    serde_json::Value::Null
                }
                Op::KvSet { key, value } => match ctx.kv().set_json(&key, &value) {
                    Ok(()) => "ok".into(),
                    Err(e) => e.to_string().into(),
                },
                Op::KvGet { key } => ctx
                    .kv()
                    .get_json::<serde_json::Value>(&key)?
                    .unwrap_or_default(),
                Op::KvDelete { key } => ctx.kv().delete(&key).into(),
                Op::KvList { prefix } => ctx.kv().list(&prefix).into(),
                Op::Secret { name } => match ctx.secret(&name) {
                    Ok(s) => serde_json::json!({ "len": s.len() }),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                },
                Op::Print { message } => {
                    println!("{message}");
                    eprintln!("{message} (stderr)");
                    serde_json::Value::Null
                }
                Op::Sleep { ms } => {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    serde_json::Value::Null
                }
                Op::Fail { kind, message } => {
                    return Err(match kind.as_str() {
                        "retryable" => Error::retryable(message),
                        "invalid-input" => Error::invalid_input(message),
                        _ => Error::fatal(message),
                    });
                }
                Op::Counter => (COUNTER.fetch_add(1, Ordering::SeqCst) + 1).into(),
                Op::Sql {
                    connection,
                    statement,
                    params,
                    execute,
                } => {
                    let params: Vec<Value> = params.iter().map(to_sql_value).collect();
                    let sql = ctx.sql(&connection);
                    if execute {
                        match sql.execute(&statement, &params) {
                            Ok(n) => serde_json::json!({ "affected": n }),
                            Err(e) => serde_json::json!({ "error": e.to_string() }),
                        }
                    } else {
                        match sql.query(&statement, &params) {
                            Ok(rows) => {
                                serde_json::json!({ "rows": rows.to_json(), "columns": rows.columns })
                            }
                            Err(e) => serde_json::json!({ "error": e.to_string() }),
                        }
                    }
                }
                Op::Invocation => {
                    let inv = ctx.invocation();
                    serde_json::json!({
                        "run_id": inv.run_id, "step_id": inv.step_id, "attempt": inv.attempt,
                        "idempotency_key": inv.idempotency_key, "plan": ctx.is_plan(),
                    })
                }
            };
            results.push(r);
        }
        Ok(Output { results })
    }
    fn compensate(ctx: &Ctx, input: Input) -> Result<(), Error> {
        if let Some(path) = &input.undo_record {
            let found = ctx
                .kv()
                .get("undo")
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "none".into());
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::fatal(format!("open {path}: {e}")))?;
            std::io::Write::write_all(&mut f, format!("{found}\n").as_bytes())
                .map_err(|e| Error::fatal(format!("write {path}: {e}")))?;
        }
        ctx.kv().set("compensated", b"yes")
    }
}

meridian_sdk::export_step!(KitchenSink);
