//! The HTTP allow-list: `scheme://host[:port]` patterns, matched against parsed URLs.
//! Pure logic, no I/O; the rules are documented on [`crate::HttpPolicy::allow`].

use std::net::IpAddr;

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exact IP address (IP URLs match nothing else).
    Ip(IpAddr),
    /// DNS labels, each a glob where `*` matches any run of characters within the label.
    /// `multi_prefix`: the pattern started with `*.`, which stands for one or more labels.
    Name {
        labels: Vec<String>,
        multi_prefix: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    host: HostPattern,
    /// `None` = any port.
    port: Option<u16>,
}

/// A parsed allow-list.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowList {
    patterns: Vec<Pattern>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowList {
    /// Parses every pattern; the error names the first bad one.
    pub(crate) fn parse(patterns: &[String]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| parse_pattern(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `url` is allowed.
    pub(crate) fn allows(&self, url: &Url) -> bool {
        let scheme = url.scheme();
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        let Some(host) = url.host() else { return false };
        self.patterns.iter().any(|p| {
            p.scheme == scheme
                && p.port.is_none_or(|want| want == port)
                && host_matches(&p.host, &host)
        })
    }
}

fn host_matches(pattern: &HostPattern, host: &Host<&str>) -> bool {
    match (pattern, host) {
        (HostPattern::Ip(want), Host::Ipv4(ip)) => *want == IpAddr::V4(*ip),
        (HostPattern::Ip(want), Host::Ipv6(ip)) => *want == IpAddr::V6(*ip),
        (
            HostPattern::Name {
                labels,
                multi_prefix,
            },
            Host::Domain(name),
        ) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let got: Vec<&str> = name.split('.').collect();
            if *multi_prefix {
                // `*.rest`: at least one label before `rest`, each non-empty.
                got.len() > labels.len()
                    && got[..got.len() - labels.len()]
                        .iter()
                        .all(|l| !l.is_empty())
                    && labels_match(labels, &got[got.len() - labels.len()..])
            } else {
                got.len() == labels.len() && labels_match(labels, &got)
            }
        }
        _ => false,
    }
}

fn labels_match(patterns: &[String], labels: &[&str]) -> bool {
    patterns
        .iter()
        .zip(labels)
        .all(|(p, l)| glob(p.as_bytes(), l.as_bytes()))
}

/// `*` matches any run of bytes (within one label, since labels were split on `.`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

fn parse_pattern(src: &str) -> Result<Pattern, String> {
    let bad = |why: &str| {
        format!(
            "grants.http pattern `{src}`: {why}; expected scheme://host[:port], e.g. https://*.example.com or http://127.0.0.1:8080"
        )
    };
    let (scheme, rest) = src.split_once("://").ok_or_else(|| bad("missing `://`"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad("only http and https are supported"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') || rest.contains('@') {
        return Err(bad(
            "a pattern names an origin only: no path, query or user",
        ));
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
        };
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| bad("not an IPv6 address inside `[]`"))?;
        (HostPattern::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let host = host.to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            (HostPattern::Ip(ip), port)
        } else {
            let mut labels: Vec<String> = host.split('.').map(str::to_owned).collect();
            if labels.iter().any(|l| l.is_empty()) {
                return Err(bad("empty DNS label"));
            }
            if labels.iter().any(|l| {
                !l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*' || b == b'_')
            }) {
                return Err(bad(
                    "a host may contain letters, digits, `-`, `_` and `*` only",
                ));
            }
            // A bare `*` host is "any name" (one or more labels); it never matches an IP.
            let multi_prefix = labels[0] == "*";
            if multi_prefix {
                labels.remove(0);
            }
            (
                HostPattern::Name {
                    labels,
                    multi_prefix,
                },
                port,
            )
        }
    };
    let port = match port {
        None => Some(default_port(&scheme).ok_or_else(|| bad("no default port"))?),
        Some("*") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| bad("port must be a number or `*`"))?,
        ),
    };
    Ok(Pattern { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> AllowList {
        AllowList::parse(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }
    fn ok(l: &AllowList, u: &str) -> bool {
        l.allows(&Url::parse(u).unwrap())
    }

    #[test]
    fn exact_origin_and_default_ports() {
        let l = list(&["https://api.example.com", "http://gw.local:9180"]);
        assert!(ok(&l, "https://api.example.com/v1/x?y=1"));
        assert!(ok(&l, "https://API.example.com:443/"));
        assert!(!ok(&l, "https://api.example.com:8443/"));
        assert!(
            !ok(&l, "http://api.example.com/"),
            "scheme is part of the origin"
        );
        assert!(ok(&l, "http://gw.local:9180/apisix/admin/routes"));
        assert!(!ok(&l, "http://gw.local/"));
        assert!(!ok(&l, "https://api.example.com.evil.net/"));
        assert!(!ok(&l, "https://evil.net/?https://api.example.com"));
        assert!(
            !ok(&l, "https://api.example.com@evil.net/"),
            "userinfo trick resolves to evil.net"
        );
    }

    #[test]
    fn wildcards() {
        let l = list(&["https://*.amazonaws.com", "http://api-*.example.com:*"]);
        assert!(ok(&l, "https://route53.amazonaws.com/"));
        assert!(ok(&l, "https://route53.us-east-1.amazonaws.com/"));
        assert!(!ok(&l, "https://amazonaws.com/"));
        assert!(!ok(&l, "https://route53.amazonaws.com.evil.net/"));
        assert!(ok(&l, "http://api-eu.example.com:1234/"));
        assert!(ok(&l, "http://api-.example.com/"));
        assert!(
            !ok(&l, "http://x.api-eu.example.com/"),
            "inner `*` stays within one label"
        );
        assert!(!ok(&l, "http://web.example.com/"));
    }

    #[test]
    fn ip_literals_only_when_listed() {
        let l = list(&["http://127.0.0.1:*", "http://[::1]:8080", "https://*"]);
        assert!(ok(&l, "http://127.0.0.1:5555/"));
        assert!(!ok(&l, "http://127.0.0.2:5555/"));
        assert!(ok(&l, "http://[::1]:8080/"));
        assert!(!ok(&l, "http://[::1]:8081/"));
        assert!(ok(&l, "https://anything.example/"));
        assert!(
            !ok(&l, "https://10.0.0.1/"),
            "a name wildcard never matches an IP"
        );
        assert!(!ok(&l, "https://[::2]/"));
        // Alternative spellings of 127.0.0.1 are normalised by the URL parser.
        assert!(ok(&l, "http://2130706433:80/"));
        assert!(!list(&["http://localhost:*"]).allows(&Url::parse("http://127.0.0.1:1/").unwrap()));
    }

    #[test]
    fn bad_patterns_are_explained() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://x/path",
            "https://x:port",
            "https://a..b",
            "https://[::1",
            "https://u@x",
        ] {
            let e = AllowList::parse(&[bad.to_owned()]).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("expected scheme://host[:port]"),
                "{e}"
            );
        }
        assert!(AllowList::parse(&[]).unwrap().patterns.is_empty());
        assert!(!AllowList::default().allows(&Url::parse("https://example.com").unwrap()));
    }
}
