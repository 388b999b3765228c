//! How a [`StepRequest`] and its result are stored in a task row.
//!
//! In clear (columns and `request`): run, step, idempotency key, attempt, component (`uses`:
//! readable in its column, typed in `request`, with paths already absolute so a worker in any
//! directory loads the same file), action, mode, limits and timeout — what an operator needs to
//! see in `meridian.tasks`.
//! Sealed under the task key (`sealed`): the evaluated input, the resolved grants (SQL DSNs, secret
//! values, HTTP allow-list, preopens) and the mask list — everything that may hold a secret.
//! Results are masked by the worker with the request's mask list before they are written, so no
//! secret value reaches the table in clear (the engine would mask them anyway).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use meridian_engine::{
    Action, AttemptError, ComponentRef, FsPreopen, Masker, Mode, ResolvedGrants, StepError,
    StepRequest, StepResult,
};
use meridian_model::{HttpLimits, Limits};
use serde_json::{Value as Json, json};

use crate::{DistError, TaskKey};

/// Format of `request` and of the sealed payload (2: the component is typed in `request`).
const WIRE_VERSION: u64 = 2;

/// A task row's content as the coordinator inserts it.
#[derive(Clone, Debug)]
pub(crate) struct TaskRow {
    pub(crate) run_id: String,
    pub(crate) step_id: String,
    pub(crate) idempotency_key: String,
    pub(crate) attempt: i32,
    /// The component as text, for people reading the table; the worker reads `request.uses`.
    pub(crate) uses: String,
    pub(crate) action: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) request: Json,
    pub(crate) sealed: Vec<u8>,
    pub(crate) key_id: String,
}

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Run => "run",
        Action::Compensate => "compensate",
    }
}

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::Apply => "apply",
        Mode::Plan => "plan",
    }
}

/// Binds the sealed payload to every clear field a worker acts on.
#[allow(clippy::too_many_arguments)]
fn aad(
    run_id: &str,
    step_id: &str,
    key: &str,
    attempt: i32,
    uses: &str,
    action: &str,
    mode: &str,
    request: &Clear,
) -> Vec<u8> {
    let parts = [
        "meridian-task-v3",
        run_id,
        step_id,
        key,
        &attempt.to_string(),
        uses,
        &request.uses.to_string(),
        action,
        mode,
        &request.memory.to_string(),
        &request.output.to_string(),
        &request.handles.to_string(),
        &request.timeout_ms.to_string(),
    ];
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// The clear part of `request`.
struct Clear {
    /// The component, serialised (the typed form, bound into the AAD as it is stored).
    uses: Json,
    memory: u64,
    output: u64,
    handles: u32,
    timeout_ms: u64,
}

impl Clear {
    fn of(req: &StepRequest) -> Result<Clear, String> {
        Ok(Clear {
            uses: serde_json::to_value(&req.uses)
                .map_err(|e| format!("the component {}: {e}", req.uses))?,
            memory: req.limits.memory,
            output: req.limits.output,
            handles: req.limits.handles,
            timeout_ms: req.timeout.as_millis().min(u64::MAX as u128) as u64,
        })
    }

    fn to_json(&self) -> Json {
        json!({
            "v": WIRE_VERSION,
            "uses": self.uses,
            "limits": {"memory": self.memory, "output": self.output, "handles": self.handles},
            "timeout_ms": self.timeout_ms,
        })
    }

    fn from_json(j: &Json) -> Result<Clear, String> {
        if j.get("v").and_then(Json::as_u64) != Some(WIRE_VERSION) {
            return Err(format!(
                "unknown request format {}",
                j.get("v").unwrap_or(&Json::Null)
            ));
        }
        let num = |v: Option<&Json>, what: &str| {
            v.and_then(Json::as_u64)
                .ok_or_else(|| format!("request.{what} is missing"))
        };
        Ok(Clear {
            uses: j.get("uses").cloned().ok_or("request.uses is missing")?,
            memory: num(j.pointer("/limits/memory"), "limits.memory")?,
            output: num(j.pointer("/limits/output"), "limits.output")?,
            handles: num(j.pointer("/limits/handles"), "limits.handles")?
                .try_into()
                .map_err(|_| "request.limits.handles is out of range".to_owned())?,
            timeout_ms: num(j.get("timeout_ms"), "timeout_ms")?,
        })
    }
}

/// The task row for `req`. `Err` only when the component cannot be written as JSON (a path
/// that is not UTF-8).
pub(crate) fn encode_request(req: &StepRequest, key: &TaskKey) -> Result<TaskRow, String> {
    let clear = Clear::of(req)?;
    let uses = req.uses.to_string();
    let attempt = req.attempt.min(i32::MAX as u32) as i32;
    let action = action_str(req.action);
    let mode = mode_str(req.mode);
    let g = &req.grants;
    let secret = json!({
        "v": WIRE_VERSION,
        "input": req.input,
        "grants": {
            "http": g.http,
            "http_limits": {
                "max_request_bytes": g.http_limits.max_request_bytes,
                "max_response_bytes": g.http_limits.max_response_bytes,
                "timeout_ms": g.http_limits.timeout.as_millis().min(u64::MAX as u128) as u64,
            },
            "sql": g.sql,
            "fs": g.fs.iter().map(|f| json!({
                "host": f.host.to_string_lossy(),
                "guest": f.guest,
                "writable": f.writable,
            })).collect::<Vec<_>>(),
            "secrets": g.secrets,
            "dns": g.dns.map(|a| a.to_string()),
            "kv": g.kv,
        },
        "mask": req.mask,
    });
    let aad = aad(
        &req.run_id,
        &req.step_id,
        &req.idempotency_key,
        attempt,
        &uses,
        action,
        mode,
        &clear,
    );
    Ok(TaskRow {
        run_id: req.run_id.clone(),
        step_id: req.step_id.clone(),
        idempotency_key: req.idempotency_key.clone(),
        attempt,
        uses,
        action,
        mode,
        request: clear.to_json(),
        sealed: key.seal(secret.to_string().as_bytes(), &aad),
        key_id: key.fingerprint(),
    })
}

/// Rebuilds the request on the worker. `Err` when the row does not open (wrong key, altered row)
/// or is malformed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_request(
    key: &TaskKey,
    run_id: String,
    step_id: String,
    idempotency_key: String,
    attempt: i32,
    uses: &str,
    action: &str,
    mode: &str,
    request: &Json,
    sealed: &[u8],
) -> Result<StepRequest, DistError> {
    let bad = |m: String| DistError::Key(format!("task {idempotency_key}#{attempt}: {m}"));
    let clear = Clear::from_json(request).map_err(bad)?;
    let action_v = match action {
        "run" => Action::Run,
        "compensate" => Action::Compensate,
        other => return Err(bad(format!("unknown action `{other}`"))),
    };
    let mode_v = match mode {
        "apply" => Mode::Apply,
        "plan" => Mode::Plan,
        other => return Err(bad(format!("unknown mode `{other}`"))),
    };
    let aad = aad(
        &run_id,
        &step_id,
        &idempotency_key,
        attempt,
        uses,
        action,
        mode,
        &clear,
    );
    let plain = key.open(sealed, &aad)?;
    let component: ComponentRef = serde_json::from_value(clear.uses.clone())
        .map_err(|e| bad(format!("request.uses: {e}")))?;
    let secret: Json =
        serde_json::from_slice(&plain).map_err(|e| bad(format!("sealed payload: {e}")))?;
    let g = secret.get("grants").cloned().unwrap_or(Json::Null);
    let strings = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let string_map = |v: Option<&Json>| -> BTreeMap<String, String> {
        v.and_then(Json::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let defaults = HttpLimits::default();
    let hl = g.get("http_limits");
    let num = |name: &str, d: u64| {
        hl.and_then(|h| h.get(name))
            .and_then(Json::as_u64)
            .unwrap_or(d)
    };
    // Exhaustive on purpose: a grant added to the engine must be carried here too, or the build
    // fails (a default would silently drop it in transit).
    let http = match g.get("http") {
        None | Some(Json::Null) => Vec::new(),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| bad(format!("grants.http: {e}")))?
        }
    };
    let grants = ResolvedGrants {
        http,
        http_limits: HttpLimits {
            max_request_bytes: num("max_request_bytes", defaults.max_request_bytes),
            max_response_bytes: num("max_response_bytes", defaults.max_response_bytes),
            timeout: Duration::from_millis(num("timeout_ms", defaults.timeout.as_millis() as u64)),
        },
        sql: string_map(g.get("sql")),
        fs: g
            .get("fs")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .map(|f| FsPreopen {
                        host: PathBuf::from(f.get("host").and_then(Json::as_str).unwrap_or("")),
                        guest: f
                            .get("guest")
                            .and_then(Json::as_str)
                            .unwrap_or("")
                            .to_string(),
                        writable: f.get("writable").and_then(Json::as_bool).unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        secrets: string_map(g.get("secrets")),
        dns: match g.get("dns") {
            None | Some(Json::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(format!("grants.dns: not an address: {v}")))?,
            ),
        },
        kv: g
            .get("kv")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(StepRequest {
        run_id,
        step_id,
        uses: component,
        action: action_v,
        mode: mode_v,
        input: secret.get("input").cloned().unwrap_or(Json::Null),
        attempt: attempt.max(0) as u32,
        idempotency_key,
        grants,
        limits: Limits {
            memory: clear.memory,
            output: clear.output,
            handles: clear.handles,
        },
        timeout: Duration::from_millis(clear.timeout_ms),
        mask: strings(secret.get("mask")),
        // A worker's executor hands the lines back in its result; the tap stays empty.
        log: meridian_protocol::LogTap::default(),
    })
}

/// A task's result as stored in the queue: `{"ok": {output, plan, logs}}` or
/// `{"err": {kind, message}, "logs": [...]}` — the protocol's own types, so nothing is re-read
/// by key name. A failure's `logs` (what the attempt logged before it failed) may be absent.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireResult {
    Ok {
        output: Json,
        plan: Vec<meridian_protocol::PlannedChange>,
        logs: Vec<meridian_protocol::LogLine>,
    },
    Err(StepError),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WireStored {
    #[serde(flatten)]
    result: WireResult,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    logs: Vec<meridian_protocol::LogLine>,
}

fn mask_logs(
    logs: &[meridian_protocol::LogLine],
    masker: &Masker,
) -> Vec<meridian_protocol::LogLine> {
    logs.iter()
        .map(|l| meridian_protocol::LogLine {
            message: masker.mask_str(&l.message),
            fields: l
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), masker.mask_str(v)))
                .collect(),
            ..l.clone()
        })
        .collect()
}

/// The result, masked, as the queue stores it.
pub(crate) fn encode_result(r: &Result<StepResult, AttemptError>, masker: &Masker) -> Json {
    let wire = match r {
        Ok(res) => WireStored {
            result: WireResult::Ok {
                output: masker.mask_json(&res.output),
                plan: res.plan.iter().map(|p| p.clone().masked(masker)).collect(),
                logs: mask_logs(&res.logs, masker),
            },
            logs: Vec::new(),
        },
        Err(f) => WireStored {
            result: WireResult::Err(f.error.clone().map_text(|t| masker.mask_string(t))),
            logs: mask_logs(&f.logs, masker),
        },
    };
    serde_json::to_value(wire).unwrap_or(Json::Null)
}

/// A stored result; one the queue cannot read fails the step with the reason (never `null`).
pub(crate) fn decode_result(j: &Json) -> Result<StepResult, AttemptError> {
    match serde_json::from_value::<WireStored>(j.clone()) {
        Ok(WireStored {
            result: WireResult::Ok { output, plan, logs },
            ..
        }) => Ok(StepResult { output, plan, logs }),
        Ok(WireStored {
            result: WireResult::Err(error),
            logs,
        }) => Err(AttemptError { error, logs }),
        Err(e) => {
            Err(StepError::Fatal(format!("the task's result is malformed ({e}): {j}")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> StepRequest {
        StepRequest {
            run_id: "r1".into(),
            step_id: "deploy[eu]".into(),
            uses: ComponentRef::Path {
                path: "/srv/flows/steps/db.wasm".into(),
                sha256: None,
            },
            action: Action::Compensate,
            mode: Mode::Plan,
            input: json!({"dsn": "postgres://app:hunter2@db/app", "n": 3}),
            attempt: 2,
            idempotency_key: "r1/deploy[eu]".into(),
            grants: ResolvedGrants {
                http: vec!["https://*.example.com".parse().unwrap()],
                http_limits: HttpLimits {
                    max_request_bytes: 10,
                    max_response_bytes: 20,
                    timeout: Duration::from_millis(1500),
                },
                sql: [(
                    "db".to_string(),
                    "postgres://app:hunter2@db/app".to_string(),
                )]
                .into(),
                fs: vec![FsPreopen {
                    host: "/srv/x".into(),
                    guest: "/x".into(),
                    writable: true,
                }],
                secrets: [("db_password".to_string(), "hunter2".to_string())].into(),
                dns: Some("127.0.0.1:5353".parse().unwrap()),
                kv: vec!["handoff".into()],
            },
            limits: Limits {
                memory: 1 << 20,
                output: 4096,
                handles: 64,
            },
            timeout: Duration::from_secs(42),
            mask: vec!["hunter2".into()],
            log: Default::default(),
        }
    }

    /// What a worker does with `row`, its `uses` column and `request` as given.
    fn open(
        key: &TaskKey,
        row: &TaskRow,
        uses: &str,
        request: &Json,
    ) -> Result<StepRequest, DistError> {
        decode_request(
            key,
            row.run_id.clone(),
            row.step_id.clone(),
            row.idempotency_key.clone(),
            row.attempt,
            uses,
            row.action,
            row.mode,
            request,
            &row.sealed,
        )
    }

    #[test]
    fn request_round_trips_and_keeps_secrets_out_of_clear_fields() {
        let key = TaskKey::generate();
        let req = request();
        let row = encode_request(&req, &key).unwrap();
        let clear = format!(
            "{} {} {} {} {} {}",
            row.run_id, row.step_id, row.idempotency_key, row.uses, row.request, row.key_id
        );
        assert!(!clear.contains("hunter2"), "{clear}");
        assert!(!row.sealed.windows(7).any(|w| w == b"hunter2"));
        let back = open(&key, &row, &row.uses, &row.request).unwrap();
        assert_eq!(back.uses, req.uses);
        assert_eq!(row.uses, "/srv/flows/steps/db.wasm");
        assert_eq!(back.input, req.input);
        assert_eq!(back.grants.sql, req.grants.sql);
        assert_eq!(back.grants.secrets, req.grants.secrets);
        assert_eq!(back.grants.http, req.grants.http);
        assert_eq!(back.grants.http_limits, req.grants.http_limits);
        assert_eq!(back.grants.fs, req.grants.fs);
        assert_eq!(back.grants.dns, req.grants.dns);
        assert_eq!(back.grants.kv, req.grants.kv);
        assert_eq!(back.limits, req.limits);
        assert_eq!(back.timeout, req.timeout);
        assert_eq!(back.mask, req.mask);
        assert_eq!(
            (back.action, back.mode, back.attempt),
            (Action::Compensate, Mode::Plan, 2)
        );
    }

    #[test]
    fn altered_clear_fields_do_not_open() {
        let key = TaskKey::generate();
        let row = encode_request(&request(), &key).unwrap();
        // Pointing the sealed secrets at another component is refused, whether the column
        // people read or the typed reference the worker loads is changed.
        let mut evil = row.request.clone();
        evil["uses"]["path"] = json!("/srv/flows/steps/evil.wasm");
        for (uses, request) in [
            ("/srv/flows/steps/evil.wasm".to_owned(), &row.request),
            (row.uses.clone(), &evil),
        ] {
            let err = open(&key, &row, &uses, request).unwrap_err();
            assert!(matches!(err, DistError::Key(_)), "{err}");
        }
        let mut req = row.request.clone();
        req["timeout_ms"] = json!(1);
        assert!(open(&key, &row, &row.uses, &req).is_err());
    }

    fn plan_put(url: &str) -> meridian_protocol::PlannedChange {
        meridian_protocol::PlannedChange::Http {
            method: "PUT".into(),
            url: url.into(),
            headers: vec![],
            body_json: None,
            body_summary: None,
            body_bytes: 0,
        }
    }

    fn log_line(message: &str) -> meridian_protocol::LogLine {
        meridian_protocol::LogLine {
            level: meridian_protocol::Level::Info,
            source: meridian_protocol::LogSource::Guest,
            message: message.into(),
            fields: vec![],
        }
    }

    #[test]
    fn results_round_trip_masked() {
        let m = Masker::new(["hunter2".to_string()]);
        let ok = Ok(StepResult {
            output: json!({"said": "pw hunter2"}),
            plan: vec![plan_put("/x hunter2")],
            logs: vec![log_line("hunter2 used")],
        });
        let enc = encode_result(&ok, &m);
        assert!(!enc.to_string().contains("hunter2"));
        assert_eq!(
            decode_result(&enc).unwrap(),
            StepResult {
                output: json!({"said": "pw ***"}),
                plan: vec![plan_put("/x ***")],
                logs: vec![log_line("*** used")],
            }
        );
        for e in [
            StepError::Retryable("again hunter2".into()),
            StepError::Fatal("no".into()),
            StepError::InvalidInput("bad".into()),
            StepError::Timeout(Duration::from_millis(1500)),
            StepError::Cancelled,
        ] {
            let back = decode_result(&encode_result(&Err(e.clone().into()), &m)).unwrap_err();
            let want = match e {
                StepError::Retryable(_) => StepError::Retryable("again ***".into()),
                other => other,
            };
            assert_eq!(back, want.into());
        }
        // A failure carries what the attempt logged before it, masked.
        let failed = AttemptError {
            error: StepError::Fatal("lag".into()),
            logs: vec![log_line("lag 9 GB at hunter2")],
        };
        let enc = encode_result(&Err(failed), &m);
        assert!(!enc.to_string().contains("hunter2"));
        assert_eq!(
            decode_result(&enc).unwrap_err(),
            AttemptError {
                error: StepError::Fatal("lag".into()),
                logs: vec![log_line("lag 9 GB at ***")],
            }
        );
        // The literal the SQL statements write for cancelled tasks (and a result stored before
        // failures carried logs).
        assert_eq!(
            decode_result(&json!({"err": {"kind": "cancelled"}})),
            Err(StepError::Cancelled.into())
        );
        assert!(matches!(
            decode_result(&json!({"x": 1})),
            Err(AttemptError {
                error: StepError::Fatal(_),
                ..
            })
        ));
    }
}
