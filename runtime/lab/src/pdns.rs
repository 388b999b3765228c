//! A real PowerDNS Authoritative server (gsqlite3 backend, HTTP API, LUA records) on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::LabError;
use crate::net::{RTYPE_SOA, dns_exchange, http_request};
use crate::process::{ServiceUser, Supervised, absolute, create_dir, find_binary};

const PDNS_INSTALL: &str =
    "apt-get install -y --no-install-recommends pdns-server pdns-backend-sqlite3";
const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `pdns_server` with the gsqlite3 backend, its HTTP API and LUA records enabled.
///
/// Started in the foreground (`daemon=no guardian=no`) as a direct child in its own process group,
/// so dropping the value stops it. As root it drops to user `pdns` (`--setuid`). LUA health checks
/// run every second, and the packet and query caches are off, so a failover shows in answers
/// within about two seconds. Cost: start ≈ 0.2 s; the directory holds `pdns.sqlite3`,
/// `pdns.conf` and (by default) `pdns.log`.
#[derive(Debug)]
pub struct Pdns {
    /// UDP and TCP port of the DNS listener on 127.0.0.1.
    pub dns_port: u16,
    /// Port of the HTTP API / webserver on 127.0.0.1.
    pub api_port: u16,
    /// The `X-API-Key` the API expects.
    pub api_key: String,
    /// The server's directory (database, config, control socket).
    pub dir: PathBuf,
    /// Where the server logs.
    pub log_file: PathBuf,
    server: Supervised,
}

impl Pdns {
    /// Creates a fresh sqlite database in `dir` (created if missing; an existing database is
    /// reused) and starts PowerDNS on the given ports with a random API key. Waits until both the
    /// API and the DNS listener answer.
    pub fn start(dir: &Path, dns_port: u16, api_port: u16) -> Result<Pdns, LabError> {
        Self::start_with(dir, dns_port, api_port, None, None)
    }

    /// [`start`](Self::start) with an explicit API key and log file (the lab keeps the key stable
    /// across restarts and every log under `logs/`).
    pub fn start_with(
        dir: &Path,
        dns_port: u16,
        api_port: u16,
        api_key: Option<&str>,
        log_file: Option<&Path>,
    ) -> Result<Pdns, LabError> {
        let bin = find()?;
        let schema = Path::new(SCHEMA);
        if !schema.exists() {
            return Err(LabError::MissingBinary {
                name: format!("PowerDNS sqlite3 backend ({SCHEMA})"),
                install: PDNS_INSTALL.to_string(),
            });
        }
        let user = ServiceUser::for_service("pdns", PDNS_INSTALL)?;
        let dir = absolute(dir)?;
        create_dir(&dir)?;
        let db = dir.join("pdns.sqlite3");
        if !db.exists() {
            let sql = std::fs::read_to_string(schema)
                .map_err(|e| LabError::io(format!("reading {SCHEMA}"), e))?;
            let conn = rusqlite::Connection::open(&db).map_err(|e| {
                LabError::State(format!("creating PowerDNS database {}: {e}", db.display()))
            })?;
            conn.execute_batch(&sql).map_err(|e| {
                LabError::State(format!("loading {SCHEMA} into {}: {e}", db.display()))
            })?;
        }
        let api_key = match api_key {
            Some(k) => k.to_string(),
            None => random_hex(16)?,
        };
        let conf = [
            "launch=gsqlite3".to_string(),
            format!("gsqlite3-database={}", db.display()),
            "local-address=127.0.0.1".to_string(),
            format!("local-port={dns_port}"),
            "api=yes".to_string(),
            format!("api-key={api_key}"),
            "webserver=yes".to_string(),
            "webserver-address=127.0.0.1".to_string(),
            format!("webserver-port={api_port}"),
            "webserver-allow-from=127.0.0.0/8".to_string(),
            "enable-lua-records=yes".to_string(),
            // Fast health checks and no caches: failover must show in answers within seconds.
            "lua-health-checks-interval=1".to_string(),
            "cache-ttl=0".to_string(),
            "negquery-cache-ttl=0".to_string(),
            "query-cache-ttl=0".to_string(),
            // Zones created through the API must answer at once, not after a cache refresh.
            "zone-cache-refresh-interval=0".to_string(),
            format!("socket-dir={}", dir.display()),
            "guardian=no".to_string(),
            "daemon=no".to_string(),
            "disable-syslog=yes".to_string(),
            "write-pid=no".to_string(),
            "loglevel=4".to_string(),
        ]
        .join("\n");
        let conf_path = dir.join("pdns.conf");
        std::fs::write(&conf_path, conf + "\n")
            .map_err(|e| LabError::io(format!("writing {}", conf_path.display()), e))?;
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config-dir={}", dir.display()))
            .current_dir(&dir);
        if let Some(u) = &user {
            u.ensure_traversable(&dir)?;
            // sqlite writes a journal beside the database, so the directory must be pdns's too.
            u.chown_recursive(&dir)?;
            cmd.arg(format!("--setuid={}", u.name))
                .arg(format!("--setgid={}", u.name));
        }
        let log_file = match log_file {
            Some(p) => absolute(p)?,
            None => dir.join("pdns.log"),
        };
        let what = format!("pdns_server (dns 127.0.0.1:{dns_port}, api :{api_port})");
        let server = Supervised::spawn(what, cmd, &log_file)?;
        let pdns = Pdns {
            dns_port,
            api_port,
            api_key,
            dir,
            log_file,
            server,
        };
        pdns.server
            .wait_ready(READY_TIMEOUT, Duration::from_millis(100), || {
                pdns.api("GET", "/api/v1/servers/localhost", None)
                    .is_ok_and(|(status, _)| status == 200)
                    && dns_exchange(pdns.dns_addr(), "ready.invalid.", RTYPE_SOA).is_ok()
            })?;
        Ok(pdns)
    }

    /// `http://127.0.0.1:<api_port>`; the API lives under `/api/v1/servers/localhost`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The DNS listener, for [`dns_query`](crate::dns_query).
    pub fn dns_addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.dns_port).into()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Whether the server process is still running.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// One API call with the key set; returns the status and body. `path` starts with `/api/`.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), LabError> {
        let r = http_request(
            (Ipv4Addr::LOCALHOST, self.api_port).into(),
            method,
            path,
            &[
                ("X-API-Key", &self.api_key),
                ("Content-Type", "application/json"),
            ],
            body,
            Duration::from_secs(5),
        )?;
        Ok((r.status, r.body))
    }

    /// Creates the Native zone `zone` (e.g. `lab.meridian.test.`) with one NS name, unless it
    /// exists already.
    pub fn ensure_zone(&self, zone: &str, nameserver: &str) -> Result<(), LabError> {
        let path = format!("/api/v1/servers/localhost/zones/{zone}");
        if self.api("GET", &path, None)?.0 == 200 {
            return Ok(());
        }
        let body = serde_json::json!({"name": zone, "kind": "Native", "nameservers": [nameserver]});
        let (status, resp) = self.api(
            "POST",
            "/api/v1/servers/localhost/zones",
            Some(&body.to_string()),
        )?;
        if status != 201 {
            return Err(LabError::Http {
                url: format!("{}{}", self.api_url(), "/api/v1/servers/localhost/zones"),
                message: format!("creating zone {zone}: {status} {resp}"),
            });
        }
        Ok(())
    }

    /// Replaces one rrset of `zone` (`PATCH …/zones/<zone>`, changetype REPLACE; 204 expected).
    /// `records` are the record contents, e.g. `["127.0.0.2"]` for an A record or
    /// `["A \"ifurlup('http://…', {{'127.0.0.2'}, {'127.0.0.3'}})\""]` for a LUA record.
    pub fn replace_rrset(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        ttl: u32,
        records: &[&str],
    ) -> Result<(), LabError> {
        let records: Vec<_> = records
            .iter()
            .map(|c| serde_json::json!({"content": c, "disabled": false}))
            .collect();
        let body = serde_json::json!({"rrsets": [{
            "name": name, "type": rtype, "ttl": ttl, "changetype": "REPLACE", "records": records
        }]});
        let path = format!("/api/v1/servers/localhost/zones/{zone}");
        let (status, resp) = self.api("PATCH", &path, Some(&body.to_string()))?;
        if status != 204 {
            return Err(LabError::Http {
                url: format!("{}{path}", self.api_url()),
                message: format!("replacing {name} {rtype}: {status} {resp}"),
            });
        }
        Ok(())
    }

    /// Stops the server (SIGTERM, then SIGKILL of its group after 5 s). Dropping does the same.
    pub fn stop(self) {
        drop(self);
    }
}

/// `n` random bytes from the kernel, hex-encoded: API keys for lab services.
pub(crate) fn random_hex(n: usize) -> Result<String, LabError> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| LabError::io("reading /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where `pdns_server` is, or how to install it.
pub(crate) fn find() -> Result<PathBuf, LabError> {
    find_binary("pdns_server", &[PathBuf::from("/usr/sbin")], PDNS_INSTALL)
}
