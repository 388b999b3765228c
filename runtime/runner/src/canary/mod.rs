//! A drill's host-side canaries (the workflow's `drill.canary`): while the run's steps work, a
//! writer inserts sequenced rows into the primary and a prober sends requests through the name
//! clients use. They run in the runner, not in a step, so a step cannot forge what users lost.
//!
//! Journal: `measured canary-started` when they start, `measured canary` with the figures when
//! they stop (after the run's last step plus `settle`). A run resumed after the runner died in
//! between lost the canaries' samples with the process: resume then journals a `canary` record
//! marked `interrupted`, and the figures that need the whole drill are "not measured" (the
//! verdict is incomplete, never met).

mod prober;
mod writer;

use std::net::SocketAddr;
use std::time::Duration;

use meridian_model::expr::{EvalContext, RunStatus as ExprStatus};
use meridian_model::{ConnectionKind, Workflow};
use serde_json::{Map, Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use prober::ProberPlan;
pub use writer::WriterPlan;

/// The longest the canaries wait after the run for clients to see the service again.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(120);

/// `measured` record names.
pub const STARTED: &str = "canary-started";
pub const REPORT: &str = "canary";
/// `measured canary-settling`: the run ended and the canaries go on until clients recover
/// (said, so the wait after the run's last line is not taken for a hang).
pub const SETTLING: &str = "canary-settling";

/// The canaries of one run, resolved against its inputs, secrets and vars.
#[derive(Clone, Debug)]
pub struct CanaryPlan {
    pub writer: Option<WriterPlan>,
    pub prober: Option<ProberPlan>,
    pub settle: Duration,
    pub warm_up: Duration,
}

impl CanaryPlan {
    /// `Ok(None)` when the workflow's drill has no canary. Errors name the field and say why.
    pub fn resolve(
        wf: &Workflow,
        inputs: &Map<String, Json>,
        secrets: &std::collections::BTreeMap<String, String>,
        run: Json,
    ) -> Result<Option<CanaryPlan>, String> {
        let Some(c) = wf.drill.as_ref().and_then(|d| d.canary.as_ref()) else {
            return Ok(None);
        };
        let ctx = context(wf, inputs, secrets, run)?;
        let text = |t: &meridian_model::expr::Template, what: &str| -> Result<String, String> {
            match t
                .eval(&ctx)
                .map_err(|e| format!("drill.canary.{what}: {e}"))?
            {
                Json::String(s) => Ok(s),
                other => Ok(other.to_string()),
            }
        };
        let dsn = |name: &str, what: &str| -> Result<String, String> {
            match wf.connections.get(name).map(|c| &c.kind) {
                Some(ConnectionKind::Postgres(t)) => text(t, what),
                _ => Err(format!(
                    "drill.canary.{what}: `{name}` is not a PostgreSQL connection"
                )),
            }
        };
        let writer = match &c.writer {
            Some(w) => Some(WriterPlan {
                dsn: dsn(&w.connection.value, "writer.connection")?,
                verify_dsn: dsn(&w.verify.value, "writer.verify")?,
                connection: w.connection.value.clone(),
                verify: w.verify.value.clone(),
                rate: w.rate,
                table: w.table.clone(),
            }),
            None => None,
        };
        let prober = match &c.prober {
            Some(p) => {
                let dns = match &p.dns {
                    Some(t) => {
                        let s = text(t, "prober.dns")?;
                        Some(s.parse::<SocketAddr>().map_err(|_| {
                            format!("drill.canary.prober.dns: `{s}` is not IP:PORT (e.g. 127.0.0.1:5353)")
                        })?)
                    }
                    None => None,
                };
                let url = text(&p.url, "prober.url")?;
                if reqwest::Url::parse(&url).map_or(true, |u| u.host_str().is_none()) {
                    return Err(format!(
                        "drill.canary.prober.url: `{url}` is not an http(s) URL with a host"
                    ));
                }
                Some(ProberPlan {
                    url,
                    dns,
                    rate: p.rate,
                    expect: p
                        .expect
                        .as_ref()
                        .map(|t| text(t, "prober.expect"))
                        .transpose()?,
                    timeout: p.timeout,
                    clients: p.clients,
                })
            }
            None => None,
        };
        Ok(Some(CanaryPlan {
            writer,
            prober,
            settle: c.settle,
            warm_up: c.warm_up,
        }))
    }
}

/// What the canary block's templates see: inputs, secrets, run and vars (like `connections`).
fn context(
    wf: &Workflow,
    inputs: &Map<String, Json>,
    secrets: &std::collections::BTreeMap<String, String>,
    run: Json,
) -> Result<EvalContext, String> {
    let data =
        meridian_engine::run::base_context(wf, inputs, secrets, run).map_err(|e| e.to_string())?;
    Ok(EvalContext {
        data: Json::Object(data),
        status: ExprStatus::default(),
    })
}

/// Canaries at work.
pub struct Running {
    stop: watch::Sender<bool>,
    writer: Option<(WriterPlan, JoinHandle<writer::WriterLog>)>,
    prober: Option<JoinHandle<prober::ProbeLog>>,
    latest: prober::Latest,
    settle: Duration,
    run_id: String,
    started_at_ms: u64,
}

impl Running {
    /// Starts the canaries on the current tokio runtime.
    pub fn start(plan: CanaryPlan, run_id: &str) -> Running {
        let (stop, rx) = watch::channel(false);
        let writer = plan.writer.map(|w| {
            let task = tokio::spawn(writer::run(w.clone(), run_id.to_string(), rx.clone()));
            (w, task)
        });
        let latest = prober::Latest::default();
        let prober = plan
            .prober
            .map(|p| tokio::spawn(prober::run(p, latest.clone(), rx.clone())));
        Running {
            stop,
            writer,
            prober,
            latest,
            settle: plan.settle,
            run_id: run_id.to_string(),
            started_at_ms: now_ms(),
        }
    }

    /// What `canary-settling` records: how long the canaries go on at least and at most.
    pub fn settling_record(&self, succeeded: bool) -> Json {
        let most = if succeeded && self.prober.is_some() {
            RECOVERY_WAIT
        } else {
            self.settle
        };
        json!({
            "settle_ms": self.settle.as_millis() as u64,
            "at_most_ms": most.as_millis() as u64,
        })
    }

    /// What `canary-started` records.
    pub fn started_record(&self) -> Json {
        json!({
            "started_at_ms": self.started_at_ms,
            "writer": self.writer.as_ref().map(|(w, _)| json!({"connection": w.connection, "verify": w.verify, "rate": w.rate, "table": w.table})),
            "prober": self.prober.is_some(),
        })
    }

    /// Keeps measuring until the service has answered clients for `settle` without a failure
    /// (at least `settle`, at most [`RECOVERY_WAIT`]: a client's cached DNS answer may outlive the
    /// run's last step), stops, counts the rows on the new primary, and returns the figures (the
    /// `canary` record). After a run that did not succeed nothing is waited for beyond `settle`:
    /// no failover completed for clients to recover through (a drill stopped by its first check
    /// waited two minutes, silently, before it said so).
    pub async fn finish(self, succeeded: bool) -> Json {
        let settle_ms = self.settle.as_millis() as u64;
        let give_up = tokio::time::Instant::now()
            + if succeeded {
                RECOVERY_WAIT
            } else {
                self.settle
            };
        tokio::time::sleep(self.settle).await;
        while self.prober.is_some() && tokio::time::Instant::now() < give_up {
            let (failed, ok) = *self.latest.lock().unwrap_or_else(|p| p.into_inner());
            let recovered = match (failed, ok) {
                (None, _) => true,
                (Some(f), Some(s)) => s > f && now_ms().saturating_sub(f) >= settle_ms,
                (Some(_), None) => false,
            };
            if recovered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.stop.send(true);
        let ended_at_ms = now_ms();
        let mut out = Map::new();
        out.insert("started_at_ms".into(), json!(self.started_at_ms));
        out.insert("ended_at_ms".into(), json!(ended_at_ms));
        if let Some((plan, task)) = self.writer {
            let log = task.await.unwrap_or_default();
            let f = writer::figures(&plan, &self.run_id, log).await;
            merge(&mut out, serde_json::to_value(f));
        }
        if let Some(task) = self.prober {
            let log = task.await.unwrap_or_default();
            merge(&mut out, serde_json::to_value(prober::figures(log)));
        }
        Json::Object(out)
    }
}

fn merge(out: &mut Map<String, Json>, v: Result<Json, serde_json::Error>) {
    if let Ok(Json::Object(m)) = v {
        out.extend(m);
    }
}

/// One prober request: does the service answer clients through the GSLB right now?
pub async fn probe_once(plan: ProberPlan) -> Result<(), String> {
    prober::once(&plan).await
}

/// The `canary` record of a run whose canaries died with the runner.
pub fn interrupted() -> Json {
    json!({
        "interrupted": true,
        "writer_not_measured": "the runner stopped during the drill and the canaries' samples were lost with it",
        "prober_not_measured": "the runner stopped during the drill and the canaries' samples were lost with it",
    })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
