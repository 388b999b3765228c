//! The `drill:` block: targets and the host-side canaries (see [`crate::drill`]).

use indexmap::IndexMap;

use super::Cx;
use crate::drill::*;
use crate::span::Spanned;
use crate::workflow::{Connection, ConnectionKind};
use crate::yaml::{Node, NodeKind, Scalar};

pub(super) fn drill(
    cx: &mut Cx<'_>,
    node: &Node,
    connections: &IndexMap<String, Connection>,
) -> Option<Drill> {
    let f = cx.fields(
        node,
        &[
            "rto",
            "capacity",
            "rpo",
            "rpo-bytes",
            "rpo-rows",
            "downtime",
            "write-outage",
            "canary",
        ],
        "in `drill`",
    )?;
    let mut d = Drill {
        span: node.span,
        ..Drill::default()
    };
    if let Some(n) = f.get("rto") {
        d.rto = cx.duration(n, "`drill.rto`", true);
    }
    if let Some(n) = f.get("capacity") {
        d.capacity = cx.duration(n, "`drill.capacity`", true);
    }
    if let Some(n) = f.get("rpo") {
        d.rpo = cx.duration(n, "`drill.rpo`", false);
    }
    if let Some(n) = f.get("rpo-bytes") {
        d.rpo_bytes = match &n.kind {
            NodeKind::Scalar(Scalar::Number(v)) if v.as_u64() == Some(0) => Some(0),
            _ => cx.size(n, "`drill.rpo-bytes`"),
        };
    }
    if let Some(n) = f.get("rpo-rows") {
        d.rpo_rows = cx.uint(n, "`drill.rpo-rows`", 0);
    }
    if let Some(n) = f.get("downtime") {
        d.downtime = cx.duration(n, "`drill.downtime`", false);
    }
    if let Some(n) = f.get("write-outage") {
        d.write_outage = cx.duration(n, "`drill.write-outage`", false);
    }
    if let Some(n) = f.get("canary") {
        d.canary = canary(cx, n, connections);
        if let Some(c) = &d.canary {
            if (d.rpo_rows.is_some() || d.write_outage.is_some()) && c.writer.is_none() {
                cx.error(
                    n.span,
                    "`drill.rpo-rows` and `drill.write-outage` are targets for the canary writer, and `canary` has no `writer`".to_string(),
                    Some("add `writer: {connection: <primary>, verify: <standby>}` to `canary`".into()),
                );
            }
            if d.downtime.is_some() && c.prober.is_none() {
                cx.error(
                    n.span,
                    "`drill.downtime` is a target for the canary prober, and `canary` has no `prober`".to_string(),
                    Some("add `prober: {url: http://NAME:PORT/PATH, dns: IP:PORT}` to `canary`".into()),
                );
            }
        }
    } else if let Some(n) = f
        .get("rpo-rows")
        .or(f.get("downtime"))
        .or(f.get("write-outage"))
    {
        cx.error(
            n.span,
            "`drill.rpo-rows`, `drill.downtime` and `drill.write-outage` are measured by the host's canaries, and the drill has no `canary` block".to_string(),
            Some("add `canary: {writer: {connection: <primary>, verify: <standby>}, prober: {url: …, dns: …}}`".into()),
        );
    }
    Some(d)
}

fn canary(
    cx: &mut Cx<'_>,
    node: &Node,
    connections: &IndexMap<String, Connection>,
) -> Option<Canary> {
    let f = cx.fields(
        node,
        &["writer", "prober", "settle", "warm-up"],
        "in `drill.canary`",
    )?;
    let mut c = Canary {
        span: node.span,
        writer: None,
        prober: None,
        settle: DEFAULT_SETTLE,
        warm_up: DEFAULT_WARM_UP,
    };
    if let Some(n) = f.get("warm-up") {
        c.warm_up = cx
            .duration(n, "`drill.canary.warm-up`", false)
            .unwrap_or(DEFAULT_WARM_UP);
    }
    if let Some(n) = f.get("settle") {
        c.settle = cx
            .duration(n, "`drill.canary.settle`", false)
            .unwrap_or(DEFAULT_SETTLE);
    }
    if let Some(n) = f.get("writer") {
        c.writer = writer(cx, n, connections);
    }
    if let Some(n) = f.get("prober") {
        c.prober = prober(cx, n);
    }
    if f.get("writer").is_none() && f.get("prober").is_none() {
        cx.error(
            node.span,
            "`drill.canary` has neither `writer` nor `prober`".to_string(),
            Some("add one, or remove `canary`".into()),
        );
    }
    Some(c)
}

fn rate(cx: &mut Cx<'_>, node: Option<&Node>, what: &str, default: u32) -> u32 {
    let Some(n) = node else { return default };
    match cx.uint(n, what, 1) {
        Some(r) if r <= u64::from(MAX_CANARY_RATE) => r as u32,
        Some(_) => {
            cx.error(
                n.span,
                format!("{what} is above {MAX_CANARY_RATE} per second"),
                Some("a drill's canary measures, it does not load-test: lower it".into()),
            );
            default
        }
        None => default,
    }
}

fn postgres_connection(
    cx: &mut Cx<'_>,
    node: &Node,
    what: &str,
    connections: &IndexMap<String, Connection>,
) -> Option<Spanned<String>> {
    let name = cx.string(node, what)?;
    match connections.get(&name.value).map(|c| &c.kind) {
        Some(ConnectionKind::Postgres(_)) => {}
        Some(ConnectionKind::Http(_)) => cx.error(
            name.span,
            format!(
                "{what}: connection `{}` is an HTTP endpoint, not PostgreSQL",
                name.value
            ),
            None,
        ),
        None => {
            let known: Vec<&str> = connections.keys().map(String::as_str).collect();
            cx.error(
                name.span,
                format!("{what}: no connection named `{}`", name.value),
                Some(if known.is_empty() {
                    "declare it under `connections:` (`name: {postgres: \"host=…\"}`)".into()
                } else {
                    format!("connections: {}", known.join(", "))
                }),
            );
        }
    }
    Some(name)
}

fn writer(
    cx: &mut Cx<'_>,
    node: &Node,
    connections: &IndexMap<String, Connection>,
) -> Option<CanaryWriter> {
    let f = cx.fields(
        node,
        &["connection", "verify", "rate", "table"],
        "in `drill.canary.writer`",
    )?;
    let connection = cx.require(&f, "connection", "in `drill.canary.writer`")?;
    let connection = postgres_connection(cx, connection, "`writer.connection`", connections)?;
    let verify = cx.require(&f, "verify", "in `drill.canary.writer`")?;
    let verify = postgres_connection(cx, verify, "`writer.verify`", connections)?;
    let rate = rate(cx, f.get("rate"), "`writer.rate`", DEFAULT_WRITE_RATE);
    let table = match f.get("table") {
        Some(n) => {
            let t = cx.string(n, "`writer.table`")?;
            let ok = !t.value.is_empty()
                && t.value.split('.').count() <= 2
                && t.value.split('.').all(|p| {
                    p.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !ok {
                cx.error(
                    t.span,
                    format!("`writer.table`: `{}` is not a plain table name", t.value),
                    Some(
                        "use lower-case letters, digits and `_`, optionally `schema.table`".into(),
                    ),
                );
            }
            t.value
        }
        None => DEFAULT_CANARY_TABLE.to_string(),
    };
    Some(CanaryWriter {
        connection,
        verify,
        rate,
        table,
    })
}

fn prober(cx: &mut Cx<'_>, node: &Node) -> Option<CanaryProber> {
    let f = cx.fields(
        node,
        &["url", "dns", "rate", "expect", "timeout", "clients"],
        "in `drill.canary.prober`",
    )?;
    let url = cx.require(&f, "url", "in `drill.canary.prober`")?;
    let url = cx.template(url, "`prober.url`")?;
    if url.is_literal() && !url.raw().starts_with("http://") && !url.raw().starts_with("https://") {
        cx.error(
            node.span,
            format!(
                "`prober.url`: `{}` is not an http:// or https:// URL",
                url.raw()
            ),
            None,
        );
    }
    let dns = f.get("dns").and_then(|n| cx.template(n, "`prober.dns`"));
    let expect = f
        .get("expect")
        .and_then(|n| cx.template(n, "`prober.expect`"));
    let timeout = match f.get("timeout") {
        Some(n) => cx
            .duration(n, "`prober.timeout`", true)
            .unwrap_or(DEFAULT_PROBE_TIMEOUT),
        None => DEFAULT_PROBE_TIMEOUT,
    };
    let rate = rate(cx, f.get("rate"), "`prober.rate`", DEFAULT_PROBE_RATE);
    let clients = match f.get("clients") {
        // Four, or fewer at a rate that would put four above the canaries' ceiling.
        None => (MAX_CANARY_RATE / rate.max(1)).clamp(1, DEFAULT_PROBE_CLIENTS),
        Some(n) => match cx.uint(n, "`prober.clients`", 1) {
            Some(c)
                if c <= u64::from(MAX_PROBE_CLIENTS)
                    && c * u64::from(rate) <= u64::from(MAX_CANARY_RATE) =>
            {
                c as u32
            }
            Some(c) => {
                cx.error(
                    n.span,
                    format!(
                        "`prober.clients`: {c} clients at {rate} requests per second each is above {} clients or {MAX_CANARY_RATE} requests per second in all",
                        MAX_PROBE_CLIENTS
                    ),
                    Some("a drill's canary measures, it does not load-test: lower `clients` or `rate`".into()),
                );
                DEFAULT_PROBE_CLIENTS
            }
            None => DEFAULT_PROBE_CLIENTS,
        },
    };
    Some(CanaryProber {
        url,
        dns,
        rate,
        expect,
        timeout,
        clients,
    })
}
