//! A small Route 53 client: the eight operations the step uses, each signed with SigV4 and
//! each failure classified (retryable vs fatal) with a message that says what to check.
//! One HTTP round trip per call, plus pagination where the API pages.

use meridian_families::{Env, StepError};
use meridian_sdk::http::{Request, Response, percent_encode};

use crate::sigv4::{self, Credentials};
use crate::xml::{self, ChangeInfo, HealthCheck, HealthCheckConfig, RecordSet};

/// Upper bound on pages read from any list operation, so a misbehaving endpoint cannot loop us.
const MAX_PAGES: usize = 100;

/// A Route 53 endpoint with credentials.
pub struct Client<'a> {
    env: Env<'a>,
    endpoint: String,
    creds: Credentials,
    signing_region: String,
    /// Names the zone in error messages.
    zone: String,
    /// Names the secrets in credential errors.
    secrets_hint: String,
}

impl std::fmt::Debug for Client<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("creds", &self.creds)
            .finish()
    }
}

impl<'a> Client<'a> {
    /// A client for `endpoint` (e.g. `https://route53.amazonaws.com`).
    pub fn new(
        env: Env<'a>,
        endpoint: &str,
        creds: Credentials,
        signing_region: &str,
        zone: &str,
        secrets_hint: &str,
    ) -> Self {
        Self {
            env,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            creds,
            signing_region: signing_region.to_owned(),
            zone: zone.to_owned(),
            secrets_hint: secrets_hint.to_owned(),
        }
    }

    fn send(
        &self,
        op: &str,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, StepError> {
        let resp = self.send_any(op, method, path, body)?;
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(self.classify(&format!("Route 53 {op}"), &resp))
        }
    }

    /// Signs and sends; any HTTP status is `Ok`.
    fn send_any(
        &self,
        op: &str,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response, StepError> {
        let mut req = Request::new(method, format!("{}{path}", self.endpoint));
        if let Some(b) = body {
            req = req.body(b.into_bytes());
        }
        let now = self.env.clock.now_unix_ms() / 1000;
        sigv4::sign(&mut req, &self.creds, &self.signing_region, "route53", now)
            .map_err(|e| StepError::invalid(format!("provider.route53.endpoint: {e}")))?;
        self.env.send(&format!("Route 53 {op}"), req)
    }

    fn classify(&self, what: &str, resp: &Response) -> StepError {
        let text = resp.text();
        let Some(err) = xml::parse_error(&text) else {
            return StepError::from_status(
                what,
                resp.status,
                &resp.snippet(300),
                &self.secrets_hint,
            );
        };
        let msg = if err.messages.is_empty() {
            resp.snippet(300)
        } else {
            err.messages.join("; ")
        };
        match err.code.as_str() {
            "NoSuchHostedZone" => StepError::fatal(format!(
                "{what}: the hosted zone for `{}` does not exist (NoSuchHostedZone: {msg}); check provider.route53.hosted_zone_id \
                 and that the credentials belong to the zone's AWS account",
                self.zone
            )),
            "Throttling"
            | "ThrottlingException"
            | "PriorRequestNotComplete"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalError"
            | "RequestTimeout" => {
                StepError::retryable(format!("{what}: {} (transient): {msg}", err.code))
            }
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "AccessDenied"
            | "AccessDeniedException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "NotAuthorized" => StepError::fatal(format!(
                "{what}: the credentials were refused ({}: {msg}); check {} and that they may change Route 53",
                err.code, self.secrets_hint
            )),
            "InvalidChangeBatch" => StepError::fatal(format!(
                "{what}: Route 53 rejected the change batch: {msg}; check for records of the same name and type \
                 that this step does not manage (set identifiers other than the region names)"
            )),
            code => StepError::from_status(
                what,
                resp.status,
                &format!("{code}: {msg}"),
                &self.secrets_hint,
            ),
        }
    }

    fn parse<T>(what: &str, r: Result<T, xml::ParseError>) -> Result<T, StepError> {
        // An unexpected body is usually a proxy or the wrong endpoint; say so, and let a retry try again.
        r.map_err(|e| {
            StepError::retryable(format!(
                "Route 53 {what}: {e}; check provider.route53.endpoint"
            ))
        })
    }

    /// The id of the public hosted zone named `zone_fqdn` (ListHostedZonesByName).
    pub fn find_zone(&self, zone_fqdn: &str) -> Result<String, StepError> {
        let path = format!(
            "/2013-04-01/hostedzonesbyname?dnsname={}",
            percent_encode(zone_fqdn, b"")
        );
        let resp = self.send("ListHostedZonesByName", "GET", &path, None)?;
        let zones = Self::parse(
            "ListHostedZonesByName",
            xml::parse_hosted_zones(&resp.text()),
        )?;
        let matching: Vec<&(String, String)> = zones
            .iter()
            .filter(|(_, name)| name.eq_ignore_ascii_case(zone_fqdn))
            .collect();
        match matching.as_slice() {
            [(id, _)] => Ok(id.clone()),
            [] => Err(StepError::fatal(format!(
                "Route 53: no hosted zone named `{zone_fqdn}` in this account; create it or set provider.route53.hosted_zone_id"
            ))),
            _ => Err(StepError::fatal(format!(
                "Route 53: several hosted zones are named `{zone_fqdn}` (public and private?); set provider.route53.hosted_zone_id"
            ))),
        }
    }

    /// Every record set named exactly `name` with type `rtype` (ListResourceRecordSets, paged).
    pub fn list_record_sets(
        &self,
        zone_id: &str,
        name: &str,
        rtype: &str,
    ) -> Result<Vec<RecordSet>, StepError> {
        let mut out = Vec::new();
        let mut start = (name.to_owned(), rtype.to_owned(), None::<String>);
        for _ in 0..MAX_PAGES {
            let mut path = format!(
                "/2013-04-01/hostedzone/{zone_id}/rrset?name={}&type={}",
                percent_encode(&start.0, b""),
                percent_encode(&start.1, b"")
            );
            if let Some(id) = &start.2 {
                path.push_str(&format!("&identifier={}", percent_encode(id, b"")));
            }
            path.push_str("&maxitems=300");
            let resp = self.send("ListResourceRecordSets", "GET", &path, None)?;
            let (sets, next) = Self::parse(
                "ListResourceRecordSets",
                xml::parse_record_sets(&resp.text()),
            )?;
            // Listing starts at `name` but runs on through the zone in DNS order; keep ours and
            // stop as soon as the listing has moved past them.
            let mut past = false;
            for s in sets {
                if s.name.eq_ignore_ascii_case(name) && s.rtype == rtype {
                    out.push(s);
                } else {
                    past = true;
                }
            }
            match next {
                Some((n, t, id)) if !past && n.eq_ignore_ascii_case(name) && t == rtype => {
                    start = (n, t, id)
                }
                _ => return Ok(out),
            }
        }
        Err(StepError::retryable(format!(
            "Route 53 ListResourceRecordSets: more than {MAX_PAGES} pages for {name} {rtype}"
        )))
    }

    /// Every health check of the account (ListHealthChecks, paged).
    pub fn list_health_checks(&self) -> Result<Vec<HealthCheck>, StepError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let path = match &marker {
                Some(m) => format!(
                    "/2013-04-01/healthcheck?marker={}&maxitems=1000",
                    percent_encode(m, b"")
                ),
                None => "/2013-04-01/healthcheck?maxitems=1000".to_owned(),
            };
            let resp = self.send("ListHealthChecks", "GET", &path, None)?;
            let (checks, next) =
                Self::parse("ListHealthChecks", xml::parse_health_checks(&resp.text()))?;
            out.extend(checks);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
        Err(StepError::retryable(format!(
            "Route 53 ListHealthChecks: more than {MAX_PAGES} pages"
        )))
    }

    /// Creates a health check; `None` when plan mode recorded the request (no id exists yet).
    pub fn create_health_check(
        &self,
        caller_reference: &str,
        cfg: &HealthCheckConfig,
    ) -> Result<Option<String>, StepError> {
        let body = xml::create_health_check(caller_reference, cfg);
        let resp = self.send(
            "CreateHealthCheck",
            "POST",
            "/2013-04-01/healthcheck",
            Some(body),
        )?;
        if resp.recorded {
            return Ok(None);
        }
        Self::parse(
            "CreateHealthCheck",
            xml::parse_created_health_check(&resp.text()),
        )
        .map(Some)
    }

    /// Deletes a health check; `Ok(true)` when plan mode recorded the request. A check that is
    /// already gone counts as deleted, so a retried cleanup does not fail on it.
    pub fn delete_health_check(&self, health_check_id: &str) -> Result<bool, StepError> {
        const OP: &str = "DeleteHealthCheck";
        let path = format!(
            "/2013-04-01/healthcheck/{}",
            percent_encode(health_check_id, b"")
        );
        let resp = self.send_any(OP, "DELETE", &path, None)?;
        if resp.is_success() {
            return Ok(resp.recorded);
        }
        match xml::parse_error(&resp.text()) {
            Some(e) if e.code == "NoSuchHealthCheck" => Ok(false),
            _ => Err(self.classify(&format!("Route 53 {OP}"), &resp)),
        }
    }

    /// Submits one atomic change batch; `None` when plan mode recorded it.
    pub fn change(
        &self,
        zone_id: &str,
        comment: &str,
        changes: &[(xml::Action, RecordSet)],
    ) -> Result<Option<ChangeInfo>, StepError> {
        let body = xml::change_batch(Some(comment), changes);
        let path = format!("/2013-04-01/hostedzone/{zone_id}/rrset/");
        let resp = self.send("ChangeResourceRecordSets", "POST", &path, Some(body))?;
        if resp.recorded {
            return Ok(None);
        }
        Self::parse(
            "ChangeResourceRecordSets",
            xml::parse_change_info(&resp.text()),
        )
        .map(Some)
    }

    /// The status of a submitted change (GetChange).
    pub fn get_change(&self, change_id: &str) -> Result<ChangeInfo, StepError> {
        let path = format!("/2013-04-01/change/{}", percent_encode(change_id, b""));
        let resp = self.send("GetChange", "GET", &path, None)?;
        Self::parse("GetChange", xml::parse_change_info(&resp.text()))
    }

    /// Whether most Route 53 checkers see the health check passing (GetHealthCheckStatus).
    pub fn health_status(&self, health_check_id: &str) -> Result<Option<bool>, StepError> {
        let path = format!(
            "/2013-04-01/healthcheck/{}/status",
            percent_encode(health_check_id, b"")
        );
        let resp = self.send("GetHealthCheckStatus", "GET", &path, None)?;
        Self::parse(
            "GetHealthCheckStatus",
            xml::parse_health_status(&resp.text()),
        )
    }
}
