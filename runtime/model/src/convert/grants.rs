//! `grants:` of a step: what its sandbox may reach (`http`, `dns`, `sql`, `fs`, `secrets`).

use super::{Cx, of};
use crate::diag::suggest;
use crate::expr::Template;
use crate::span::Spanned;
use crate::workflow::*;
use crate::yaml::{Node, NodeKind, Scalar};

pub(super) fn grants(cx: &mut Cx<'_>, n: &Node, label: &str, wf: &Workflow) -> Grants {
    let mut g = Grants::default();
    let what = format!("in `grants` {}", of(label));
    let Some(f) = cx.fields(n, &["http", "sql", "fs", "secrets", "dns"], &what) else {
        return g;
    };
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
            if http_grant(cx, &p, wf) {
                g.http.push(p);
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

/// An http grant is an origin pattern `scheme://host[:port]` (`*` in host labels and port) or the
/// name of a `url:` connection.
fn http_grant(cx: &mut Cx<'_>, p: &Spanned<String>, wf: &Workflow) -> bool {
    let v = p.value.as_str();
    // `${{ inputs.admin_url }}`: evaluated when the step runs; the URL's origin is granted.
    if v.contains("${{") {
        return match Template::parse(v) {
            Ok(_) => true,
            Err(e) => {
                cx.error(p.span, format!("http grant `{v}`: {e}"), None);
                false
            }
        };
    }
    let Some((scheme, rest)) = v.split_once("://") else {
        return match wf.connections.get(v).map(|c| &c.kind) {
            Some(ConnectionKind::Http(_)) => true,
            Some(ConnectionKind::Postgres(_)) => {
                cx.error(
                    p.span,
                    format!("http grant names connection `{v}`, which is PostgreSQL"),
                    Some("grant it under `sql` instead".into()),
                );
                false
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
                false
            }
        };
    };
    let bad = |cx: &mut Cx<'_>, why: &str| {
        cx.error(
            p.span,
            format!("invalid http grant `{v}`: {why}"),
            Some("write `scheme://host[:port]`, with `*` for any host label or port".into()),
        );
        false
    };
    if !matches!(scheme, "http" | "https" | "*") {
        return bad(cx, "the scheme must be `http`, `https` or `*`");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return bad(cx, "paths are not supported; grant the origin");
    }
    if authority.contains('@') {
        return bad(cx, "user names are not supported");
    }
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        match h.split_once(']') {
            Some((ip6, after)) => {
                if ip6.parse::<std::net::Ipv6Addr>().is_err() {
                    return bad(cx, "invalid IPv6 address");
                }
                (None, after.strip_prefix(':'))
            }
            None => return bad(cx, "unclosed `[`"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) => (Some(h), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return bad(cx, "the host is empty");
        }
        let labels_ok = host.split('.').all(|l| {
            l == "*" || (!l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
        if !labels_ok {
            return bad(
                cx,
                "the host may contain letters, digits, `-`, `.` and `*` labels",
            );
        }
    }
    if let Some(port) = port
        && port != "*"
        && port.parse::<u16>().map_or(true, |n| n == 0)
    {
        return bad(cx, "the port must be a number from 1 to 65535 or `*`");
    }
    true
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
        host,
        guest,
        writable,
    })
}
