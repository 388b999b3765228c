//! URL pieces the steps build and sign requests with; no parsing beyond what they need.

/// Percent-encodes every byte of `s` except the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) and the bytes in `keep`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Joins `base` (no trailing slash needed) and `path` (leading slash optional) with one `/`;
/// an empty `path` gives `base` without a trailing slash.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{path}")
    }
}

/// A URL split into the parts the signers and error messages need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `http` or `https`, lower-case as written.
    pub scheme: &'a str,
    /// `host[:port]` exactly as written.
    pub authority: &'a str,
    /// Host without the port (brackets kept for IPv6 literals).
    pub host: &'a str,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path, `/` when empty.
    pub path: &'a str,
    /// Query without the `?`, empty when absent.
    pub query: &'a str,
}

/// Splits an absolute `scheme://authority/path?query` URL. Returns `None` for anything else
/// (relative URLs, user-info, fragments are not used by the steps).
pub fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || rest.contains('#') {
        return None;
    }
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let after = &rest[auth_end..];
    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, q),
        None => (after, ""),
    };
    let path = if path.is_empty() { "/" } else { path };
    let (host, port) = split_host_port(authority)?;
    Some(UrlParts {
        scheme,
        authority,
        host,
        port,
        path,
        query,
    })
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(end) = authority.strip_prefix('[').and_then(|r| r.find(']')) {
        // [v6]:port — `end` indexes into the string after '['.
        let host = &authority[..end + 2];
        let rest = &authority[end + 2..];
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_url_parts() {
        let u = split_url("https://route53.amazonaws.com/2013-04-01/x?a=1&b=2").unwrap();
        assert_eq!(
            (u.scheme, u.authority, u.host, u.port, u.path, u.query),
            (
                "https",
                "route53.amazonaws.com",
                "route53.amazonaws.com",
                None,
                "/2013-04-01/x",
                "a=1&b=2"
            )
        );
        let u = split_url("http://127.0.0.1:5055").unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.query),
            ("127.0.0.1", Some(5055), "/", "")
        );
        let u = split_url("http://[::1]:8081/api?x").unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.query),
            ("[::1]", Some(8081), "/api", "x")
        );
        assert!(split_url("/relative").is_none());
        assert!(split_url("http://user@host/").is_none());
        assert!(split_url("http://host:notaport/").is_none());
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(
            percent_encode("eu west/1~a-b_c.d", b""),
            "eu%20west%2F1~a-b_c.d"
        );
        assert_eq!(percent_encode("/a b/", b"/"), "/a%20b/");
        assert_eq!(percent_encode("é", b""), "%C3%A9");
    }

    #[test]
    fn joins_with_one_slash() {
        assert_eq!(join_url("http://a/b/", "/c"), "http://a/b/c");
        assert_eq!(join_url("http://a/b/", ""), "http://a/b");
    }
}
