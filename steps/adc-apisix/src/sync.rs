//! The step's logic without the component glue: input → load files → read the gateway → diff →
//! apply → output. Host tests drive [`run`] with a fake transport; the component calls it with
//! the SDK's HTTP.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use meridian_sdk::http::{Transport, percent_encode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

use crate::apply;
use crate::client::Client;
use crate::compare::{Change, Defaults};
use crate::differ::{self, Event, EventType, Scope};
use crate::dump;
use crate::error::SyncError;
use crate::load::{self, Source};
use crate::model::{self, BuildOptions, Flavor, ResourceType};
use crate::remote::{self, Version};

/// Which gateway API to drive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Apache APISIX Admin API (`/apisix/admin`, `X-API-KEY`).
    #[default]
    Apisix,
    /// API7 Enterprise: the same resources scoped by `gateway_group_id`.
    Api7ee,
    /// APISIX ≥ 3.13 API-driven standalone: the whole config in one `PUT /apisix/admin/configs`.
    ApisixStandalone,
}

/// What to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Diff, then apply the changes.
    #[default]
    Sync,
    /// Diff only; nothing is written.
    Diff,
    /// Return the gateway's state as an ADC configuration (`dump`); no files needed.
    Dump,
}

/// The step's `with:` input.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Admin API base URL, e.g. `http://127.0.0.1:9180` (API7 EE: the control plane URL).
    pub server: String,
    /// `apisix` (default), `api7ee` or `apisix-standalone`.
    #[serde(default)]
    pub backend: Backend,
    /// Name of a granted secret holding the admin key, sent as `X-API-KEY`. Omit when the
    /// gateway needs none.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// API7 EE gateway group name (default `default`); ignored by the other backends.
    #[serde(default)]
    pub gateway_group: Option<String>,
    /// ADC files to read through the step's `fs` grant: files, directories (every
    /// .yaml/.yml/.json below) or `*` patterns in the last path component.
    #[serde(default)]
    pub files: Vec<String>,
    /// ADC files given as text, by path (the files of a git commit, as `on.git` passes them
    /// in `git_files`): those ending in .yaml, .yml or .json are merged after `files`, in path
    /// order; errors name the path. Other entries (a README next to them) are ignored.
    #[serde(default)]
    pub documents: BTreeMap<String, String>,
    /// Inline ADC YAML (or JSON), merged after `files` and `documents`.
    #[serde(default)]
    pub config: Option<String>,
    /// Values for `${NAME}` in the files (the step has no process environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Reconcile only gateway objects carrying all these labels; the labels are also added to
    /// every resource written.
    #[serde(default)]
    pub label_selector: BTreeMap<String, String>,
    /// Reconcile only these resource types (exclusive with `exclude_resource_types`).
    #[serde(default)]
    pub include_resource_types: Vec<ResourceType>,
    /// Never touch these resource types.
    #[serde(default)]
    pub exclude_resource_types: Vec<ResourceType>,
    /// `sync` (default), `diff` or `dump`.
    #[serde(default)]
    pub mode: Mode,
    /// Per-request timeout in milliseconds (the grant's limit still applies).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// When set, adds the label `managed-by: <value>` to every resource written (ADC adds
    /// `managed-by: adc` by default; set `adc` to match it).
    #[serde(default)]
    pub managed_by: Option<String>,
}

/// One planned (or applied) change, as reported.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EventOut {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub resource_type: ResourceType,
    pub id: String,
    pub name: String,
    /// The service of a route/stream route/upstream, the consumer of a credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// For updates: the fields that differ (`old` = gateway, `new` = file; secrets redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<Change>,
}

/// Counts of events by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

/// The step's output.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Output {
    pub mode: Mode,
    pub backend: Backend,
    pub server: String,
    /// From `Server: APISIX/x.y.z` (or `/api/version` on API7 EE); `unknown` when not sent.
    pub gateway_version: String,
    /// In execution order.
    pub events: Vec<EventOut>,
    pub summary: Summary,
    /// What the changes delete, one line each (`service `billing` on http://…:9180`): for an
    /// approval message (`join(steps.plan.legs.*.outputs.deletes.*, '; ')`).
    pub deletes: Vec<String>,
    /// True when `mode` is `sync` and the changes went to the gateway (false in `diff`/`dump`
    /// mode and in plan mode, where the host only recorded the writes).
    pub applied: bool,
    /// Writes sent (or recorded in plan mode). Zero when the gateway already matched.
    pub requests: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `mode: dump` only: the gateway's state as an ADC configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<JsonValue>,
}

/// What the step gets from its host besides the input.
pub struct Runtime<'a> {
    pub transport: &'a dyn Transport,
    /// The admin key, already read from the secret named by `token_secret`.
    pub token: Option<String>,
    /// Plan mode: the host records writes instead of sending them.
    pub plan: bool,
    /// Wall clock in ms since the epoch (standalone conf versions).
    pub now_ms: u64,
}

/// The ADC sources named by the input: `files` (via `fs` preopens), `documents`, then inline
/// `config`.
pub fn sources(input: &Input) -> Result<Vec<Source>, SyncError> {
    if input.files.is_empty() && input.documents.is_empty() && input.config.is_none() {
        return Err(SyncError::InvalidInput(
            "give the ADC configuration as `files` (paths inside a directory granted with `fs`), as `documents` (text by path) or as inline `config`".into(),
        ));
    }
    let mut out = load::read_files(&input.files)?;
    out.extend(
        input
            .documents
            .iter()
            .filter(|(name, _)| {
                [".yaml", ".yml", ".json"]
                    .iter()
                    .any(|ext| name.to_ascii_lowercase().ends_with(ext))
            })
            .map(|(name, text)| Source {
                name: name.clone(),
                text: text.clone(),
            }),
    );
    if let Some(text) = &input.config {
        out.push(Source {
            name: "<config>".into(),
            text: text.clone(),
        });
    }
    Ok(out)
}

/// Runs one sync/diff/dump.
pub fn run(input: &Input, rt: &Runtime<'_>) -> Result<Output, SyncError> {
    if !input.include_resource_types.is_empty() && !input.exclude_resource_types.is_empty() {
        return Err(SyncError::InvalidInput(
            "`include_resource_types` and `exclude_resource_types` are mutually exclusive".into(),
        ));
    }
    let scope = Scope {
        include: input.include_resource_types.iter().copied().collect(),
        exclude: input.exclude_resource_types.iter().copied().collect(),
        selector: input.label_selector.clone(),
    };
    let flavor = match input.backend {
        Backend::Apisix => Flavor::AdminApi,
        Backend::Api7ee => Flavor::Api7,
        Backend::ApisixStandalone => Flavor::Standalone,
    };
    let mut warnings = Vec::new();
    let local = if input.mode == Mode::Dump {
        Vec::new()
    } else {
        let config = load::load(&sources(input)?, &input.env)?;
        let opts = BuildOptions {
            flavor,
            selector: input.label_selector.clone(),
            managed_by: input.managed_by.clone(),
        };
        let desired = model::build(&config, &opts)?;
        warnings.extend(desired.warnings);
        scope.filter_local(desired.resources)
    };
    let client = Client::new(
        rt.transport,
        &input.server,
        rt.token.clone(),
        input
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
    )?;

    let (events, version, dumped, client) = match input.backend {
        Backend::Apisix => {
            let remote = remote::fetch_admin(&client)?;
            warnings.extend(remote.warnings.iter().cloned());
            let selected = scope.filter_remote(&remote.resources);
            let events = differ::diff(&local, &selected, &Defaults::apisix());
            if input.mode == Mode::Sync {
                apply::check_versions(&events, remote.version)?;
                apply::apply_admin(&client, &events)?;
            }
            let dumped = (input.mode == Mode::Dump).then(|| dump::to_adc(&selected));
            (events, remote.version, dumped, client)
        }
        Backend::Api7ee => {
            let (client, version) = api7_client(client, input, rt.token.as_deref())?;
            let (remote, defaults) = remote::fetch_api7(&client, version)?;
            warnings.extend(remote.warnings.iter().cloned());
            let selected = scope.filter_remote(&remote.resources);
            let events = differ::diff(&local, &selected, &defaults);
            if input.mode == Mode::Sync {
                apply::apply_admin(&client, &events)?;
            }
            let dumped = (input.mode == Mode::Dump).then(|| dump::to_adc(&selected));
            (events, version, dumped, client)
        }
        Backend::ApisixStandalone => {
            let st = remote::fetch_standalone(&client)?;
            warnings.extend(st.state.warnings.iter().cloned());
            let selected_list = scope.filter_remote(&st.state.resources);
            let events = differ::diff(&local, &selected_list, &Defaults::apisix());
            if input.mode == Mode::Sync && !events.is_empty() {
                let selected: HashSet<(ResourceType, String)> = selected_list
                    .iter()
                    .map(|r| (r.rtype, r.id.clone()))
                    .collect();
                let version = apply::next_conf_version(&st.doc, rt.now_ms);
                let doc = apply::standalone_doc(
                    &st.doc,
                    &st.state.resources,
                    &selected,
                    &local,
                    &events,
                    version,
                );
                apply::apply_standalone(&client, &doc)?;
            }
            let dumped = (input.mode == Mode::Dump).then(|| dump::to_adc(&selected_list));
            (events, st.state.version, dumped, client)
        }
    };
    // a dump compares nothing: the diff against an empty file is not a plan
    let events = if input.mode == Mode::Dump {
        Vec::new()
    } else {
        events
    };
    Ok(output(
        input,
        &events,
        version,
        input.mode == Mode::Sync && !rt.plan,
        client.writes(),
        warnings,
        dumped,
    ))
}

/// API7 EE: the version from `/api/version` and the gateway group id for every Admin API call.
/// A gateway-group-scoped admin key (`a7adm-…`) needs no group id.
fn api7_client<'a>(
    client: Client<'a>,
    input: &Input,
    token: Option<&str>,
) -> Result<(Client<'a>, Version), SyncError> {
    let resp = client.get("/api/version")?;
    let version = serde_json::from_slice::<JsonValue>(&resp.body)
        .ok()
        .and_then(|v| {
            v.get("value")
                .and_then(JsonValue::as_str)
                .and_then(Version::parse)
        })
        .unwrap_or(Version::UNKNOWN);
    if token.is_some_and(|t| t.starts_with("a7adm-")) {
        return Ok((client, version));
    }
    let group = input
        .gateway_group
        .clone()
        .unwrap_or_else(|| "default".into());
    let q = percent_encode(&group, b"");
    let path = format!("/api/gateway_groups?search={q}&name={q}");
    let resp = client.get(&path)?;
    let body: JsonValue = serde_json::from_slice(&resp.body).map_err(|e| SyncError::Protocol {
        url: client.url(&path),
        message: format!("body is not JSON: {e}"),
    })?;
    let list = body
        .get("list")
        .or_else(|| body.pointer("/value/list"))
        .and_then(JsonValue::as_array);
    let id = list
        .into_iter()
        .flatten()
        .find(|g| g.get("name").and_then(JsonValue::as_str) == Some(group.as_str()))
        .and_then(|g| match g.get("id")? {
            JsonValue::String(s) => Some(s.clone()),
            JsonValue::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .ok_or_else(|| {
            SyncError::InvalidInput(format!(
                "gateway group `{group}` not found on {} (check `gateway_group`)",
                client.base()
            ))
        })?;
    Ok((client.with_admin_query("gateway_group_id", &id), version))
}

fn output(
    input: &Input,
    events: &[Event],
    version: Version,
    applied: bool,
    requests: usize,
    warnings: Vec<String>,
    dump: Option<JsonValue>,
) -> Output {
    let mut summary = Summary::default();
    for e in events {
        match e.kind {
            EventType::Create => summary.create += 1,
            EventType::Update => summary.update += 1,
            EventType::Delete => summary.delete += 1,
        }
    }
    Output {
        mode: input.mode,
        backend: input.backend,
        server: input.server.clone(),
        gateway_version: version.to_string(),
        events: events
            .iter()
            .map(|e| EventOut {
                kind: e.kind,
                resource_type: e.rtype,
                id: e.id.clone(),
                name: e.name.clone(),
                parent_id: e.parent.clone(),
                diff: e.diff.clone(),
            })
            .collect(),
        summary,
        deletes: events
            .iter()
            .filter(|e| e.kind == EventType::Delete)
            .map(|e| format!("{} `{}` on {}", e.rtype, e.name, input.server))
            .collect(),
        applied,
        requests,
        warnings,
        dump,
    }
}
