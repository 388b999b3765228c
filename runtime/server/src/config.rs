//! `meridian.toml`: what a server loads, where it listens, who may call it, whom it tells.
//!
//! ```toml
//! workflows = "workflows"          # a directory of *.yaml workflows, relative to this file
//! listen = "127.0.0.1:8080"
//! tokens = "tokens.toml"           # bearer tokens (hashed) and roles; loopback only without
//! tls-cert = "cert.pem"            # HTTPS with this PEM chain and key (both or neither)
//! tls-key = "key.pem"
//! secrets-file = "secrets.env"     # NAME=value lines, for the workflows' `secrets:`
//! pause-after-failures = 3         # a schedule pauses itself after this many failed runs
//! reload-interval = "1s"           # how often the directory is checked for changes
//! grace = "30s"                    # on SIGTERM, how long in-flight runs may take to finish
//! run-lease = "15s"                # a server that stops renewing its runs' leases this long
//!                                  # has them taken over by the servers sharing its journal
//!
//! [workflow.dr-drill]
//! inputs-file = "lab-inputs.yaml"  # inputs of its scheduled and API-started runs
//!
//! [[schedule]]                     # a schedule kept outside the workflow file
//! workflow = "dr-drill"
//! cron = "0 0 3 * * *"
//! timezone = "Europe/Berlin"
//!
//! [[notify]]
//! url = "https://hooks.example.com/meridian"
//! format = "slack"                 # or "json" (the default)
//! secret-env = "MERIDIAN_WEBHOOK_SECRET"   # HMAC-SHA256 key for the signature header
//! events = ["run.failed", "drill.missed", "schedule.paused"]   # all when absent
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the server cannot start with the configuration it was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration, paths resolved against the config file's directory.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub workflows: PathBuf,
    pub listen: SocketAddr,
    pub tokens: Option<PathBuf>,
    /// PEM certificate chain and private key: the API is served over HTTPS when both are given.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub secrets_file: Option<PathBuf>,
    /// The trust policy for the workflows' OCI steps (`trust-policy = "policy.toml"`); the
    /// command line's `--trust-policy` wins.
    pub trust_policy: Option<PathBuf>,
    pub pause_after_failures: u32,
    pub reload_interval: Duration,
    pub grace: Duration,
    /// How long a server's lease on a run it drives lasts without renewal (renewed every
    /// third of it): the servers sharing the journal take over the runs of one that stopped.
    pub run_lease: Duration,
    /// Per workflow name: where the inputs of its server-started runs come from.
    pub workflow_inputs: BTreeMap<String, PathBuf>,
    /// Per workflow name: how often the server checks its readiness (`meridian ready`).
    pub ready_every: BTreeMap<String, Duration>,
    /// Per workflow name: how often the server checks its gateways for drift (`meridian drift`).
    pub drift_every: BTreeMap<String, Duration>,
    /// Where the server keeps its own files: clones of remote `on.git` repositories (`git/`).
    pub state_dir: PathBuf,
    pub schedules: Vec<ExtraSchedule>,
    pub notify: Vec<Webhook>,
    /// Resume the interrupted runs a server started whose lease expired (at start-up and
    /// while serving): a killed server's runs go on from another server sharing the journal,
    /// or from itself after a restart.
    pub resume_interrupted: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workflows: PathBuf::from("workflows"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: None,
            tls_cert: None,
            tls_key: None,
            secrets_file: None,
            trust_policy: None,
            pause_after_failures: 3,
            reload_interval: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            run_lease: Duration::from_secs(15),
            workflow_inputs: BTreeMap::new(),
            ready_every: BTreeMap::new(),
            drift_every: BTreeMap::new(),
            state_dir: PathBuf::from(".meridian"),
            schedules: Vec::new(),
            notify: Vec::new(),
            resume_interrupted: true,
        }
    }
}

/// A `[[schedule]]` of the server config: a schedule for a workflow whose file has none.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExtraSchedule {
    pub workflow: String,
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub overlap: Option<String>,
    #[serde(default)]
    pub catch_up: Option<String>,
    #[serde(default, with = "opt_duration")]
    pub jitter: Option<Duration>,
    #[serde(default)]
    pub inputs: BTreeMap<String, toml::Value>,
}

/// A `[[notify]]` webhook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Webhook {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// The environment variable holding the HMAC key; unsigned when absent.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Which notifications it receives (`run.started`, …); every kind when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl From<&meridian_model::Notify> for Webhook {
    fn from(n: &meridian_model::Notify) -> Webhook {
        Webhook {
            url: n.url.clone(),
            format: if n.format == "slack" {
                WebhookFormat::Slack
            } else {
                WebhookFormat::Json
            },
            secret_env: n.secret_env.clone(),
            events: n.events.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    workflows: Option<PathBuf>,
    listen: Option<String>,
    tokens: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    secrets_file: Option<PathBuf>,
    trust_policy: Option<PathBuf>,
    pause_after_failures: Option<u32>,
    #[serde(default, with = "opt_duration")]
    reload_interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    grace: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    run_lease: Option<Duration>,
    #[serde(default)]
    workflow: BTreeMap<String, PerWorkflow>,
    #[serde(default)]
    schedule: Vec<ExtraSchedule>,
    #[serde(default)]
    notify: Vec<Webhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PerWorkflow {
    inputs_file: Option<PathBuf>,
    #[serde(default, with = "opt_duration")]
    ready_every: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    drift_every: Option<Duration>,
}

impl ServerConfig {
    /// Reads `meridian.toml`. Unknown keys are errors (a typo must not silently disable a
    /// schedule), with the line and column TOML reports.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ServerConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        // TOML cannot have both a string and a table under one key, so the per-workflow tables
        // are `[workflow.NAME]` beside `workflows = "dir"`.
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let mut c = ServerConfig::default();
        if let Some(w) = file.workflows {
            c.workflows = at(w);
        } else {
            c.workflows = base.join("workflows");
        }
        if let Some(l) = file.listen {
            c.listen = l.parse().map_err(|e| {
                invalid(format!(
                    "listen = \"{l}\": {e}; write an address and port such as \"127.0.0.1:8080\""
                ))
            })?;
        }
        c.tokens = file.tokens.map(at);
        c.tls_cert = file.tls_cert.map(at);
        c.tls_key = file.tls_key.map(at);
        c.secrets_file = file.secrets_file.map(at);
        c.trust_policy = file.trust_policy.map(at);
        if let Some(n) = file.pause_after_failures {
            if n == 0 {
                return Err(invalid(
                    "pause-after-failures must be at least 1".to_string(),
                ));
            }
            c.pause_after_failures = n;
        }
        if let Some(d) = file.reload_interval {
            c.reload_interval = d.max(Duration::from_millis(50));
        }
        if let Some(d) = file.run_lease {
            if d < Duration::from_secs(1) {
                return Err(invalid(
                    "run-lease must be at least 1s (it is renewed every third of it)".to_string(),
                ));
            }
            c.run_lease = d;
        }
        if let Some(d) = file.grace {
            c.grace = d;
        }
        for (name, w) in file.workflow {
            if let Some(d) = w.ready_every {
                c.ready_every
                    .insert(name.clone(), d.max(Duration::from_secs(1)));
            }
            if let Some(d) = w.drift_every {
                c.drift_every
                    .insert(name.clone(), d.max(Duration::from_secs(1)));
            }
            if let Some(p) = w.inputs_file {
                c.workflow_inputs.insert(name, at(p));
            }
        }
        c.schedules = file.schedule;
        c.notify = file.notify;
        for (i, h) in c.notify.iter().enumerate() {
            if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                return Err(invalid(format!(
                    "notify #{}: url `{}` is not an http(s) URL",
                    i + 1,
                    h.url
                )));
            }
            // A misspelt kind would never match, and the webhook would stay silent.
            let known = meridian_model::NOTIFY_EVENTS;
            if let Some(e) = h
                .events
                .iter()
                .flatten()
                .find(|e| !known.contains(&e.as_str()))
            {
                return Err(invalid(format!(
                    "notify #{}: events: `{e}` is not a notification kind; use one of: {}",
                    i + 1,
                    known.join(", ")
                )));
            }
        }
        Ok(c)
    }
}

/// `"30s"`, `"1m30s"` or a number of seconds.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Secs(s)) => Ok(Some(Duration::from_secs(s))),
            Some(Raw::Text(t)) => meridian_model::duration::parse_duration(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_reads_and_paths_resolve_against_it() {
        let c = ServerConfig::parse(
            Path::new("/etc/meridian/meridian.toml"),
            r#"
workflows = "wf"
listen = "127.0.0.1:9000"
tokens = "/abs/tokens.toml"
pause-after-failures = 2
reload-interval = "200ms"
grace = 5

[workflow.dr-drill]
inputs-file = "lab.yaml"
ready-every = "5m"
drift-every = "10m"

[[schedule]]
workflow = "dr-drill"
cron = "*/2 * * * * *"
overlap = "queue"

[[notify]]
url = "http://127.0.0.1:1/hook"
format = "slack"
"#,
        )
        .unwrap();
        assert_eq!(c.workflows, Path::new("/etc/meridian/wf"));
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.tokens.as_deref(), Some(Path::new("/abs/tokens.toml")));
        assert_eq!(c.pause_after_failures, 2);
        assert_eq!(c.reload_interval, Duration::from_millis(200));
        assert_eq!(c.grace, Duration::from_secs(5));
        assert_eq!(
            c.workflow_inputs["dr-drill"],
            Path::new("/etc/meridian/lab.yaml")
        );
        assert_eq!(c.ready_every["dr-drill"], Duration::from_secs(300));
        assert_eq!(c.drift_every["dr-drill"], Duration::from_secs(600));
        assert_eq!(c.schedules[0].overlap.as_deref(), Some("queue"));
        assert_eq!(c.notify[0].format, WebhookFormat::Slack);
    }

    #[test]
    fn typos_are_errors_with_a_position() {
        let e = ServerConfig::parse(
            Path::new("m.toml"),
            "listen = \"127.0.0.1:1\"\npuase-after-failures = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("puase-after-failures"), "{e}");
        let e = ServerConfig::parse(Path::new("m.toml"), "listen = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("127.0.0.1:8080"), "{e}");
    }

    /// A webhook's `events` must name kinds the server sends: a misspelt one never matched, and
    /// the webhook stayed silent without a word.
    #[test]
    fn a_webhook_event_that_is_not_a_kind_is_refused() {
        let hook = |events: &str| {
            ServerConfig::parse(
                Path::new("m.toml"),
                &format!("[[notify]]\nurl = \"http://127.0.0.1:1/h\"\nevents = {events}\n"),
            )
        };
        let e = hook(r#"["run.failed", "run.faild"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notify #1: events: `run.faild` is not a notification kind"),
            "{e}"
        );
        assert!(e.contains("run.cancelled") && e.contains("m.toml"), "{e}");
        let ok = hook(r#"["run.cancelled", "drift.changed"]"#).unwrap();
        assert_eq!(ok.notify[0].events.as_ref().map(Vec::len), Some(2));
    }
}
