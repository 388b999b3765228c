//! The HTTP grant pattern, `scheme://host[:port]`: parsed once (by the workflow model, from
//! `grants.http`), carried typed through the engine and the queue, and matched by the sandbox
//! against every request and redirect. Validation and enforcement use this one type, so they
//! cannot disagree about what a pattern allows.
//!
//! The rules:
//!
//! - **scheme**: `http`, `https`, or `*` for either. Any other scheme is an error: the sandbox
//!   speaks only HTTP.
//! - **host**:
//!   - a DNS name, matched case-insensitively (`api.example.com`); letters, digits, `-` and `_`
//!     per label; an internationalised name is written in its `xn--` form;
//!   - `*.` + a name: one **or more** labels in front of that name (`*.amazonaws.com` covers
//!     `route53.amazonaws.com` and `route53.us-east-1.amazonaws.com`, not `amazonaws.com`),
//!     as in a CSP host source;
//!   - `*` alone: any DNS name;
//!   - an IP address, `127.0.0.1` or `[::1]`: that address only. Names never match IP
//!     addresses and IP addresses never match names, so `http://*:*` does not open every
//!     address, and `localhost` does not cover `127.0.0.1`.
//!
//!   `*` anywhere else (`api-*.example.com`, `a.*.example.com`) is an error.
//! - **port**: a number, `*` for any, or nothing for the scheme's default (80 for `http`, 443
//!   for `https`; with scheme `*`, the default of the URL's scheme).
//! - Nothing else: no path, query, fragment or user; a single trailing `/` is accepted.
//!
//! URLs are parsed by the `url` crate (WHATWG rules, the parser the sandbox's HTTP client uses),
//! so `http://2130706433/` is `127.0.0.1` here exactly as it is on the wire.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

pub use url::{Host, Url};

/// One allowed origin pattern, e.g. `https://*.example.com` or `http://127.0.0.1:*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OriginPattern {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SchemePattern {
    Http,
    Https,
    /// `*`: http or https.
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostPattern {
    /// An IP literal; matches that address only.
    Ip(IpAddr),
    /// A DNS name, lower-case.
    Name(String),
    /// `*.` + this name (lower-case): one or more labels in front of it.
    Below(String),
    /// `*`: any DNS name.
    AnyName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PortPattern {
    /// No port written: the scheme's default.
    Default,
    Exact(u16),
    /// `*`.
    Any,
}

/// Why a pattern (or a URL given as a grant) is not a valid origin pattern. The text says what
/// is wrong; the caller names the offending pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("expected `scheme://host[:port]`")]
    NoScheme,
    #[error("the scheme must be `http`, `https` or `*`, not `{0}`")]
    Scheme(String),
    #[error("paths are not supported; grant the origin `scheme://host[:port]`")]
    Path,
    #[error("a query or fragment is not part of an origin")]
    Query,
    #[error("user names are not supported")]
    UserInfo,
    #[error("the host is empty")]
    EmptyHost,
    #[error("empty label in host `{0}`")]
    EmptyLabel(String),
    #[error("host `{0}` may contain only letters, digits, `-`, `_` and `.`")]
    HostChars(String),
    #[error(
        "`*` may stand only for the whole host (`*`) or for its leading labels (`*.example.com`)"
    )]
    Wildcard,
    #[error("`{0}` is not an IPv4 address")]
    NotIpv4(String),
    #[error("`{0}` is not an IPv6 address")]
    NotIpv6(String),
    #[error("write an IPv6 address in brackets, the port after them: `http://[::1]:8080`")]
    BareIpv6,
    #[error("unclosed `[`")]
    Unclosed,
    #[error("the port must be a number from 1 to 65535 or `*`, not `{0}`")]
    Port(String),
    #[error("not a URL: {0}")]
    Url(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OriginPattern {
    /// Parses `scheme://host[:port]` (see the module documentation for the rules).
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = text.split_once("://").ok_or(OriginError::NoScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => SchemePattern::Http,
            "https" => SchemePattern::Https,
            "*" => SchemePattern::Any,
            _ => return Err(OriginError::Scheme(scheme.to_owned())),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['?', '#']) {
            return Err(OriginError::Query);
        }
        if authority.contains('/') {
            return Err(OriginError::Path);
        }
        if authority.contains('@') {
            return Err(OriginError::UserInfo);
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (ip, after) = inner.split_once(']').ok_or(OriginError::Unclosed)?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| OriginError::NotIpv6(ip.into()))?;
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':').ok_or(OriginError::Port(a.into()))?),
            };
            (HostPattern::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((_, p)) if p.contains(':') => return Err(OriginError::BareIpv6),
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            (host_pattern(host)?, port)
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => PortPattern::Exact(n),
                _ => return Err(OriginError::Port(p.into())),
            },
        };
        Ok(OriginPattern { scheme, host, port })
    }

    /// The exact origin of `url`: its scheme, host and port, nothing more.
    pub fn of_url(url: &Url) -> Result<Self, OriginError> {
        let scheme = match url.scheme() {
            "http" => SchemePattern::Http,
            "https" => SchemePattern::Https,
            other => return Err(OriginError::Scheme(other.to_owned())),
        };
        let host = match url.host() {
            None => return Err(OriginError::EmptyHost),
            Some(Host::Ipv4(ip)) => HostPattern::Ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => HostPattern::Ip(IpAddr::V6(ip)),
            // The URL parser allows characters (`*` among them) that would read as a wildcard
            // here: the name must pass the same checks as a written pattern.
            Some(Host::Domain(d)) => match host_pattern(d.trim_end_matches('.'))? {
                h @ HostPattern::Name(_) => h,
                _ => return Err(OriginError::Wildcard),
            },
        };
        let port = url.port().map_or(PortPattern::Default, PortPattern::Exact);
        Ok(OriginPattern { scheme, host, port })
    }

    /// The exact origin of the URL `text` (a `url:` connection's).
    pub fn of_url_text(text: &str) -> Result<Self, OriginError> {
        let url = Url::parse(text).map_err(|e| OriginError::Url(e.to_string()))?;
        Self::of_url(&url)
    }

    /// What a grant evaluated at run time (`"${{ inputs.admin_url }}"`) or a `url:` connection
    /// grants: `text` as a pattern, or, when it is a URL with a path, that URL's origin.
    pub fn of_pattern_or_url(text: &str) -> Result<Self, OriginError> {
        Self::parse(text).or_else(|e| match Url::parse(text) {
            Ok(url) => Self::of_url(&url),
            // Not a URL either: the pattern's reason is the more useful one.
            Err(_) => Err(e),
        })
    }

    /// Whether a request to `url` is allowed by this pattern.
    pub fn matches(&self, url: &Url) -> bool {
        let scheme = url.scheme();
        let scheme_ok = match self.scheme {
            SchemePattern::Http => scheme == "http",
            SchemePattern::Https => scheme == "https",
            SchemePattern::Any => scheme == "http" || scheme == "https",
        };
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
            PortPattern::Default => default_port(scheme) == Some(port),
        };
        scheme_ok && port_ok && url.host().is_some_and(|h| self.host_matches(&h))
    }

    fn host_matches(&self, host: &Host<&str>) -> bool {
        match (&self.host, host) {
            (HostPattern::Ip(want), Host::Ipv4(ip)) => *want == IpAddr::V4(*ip),
            (HostPattern::Ip(want), Host::Ipv6(ip)) => *want == IpAddr::V6(*ip),
            (HostPattern::Ip(_), Host::Domain(_)) => false,
            (_, Host::Ipv4(_) | Host::Ipv6(_)) => false,
            (pattern, Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match pattern {
                    HostPattern::Name(want) => name == *want,
                    HostPattern::Below(base) => name
                        .strip_suffix(base.as_str())
                        .and_then(|front| front.strip_suffix('.'))
                        .is_some_and(|front| front.split('.').all(|l| !l.is_empty())),
                    HostPattern::AnyName => !name.is_empty(),
                    HostPattern::Ip(_) => false,
                }
            }
        }
    }
}

/// A host that is not bracketed: an IPv4 address, a name, `*` or `*.name`.
fn host_pattern(host: &str) -> Result<HostPattern, OriginError> {
    if host.is_empty() {
        return Err(OriginError::EmptyHost);
    }
    let host = host.to_ascii_lowercase();
    if host == "*" {
        return Ok(HostPattern::AnyName);
    }
    let (below, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|l| l.contains('*')) {
        return Err(OriginError::Wildcard);
    }
    if labels.iter().any(|l| l.is_empty()) {
        return Err(OriginError::EmptyLabel(host.clone()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(OriginError::HostChars(host.clone()));
    }
    // A name ending in a number is an IPv4 address to the URL parser (`127.1`, `0x7f.1`), so
    // as a name it could never match: only the dotted-quad form is accepted.
    let last = labels[labels.len() - 1];
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return match name.parse::<Ipv4Addr>() {
            Ok(ip) if !below => Ok(HostPattern::Ip(IpAddr::V4(ip))),
            _ => Err(OriginError::NotIpv4(host.clone())),
        };
    }
    Ok(if below {
        HostPattern::Below(name.to_owned())
    } else {
        HostPattern::Name(name.to_owned())
    })
}

impl fmt::Display for OriginPattern {
    /// The canonical form, which [`OriginPattern::parse`] reads back to the same pattern.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scheme {
            SchemePattern::Http => "http://",
            SchemePattern::Https => "https://",
            SchemePattern::Any => "*://",
        })?;
        match &self.host {
            HostPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Name(n) => f.write_str(n)?,
            HostPattern::Below(n) => write!(f, "*.{n}")?,
            HostPattern::AnyName => f.write_str("*")?,
        }
        match self.port {
            PortPattern::Default => Ok(()),
            PortPattern::Exact(p) => write!(f, ":{p}"),
            PortPattern::Any => f.write_str(":*"),
        }
    }
}

impl FromStr for OriginPattern {
    type Err = OriginError;
    fn from_str(s: &str) -> Result<Self, OriginError> {
        Self::parse(s)
    }
}

// On the wire a pattern is its canonical text.
serde_as_text!(OriginPattern, OriginPattern::parse);

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> OriginPattern {
        OriginPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn ok(pattern: &str, url: &str) -> bool {
        p(pattern).matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn exact_origins_and_default_ports() {
        assert!(ok(
            "https://api.example.com",
            "https://API.example.com:443/v1?x=1"
        ));
        assert!(!ok(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(!ok("https://api.example.com", "http://api.example.com/"));
        assert!(!ok(
            "https://api.example.com",
            "https://api.example.com.evil.net/"
        ));
        assert!(!ok(
            "https://api.example.com",
            "https://evil.net/?https://api.example.com"
        ));
        assert!(
            !ok(
                "https://api.example.com",
                "https://api.example.com@evil.net/"
            ),
            "userinfo names no host"
        );
        assert!(ok(
            "http://gw.local:9180/",
            "http://gw.local:9180/apisix/admin"
        ));
        assert!(!ok("http://gw.local:9180", "http://gw.local/"));
        assert!(ok("https://x.com:443", "https://x.com/"));
        assert!(!ok("http://x.com", "ftp://x.com/"));
    }

    #[test]
    fn wildcard_scheme_means_http_or_https_with_each_default_port() {
        assert!(ok("*://x.com", "http://x.com/"));
        assert!(ok("*://x.com", "https://x.com/"));
        assert!(!ok("*://x.com", "http://x.com:443/"));
        assert!(ok("*://127.0.0.1:8080", "https://127.0.0.1:8080/"));
        assert!(!ok("*://x.com:*", "ftp://x.com/"));
    }

    #[test]
    fn a_leading_wildcard_covers_one_or_more_labels() {
        let pat = "https://*.amazonaws.com";
        assert!(ok(pat, "https://route53.amazonaws.com/"));
        assert!(ok(pat, "https://route53.us-east-1.amazonaws.com/"));
        assert!(!ok(pat, "https://amazonaws.com/"));
        assert!(!ok(pat, "https://route53amazonaws.com/"));
        assert!(!ok(pat, "https://route53.amazonaws.com.evil.net/"));
        assert!(ok("https://*", "https://anything.example/"));
        assert!(ok(
            "http://*.lab.meridian.test:*",
            "http://api.lab.meridian.test:9080/"
        ));
    }

    #[test]
    fn ip_literals_match_only_themselves() {
        assert!(ok("http://127.0.0.1:*", "http://127.0.0.1:5555/"));
        assert!(!ok("http://127.0.0.1:*", "http://127.0.0.2:5555/"));
        assert!(
            ok("http://127.0.0.1:*", "http://2130706433:80/"),
            "normalised by the URL parser"
        );
        assert!(ok("http://[::1]:8080", "http://[::1]:8080/"));
        assert!(ok("http://[0:0::1]:8080", "http://[::1]:8080/"));
        assert!(!ok("http://[::1]:8080", "http://[::1]:8081/"));
        assert!(
            !ok("https://*", "https://10.0.0.1/"),
            "a name pattern never matches an IP"
        );
        assert!(!ok("https://*", "https://[::2]/"));
        assert!(!ok("http://localhost:*", "http://127.0.0.1:1/"));
        assert!(!ok("http://127.0.0.1:*", "http://localhost:1/"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        use OriginError as E;
        type Expect = fn(&OriginError) -> bool;
        let cases: [(&str, Expect); 18] = [
            ("example.com", |e| *e == E::NoScheme),
            ("ftp://x", |e| matches!(e, E::Scheme(s) if s == "ftp")),
            ("https://x/path", |e| *e == E::Path),
            ("https://x?q", |e| *e == E::Query),
            ("https://u@x", |e| *e == E::UserInfo),
            ("https://", |e| *e == E::EmptyHost),
            ("https://:80", |e| *e == E::EmptyHost),
            ("https://a..b", |e| matches!(e, E::EmptyLabel(_))),
            ("https://x.com.", |e| matches!(e, E::EmptyLabel(_))),
            ("https://a!b", |e| matches!(e, E::HostChars(_))),
            ("https://api-*.x.com", |e| *e == E::Wildcard),
            ("https://a.*.x.com", |e| *e == E::Wildcard),
            ("https://127.1", |e| matches!(e, E::NotIpv4(_))),
            ("https://*.0.0.1", |e| matches!(e, E::NotIpv4(_))),
            ("https://[::g]", |e| matches!(e, E::NotIpv6(_))),
            ("https://[::1", |e| *e == E::Unclosed),
            ("https://::1", |e| *e == E::BareIpv6),
            ("https://x:port", |e| matches!(e, E::Port(p) if p == "port")),
        ];
        for (text, want) in cases {
            let e = OriginPattern::parse(text).unwrap_err();
            assert!(want(&e), "{text}: {e:?}");
        }
        for port in ["0", "65536", "+80", ""] {
            let e = OriginPattern::parse(&format!("http://x:{port}")).unwrap_err();
            assert_eq!(e, OriginError::Port(port.into()));
        }
    }

    #[test]
    fn display_is_canonical_and_reads_back() {
        for (text, canonical) in [
            ("HTTPS://API.Example.com/", "https://api.example.com"),
            ("*://*.x.com:*", "*://*.x.com:*"),
            ("http://[0:0::1]:8080", "http://[::1]:8080"),
            ("http://127.0.0.1", "http://127.0.0.1"),
            ("https://*", "https://*"),
        ] {
            let pat = p(text);
            assert_eq!(pat.to_string(), canonical);
            assert_eq!(p(canonical), pat);
            let json = serde_json::to_value(&pat).unwrap();
            assert_eq!(json, serde_json::json!(canonical));
            assert_eq!(serde_json::from_value::<OriginPattern>(json).unwrap(), pat);
        }
        assert!(serde_json::from_value::<OriginPattern>(serde_json::json!("ftp://x")).is_err());
    }

    #[test]
    fn the_origin_of_a_url_is_exact() {
        let of = |u: &str| OriginPattern::of_url(&Url::parse(u).unwrap());
        let o = of("https://Route53.amazonaws.com/2013-04-01/x?y").unwrap();
        assert_eq!(o.to_string(), "https://route53.amazonaws.com");
        assert_eq!(
            of("http://[::1]:8080/").unwrap().to_string(),
            "http://[::1]:8080"
        );
        assert_eq!(of("http://x.com:80/").unwrap().to_string(), "http://x.com");
        assert!(matches!(of("ftp://x.com/"), Err(OriginError::Scheme(_))));
        // A URL host may hold `*`; it must not turn into a wildcard.
        assert_eq!(of("http://*.example.com/"), Err(OriginError::Wildcard));
        assert!(of("http://a!b.com/").is_err());
        assert_eq!(
            OriginPattern::of_url_text("http://127.0.0.1:9180/apisix").map(|p| p.to_string()),
            Ok("http://127.0.0.1:9180".into())
        );
        assert!(matches!(
            OriginPattern::of_url_text("127.0.0.1:9180"),
            Err(OriginError::Scheme(_) | OriginError::Url(_))
        ));
    }

    #[test]
    fn a_grant_evaluated_at_run_time_is_a_pattern_or_a_url() {
        let g = |t: &str| OriginPattern::of_pattern_or_url(t).map(|p| p.to_string());
        assert_eq!(
            g("http://127.0.0.1:9180/apisix/admin"),
            Ok("http://127.0.0.1:9180".into())
        );
        assert_eq!(g("http://127.0.0.3:*"), Ok("http://127.0.0.3:*".into()));
        assert!(matches!(g("ftp://x/y"), Err(OriginError::Scheme(_))));
        assert_eq!(g("not a url"), Err(OriginError::NoScheme));
    }
}
