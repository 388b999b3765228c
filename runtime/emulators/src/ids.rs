//! Identifier and secret generators in the formats the emulated vendors use.

/// A Cloudflare-style object identifier: 32 lowercase hex digits (128 random bits).
pub(crate) fn hex32() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A random RFC 4122 version-4 UUID, the id format of API7 EE gateway groups and instances.
pub(crate) fn uuid_v4() -> String {
    let mut bits = rand::random::<u128>();
    // Version nibble (4) and RFC 4122 variant bits (10xx).
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A bearer-style secret with a vendor prefix, e.g. `a7adm-<64 hex>`.
pub(crate) fn token(prefix: &str) -> String {
    format!(
        "{prefix}{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// True when `s` is a well-formed Cloudflare identifier (32 hex digits).
pub(crate) fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32_is_32_hex_digits_and_random() {
        let a = hex32();
        assert!(is_hex32(&a), "{a}");
        assert_ne!(a, hex32());
        assert!(!is_hex32("xyz"));
        assert!(!is_hex32(&"g".repeat(32)));
    }

    #[test]
    fn uuid_v4_has_version_and_variant() {
        let u = uuid_v4();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{u}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{u}"
        );
    }

    #[test]
    fn token_keeps_prefix() {
        let t = token("a7adm-");
        assert!(t.starts_with("a7adm-"));
        assert_eq!(t.len(), 6 + 64);
    }
}
