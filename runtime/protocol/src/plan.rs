//! A change a step would have made, recorded by the sandbox in plan mode instead of performed.

use serde::{Deserialize, Serialize};

use crate::Masker;

/// A change the step would have made, recorded in plan mode instead of being performed.
/// Secrets are masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlannedChange {
    /// A mutating HTTP request (any method but GET, HEAD, OPTIONS).
    Http {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Request headers; `authorization`, `cookie` and `*-key`/`*-token` values shown as `***`.
        headers: Vec<(String, String)>,
        /// The body when it is JSON (at most 64 KiB).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_json: Option<serde_json::Value>,
        /// The first 512 bytes of the body as text (or a note for binary bodies).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_summary: Option<String>,
        /// Body size in bytes.
        body_bytes: u64,
    },
    /// A SQL statement that would write.
    Sql {
        /// Connection name.
        connection: String,
        /// The statement.
        statement: String,
        /// Bound parameters as JSON.
        params: Vec<serde_json::Value>,
        /// Why it was recorded rather than run.
        reason: String,
    },
}

impl PlannedChange {
    /// The change with every secret value in it replaced (URL, header values, bodies, SQL).
    pub fn masked(self, m: &Masker) -> PlannedChange {
        match self {
            PlannedChange::Http {
                method,
                url,
                headers,
                mut body_json,
                body_summary,
                body_bytes,
            } => {
                if let Some(j) = &mut body_json {
                    m.mask_json_mut(j);
                }
                PlannedChange::Http {
                    method,
                    url: m.mask_string(url),
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| (k, m.mask_string(v)))
                        .collect(),
                    body_json,
                    body_summary: body_summary.map(|s| m.mask_string(s)),
                    body_bytes,
                }
            }
            PlannedChange::Sql {
                connection,
                statement,
                mut params,
                reason,
            } => {
                params.iter_mut().for_each(|p| m.mask_json_mut(p));
                PlannedChange::Sql {
                    connection,
                    statement: m.mask_string(statement),
                    params,
                    reason: m.mask_string(reason),
                }
            }
        }
    }
}

impl std::fmt::Display for PlannedChange {
    /// One line: `PUT http://… {"id":…}` or `SQL on db: SELECT pg_promote()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlannedChange::Http {
                method,
                url,
                body_summary,
                ..
            } => {
                write!(f, "{method} {url}")?;
                if let Some(b) = body_summary {
                    write!(f, " {b}")?;
                }
                Ok(())
            }
            PlannedChange::Sql {
                connection,
                statement,
                ..
            } => write!(f, "SQL on {connection}: {statement}"),
        }
    }
}
