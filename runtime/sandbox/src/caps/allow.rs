//! The HTTP allow-list: is a URL (a request's, or a redirect's target) covered by one of the
//! step's [`OriginPattern`]s? The patterns come parsed from the workflow model; the matching
//! rules (wildcards, default ports, IP literals only when written) are the protocol's, the same
//! that `meridian validate` applies. Pure logic, no I/O.

use meridian_protocol::OriginPattern;
use url::Url;

/// Whether `url` may be requested under `allow`. Only http and https are ever allowed, whatever
/// the patterns say: the guest gets no other protocol.
pub(crate) fn allows(allow: &[OriginPattern], url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https") && allow.iter().any(|p| p.matches(url))
}

/// How a denied URL is named to the step: the pattern that would allow exactly its origin, so
/// the message can be pasted into `grants.http`.
pub(crate) fn origin(url: &Url) -> String {
    OriginPattern::of_url(url).map_or_else(|_| url.as_str().to_owned(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> Vec<OriginPattern> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }
    fn ok(l: &[OriginPattern], u: &str) -> bool {
        allows(l, &Url::parse(u).unwrap())
    }

    #[test]
    fn any_pattern_of_the_list_allows() {
        let l = list(&["https://api.example.com", "http://127.0.0.1:*"]);
        assert!(ok(&l, "https://api.example.com/v1"));
        assert!(ok(&l, "http://127.0.0.1:9180/apisix"));
        assert!(!ok(&l, "http://127.0.0.2:9180/"));
        assert!(!ok(&[], "https://api.example.com/"), "no grant, no HTTP");
    }

    #[test]
    fn only_http_and_https_whatever_the_pattern() {
        let l = list(&["*://*:*", "*://127.0.0.1:*"]);
        assert!(ok(&l, "https://example.com:8443/"));
        assert!(ok(&l, "http://127.0.0.1:1/"));
        assert!(!ok(&l, "ftp://example.com/"));
        assert!(!ok(&l, "ws://example.com/"));
        assert!(
            !ok(&l, "http://10.0.0.1/"),
            "a name wildcard never opens IP literals"
        );
    }

    #[test]
    fn a_denied_url_is_named_by_its_pattern() {
        let o = |u: &str| origin(&Url::parse(u).unwrap());
        assert_eq!(o("https://Evil.net/x?y"), "https://evil.net");
        assert_eq!(o("http://[::1]:8080/"), "http://[::1]:8080");
        assert_eq!(o("ftp://x/"), "ftp://x/");
    }
}
