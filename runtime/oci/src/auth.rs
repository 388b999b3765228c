//! Registry credentials, from where `docker login` and CI systems put them:
//! 1. `MERIDIAN_REGISTRY_USERNAME` and `MERIDIAN_REGISTRY_PASSWORD` (every registry);
//! 2. `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`):
//!    - a credential helper, as docker runs it: `credHelpers.<host>`, else `credsStore`, names
//!      `docker-credential-<name>`, asked with `get` and the registry on stdin (at most 10 s);
//!      it answers `{"Username", "Secret"}` (`<token>` as the user means an identity token);
//!    - else `auths.<host>.auth` (base64 `user:password`) or `username`/`password`, or
//!      `identitytoken` as a bearer token.
//!
//! Otherwise anonymous (also when a helper has nothing for the registry).
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
    let Some(text) = docker_config_path().and_then(|p| std::fs::read(p).ok()) else {
        return RegistryAuth::Anonymous;
    };
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    helper_for(&text, registry)
        .and_then(|helper| from_helper(&helper, registry, &path_dirs))
        .or_else(|| from_docker_config(&text, registry))
        .unwrap_or(RegistryAuth::Anonymous)
}

/// The credential helper a docker `config.json` names for `registry`: `credHelpers.<host>`,
/// else `credsStore`.
pub fn helper_for(text: &[u8], registry: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(text).ok()?;
    let name = doc
        .get("credHelpers")
        .and_then(|h| h.get(registry))
        .or_else(|| doc.get("credsStore"))?
        .as_str()?
        .trim();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    ok.then(|| name.to_string())
}

/// Asks `docker-credential-<helper>` (searched in `path_dirs`) for `registry`'s credentials.
/// `None` when the helper is missing, fails, says it has none, or takes more than 10 s.
pub fn from_helper(helper: &str, registry: &str, path_dirs: &[PathBuf]) -> Option<RegistryAuth> {
    use std::io::Write as _;
    let program = path_dirs
        .iter()
        .map(|d| d.join(format!("docker-credential-{helper}")))
        .find(|p| p.is_file())?;
    let mut child = std::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Docker Hub's entry is keyed by its v1 URL; other registries by host.
    let server = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        r => r,
    };
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take()?, &mut out).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out).ok()?;
    let user = v.get("Username")?.as_str()?;
    let secret = v.get("Secret")?.as_str()?.to_string();
    if secret.is_empty() {
        return None;
    }
    Some(if user == "<token>" {
        RegistryAuth::Bearer(secret)
    } else {
        RegistryAuth::Basic(user.to_string(), secret)
    })
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

    /// A helper as docker runs it: `get`, the registry on stdin, JSON out. The fake helpers are
    /// shell scripts in a temporary directory given as the search path.
    #[test]
    fn credential_helpers_are_asked_like_docker_asks_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let helper = |name: &str, body: &str| {
            let p = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // Echoes back which registry it was asked about, as the password.
        helper(
            "store",
            r#"[ "$1" = get ] || exit 3; read r; printf '{"ServerURL":"%s","Username":"ci","Secret":"for-%s"}' "$r" "$r""#,
        );
        helper(
            "tok",
            r#"read r; printf '{"Username":"<token>","Secret":"id-tok"}'"#,
        );
        helper(
            "none",
            "echo 'credentials not found in native keychain' >&2; exit 1",
        );
        let path = [dir.path().to_path_buf()];
        let cfg = br#"{"credsStore": "store", "credHelpers": {"ghcr.io": "tok", "quay.io": "none"},
                       "auths": {"quay.io": {"auth": "YWxpY2U6czNjcmV0"}}}"#;
        let ask = |registry: &str| {
            helper_for(cfg, registry).and_then(|h| from_helper(&h, registry, &path))
        };
        assert_eq!(
            basic(ask("registry.example.com:5000")),
            Some(("ci".into(), "for-registry.example.com:5000".into()))
        );
        assert_eq!(
            basic(ask("docker.io")),
            Some(("ci".into(), "for-https://index.docker.io/v1/".into()))
        );
        assert!(matches!(ask("ghcr.io"), Some(RegistryAuth::Bearer(t)) if t == "id-tok"));
        // A helper with nothing for the registry: the auths entry is used instead.
        assert!(ask("quay.io").is_none());
        assert_eq!(
            basic(from_docker_config(cfg, "quay.io")),
            Some(("alice".into(), "s3cret".into()))
        );
        // A helper name that is not a plain name is never run.
        assert!(helper_for(br#"{"credsStore": "../../bin/sh"}"#, "x").is_none());
        assert!(from_helper("missing", "x", &path).is_none());
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
