//! ADC's deterministic resource ids (domain.md §1.3).
//!
//! An explicit `id` always wins. Otherwise: consumers, global rules and plugin metadata use their
//! name; everything else uses the hex SHA-1 of a UTF-8 name path. These rules are what make a
//! resource written by the TypeScript ADC and by this step the same resource on the gateway, so
//! they must not change. Renaming a resource therefore means delete + create.

/// Hex SHA-1 of `s`.
pub fn sha1_hex(s: &str) -> String {
    sha1_smol::Sha1::from(s).digest().to_string()
}

/// `sha1(service name)`.
pub fn service_id(name: &str) -> String {
    sha1_hex(name)
}

/// `sha1(snis joined by ",")`.
pub fn ssl_id(snis: &[String]) -> String {
    sha1_hex(&snis.join(","))
}

/// `sha1("<service name>.<child name>")`: routes, stream routes and named upstreams.
pub fn child_id(service_name: &str, name: &str) -> String {
    sha1_hex(&format!("{service_name}.{name}"))
}

/// `sha1("<username>.<credential name>")`.
pub fn credential_id(username: &str, name: &str) -> String {
    sha1_hex(&format!("{username}.{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of domain.md §1.3.
    #[test]
    fn adc_sha1_vectors() {
        assert_eq!(
            service_id("httpbin-service"),
            "e809a925f903711c0e5d248bd8392cc87c64c7fc"
        );
        assert_eq!(
            ssl_id(&["a.example.com".to_string(), "b.example.com".to_string()]),
            "3ba2e9503733b5dd9f77fce92ff1e912fb293f38"
        );
        assert_eq!(
            child_id("httpbin-service", "get-ip"),
            "8fd8aec3863cb7e05cccafaed6b41ec93a4a499d"
        );
        assert_eq!(
            credential_id("internal-user", "primary-key"),
            "ea1f1c93d75c826cde440646ed24b87b379929ea"
        );
    }

    #[test]
    fn empty_and_unicode() {
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // UTF-8 bytes are hashed, not UTF-16 code units
        assert_eq!(
            sha1_hex("é"),
            sha1_smol::Sha1::from([0xc3u8, 0xa9]).digest().to_string()
        );
    }
}
