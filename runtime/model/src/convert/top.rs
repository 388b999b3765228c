//! The top level of a workflow file, and its sections other than `inputs` and `steps`:
//! `connections`, `on` and `drill`.

use indexmap::IndexMap;

use super::inputs::inputs;
use super::step::step;
use super::{Cx, MAX_STEPS, is_ident, is_secret_name};
use crate::diag::suggest;
use crate::span::Spanned;
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

const TOP_KEYS: [&str; 13] = [
    "name",
    "description",
    "inputs",
    "vars",
    "connections",
    "secrets",
    "on",
    "drill",
    "notify",
    "timeout",
    "max-parallel",
    "trust-policy",
    "steps",
];

/// Converts the document root (None for an empty file).
pub(crate) fn workflow(cx: &mut Cx<'_>, root: Option<&Node>) -> Workflow {
    let mut wf = Workflow {
        file: cx.file.to_owned(),
        name: String::new(),
        description: None,
        inputs: IndexMap::new(),
        vars: IndexMap::new(),
        connections: IndexMap::new(),
        secrets: Vec::new(),
        on: None,
        drill: None,
        notify: Vec::new(),
        timeout: None,
        max_parallel: None,
        trust_policy: None,
        steps: Vec::new(),
        source: SourceText(cx.map.text().into()),
    };
    let Some(root) = root else {
        cx.error(
            cx.map.span(0, 0),
            "the workflow file is empty",
            Some("a workflow needs at least `name:` and `steps:`".into()),
        );
        return wf;
    };
    cx.duplicate_keys(root);
    let Some(top) = cx.fields(root, &TOP_KEYS, "at top level") else {
        return wf;
    };
    if let Some(n) = cx.require(&top, "name", "at top level") {
        wf.name = cx.text(n, "`name`").unwrap_or_default();
    }
    if let Some(n) = top.get("description") {
        wf.description = cx.text(n, "`description`");
    }
    if let Some(n) = top.get("inputs") {
        wf.inputs = inputs(cx, n);
    }
    if let Some(n) = top.get("vars") {
        for (k, v) in cx.value_map(n, "`vars`") {
            if !is_ident(&k) {
                cx.error(
                    v.span,
                    format!("invalid var name `{k}`"),
                    Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
                );
            }
            wf.vars.insert(k, v);
        }
    }
    if let Some(n) = top.get("connections") {
        wf.connections = connections(cx, n);
    }
    if let Some(n) = top.get("secrets") {
        let list = cx.string_list(n, "`secrets`", false);
        for s in list {
            if !is_secret_name(&s.value) {
                cx.error(
                    s.span,
                    format!("invalid secret name `{}`", s.value),
                    Some("use letters, digits and `_`, starting with a letter or `_`".into()),
                );
            } else if let Some(first) = wf.secrets.iter().find(|x| x.value == s.value) {
                let hint = format!("first declared at line {}", first.span.line);
                cx.error(
                    s.span,
                    format!("secret `{}` is declared twice", s.value),
                    Some(hint),
                );
            } else {
                wf.secrets.push(s);
            }
        }
    }
    if let Some(n) = top.get("on") {
        wf.on = triggers(cx, n);
    }
    if let Some(n) = top.get("drill") {
        wf.drill = super::drill::drill(cx, n, &wf.connections);
    }
    if let Some(n) = top.get("notify") {
        wf.notify = notify(cx, n);
    }
    if let Some(n) = top.get("timeout") {
        wf.timeout = cx.duration(n, "`timeout`", true);
    }
    if let Some(n) = top.get("max-parallel") {
        wf.max_parallel = cx.uint(n, "`max-parallel`", 1).map(|v| v as usize);
    }
    if let Some(n) = top.get("trust-policy") {
        wf.trust_policy = cx.string(n, "`trust-policy`").map(|p| {
            Spanned::new(
                p.span,
                meridian_protocol::component::resolve(&cx.base, std::path::Path::new(&p.value)),
            )
        });
    }
    if let Some(n) = cx.require(&top, "steps", "at top level") {
        match &n.kind {
            NodeKind::Seq(items) if items.is_empty() => {
                cx.error(
                    n.span,
                    "`steps` is empty",
                    Some("a workflow needs at least one step".into()),
                );
            }
            NodeKind::Seq(items) if items.len() > MAX_STEPS => {
                cx.error(n.span, format!("more than {MAX_STEPS} steps"), None);
            }
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = step(cx, item, i, &wf) {
                        wf.steps.push(s);
                    }
                }
            }
            NodeKind::Scalar(Scalar::Null) => {
                cx.error(
                    n.span,
                    "`steps` is empty",
                    Some("a workflow needs at least one step".into()),
                );
            }
            _ => cx.wrong_type(n, "a list of steps", "`steps`"),
        }
    }
    wf
}

fn connections(cx: &mut Cx<'_>, node: &Node) -> IndexMap<String, Connection> {
    let mut out = IndexMap::new();
    if node.is_null() {
        return out;
    }
    let Some(entries) = node.as_map() else {
        cx.wrong_type(node, "a mapping of connection names", "`connections`");
        return out;
    };
    for (k, v) in entries {
        let Some(name) = cx.key(k) else { continue };
        if !is_ident(&name) {
            cx.error(
                k.span,
                format!("invalid connection name `{name}`"),
                Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
            );
        }
        let what = format!("in connection `{name}`");
        let Some(f) = cx.fields(v, &["postgres", "url"], &what) else {
            continue;
        };
        let kind = match (f.get("postgres"), f.get("url")) {
            (Some(p), None) => cx
                .template(p, &format!("`postgres` of connection `{name}`"))
                .map(ConnectionKind::Postgres),
            (None, Some(u)) => {
                let t = cx.template(u, &format!("`url` of connection `{name}`"));
                // Granting the connection grants its URL's origin: a literal URL must have one.
                if let Some(t) = &t
                    && t.is_literal()
                    && let Err(e) = OriginPattern::of_url_text(t.raw())
                {
                    cx.error(
                        u.span,
                        format!(
                            "connection `{name}`: `{}` is not an http(s) URL: {e}",
                            t.raw()
                        ),
                        Some("write it like `http://127.0.0.1:9180`".into()),
                    );
                }
                t.map(ConnectionKind::Http)
            }
            (Some(_), Some(_)) => {
                cx.error(
                    k.span,
                    format!("connection `{name}` has both `postgres` and `url`"),
                    Some("a connection is either a PostgreSQL DSN or an HTTP URL".into()),
                );
                None
            }
            (None, None) => {
                cx.error(
                    k.span,
                    format!("connection `{name}` needs `postgres: <DSN>` or `url: <URL>`"),
                    None,
                );
                None
            }
        };
        if let Some(kind) = kind
            && !out.contains_key(&name)
        {
            out.insert(name, Connection { span: v.span, kind });
        }
    }
    out
}

fn triggers(cx: &mut Cx<'_>, node: &Node) -> Option<Triggers> {
    let f = cx.fields(node, &["schedule", "git"], "in `on`")?;
    let mut t = Triggers {
        git: f.get("git").and_then(|g| super::git::git_trigger(cx, g)),
        ..Triggers::default()
    };
    let Some(s) = f.get("schedule") else {
        return Some(t);
    };
    let NodeKind::Seq(items) = &s.kind else {
        cx.wrong_type(s, "a list of `- cron: …` entries", "`on.schedule`");
        return Some(t);
    };
    for item in items {
        let Some(e) = cx.fields(
            item,
            &[
                "cron", "overlap", "timezone", "catch-up", "jitter", "inputs",
            ],
            "in a schedule",
        ) else {
            continue;
        };
        let Some(c) = cx.require(&e, "cron", "in a schedule") else {
            continue;
        };
        let Some(cron) = cx.string(c, "`cron`") else {
            continue;
        };
        if !check_cron(cx, &cron) {
            continue;
        }
        let mut overlap = OverlapPolicy::Skip;
        if let Some(o) = e.get("overlap") {
            match o.as_str().map(str::parse::<OverlapPolicy>) {
                Some(Ok(p)) => overlap = p,
                other => {
                    let hint = o
                        .as_str()
                        .and_then(|s| suggest(s, OverlapPolicy::WORDS))
                        .or_else(|| {
                            Some("use `skip`, `queue`, `cancel-previous` or `allow`".into())
                        });
                    let found = match other {
                        Some(_) => format!("`{}`", o.as_str().unwrap_or_default()),
                        None => o.describe().to_owned(),
                    };
                    cx.error(o.span, format!("invalid `overlap`: {found}"), hint);
                }
            }
        }
        let timezone = e.get("timezone").and_then(|n| {
            let tz = cx.string(n, "`timezone`")?;
            match tz.value.parse::<chrono_tz::Tz>() {
                Ok(_) => Some(tz.value),
                Err(_) => {
                    let hint = suggest(&tz.value, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()))
                        .or_else(|| {
                            Some("use an IANA name such as `UTC` or `Europe/Berlin`".into())
                        });
                    cx.error(n.span, format!("unknown time zone `{}`", tz.value), hint);
                    None
                }
            }
        });
        let catch_up = match e.get("catch-up") {
            None => false,
            Some(n) => match n.as_str() {
                Some("none") => false,
                Some("latest") => true,
                _ => {
                    cx.error(
                        n.span,
                        format!("invalid `catch-up`: {}", n.describe()),
                        Some("use `none` (the default: ticks missed while down are not fired) or `latest` (fire the latest missed tick once)".into()),
                    );
                    false
                }
            },
        };
        let jitter = e
            .get("jitter")
            .and_then(|n| cx.duration(n, "`jitter`", false));
        let mut inputs = std::collections::BTreeMap::new();
        if let Some(n) = e.get("inputs") {
            match &n.kind {
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        let Some(key) = k.as_str() else {
                            cx.wrong_type(k, "an input name", "a schedule's `inputs`");
                            continue;
                        };
                        let text = match &v.kind {
                            NodeKind::Scalar(Scalar::Str(s, _)) => s.clone(),
                            NodeKind::Scalar(Scalar::Number(x)) => x.to_string(),
                            NodeKind::Scalar(Scalar::Bool(b)) => b.to_string(),
                            _ => {
                                cx.wrong_type(
                                    v,
                                    "a string, number or boolean",
                                    &format!("input `{key}`"),
                                );
                                continue;
                            }
                        };
                        inputs.insert(key.to_string(), text);
                    }
                }
                _ => cx.wrong_type(
                    n,
                    "a mapping of input names to values",
                    "a schedule's `inputs`",
                ),
            }
        }
        t.schedule.push(Schedule {
            span: item.span,
            cron: cron.value,
            overlap,
            timezone,
            catch_up,
            jitter,
            inputs,
        });
    }
    Some(t)
}

/// Validates a 5- or 6-field cron line (or an `@hourly`-style nickname) with croner.
fn check_cron(cx: &mut Cx<'_>, cron: &Spanned<String>) -> bool {
    let text = cron.value.trim();
    let fields = text.split_whitespace().count();
    if !(text.starts_with('@') || fields == 5 || fields == 6) {
        cx.error(
            cron.span,
            format!("invalid cron `{text}`: it has {fields} fields"),
            Some("use 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first".into()),
        );
        return false;
    }
    match text.parse::<croner::Cron>() {
        Ok(_) => true,
        Err(e) => {
            cx.error(
                cron.span,
                format!("invalid cron `{text}`: {e}"),
                Some("for example `*/5 * * * *` runs every five minutes".into()),
            );
            false
        }
    }
}

fn notify(cx: &mut Cx<'_>, node: &Node) -> Vec<Notify> {
    let NodeKind::Seq(items) = &node.kind else {
        cx.wrong_type(node, "a list of `- url: …` entries", "`notify`");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(f) = cx.fields(
            item,
            &["url", "format", "secret-env", "events"],
            "in `notify`",
        ) else {
            continue;
        };
        let Some(u) = cx.require(&f, "url", "in a `notify` entry") else {
            continue;
        };
        let Some(url) = cx.string(u, "`url`") else {
            continue;
        };
        if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
            cx.error(
                u.span,
                format!("`url` `{}` is not an http(s) URL", url.value),
                Some(
                    "write the webhook's full URL, e.g. https://hooks.example.com/meridian".into(),
                ),
            );
            continue;
        }
        let format = match f.get("format") {
            None => "json".to_string(),
            Some(n) => match n.as_str() {
                Some(w @ ("json" | "slack")) => w.to_string(),
                _ => {
                    cx.error(
                        n.span,
                        format!("invalid `format`: {}", n.describe()),
                        Some("use `json` or `slack`".into()),
                    );
                    continue;
                }
            },
        };
        let secret_env = f
            .get("secret-env")
            .and_then(|n| cx.string(n, "`secret-env`"))
            .map(|s| s.value);
        let events = f.get("events").map(|n| {
            cx.string_list(n, "`events`", false)
                .into_iter()
                .filter_map(|e| {
                    if NOTIFY_EVENTS.contains(&e.value.as_str()) {
                        Some(e.value)
                    } else {
                        let hint = suggest(&e.value, NOTIFY_EVENTS)
                            .or_else(|| Some(format!("one of: {}", NOTIFY_EVENTS.join(", "))));
                        cx.error(e.span, format!("unknown notification `{}`", e.value), hint);
                        None
                    }
                })
                .collect()
        });
        out.push(Notify {
            span: item.span,
            url: url.value,
            format,
            secret_env,
            events,
        });
    }
    out
}
