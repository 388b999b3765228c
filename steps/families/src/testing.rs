//! Test doubles for step logic on the host: a scripted transport and a plan-mode recorder.
//! Small and dependency-free, so they are always compiled (step crates use them in unit tests).

use std::cell::RefCell;
use std::path::PathBuf;

use meridian_sdk::http::{HttpError, Request, Response, Transport};

type Handler<'a> = Box<dyn Fn(&Request) -> Result<Response, HttpError> + 'a>;

/// A [`crate::Log`] that keeps every message, `info: …` or `warn: …`.
#[derive(Default)]
pub struct RecordingLog(RefCell<Vec<String>>);

impl RecordingLog {
    /// The messages so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

impl crate::Log for RecordingLog {
    fn info(&self, msg: &str) {
        self.0.borrow_mut().push(format!("info: {msg}"));
    }

    fn warn(&self, msg: &str) {
        self.0.borrow_mut().push(format!("warn: {msg}"));
    }
}

/// A transport answered by a closure; keeps every request it saw.
pub struct FakeTransport<'a> {
    handler: Handler<'a>,
    seen: RefCell<Vec<Request>>,
}

impl std::fmt::Debug for FakeTransport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransport")
            .field("seen", &self.seen.borrow().len())
            .finish()
    }
}

impl<'a> FakeTransport<'a> {
    /// A transport whose answers come from `handler`.
    pub fn new(handler: impl Fn(&Request) -> Result<Response, HttpError> + 'a) -> Self {
        Self {
            handler: Box::new(handler),
            seen: RefCell::new(Vec::new()),
        }
    }

    /// Every request sent so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.borrow().clone()
    }

    /// `METHOD url` of every request sent so far.
    pub fn lines(&self) -> Vec<String> {
        self.seen
            .borrow()
            .iter()
            .map(|r| format!("{} {}", r.method, r.url))
            .collect()
    }
}

impl Transport for FakeTransport<'_> {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let out = (self.handler)(req);
        self.seen.borrow_mut().push(req.clone());
        out
    }
}

/// Wraps a transport the way the sandbox does in plan mode: reads go through, mutating requests
/// are kept in [`PlanTransport::planned`] and answered with [`Response::recorded`].
#[derive(Debug)]
pub struct PlanTransport<T> {
    inner: T,
    planned: RefCell<Vec<Request>>,
}

impl<T: Transport> PlanTransport<T> {
    /// Plan mode over `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            planned: RefCell::new(Vec::new()),
        }
    }

    /// The mutating requests that were recorded instead of sent.
    pub fn planned(&self) -> Vec<Request> {
        self.planned.borrow().clone()
    }
}

impl<T: Transport> Transport for PlanTransport<T> {
    fn send(&self, req: &Request) -> Result<Response, HttpError> {
        if req.is_mutating() {
            self.planned.borrow_mut().push(req.clone());
            return Ok(Response::recorded());
        }
        self.inner.send(req)
    }
}

/// A host-workspace binary an integration test drives (the lab daemon, the emulators): the path
/// in environment variable `var`, else `default`. When it does not exist the test panics with
/// `build_hint` (how to build it), unless `MERIDIAN_ALLOW_SKIP=1`, where it prints a `SKIPPED`
/// notice and answers `None` so the test can pass without it. One `stat`, no process started.
pub fn host_binary(var: &str, default: &str, build_hint: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    let hint = format!("{build_hint}, or set {var}");
    if std::env::var("MERIDIAN_ALLOW_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {} not found ({hint})", path.display());
        return None;
    }
    panic!(
        "{} not found: {hint} (or set MERIDIAN_ALLOW_SKIP=1)",
        path.display()
    );
}

/// A port on 127.0.0.1 free for TCP and UDP right now, for a server an integration test starts
/// (PostgreSQL, PowerDNS, an emulator); never the same port twice in one process.
///
/// Picked at random below the kernel's ephemeral range (`ip_local_port_range`), as the lab's
/// `free_port` does: a port from that range, released to a server about to bind it, can become
/// an outgoing connection's source port first, and the server then fails with "address in use".
/// Another process can still take it in between.
pub fn free_port() -> u16 {
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const MIN: u16 = 20_000;
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = if low > MIN + 1 {
            MIN + (seed % u64::from(low - 1 - MIN)) as u16
        } else {
            0
        };
        let Ok(port) = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
        else {
            continue;
        };
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
    panic!("no free loopback port after 1000 attempts");
}
