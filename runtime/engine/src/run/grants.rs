//! Resolving a step's `grants:` against its context: connections, HTTP origins, secrets, DNS
//! server and filesystem preopens.

use std::collections::BTreeMap;

use meridian_model::Step;
use meridian_model::expr::EvalContext;
use serde_json::Value as Json;

use super::runner::Runner;
use crate::executor::{FsPreopen, ResolvedGrants};

impl Runner {
    pub(super) fn resolve_grants(
        &self,
        step: &Step,
        ctx: &EvalContext,
    ) -> Result<ResolvedGrants, String> {
        let g = &step.grants;
        let mut sql = BTreeMap::new();
        for name in &g.sql {
            let conn = self
                .wf
                .connections
                .get(&name.value)
                .ok_or_else(|| format!("grants.sql: no connection named `{}`", name.value))?;
            let dsn = match &conn.kind {
                meridian_model::ConnectionKind::Postgres(t) => t
                    .eval(ctx)
                    .map_err(|e| format!("connections.{}: {e}", name.value))?,
                meridian_model::ConnectionKind::Http(_) => {
                    return Err(format!(
                        "grants.sql: connection `{}` is an HTTP endpoint, not PostgreSQL",
                        name.value
                    ));
                }
            };
            sql.insert(name.value.clone(), json_to_string(dsn));
        }
        let http = g
            .http
            .iter()
            .map(|h| h.value.origin(&self.wf, ctx))
            .collect::<Result<_, _>>()?;
        let secrets = g
            .secrets
            .iter()
            .filter_map(|s| {
                self.opts
                    .secrets
                    .get(&s.value)
                    .map(|v| (s.value.clone(), v.clone()))
            })
            .collect();
        let dns = match &g.dns {
            Some(t) => {
                let text =
                    json_to_string(t.value.eval(ctx).map_err(|e| format!("grants.dns: {e}"))?);
                Some(parse_dns_server(&text).ok_or_else(|| {
                    format!("grants.dns: `{text}` is not IP:PORT (e.g. 127.0.0.1:5353)")
                })?)
            }
            None => None,
        };
        let fs =
            g.fs.iter()
                .map(|f| FsPreopen {
                    host: f.host.clone(),
                    guest: f.guest.clone(),
                    writable: f.writable,
                })
                .collect();
        Ok(ResolvedGrants {
            http,
            http_limits: g.http_limits.clone(),
            sql,
            fs,
            secrets,
            dns,
            kv: g.kv.iter().map(|k| k.value.clone()).collect(),
        })
    }
}

fn json_to_string(v: Json) -> String {
    match v {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

/// `IP:PORT`, or a bare IP (port 53).
fn parse_dns_server(s: &str) -> Option<std::net::SocketAddr> {
    let s = s.trim();
    s.parse()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
}
