//! Shared helpers of the integration tests.

use meridian_lab::LabError;

/// Unwraps a start result. A missing binary skips the test (returns `None` after printing a
/// notice) only when MERIDIAN_ALLOW_SKIP=1; every other error fails the test.
pub(crate) fn started<T>(what: &str, r: Result<T, LabError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e @ LabError::MissingBinary { .. })
            if std::env::var("MERIDIAN_ALLOW_SKIP").as_deref() == Ok("1") =>
        {
            eprintln!("SKIPPED {what}: {e} (MERIDIAN_ALLOW_SKIP=1)");
            None
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Whether a process with this pid exists (zombies included, which a reaped child is not).
pub(crate) fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Pids of every process whose command line mentions `needle` (to prove nothing is left behind).
pub(crate) fn pids_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Polls `f` every 200 ms for at most `secs` seconds; returns whether it became true.
pub(crate) fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A blocking `GET` of `url` (`http://ip:port/path`) with a 3 s timeout: `(status, body)`, or
/// `None` when nothing answers.
pub(crate) fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr: std::net::SocketAddr = host.parse().ok()?;
    let t = std::time::Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
