//! Registry credentials, from where `docker login` and CI systems put them:
//! 1. `MERIDIAN_REGISTRY_USERNAME` and `MERIDIAN_REGISTRY_PASSWORD` (every registry);
//! 2. `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), `auths.<host>.auth`
//!    (base64 `user:password`) or `username`/`password`, or `identitytoken` as a bearer token.
//!
//! Otherwise anonymous. Credential helpers (`credsStore`, `credHelpers`) are not run.
//! Plain HTTP is used for loopback registries (`localhost`, `127.*`, `[::1]`) and for those
//! listed in `MERIDIAN_REGISTRY_INSECURE` (comma-separated `host:port`); HTTPS for the rest.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

/// The credentials for `registry` (`host[:port]`).
pub fn credentials(registry: &str) -> RegistryAuth {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(u), Some(p)) = (
        env("MERIDIAN_REGISTRY_USERNAME"),
        env("MERIDIAN_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(u, p);
    }
    docker_config_path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|text| from_docker_config(&text, registry))
        .unwrap_or(RegistryAuth::Anonymous)
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
}

/// The entry for `registry` in a docker `config.json`. Keys may be written with a scheme or
/// a path (`https://index.docker.io/v1/`), as `docker login` does for Docker Hub.
pub fn from_docker_config(text: &[u8], registry: &str) -> Option<RegistryAuth> {
    let doc: serde_json::Value = serde_json::from_slice(text).ok()?;
    let auths = doc.get("auths")?.as_object()?;
    let host_of = |k: &str| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next().unwrap_or(k).to_owned()
    };
    let wanted = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "index.docker.io",
        r => r,
    };
    let (_, entry) = auths.iter().find(|(k, _)| host_of(k) == wanted)?;
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Some(RegistryAuth::Bearer(token.to_owned()));
    }
    if let (Some(u), Some(p)) = (field("username"), field("password")) {
        return Some(RegistryAuth::Basic(u.to_owned(), p.to_owned()));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(field("auth")?)
        .ok()?;
    let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(RegistryAuth::Basic(u.to_owned(), p.to_owned()))
}

/// Whether `registry` is spoken to over plain HTTP.
pub fn is_insecure(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost"
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        return true;
    }
    std::env::var("MERIDIAN_REGISTRY_INSECURE")
        .is_ok_and(|list| list.split(',').any(|r| r.trim() == registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(a: Option<RegistryAuth>) -> Option<(String, String)> {
        match a? {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn docker_config_entries() {
        let cfg = br#"{"auths": {
            "registry.example.com:5000": {"auth": "YWxpY2U6czNjcmV0"},
            "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
            "ghcr.io": {"identitytoken": "tok"}
        }}"#;
        assert_eq!(
            basic(from_docker_config(cfg, "registry.example.com:5000")),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(
            basic(from_docker_config(cfg, "docker.io")),
            Some(("bob".into(), "pw".into()))
        );
        assert!(matches!(
            from_docker_config(cfg, "ghcr.io"),
            Some(RegistryAuth::Bearer(t)) if t == "tok"
        ));
        assert!(from_docker_config(cfg, "quay.io").is_none());
        assert!(from_docker_config(b"not json", "ghcr.io").is_none());
    }

    #[test]
    fn loopback_is_plain_http() {
        assert!(is_insecure("127.0.0.1:5000"));
        assert!(is_insecure("localhost:5000"));
        assert!(is_insecure("[::1]:5000"));
        assert!(!is_insecure("ghcr.io"));
        assert!(!is_insecure("127.example.com"));
    }
}
