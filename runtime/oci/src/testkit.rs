//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry)
//! on a free loopback port, storing into a temporary directory, killed and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary (`MERIDIAN_REGISTRY_BIN` overrides).
pub fn registry_bin() -> PathBuf {
    std::env::var_os("MERIDIAN_REGISTRY_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/docker-registry"), PathBuf::from)
}

/// A running registry; stopped (SIGKILL, then waited for) when dropped.
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl TestRegistry {
    /// Starts one and waits until it answers `GET /v2/`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// One that asks for HTTP basic credentials (the registry's `htpasswd` auth): `user` with
    /// the password whose bcrypt hash is `bcrypt`.
    pub fn start_with_auth(user: &str, bcrypt: &str) -> Self {
        Self::start_with(Some((user, bcrypt)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Self {
        let bin = registry_bin();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/install-deps (Debian package docker-registry)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config.yml");
        // Port 0: the registry binds a port of the kernel's choosing and logs it ("listening
        // on 127.0.0.1:PORT", at level info). A port picked here and handed over could be
        // taken in between, by another test's server or a client connection's source port.
        let mut text = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            dir.path().join("data").display()
        );
        if let Some((user, bcrypt)) = auth {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{bcrypt}\n")).expect("write htpasswd");
            text += &format!(
                "auth:\n  htpasswd:\n    realm: meridian-test\n    path: {}\n",
                file.display()
            );
        }
        std::fs::write(&config, text).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut reg = TestRegistry {
            child,
            dir,
            host: String::new(),
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        use std::io::{Read as _, Write as _};
        const LISTENING: &str = "listening on 127.0.0.1:";
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let log =
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}): {log}");
            }
            if self.host.is_empty() {
                let port = log.split(LISTENING).nth(1).map(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                });
                match port {
                    Some(p) if !p.is_empty() => self.host = format!("127.0.0.1:{p}"),
                    _ => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&self.host) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                let mut resp = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut resp).is_ok()
                    // Up: 200, or 401 when it asks for credentials.
                    && (resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.0 401"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry on {} did not become ready in 20 s",
            if self.host.is_empty() {
                "a port it never named"
            } else {
                &self.host
            }
        );
    }

    /// Where the registry keeps the blob `sha256:<hex>` (to tamper with it).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's storage directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
