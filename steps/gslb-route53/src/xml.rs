//! Route 53 REST-XML bodies: the two request documents the step writes and the responses it
//! reads. Requests are written in botocore's model order and escaping, so the bytes equal what
//! the AWS SDK sends (checked against `tests/sigv4_vectors.json`). Responses are parsed
//! leniently with roxmltree (namespace-agnostic, unknown elements ignored).

use roxmltree::{Document, Node};

/// The Route 53 XML namespace, API version 2013-04-01.
pub const NS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// A resource record set as Route 53 stores it (the members the step manages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSet {
    /// Absolute name with trailing dot.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, …
    pub rtype: String,
    /// Unique within name+type for routing-policy records.
    pub set_identifier: Option<String>,
    /// Weighted routing weight (0-255).
    pub weight: Option<u32>,
    /// Latency routing AWS region.
    pub region: Option<String>,
    /// `PRIMARY` or `SECONDARY`.
    pub failover: Option<String>,
    /// TTL seconds (absent for alias records).
    pub ttl: Option<u32>,
    /// Record values.
    pub values: Vec<String>,
    /// Health check attached to the record.
    pub health_check_id: Option<String>,
    /// An alias record (AliasTarget): not managed by the step.
    pub alias: bool,
}

/// What a change does to a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fails when the record exists.
    Create,
    /// Fails unless every field matches.
    Delete,
    /// Create or replace: the idempotent choice.
    Upsert,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::Upsert => "UPSERT",
        }
    }
}

/// Health-check settings, in the members the step sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Probe this address (else Route 53 resolves `fqdn`).
    pub ip_address: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// `HTTP`, `HTTPS` or `TCP`.
    pub kind: String,
    /// Path for HTTP(S).
    pub resource_path: Option<String>,
    /// Host name probed, and the Host header / SNI of HTTP(S) checks.
    pub fqdn: Option<String>,
    /// 10 or 30 seconds.
    pub request_interval: u32,
    /// 1-10.
    pub failure_threshold: u32,
}

/// A health check as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Id used by records.
    pub id: String,
    /// The idempotency token it was created with.
    pub caller_reference: String,
}

/// The state of a submitted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    /// `C…`, without the `/change/` prefix.
    pub id: String,
    /// `PENDING` or `INSYNC`.
    pub status: String,
}

/// Text with the XML escapes ElementTree (and so botocore) applies to element text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn elem(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The `ChangeResourceRecordSetsRequest` document.
pub fn change_batch(comment: Option<&str>, changes: &[(Action, RecordSet)]) -> String {
    let mut out = format!("<ChangeResourceRecordSetsRequest xmlns=\"{NS}\"><ChangeBatch>");
    if let Some(c) = comment {
        elem(&mut out, "Comment", c);
    }
    out.push_str("<Changes>");
    for (action, rr) in changes {
        out.push_str("<Change>");
        elem(&mut out, "Action", action.as_str());
        out.push_str("<ResourceRecordSet>");
        // Member order of botocore's model: Name, Type, SetIdentifier, Weight, Region, …,
        // Failover, …, TTL, ResourceRecords, AliasTarget, HealthCheckId.
        elem(&mut out, "Name", &rr.name);
        elem(&mut out, "Type", &rr.rtype);
        if let Some(v) = &rr.set_identifier {
            elem(&mut out, "SetIdentifier", v);
        }
        if let Some(v) = rr.weight {
            elem(&mut out, "Weight", &v.to_string());
        }
        if let Some(v) = &rr.region {
            elem(&mut out, "Region", v);
        }
        if let Some(v) = &rr.failover {
            elem(&mut out, "Failover", v);
        }
        if let Some(v) = rr.ttl {
            elem(&mut out, "TTL", &v.to_string());
        }
        out.push_str("<ResourceRecords>");
        for v in &rr.values {
            out.push_str("<ResourceRecord>");
            elem(&mut out, "Value", v);
            out.push_str("</ResourceRecord>");
        }
        out.push_str("</ResourceRecords>");
        if let Some(v) = &rr.health_check_id {
            elem(&mut out, "HealthCheckId", v);
        }
        out.push_str("</ResourceRecordSet></Change>");
    }
    out.push_str("</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>");
    out
}

/// The `CreateHealthCheckRequest` document.
pub fn create_health_check(caller_reference: &str, cfg: &HealthCheckConfig) -> String {
    let mut out = format!("<CreateHealthCheckRequest xmlns=\"{NS}\">");
    elem(&mut out, "CallerReference", caller_reference);
    out.push_str("<HealthCheckConfig>");
    if let Some(v) = &cfg.ip_address {
        elem(&mut out, "IPAddress", v);
    }
    if let Some(v) = cfg.port {
        elem(&mut out, "Port", &v.to_string());
    }
    elem(&mut out, "Type", &cfg.kind);
    if let Some(v) = &cfg.resource_path {
        elem(&mut out, "ResourcePath", v);
    }
    if let Some(v) = &cfg.fqdn {
        elem(&mut out, "FullyQualifiedDomainName", v);
    }
    elem(
        &mut out,
        "RequestInterval",
        &cfg.request_interval.to_string(),
    );
    elem(
        &mut out,
        "FailureThreshold",
        &cfg.failure_threshold.to_string(),
    );
    out.push_str("</HealthCheckConfig></CreateHealthCheckRequest>");
    out
}

/// The body could not be read as the expected document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected Route 53 response: {0}")]
pub struct ParseError(pub String);

fn parse(body: &str) -> Result<Document<'_>, ParseError> {
    Document::parse(body).map_err(|e| ParseError(format!("not XML ({e})")))
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).map(|c| c.text().unwrap_or_default().trim().to_owned())
}

fn descendants<'a, 'i: 'a>(
    doc: &'a Document<'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    doc.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// One page of `ListResourceRecordSets`: the sets and where the next page starts
/// (name, type, identifier) when truncated.
pub type RecordSetPage = (Vec<RecordSet>, Option<(String, String, Option<String>)>);

/// Parses a `ListResourceRecordSetsResponse`.
pub fn parse_record_sets(body: &str) -> Result<RecordSetPage, ParseError> {
    let doc = parse(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "ListResourceRecordSetsResponse" {
        return Err(ParseError(format!(
            "expected ListResourceRecordSetsResponse, got {}",
            root.tag_name().name()
        )));
    }
    let mut sets = Vec::new();
    for n in descendants(&doc, "ResourceRecordSet") {
        let values = child(n, "ResourceRecords")
            .map(|rrs| {
                rrs.children()
                    .filter(|c| c.is_element())
                    .filter_map(|c| child_text(c, "Value"))
                    .collect()
            })
            .unwrap_or_default();
        sets.push(RecordSet {
            name: child_text(n, "Name").unwrap_or_default(),
            rtype: child_text(n, "Type").unwrap_or_default(),
            set_identifier: child_text(n, "SetIdentifier"),
            weight: child_text(n, "Weight").and_then(|w| w.parse().ok()),
            region: child_text(n, "Region"),
            failover: child_text(n, "Failover"),
            ttl: child_text(n, "TTL").and_then(|t| t.parse().ok()),
            values,
            health_check_id: child_text(n, "HealthCheckId"),
            alias: child(n, "AliasTarget").is_some(),
        });
    }
    let truncated = child_text(root, "IsTruncated").is_some_and(|t| t == "true");
    let next = match (
        truncated,
        child_text(root, "NextRecordName"),
        child_text(root, "NextRecordType"),
    ) {
        (true, Some(name), Some(rtype)) => {
            Some((name, rtype, child_text(root, "NextRecordIdentifier")))
        }
        _ => None,
    };
    Ok((sets, next))
}

/// Parses a `ListHealthChecksResponse`: the checks and the next marker when truncated.
pub fn parse_health_checks(body: &str) -> Result<(Vec<HealthCheck>, Option<String>), ParseError> {
    let doc = parse(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "ListHealthChecksResponse" {
        return Err(ParseError(format!(
            "expected ListHealthChecksResponse, got {}",
            root.tag_name().name()
        )));
    }
    let checks = descendants(&doc, "HealthCheck")
        .filter_map(|n| {
            Some(HealthCheck {
                id: child_text(n, "Id")?,
                caller_reference: child_text(n, "CallerReference")?,
            })
        })
        .collect();
    let truncated = child_text(root, "IsTruncated").is_some_and(|t| t == "true");
    let next = if truncated {
        child_text(root, "NextMarker")
    } else {
        None
    };
    Ok((checks, next))
}

/// The health-check id in a `CreateHealthCheckResponse`.
pub fn parse_created_health_check(body: &str) -> Result<String, ParseError> {
    let doc = parse(body)?;
    descendants(&doc, "HealthCheck")
        .find_map(|n| child_text(n, "Id"))
        .ok_or_else(|| ParseError("CreateHealthCheckResponse without HealthCheck/Id".into()))
}

/// The `ChangeInfo` of a `ChangeResourceRecordSetsResponse` or `GetChangeResponse`.
pub fn parse_change_info(body: &str) -> Result<ChangeInfo, ParseError> {
    let doc = parse(body)?;
    let info = descendants(&doc, "ChangeInfo")
        .next()
        .ok_or_else(|| ParseError("no ChangeInfo".into()))?;
    let id = child_text(info, "Id").ok_or_else(|| ParseError("ChangeInfo without Id".into()))?;
    let status =
        child_text(info, "Status").ok_or_else(|| ParseError("ChangeInfo without Status".into()))?;
    Ok(ChangeInfo {
        id: id.trim_start_matches("/change/").to_owned(),
        status,
    })
}

/// Hosted zones `(id without /hostedzone/, name)` in a `ListHostedZonesByNameResponse`.
pub fn parse_hosted_zones(body: &str) -> Result<Vec<(String, String)>, ParseError> {
    let doc = parse(body)?;
    Ok(descendants(&doc, "HostedZone")
        .filter_map(|n| {
            let id = child_text(n, "Id")?;
            Some((
                id.trim_start_matches("/hostedzone/").to_owned(),
                child_text(n, "Name")?,
            ))
        })
        .collect())
}

/// Health by observation in a `GetHealthCheckStatusResponse`: `Some(true)` when most checkers
/// report `Success`, `Some(false)` when most report a failure, `None` without observations.
pub fn parse_health_status(body: &str) -> Result<Option<bool>, ParseError> {
    let doc = parse(body)?;
    let mut ok = 0usize;
    let mut total = 0usize;
    for obs in descendants(&doc, "HealthCheckObservation") {
        let status = child(obs, "StatusReport")
            .and_then(|r| child_text(r, "Status"))
            .unwrap_or_default();
        total += 1;
        if status.starts_with("Success") {
            ok += 1;
        }
    }
    Ok(if total == 0 {
        None
    } else {
        Some(ok * 2 > total)
    })
}

/// An error document: the code and every message. Route 53 answers either
/// `<ErrorResponse><Error><Code>…` or `<InvalidChangeBatch><Messages><Message>…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `NoSuchHostedZone`, `Throttling`, `InvalidChangeBatch`, …
    pub code: String,
    /// Human messages, possibly several for InvalidChangeBatch.
    pub messages: Vec<String>,
}

/// Parses an error body; `None` when it is not XML at all.
pub fn parse_error(body: &str) -> Option<ApiError> {
    let doc = Document::parse(body).ok()?;
    let root = doc.root_element();
    let code = descendants(&doc, "Code")
        .next()
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned());
    let code = code.unwrap_or_else(|| root.tag_name().name().to_owned());
    let mut messages: Vec<String> = descendants(&doc, "Message")
        .chain(descendants(&doc, "message"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .collect();
    messages.dedup();
    Some(ApiError { code, messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_elementtree() {
        assert_eq!(escape("a & <b> \"c\" 'd'"), "a &amp; &lt;b&gt; \"c\" 'd'");
    }

    #[test]
    fn parses_moto_record_sets() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ResourceRecordSets><ResourceRecordSet><Name>api.example.com.</Name><Type>A</Type><SetIdentifier>eu</SetIdentifier><Failover>PRIMARY</Failover><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>1.2.3.4</Value></ResourceRecord></ResourceRecords><HealthCheckId>hc-1</HealthCheckId></ResourceRecordSet><ResourceRecordSet><Name>w.example.com.</Name><Type>A</Type><SetIdentifier>us</SetIdentifier><Weight>0</Weight><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>1.2.3.5</Value></ResourceRecord><ResourceRecord><Value>1.2.3.6</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></ResourceRecordSets><IsTruncated>true</IsTruncated><NextRecordName>x.example.com.</NextRecordName><NextRecordType>A</NextRecordType><MaxItems>2</MaxItems></ListResourceRecordSetsResponse>"#;
        let (sets, next) = parse_record_sets(body).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].failover.as_deref(), Some("PRIMARY"));
        assert_eq!(sets[0].health_check_id.as_deref(), Some("hc-1"));
        assert_eq!(sets[1].weight, Some(0));
        assert_eq!(sets[1].values, ["1.2.3.5", "1.2.3.6"]);
        assert_eq!(next, Some(("x.example.com.".into(), "A".into(), None)));
        assert!(parse_record_sets("<Other/>").is_err());
        assert!(parse_record_sets("not xml").is_err());
    }

    #[test]
    fn parses_errors_both_shapes() {
        let e = parse_error(r#"<ErrorResponse xmlns="x"><Error><Type>Sender</Type><Code>NoSuchHostedZone</Code><Message>No hosted zone found with ID: Z1</Message><message>No hosted zone found with ID: Z1</message></Error></ErrorResponse>"#).unwrap();
        assert_eq!(e.code, "NoSuchHostedZone");
        assert_eq!(e.messages, ["No hosted zone found with ID: Z1"]);
        let e = parse_error(r#"<InvalidChangeBatch xmlns="x"><Messages><Message>Tried to create resource record set but it already exists</Message><Message>second</Message></Messages></InvalidChangeBatch>"#).unwrap();
        assert_eq!(e.code, "InvalidChangeBatch");
        assert_eq!(e.messages.len(), 2);
        assert!(parse_error("<html").is_none());
    }

    #[test]
    fn parses_status_and_change() {
        let ok = "<GetHealthCheckStatusResponse><HealthCheckObservations><HealthCheckObservation><StatusReport><Status>Success: HTTP Status Code: 200</Status></StatusReport></HealthCheckObservation></HealthCheckObservations></GetHealthCheckStatusResponse>";
        assert_eq!(parse_health_status(ok).unwrap(), Some(true));
        let bad = ok.replace("Success", "Failure");
        assert_eq!(parse_health_status(&bad).unwrap(), Some(false));
        assert_eq!(
            parse_health_status("<GetHealthCheckStatusResponse/>").unwrap(),
            None
        );
        let c = parse_change_info("<GetChangeResponse><ChangeInfo><Id>/change/C1</Id><Status>PENDING</Status></ChangeInfo></GetChangeResponse>").unwrap();
        assert_eq!(
            c,
            ChangeInfo {
                id: "C1".into(),
                status: "PENDING".into()
            }
        );
    }
}
