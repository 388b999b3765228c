//! Webhooks: a run started, waits for an approval, failed or succeeded; a drill missed a target;
//! a schedule paused itself. Sent from a queue of their own, so a slow or dead receiver never
//! holds a run up; each delivery is retried with backoff and signed with HMAC-SHA256 when the
//! webhook has a secret.
//!
//! Headers: `X-Meridian-Event` (the kind), `X-Meridian-Delivery` (one id per notification,
//! the same on every retry, so a receiver can drop duplicates) and, when signed,
//! `X-Meridian-Signature: sha256=<hex of HMAC-SHA256(secret, body)>`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use meridian_protocol::RunStatus;
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::{Webhook, WebhookFormat};

/// Notifications waiting beyond this are dropped (and logged), never waited for.
const QUEUE: usize = 1024;
/// Attempts per delivery; the waits between them double from 500 ms.
const ATTEMPTS: u32 = 5;

/// One notification.
#[derive(Clone, Debug, Serialize)]
pub struct Note {
    /// `run.started`, `run.awaiting-approval`, `run.failed`, `run.succeeded`, `run.cancelled`,
    /// `drill.missed`, `schedule.paused`, `readiness.changed`, `drift.changed`.
    pub kind: String,
    pub workflow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The git commit a run was started for (`on.git`), or a drift check compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub message: String,
    /// Unix ms.
    pub at: u64,
    pub delivery: String,
    /// The workflow's own `notify:` webhooks, besides the server's.
    #[serde(skip)]
    pub hooks: Vec<Webhook>,
}

impl Note {
    pub fn run(kind: &str, workflow: &str, run_id: &str, status: RunStatus, message: &str) -> Note {
        Note {
            kind: kind.into(),
            workflow: workflow.into(),
            run_id: Some(run_id.into()),
            status: Some(status.as_str().into()),
            schedule: None,
            commit: None,
            message: message.into(),
            at: meridian_store::pending::now_ms().max(0) as u64,
            delivery: delivery_id(),
            hooks: Vec::new(),
        }
    }

    pub fn schedule(kind: &str, workflow: &str, schedule: &str, message: &str) -> Note {
        Note {
            kind: kind.into(),
            workflow: workflow.into(),
            run_id: None,
            status: None,
            schedule: Some(schedule.into()),
            commit: None,
            message: message.into(),
            at: meridian_store::pending::now_ms().max(0) as u64,
            delivery: delivery_id(),
            hooks: Vec::new(),
        }
    }

    /// A workflow turned ready or not ready (`readiness.changed`).
    pub fn readiness(workflow: &str, ready: bool, message: &str) -> Note {
        Note {
            kind: "readiness.changed".into(),
            workflow: workflow.into(),
            run_id: None,
            status: Some(if ready { "ready" } else { "not-ready" }.into()),
            schedule: None,
            commit: None,
            message: message.into(),
            at: meridian_store::pending::now_ms().max(0) as u64,
            delivery: delivery_id(),
            hooks: Vec::new(),
        }
    }

    /// A workflow's gateways drifted from their ADC files, or are back in sync
    /// (`drift.changed`); `state` is `drift`, `in-sync` or `unknown`.
    pub fn drift(workflow: &str, state: &str, commit: Option<String>, message: &str) -> Note {
        Note {
            kind: "drift.changed".into(),
            workflow: workflow.into(),
            run_id: None,
            status: Some(state.into()),
            schedule: None,
            commit,
            message: message.into(),
            at: meridian_store::pending::now_ms().max(0) as u64,
            delivery: delivery_id(),
            hooks: Vec::new(),
        }
    }

    /// The body in a webhook's format.
    fn body(&self, format: WebhookFormat) -> String {
        match format {
            WebhookFormat::Json => serde_json::to_string(self).unwrap_or_default(),
            WebhookFormat::Slack => {
                let mut text = format!("*{}* `{}`", self.kind, self.workflow);
                if let Some(r) = &self.run_id {
                    text.push_str(&format!(" run `{r}`"));
                }
                if let Some(s) = &self.schedule {
                    text.push_str(&format!(" schedule `{s}`"));
                }
                if let Some(c) = &self.commit {
                    text.push_str(&format!(" commit `{}`", &c[..c.len().min(12)]));
                }
                if !self.message.is_empty() {
                    text.push_str(&format!(": {}", slack_escape(&self.message)));
                }
                json!({ "text": text }).to_string()
            }
        }
    }
}

/// Slack's three control characters; a step's text must not become a mention or a link.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn delivery_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `sha256=<hex>` of HMAC-SHA256(key, body).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sending end; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Note>>,
}

impl Notifier {
    /// Starts the delivery task.
    pub fn start(hooks: Vec<Webhook>) -> Notifier {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver_all(Arc::new(hooks), rx));
        Notifier { tx: Some(tx) }
    }

    /// Queues a notification; never waits.
    pub fn send(&self, note: Note) {
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send(note)
        {
            tracing::warn!("notification dropped: {e}");
        }
    }
}

async fn deliver_all(hooks: Arc<Vec<Webhook>>, mut rx: mpsc::Receiver<Note>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    while let Some(note) = rx.recv().await {
        for hook in hooks.iter().chain(&note.hooks) {
            let wanted = hook.events.as_ref().is_none_or(|e| e.contains(&note.kind));
            if wanted {
                // Each delivery on its own task: one dead receiver does not delay the others.
                tokio::spawn(deliver(client.clone(), hook.clone(), note.clone()));
            }
        }
    }
}

async fn deliver(client: reqwest::Client, hook: Webhook, note: Note) {
    let body = note.body(hook.format);
    let key = hook
        .secret_env
        .as_ref()
        .and_then(|name| std::env::var(name).ok());
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let mut req = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-meridian-event", &note.kind)
            .header("x-meridian-delivery", &note.delivery)
            .body(body.clone());
        if let Some(k) = &key {
            req = req.header(
                "x-meridian-signature",
                signature(k.as_bytes(), body.as_bytes()),
            );
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return,
            // A 4xx other than 408/429 will not get better by asking again.
            Ok(r)
                if r.status().is_client_error()
                    && r.status() != reqwest::StatusCode::REQUEST_TIMEOUT
                    && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::warn!(url = %hook.url, status = %r.status(), "webhook refused the notification");
                return;
            }
            Ok(r) => {
                tracing::debug!(url = %hook.url, attempt, status = %r.status(), "webhook failed")
            }
            Err(e) => tracing::debug!(url = %hook.url, attempt, "webhook failed: {e}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::warn!(url = %hook.url, kind = %note.kind, "webhook gave up after {ATTEMPTS} attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_bodies_escape_what_a_step_wrote() {
        let n = Note::run(
            "run.failed",
            "dr",
            "r1",
            RunStatus::Failed,
            "<!channel> & <http://evil|click>",
        );
        let body: serde_json::Value = serde_json::from_str(&n.body(WebhookFormat::Slack)).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!channel&gt; &amp; &lt;http://evil|click&gt;"),
            "{text}"
        );
        let body: serde_json::Value = serde_json::from_str(&n.body(WebhookFormat::Json)).unwrap();
        assert_eq!(body["kind"], "run.failed");
        assert_eq!(body["status"], "failed");
    }
}
