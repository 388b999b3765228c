//! The trust policy: which keys must have signed the steps of which registries and
//! namespaces. A TOML file (`--trust-policy FILE`, `MERIDIAN_TRUST_POLICY`):
//!
//! ```toml
//! unmatched = "allow"              # steps no rule matches: "allow" (default) or "refuse"
//!
//! [[rule]]
//! scope = "registry.example.com/acme"   # a registry, a namespace in it, or one repository
//! keys = ["keys/acme.pub"]              # PEM public keys, relative to this file; any one suffices
//!
//! [[rule]]
//! scope = "127.0.0.1:5000/scratch"
//! unsigned = true                       # steps here may run unsigned
//! ```
//!
//! The rule with the longest matching scope applies (`*` matches every step). Without a
//! policy file, OCI steps run whether signed or not (digests are still checked).

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::OciError;

/// A loaded trust policy.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Where it came from, for messages.
    pub source: String,
    unmatched_allowed: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    scope: String,
    keys: Vec<(String, VerifyingKey)>,
    unsigned: bool,
}

/// What the policy asks of one step.
#[derive(Debug)]
pub enum Requirement<'a> {
    /// Runs signed or not; `rule` names the rule that allows it, if one does.
    Nothing { rule: Option<String> },
    /// Must carry a valid signature by one of `keys`.
    Signed {
        rule: String,
        keys: &'a [(String, VerifyingKey)],
    },
    /// No rule matches and the policy refuses unmatched steps.
    Refused { rule: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    unmatched: Option<String>,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    scope: String,
    #[serde(default)]
    keys: Vec<PathBuf>,
    #[serde(default)]
    unsigned: bool,
}

/// Largest trust policy file read (a policy is a few rules).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// A TOML error said by where and what, never by quoting the file: the path comes from a
/// workflow, which may name any file the runner can read (a server's secrets file), and the
/// parser's own message shows the offending line. What it says is made safe for a terminal.
fn toml_problem(e: &toml::de::Error, text: &str) -> String {
    let what = meridian_protocol::text::for_terminal(e.message().trim(), "");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("not valid TOML at line {line}, column {column}: {what}")
        }
        None => format!("not valid TOML: {what}"),
    }
}

impl TrustPolicy {
    /// Reads the policy file at `path`; key paths are relative to its directory. A file larger
    /// than [`MAX_POLICY_BYTES`] is refused unread.
    pub fn load(path: &Path) -> Result<Self, OciError> {
        let file_err = |why: String| OciError::File {
            path: path.to_path_buf(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
        if !meta.is_file() {
            return Err(file_err("not a file".into()));
        }
        if meta.len() > MAX_POLICY_BYTES {
            return Err(file_err(format!(
                "{} bytes: a trust policy is at most {MAX_POLICY_BYTES}",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &path.display().to_string())
    }

    /// Parses policy text; `base` resolves relative key paths, `source` names it in messages.
    pub fn parse(text: &str, base: &Path, source: &str) -> Result<Self, OciError> {
        let bad = |why: String| OciError::Policy(format!("trust policy {source}: {why}"));
        let file: File = toml::from_str(text).map_err(|e| bad(toml_problem(&e, text)))?;
        let unmatched_allowed = match file.unmatched.as_deref() {
            None | Some("allow") => true,
            Some("refuse") => false,
            Some(other) => {
                return Err(bad(format!(
                    "`unmatched = \"{other}\"`: expected \"allow\" or \"refuse\""
                )));
            }
        };
        let mut rules = Vec::new();
        for r in file.rule {
            let scope = r
                .scope
                .trim()
                .trim_start_matches("oci://")
                .trim_end_matches('/');
            // The registry's host in lower case, as references are read (host names are
            // case-insensitive; `LOCALHOST:5000/acme` went unmatched).
            let scope = match scope.split_once('/') {
                Some((registry, rest)) => format!("{}/{rest}", registry.to_ascii_lowercase()),
                None => scope.to_ascii_lowercase(),
            };
            let scope = scope.as_str();
            if scope.is_empty() {
                return Err(bad("a rule has an empty `scope`".into()));
            }
            // The most specific rule decides; two for one scope left the last one deciding, and
            // an `unsigned = true` appended below a signing rule loosened it unsaid.
            if rules.iter().any(|known: &Rule| known.scope == scope) {
                return Err(bad(format!(
                    "two rules for scope `{scope}`: one rule per scope (merge their `keys`)"
                )));
            }
            if r.unsigned != r.keys.is_empty() {
                return Err(bad(format!(
                    "rule `{scope}`: give either `keys = [...]` or `unsigned = true`"
                )));
            }
            let mut keys = Vec::new();
            for k in &r.keys {
                let path = base.join(k);
                let key = crate::sign::load_verifying_key(&path)
                    .map_err(|e| bad(format!("rule `{scope}`: {e}")))?;
                keys.push((k.display().to_string(), key));
            }
            rules.push(Rule {
                scope: scope.to_owned(),
                keys,
                unsigned: r.unsigned,
            });
        }
        Ok(TrustPolicy {
            source: source.to_owned(),
            unmatched_allowed,
            rules,
        })
    }

    /// What the policy asks of the step at `scope` (`registry/repository`).
    pub fn requirement(&self, scope: &str) -> Requirement<'_> {
        let matches = |s: &str| s == "*" || scope == s || scope.starts_with(&format!("{s}/"));
        let best = self
            .rules
            .iter()
            .filter(|r| matches(&r.scope))
            .max_by_key(|r| if r.scope == "*" { 0 } else { r.scope.len() });
        match best {
            Some(r) if r.unsigned => Requirement::Nothing {
                rule: Some(self.rule_name(&r.scope)),
            },
            Some(r) => Requirement::Signed {
                rule: self.rule_name(&r.scope),
                keys: &r.keys,
            },
            None if self.unmatched_allowed => Requirement::Nothing { rule: None },
            None => Requirement::Refused {
                rule: format!("`unmatched = \"refuse\"` in {}", self.source),
            },
        }
    }

    fn rule_name(&self, scope: &str) -> String {
        format!("rule `{scope}` in {}", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_scope_wins() {
        let dir = tempfile::tempdir().unwrap();
        crate::sign::generate(&dir.path().join("acme.key")).unwrap();
        let text = r#"
            unmatched = "refuse"
            [[rule]]
            scope = "reg.example.com/acme"
            keys = ["acme.key.pub"]
            [[rule]]
            scope = "oci://reg.example.com/acme/scratch/"
            unsigned = true
        "#;
        let p = TrustPolicy::parse(text, dir.path(), "policy.toml").unwrap();
        assert!(matches!(
            p.requirement("reg.example.com/acme/notify"),
            Requirement::Signed { rule, keys } if rule.contains("`reg.example.com/acme`") && keys.len() == 1
        ));
        assert!(matches!(
            p.requirement("reg.example.com/acme/scratch/x"),
            Requirement::Nothing { rule: Some(_) }
        ));
        assert!(matches!(
            p.requirement("reg.example.com/acmeish/x"),
            Requirement::Refused { .. }
        ));
        let open = TrustPolicy::parse("", dir.path(), "p").unwrap();
        assert!(matches!(
            open.requirement("x/y"),
            Requirement::Nothing { rule: None }
        ));
        // Registry host names are case-insensitive, in scopes and in references alike (a rule
        // for `127.0.0.1:5000/acme` was dodged by `LOCALHOST…`-style spellings).
        let text = "[[rule]]\nscope = \"REG.Example.com/acme\"\nkeys = [\"acme.key.pub\"]\n";
        let p = TrustPolicy::parse(text, dir.path(), "policy.toml").unwrap();
        let r = crate::OciRef::parse("oci://reg.EXAMPLE.com/acme/notify:1").unwrap();
        assert_eq!(r.scope(), "reg.example.com/acme/notify");
        assert!(matches!(
            p.requirement(&r.scope()),
            Requirement::Signed { .. }
        ));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("unmatched = \"maybe\"", "expected \"allow\""),
            ("[[rule]]\nscope = \"a/b\"", "either `keys"),
            (
                "[[rule]]\nscope = \"a/b\"\nkeys = [\"missing.pub\"]",
                "missing.pub",
            ),
            (
                "[[rule]]\nscope = \"a/b\"\nunsigned = true\nkey = 1",
                "unknown field",
            ),
            (
                "[[rule]]\nscope = \"a/b\"\nunsigned = true\n[[rule]]\nscope = \"oci://A/b/\"\nunsigned = true",
                "two rules for scope `a/b`",
            ),
        ] {
            let e = TrustPolicy::parse(text, dir.path(), "p.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("p.toml"), "{text}: {e}");
        }
    }

    /// A workflow's `trust-policy:` may name any file: an error says where the file is not a
    /// policy, never what it holds (the parser's own message quoted the line: a server's
    /// secrets file came back through its API).
    #[test]
    fn a_file_that_is_not_a_policy_is_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret.env");
        std::fs::write(
            &f,
            "# db
DB_PASSWORD=hunter2-very-secret
",
        )
        .unwrap();
        let e = TrustPolicy::load(&f).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("not valid TOML at line 2, column 13"), "{e}");
        // Too large to be a policy: refused unread.
        std::fs::write(&f, vec![b'#'; MAX_POLICY_BYTES as usize + 1]).unwrap();
        let e = TrustPolicy::load(&f).unwrap_err().to_string();
        assert!(e.contains("a trust policy is at most"), "{e}");
    }
}
