//! A thin Cloudflare API v4 client: bearer token, the `{success, errors, messages, result}`
//! envelope, bounded pagination, and failures classified with a message naming what to check.

use meridian_families::{Env, StepError};
use meridian_sdk::http::{Request, Response, join_url};
use serde_json::Value;

/// Upper bound on pages read from a list, so a misbehaving endpoint cannot loop the step.
const MAX_PAGES: u64 = 50;

/// A Cloudflare API endpoint with a token.
pub struct Client<'a> {
    env: Env<'a>,
    base: String,
    token: String,
    token_secret: String,
}

impl std::fmt::Debug for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"***")
            .finish()
    }
}

/// The `result` of a call, or `None` when plan mode recorded a mutating request.
pub type Outcome = Option<Value>;

impl<'a> Client<'a> {
    /// A client for `base` (e.g. `https://api.cloudflare.com/client/v4`).
    pub fn new(env: Env<'a>, base: &str, token: String, token_secret: &str) -> Self {
        Self {
            env,
            base: base.trim_end_matches('/').to_owned(),
            token,
            token_secret: token_secret.to_owned(),
        }
    }

    /// One call; `what` names it in errors (e.g. "create pool eu-west-1").
    pub fn call(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Outcome, StepError> {
        let mut req = Request::new(method, join_url(&self.base, path))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.json_value(b);
        }
        let what = format!("Cloudflare {what}");
        let resp = self.env.send(&what, req)?;
        if resp.recorded {
            return Ok(None);
        }
        let envelope: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let success = envelope
            .as_ref()
            .and_then(|e| e.get("success"))
            .and_then(Value::as_bool);
        if resp.is_success() && success != Some(false) {
            let Some(mut env) = envelope else {
                return Err(StepError::retryable(format!(
                    "{what}: HTTP {} with a body that is not the API's JSON envelope: {}; check provider.cloudflare.endpoint",
                    resp.status,
                    resp.snippet(200)
                )));
            };
            return Ok(Some(
                env.get_mut("result")
                    .map(Value::take)
                    .unwrap_or(Value::Null),
            ));
        }
        Err(self.classify(&what, &resp, envelope.as_ref()))
    }

    fn classify(&self, what: &str, resp: &Response, envelope: Option<&Value>) -> StepError {
        let errors: Vec<String> = envelope
            .and_then(|e| e.get("errors"))
            .and_then(Value::as_array)
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        let code = e.get("code").map(|c| c.to_string()).unwrap_or_default();
                        let msg = e.get("message").and_then(Value::as_str).unwrap_or_default();
                        format!("{code} {msg}").trim().to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let detail = if errors.is_empty() {
            resp.snippet(300)
        } else {
            errors.join("; ")
        };
        let hint = format!(
            "the API token in secret `{}` (it needs Load Balancing: Monitors and Pools Write on the account and Load Balancers Write on the zone)",
            self.token_secret
        );
        match resp.status {
            404 => StepError::fatal(format!(
                "{what}: not found ({detail}); check provider.cloudflare.account_id and zone_id"
            )),
            // The envelope can report failure with a 200; classify by the status otherwise.
            200..=299 => StepError::fatal(format!("{what}: the API reported failure: {detail}")),
            status => StepError::from_status(what, status, &detail, &hint),
        }
    }

    /// Every item of a list endpoint, following `result_info` pages.
    pub fn list(&self, what: &str, path: &str) -> Result<Vec<Value>, StepError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!("{path}?page={page}&per_page=50");
            let req = Request::new("GET", join_url(&self.base, &url))
                .header("authorization", format!("Bearer {}", self.token))
                .header("accept", "application/json");
            let what = format!("Cloudflare {what}");
            let resp = self.env.send(&what, req)?;
            let envelope: Option<Value> = serde_json::from_slice(&resp.body).ok();
            let success = envelope
                .as_ref()
                .and_then(|e| e.get("success"))
                .and_then(Value::as_bool);
            if !resp.is_success() || success == Some(false) {
                return Err(self.classify(&what, &resp, envelope.as_ref()));
            }
            let env = envelope.unwrap_or(Value::Null);
            let items = env.get("result").and_then(Value::as_array).cloned().ok_or_else(|| {
                StepError::retryable(format!("{what}: the answer has no `result` list; check provider.cloudflare.endpoint"))
            })?;
            let got = items.len() as u64;
            out.extend(items);
            let info = env.get("result_info");
            let total_pages = info
                .and_then(|i| i.get("total_pages"))
                .and_then(Value::as_u64);
            let total_count = info
                .and_then(|i| i.get("total_count"))
                .and_then(Value::as_u64);
            let more = match (total_pages, total_count) {
                (Some(tp), _) => page < tp,
                (None, Some(tc)) => (out.len() as u64) < tc && got > 0,
                (None, None) => false,
            };
            if !more {
                return Ok(out);
            }
        }
        Err(StepError::retryable(format!(
            "Cloudflare {what}: more than {MAX_PAGES} pages"
        )))
    }
}
