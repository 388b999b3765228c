//! `grants:` of a step: what its sandbox may reach (`http`, `dns`, `sql`, `fs`, `secrets`,
//! `kv`), and which of its component's declared needs it may go without (`optional`).

use std::path::Path;

use meridian_protocol::GrantKind;
use meridian_protocol::component::resolve;

use super::{Cx, of};
use crate::diag::suggest;
use crate::expr::Template;
use crate::span::Spanned;
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

pub(super) fn grants(cx: &mut Cx<'_>, n: &Node, label: &str, wf: &Workflow) -> Grants {
    let mut g = Grants::default();
    let what = format!("in `grants` {}", of(label));
    let keys = ["http", "sql", "fs", "secrets", "dns", "kv", "optional"];
    let Some(f) = cx.fields(n, &keys, &what) else {
        return g;
    };
    g.written = Some(
        keys.iter()
            .filter(|k| f.get(k).is_some())
            .map(|k| (*k).to_owned())
            .collect(),
    );
    if let Some(o) = f.get("optional") {
        for k in cx.string_list(o, "`grants.optional`", false) {
            match optional_kind(&k.value) {
                Some(kind) => g.optional.push(Spanned::new(k.span, kind)),
                None => {
                    let hint =
                        suggest(&k.value, OPTIONAL_KINDS.iter().map(|(n, _)| *n)).or_else(|| {
                            Some("list grant kinds: `http`, `sql`, `fs`, `secrets` or `dns`".into())
                        });
                    cx.error(
                        k.span,
                        format!("`{}` is not a grant kind that can be optional", k.value),
                        hint,
                    );
                }
            }
        }
    }
    if let Some(d) = f.get("dns")
        && let Some(text) = cx.string(d, "`grants.dns`")
    {
        match Template::parse(&text.value) {
            Ok(t) => g.dns = Some(Spanned::new(text.span, t)),
            Err(e) => cx.error(
                text.span,
                format!("`grants.dns`: {e}"),
                Some(
                    "write the DNS server as `IP:PORT`, e.g. `127.0.0.1:5353` or `${{ inputs.dns_server }}`"
                        .into(),
                ),
            ),
        }
    }
    if let Some(h) = f.get("http") {
        let list = match &h.kind {
            NodeKind::Map(_) => {
                if let Some(k) = g.written.iter_mut().flatten().find(|k| *k == "http") {
                    "http.allow".clone_into(k);
                }
                let hw = format!("in `grants.http` {}", of(label));
                match cx.fields(h, &["allow", "max-request", "max-response", "timeout"], &hw) {
                    Some(hf) => {
                        if let Some(v) = hf.get("max-request") {
                            g.http_limits.max_request_bytes = cx
                                .size(v, "`max-request`")
                                .unwrap_or(g.http_limits.max_request_bytes);
                        }
                        if let Some(v) = hf.get("max-response") {
                            g.http_limits.max_response_bytes = cx
                                .size(v, "`max-response`")
                                .unwrap_or(g.http_limits.max_response_bytes);
                        }
                        if let Some(v) = hf.get("timeout") {
                            g.http_limits.timeout = cx
                                .duration(v, "`grants.http.timeout`", true)
                                .unwrap_or(g.http_limits.timeout);
                        }
                        match cx.require(&hf, "allow", &hw) {
                            Some(a) => cx.string_list(a, "`grants.http.allow`", false),
                            None => Vec::new(),
                        }
                    }
                    None => Vec::new(),
                }
            }
            _ => cx.string_list(h, "`grants.http`", false),
        };
        for p in list {
            if let Some(grant) = http_grant(cx, &p, wf) {
                g.http.push(Spanned::new(p.span, grant));
            }
        }
    }
    if let Some(s) = f.get("sql") {
        for c in cx.string_list(s, "`grants.sql`", false) {
            match wf.connections.get(&c.value).map(|x| &x.kind) {
                Some(ConnectionKind::Postgres(_)) => g.sql.push(c),
                Some(ConnectionKind::Http(_)) => cx.error(
                    c.span,
                    format!(
                        "sql grant names connection `{}`, which is an HTTP `url`, not PostgreSQL",
                        c.value
                    ),
                    Some("grant it under `http` instead".into()),
                ),
                None => {
                    let hint = suggest(&c.value, wf.connections.keys().map(String::as_str)).or_else(|| {
                        Some(format!(
                            "declare it under `connections:` as `{}: {{postgres: \"host=… dbname=…\"}}`",
                            c.value
                        ))
                    });
                    cx.error(
                        c.span,
                        format!("sql grant names unknown connection `{}`", c.value),
                        hint,
                    );
                }
            }
        }
    }
    if let Some(fs) = f.get("fs") {
        match &fs.kind {
            NodeKind::Seq(items) => {
                for i in items {
                    if let Some(grant) = fs_grant(cx, i) {
                        g.fs.push(grant);
                    }
                }
            }
            _ => cx.wrong_type(fs, "a list of paths", "`grants.fs`"),
        }
    }
    if let Some(k) = f.get("kv") {
        for name in cx.string_list(k, "`grants.kv`", false) {
            let ok = !name.value.is_empty()
                && name
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if ok {
                g.kv.push(name);
            } else {
                cx.error(
                    name.span,
                    format!("`{}` is not a kv namespace name", name.value),
                    Some(
                        "use letters, digits, `-` and `_` (a step then shares the keys `NAME/…`)"
                            .into(),
                    ),
                );
            }
        }
    }
    if let Some(s) = f.get("secrets") {
        for name in cx.string_list(s, "`grants.secrets`", false) {
            if wf.secrets.iter().any(|d| d.value == name.value) {
                g.secrets.push(name);
            } else {
                let hint = suggest(&name.value, wf.secrets.iter().map(|s| s.value.as_str()))
                    .map(|h| format!("{h} (or declare it under the top-level `secrets:`)"))
                    .or_else(|| {
                        Some(format!(
                            "add `{}` to the top-level `secrets:` list",
                            name.value
                        ))
                    });
                cx.error(
                    name.span,
                    format!("secret `{}` is granted but not declared", name.value),
                    hint,
                );
            }
        }
    }
    g
}

/// The kinds of need `grants.optional` may list, spelled as the grants' own keys.
const OPTIONAL_KINDS: [(&str, GrantKind); 5] = [
    ("http", GrantKind::Http),
    ("sql", GrantKind::Sql),
    ("fs", GrantKind::Fs),
    ("secrets", GrantKind::Secret),
    ("dns", GrantKind::Dns),
];

fn optional_kind(name: &str) -> Option<GrantKind> {
    OPTIONAL_KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

/// An http grant is an origin pattern `scheme://host[:port]` (see [`OriginPattern`]), the name of
/// a `url:` connection, or a `${{ }}` template evaluated when the step runs.
fn http_grant(cx: &mut Cx<'_>, p: &Spanned<String>, wf: &Workflow) -> Option<HttpGrant> {
    let v = p.value.as_str();
    if v.contains("${{") {
        return match Template::parse(v) {
            Ok(t) => Some(HttpGrant::Template(t)),
            Err(e) => {
                cx.error(p.span, format!("http grant `{v}`: {e}"), None);
                None
            }
        };
    }
    if v.contains("://") {
        return match OriginPattern::parse(v) {
            Ok(pattern) => Some(HttpGrant::Pattern(pattern)),
            Err(e) => {
                cx.error(
                    p.span,
                    format!("invalid http grant `{v}`: {e}"),
                    Some(
                        "write `scheme://host[:port]`: scheme `http`, `https` or `*`; host a name, \
                         `*.name`, `*` or an IP; port a number or `*`"
                            .into(),
                    ),
                );
                None
            }
        };
    }
    match wf.connections.get(v).map(|c| &c.kind) {
        Some(ConnectionKind::Http(_)) => Some(HttpGrant::Connection(v.to_owned())),
        Some(ConnectionKind::Postgres(_)) => {
            cx.error(
                p.span,
                format!("http grant names connection `{v}`, which is PostgreSQL"),
                Some("grant it under `sql` instead".into()),
            );
            None
        }
        None => {
            let hint = suggest(v, wf.connections.keys().map(String::as_str)).or_else(|| {
                Some("write an origin like `https://api.example.com` or `http://127.0.0.1:*`, or name a `url:` connection".into())
            });
            cx.error(
                p.span,
                format!("http grant `{v}` is neither a URL pattern nor an HTTP connection"),
                hint,
            );
            None
        }
    }
}

fn fs_grant(cx: &mut Cx<'_>, n: &Node) -> Option<FsGrant> {
    let (host, guest, writable) = match &n.kind {
        NodeKind::Scalar(Scalar::Str(s, _)) => (s.clone(), None, false),
        NodeKind::Map(_) => {
            let f = cx.fields(n, &["path", "guest", "mode"], "in an `fs` grant")?;
            let path = cx.require(&f, "path", "in an `fs` grant")?;
            let path = cx.string(path, "`path`")?.value;
            let guest = match f.get("guest") {
                Some(g) => Some(cx.string(g, "`guest`")?),
                None => None,
            };
            let writable = match f.get("mode") {
                None => false,
                Some(m) => match m.as_str() {
                    Some("ro") => false,
                    Some("rw") => true,
                    other => {
                        let hint = other
                            .and_then(|s| suggest(s, ["ro", "rw"]))
                            .or_else(|| Some("use `ro` (read-only) or `rw` (read-write)".into()));
                        cx.error(
                            m.span,
                            format!(
                                "invalid fs `mode`: {}",
                                other.map_or_else(|| m.describe().to_owned(), |s| format!("`{s}`"))
                            ),
                            hint,
                        );
                        return None;
                    }
                },
            };
            (path, guest, writable)
        }
        _ => {
            cx.wrong_type(n, "a path or `{path, guest, mode}`", "an `fs` grant");
            return None;
        }
    };
    if host.trim().is_empty() {
        cx.error(n.span, "empty path in an `fs` grant", None);
        return None;
    }
    let guest = match guest {
        Some(g) if !g.value.starts_with('/') => {
            cx.error(
                g.span,
                format!("`guest` path `{}` must be absolute", g.value),
                Some(format!("write `/{}`", g.value)),
            );
            return None;
        }
        Some(g) => g.value,
        None if host.starts_with('/') => host.clone(),
        None => {
            let rel = host.trim_start_matches("./").trim_end_matches('/');
            format!("/{rel}")
        }
    };
    Some(FsGrant {
        span: n.span,
        host: resolve(&cx.base, Path::new(&host)),
        guest,
        writable,
    })
}
