//! Test doubles for step logic on the host: a scripted transport and a plan-mode recorder.
//! Small and dependency-free, so they are always compiled (step crates use them in unit tests).

use std::cell::RefCell;
use std::path::PathBuf;

use meridian_sdk::http::{HttpError, Request, Response, Transport};

type Handler<'a> = Box<dyn Fn(&Request) -> Result<Response, HttpError> + 'a>;

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
