//! Processes and servers for the end-to-end tests: a `pdns_server` in a scratch directory and
//! HTTP health endpoints on loopback addresses. Everything is stopped and removed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port free for both TCP and UDP on 127.0.0.1 (pdns listens on both).
pub(crate) use meridian_families::testing::free_port;

/// A running PowerDNS Authoritative server.
pub(crate) struct Pdns {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>` of the webserver/API.
    pub(crate) api: String,
    /// The DNS listener.
    pub(crate) dns: SocketAddr,
    /// The API key.
    pub(crate) key: &'static str,
}

impl Pdns {
    /// Starts pdns_server, or returns `None` (with a notice) when it is not installed.
    pub(crate) fn start() -> Option<Self> {
        let schema = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";
        if Command::new("pdns_server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
            || !std::path::Path::new(schema).exists()
        {
            eprintln!(
                "SKIPPED: pdns_server or the sqlite3 backend is missing; apt-get install pdns-server pdns-backend-sqlite3 sqlite3"
            );
            return None;
        }
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meridian-pdns-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("pdns.sqlite3");
        let status = Command::new("sqlite3")
            .arg(&db)
            .stdin(std::fs::File::open(schema).unwrap())
            .status()
            .expect("sqlite3 CLI is needed to create the PowerDNS schema");
        assert!(status.success(), "sqlite3 failed to load the schema");
        let dns_port = free_port();
        let api_port = free_port();
        let conf = [
            "launch=gsqlite3".to_owned(),
            format!("gsqlite3-database={}", db.display()),
            "local-address=127.0.0.1".into(),
            format!("local-port={dns_port}"),
            "api=yes".into(),
            "api-key=test-key".into(),
            "webserver=yes".into(),
            "webserver-address=127.0.0.1".into(),
            format!("webserver-port={api_port}"),
            "webserver-allow-from=127.0.0.0/8".into(),
            "enable-lua-records=yes".into(),
            "lua-health-checks-interval=1".into(),
            // No outbound security-status DNS lookup: tests stay on loopback.
            "security-poll-suffix=".into(),
            format!("socket-dir={}", dir.display()),
            "guardian=no".into(),
            "daemon=no".into(),
            "loglevel=4".into(),
        ];
        std::fs::write(dir.join("pdns.conf"), conf.join("\n") + "\n").unwrap();
        let chown = Command::new("chown")
            .args(["-R", "pdns:pdns"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(
            chown.success(),
            "chown pdns failed (run the tests as root, like CI)"
        );
        let log = std::fs::File::create(dir.join("pdns.log")).unwrap();
        let child = Command::new("pdns_server")
            .arg(format!("--config-dir={}", dir.display()))
            .args(["--setuid=pdns", "--setgid=pdns"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn pdns_server");
        let pdns = Self {
            child,
            dir,
            api: format!("http://127.0.0.1:{api_port}"),
            dns: SocketAddr::from((Ipv4Addr::LOCALHOST, dns_port)),
            key: "test-key",
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let ok = ureq_get(&format!("{}/api/v1/servers/localhost", pdns.api), pdns.key)
                .is_some_and(|s| s == 200);
            if ok {
                return Some(pdns);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "pdns_server did not answer on {} within 15 s; log:\n{}",
            pdns.api,
            pdns.log()
        );
    }

    /// The server's log so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pdns.log")).unwrap_or_default()
    }

    /// Polls DNS until `name` answers exactly `want` three times in a row, within `timeout`.
    /// Returns the answers seen, for the failure message.
    pub(crate) fn wait_for_answer(
        &self,
        name: &str,
        want: Ipv4Addr,
        timeout: Duration,
    ) -> Result<(), Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut streak = 0;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let got = crate::dns::query_a(self.dns, name);
            match &got {
                Ok(ips) if ips.as_slice() == [want] => streak += 1,
                _ => streak = 0,
            }
            if seen.last() != Some(&format!("{got:?}")) {
                seen.push(format!("{got:?}"));
            }
            if streak >= 3 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(seen)
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ureq_get(url: &str, key: &str) -> Option<u16> {
    use meridian_families::UreqTransport;
    use meridian_sdk::http::{Request, Transport};
    let t = UreqTransport::new(Duration::from_secs(2));
    t.send(&Request::new("GET", url).header("x-api-key", key))
        .ok()
        .map(|r| r.status)
}

/// An HTTP endpoint answering 200 to everything on `ip:port`, until dropped.
pub(crate) struct HealthServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    pub(crate) fn start(ip: Ipv4Addr, port: u16) -> Self {
        let listener =
            TcpListener::bind((ip, port)).unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut buf = [0u8; 2048];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
