//! The grants a component says it needs against those the workflow gives the step, and the
//! origin matching that decides whether an http grant covers a URL.

use meridian_protocol::{GrantKind, GrantRequest};

use super::Checker;
use crate::diag::Diagnostic;
use crate::workflow::*;

impl Checker<'_> {
    /// Warnings for capabilities a step needs but was not granted.
    pub(super) fn grants(&mut self, wf: &Workflow, s: &Step, needed: &[GrantRequest]) {
        for GrantRequest { kind, detail } in needed {
            let (missing, fix) = match kind {
                GrantKind::Http => {
                    // A detail that is prose ("the probed URL") can only ask for some grant.
                    let granted = if detail.contains("://") && !detail.contains(char::is_whitespace)
                    {
                        s.grants
                            .http
                            .iter()
                            .any(|p| http_allows(wf, &p.value, detail))
                    } else {
                        !s.grants.http.is_empty()
                    };
                    let origin = origin(detail).unwrap_or_else(|| detail.clone());
                    (!granted, format!("add `grants: {{http: [\"{origin}\"]}}`"))
                }
                GrantKind::Sql => (
                    s.grants.sql.is_empty()
                        || (!detail.is_empty()
                            && wf.connections.contains_key(detail)
                            && !s.grants.sql.iter().any(|c| &c.value == detail)),
                    "grant a connection: `grants: {sql: [<connection>]}`".to_owned(),
                ),
                GrantKind::Fs => {
                    let granted = if detail.starts_with('/') {
                        s.grants.fs.iter().any(|f| path_within(detail, &f.guest))
                    } else {
                        !s.grants.fs.is_empty()
                    };
                    (!granted, "add `grants: {fs: [<directory>]}`".to_owned())
                }
                GrantKind::Secret => (
                    !s.grants.secrets.iter().any(|g| &g.value == detail),
                    format!(
                        "add `grants: {{secrets: [{detail}]}}` (and declare it under `secrets:`)"
                    ),
                ),
                // A step cannot know the DNS server a workflow routes it through.
                GrantKind::Dns => (false, String::new()),
            };
            if missing {
                let d = Diagnostic::warning(
                    self.file,
                    s.uses.span,
                    format!(
                        "step `{}` (`uses: {}`) needs {kind} access to `{detail}`, which its grants do not allow",
                        s.id.value, s.uses.value
                    ),
                );
                self.push(d, Some(fix));
            }
        }
    }
}

fn path_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

/// `scheme://host:port` of a URL (port made explicit), lower-cased.
fn origin(url: &str) -> Option<String> {
    let (scheme, host, port) = split_url(url)?;
    Some(format!("{scheme}://{host}:{port}"))
}

/// (scheme, host, port) of an http(s) URL; the port defaults by scheme.
fn split_url(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (ip, after) = h.split_once(']')?;
        (format!("[{ip}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// Whether the http grant `pattern` (an origin pattern, or the name of a `url:` connection)
/// allows `url`. A connection whose URL is an expression is assumed to allow it.
pub fn http_allows(wf: &Workflow, pattern: &str, url: &str) -> bool {
    if !pattern.contains("://") {
        return match wf.connections.get(pattern).map(|c| &c.kind) {
            Some(ConnectionKind::Http(t)) if t.is_literal() => {
                origin(t.raw()).is_some_and(|o| http_pattern_matches(&o, url))
            }
            Some(ConnectionKind::Http(_)) => true,
            _ => false,
        };
    }
    http_pattern_matches(pattern, url)
}

/// Matches `url` against `scheme://host[:port]` with `*` for the scheme, any single host label
/// or the port. A pattern without a port allows only the scheme's default port.
pub fn http_pattern_matches(pattern: &str, url: &str) -> bool {
    let Some((scheme, host, port)) = split_url(url) else {
        return false;
    };
    let Some((ps, rest)) = pattern.split_once("://") else {
        return false;
    };
    let ps = ps.to_ascii_lowercase();
    if ps != "*" && ps != scheme {
        return false;
    }
    let rest = rest.trim_end_matches('/').to_ascii_lowercase();
    let (ph, pp) = if rest.starts_with('[') {
        match rest.split_once(']') {
            Some((h, after)) => (format!("{h}]"), after.strip_prefix(':').map(str::to_owned)),
            None => return false,
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (rest.clone(), None),
        }
    };
    let port_ok = match pp.as_deref() {
        Some("*") => true,
        Some(p) => p.parse::<u16>().ok() == Some(port),
        None => port == if scheme == "https" { 443 } else { 80 },
    };
    if !port_ok {
        return false;
    }
    let pl: Vec<&str> = ph.split('.').collect();
    let hl: Vec<&str> = host.split('.').collect();
    pl.len() == hl.len() && pl.iter().zip(&hl).all(|(p, h)| *p == "*" || p == h)
}
