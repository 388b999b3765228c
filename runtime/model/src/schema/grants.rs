//! The grants a component says it needs against those the workflow gives the step.
//!
//! A need's detail is either exact — a URL, a connection name, an absolute guest path, a secret
//! name — and then checked against what the grants allow, or prose about the step's input ("the
//! URL in `provider.route53.endpoint`"): a step's `describe` is fixed, so a need that depends on
//! its input can only say where it comes from, and validation can only ask for some grant of
//! that kind. Only the step knows which input it reads; guessing from `with:` would be wrong as
//! soon as the value is an expression or a default.

use meridian_protocol::origin::Url;
use meridian_protocol::{GrantKind, GrantRequest, OriginPattern};

use super::Checker;
use crate::convert::is_secret_name;
use crate::diag::Diagnostic;
use crate::workflow::*;

impl Checker<'_> {
    /// Warnings for capabilities a step needs but was not granted.
    pub(super) fn grants(&mut self, wf: &Workflow, s: &Step, needed: &[GrantRequest]) {
        for GrantRequest { kind, detail } in needed {
            let (missing, fix) = match kind {
                GrantKind::Http => http_need(wf, s, detail),
                GrantKind::Sql => {
                    let named = wf.connections.contains_key(detail);
                    let missing = s.grants.sql.is_empty()
                        || (named && !s.grants.sql.iter().any(|c| &c.value == detail));
                    let fix = if named {
                        format!("add `grants: {{sql: [{detail}]}}`")
                    } else {
                        "grant a connection: `grants: {sql: [<connection>]}`".to_owned()
                    };
                    (missing, fix)
                }
                GrantKind::Fs => {
                    let granted = if detail.starts_with('/') {
                        s.grants.fs.iter().any(|f| path_within(detail, &f.guest))
                    } else {
                        !s.grants.fs.is_empty()
                    };
                    (!granted, "add `grants: {fs: [<directory>]}`".to_owned())
                }
                GrantKind::Secret if is_secret_name(detail) => (
                    !s.grants.secrets.iter().any(|g| &g.value == detail),
                    format!(
                        "add `grants: {{secrets: [{detail}]}}` (and declare it under `secrets:`)"
                    ),
                ),
                GrantKind::Secret => (
                    s.grants.secrets.is_empty(),
                    "grant the secret it names: `grants: {secrets: [<NAME>]}` (and declare it under `secrets:`)"
                        .to_owned(),
                ),
                // A step cannot know the DNS server a workflow routes it through.
                GrantKind::Dns => (false, String::new()),
            };
            if missing {
                // Prose is quoted as prose; it may hold backticks of its own.
                let what = if detail.contains(char::is_whitespace) {
                    format!("{kind} access ({detail})")
                } else {
                    format!("{kind} access to `{detail}`")
                };
                let d = Diagnostic::warning(
                    self.file,
                    s.uses.span,
                    format!(
                        "step `{}` (`uses: {}`) needs {what}, which its grants do not allow",
                        s.id.value, s.uses.value
                    ),
                );
                self.push(d, Some(fix));
            }
        }
    }
}

/// Whether the step's http grants leave `detail` out, and the fix to suggest. An entry known
/// only at run time (an expression, a connection whose URL is one) is taken to allow it.
fn http_need(wf: &Workflow, s: &Step, detail: &str) -> (bool, String) {
    let exact = Url::parse(detail)
        .ok()
        .filter(|_| !detail.contains(char::is_whitespace))
        .and_then(|url| Some((OriginPattern::of_url(&url).ok()?, url)));
    match exact {
        Some((origin, url)) => {
            let granted = s.grants.http.iter().any(|g| {
                g.value
                    .origin_before_run(wf)
                    .is_none_or(|p| p.matches(&url))
            });
            // The canonical form of a pattern needs no YAML escaping inside double quotes.
            (!granted, format!("add `grants: {{http: [\"{origin}\"]}}`"))
        }
        None => (
            s.grants.http.is_empty(),
            "grant the origin of that URL, e.g. `grants: {http: [\"https://api.example.com\"]}`, \
             or an expression giving the URL: `\"${{ inputs.url }}\"`"
                .to_owned(),
        ),
    }
}

fn path_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}
