//! moto_server: the Route 53 (and other AWS) API emulator from PyPI, on loopback.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::LabError;
use crate::net::http_request;
use crate::process::{Supervised, find_binary};

const MOTO_INSTALL: &str = "pip install \"moto[server]\"";
/// moto imports boto and Flask on start; on a busy 2-core machine that takes several seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server -H 127.0.0.1 -p <port>`, killed (with its process group: the PATH entry
/// is often a pyenv shell shim around Python) when dropped.
///
/// moto accepts any credentials and does not check SigV4 signatures; it keeps state in memory only.
/// Cost: ≈ 2–5 s to start (Python imports), ≈ 60 MB of memory.
#[derive(Debug)]
pub struct Moto {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Where the server logs.
    pub log_file: PathBuf,
    server: Supervised,
}

impl Moto {
    /// Starts moto on `port`, logging to a file in the system temp directory, and waits until the
    /// Route 53 API answers `ListHostedZones`.
    pub fn start(port: u16) -> Result<Moto, LabError> {
        let log = std::env::temp_dir().join(format!("meridian-moto-{port}.log"));
        Self::start_with_log(port, &log)
    }

    /// [`start`](Self::start) logging to `log_file`.
    pub fn start_with_log(port: u16, log_file: &Path) -> Result<Moto, LabError> {
        let bin = find()?;
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let server = Supervised::spawn(format!("moto_server on 127.0.0.1:{port}"), cmd, log_file)?;
        let moto = Moto {
            port,
            log_file: log_file.to_path_buf(),
            server,
        };
        moto.server
            .wait_ready(READY_TIMEOUT, Duration::from_millis(200), || {
                moto.list_hosted_zones().is_ok()
            })?;
        Ok(moto)
    }

    /// `http://127.0.0.1:<port>`: the endpoint URL to give an AWS client.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's pid (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Whether the server process is still running.
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// `GET /2013-04-01/hostedzone` (Route 53 ListHostedZones); returns the XML body on 200.
    pub fn list_hosted_zones(&self) -> Result<String, LabError> {
        let path = "/2013-04-01/hostedzone";
        let r = http_request(
            (Ipv4Addr::LOCALHOST, self.port).into(),
            "GET",
            path,
            // moto_server serves every AWS service on one port and picks the service from the
            // credential scope of the Authorization header; it does not check the signature.
            &[(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=meridian/20260101/us-east-1/route53/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=0",
            )],
            None,
            Duration::from_secs(5),
        )?;
        if r.status != 200 {
            return Err(LabError::Http {
                url: format!("{}{path}", self.url()),
                message: format!("status {}: {:.300}", r.status, r.body),
            });
        }
        Ok(r.body)
    }
}

/// Where `moto_server` is, or how to install it.
pub(crate) fn find() -> Result<std::path::PathBuf, LabError> {
    find_binary("moto_server", &[], MOTO_INSTALL)
}
