//! The data of one invocation's `Store` and the host side of every WIT import.
//!
//! One `StoreState` lives exactly as long as one invocation: a fresh instance, fresh WASI
//! context, fresh SQL connections; nothing of a guest's state survives into the next call.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::meridian::step::{http, kv, log, secrets, sql, types};
use crate::caps::LogContext;
use crate::caps::http::HttpCap;
use crate::caps::sql::SqlCap;
use meridian_protocol::KvStore;
use meridian_protocol::Masker;
use meridian_protocol::{Level, LogLine, LogSource, Mode, PlannedChange};

/// Bytes of log text kept per invocation from its start; of what follows, the last
/// [`TAIL_LINES`] lines (at most [`TAIL_BYTES`]) are kept, and a note says how many between
/// were not.
pub(crate) const MAX_LOG_BYTES: usize = 1 << 20;
/// Lines kept from the end of a log past [`MAX_LOG_BYTES`]: those before a failure say most.
const TAIL_LINES: usize = 50;
/// Bytes of those lines, at most.
const TAIL_BYTES: usize = 32 << 10;
/// Planned changes one invocation may record before it is stopped.
pub(crate) const MAX_PLAN_ENTRIES: usize = 10_000;
/// Largest table a guest may grow (Rust guests use a few hundred entries).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps linear memory; remembers a refusal so that the trap that usually follows (Rust aborts on
/// allocation failure) is reported as `OutOfMemory` rather than as a bare `unreachable`.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }
}

/// Host-side state of one invocation.
pub(crate) struct HostState {
    pub(crate) mode: Mode,
    pub(crate) masker: Arc<Masker>,
    /// Its `tap` holds the invocation's lines as they are written.
    pub(crate) log_ctx: LogContext,
    log_bytes: usize,
    log_truncated: bool,
    /// Past [`MAX_LOG_BYTES`]: the last lines, their bytes, and how many were let go.
    log_tail: std::collections::VecDeque<(LogLine, usize)>,
    log_tail_bytes: usize,
    log_dropped: u64,
    pub(crate) plan: Vec<PlannedChange>,
    /// `None`: the step has no HTTP grant.
    pub(crate) http: Option<HttpCap>,
    pub(crate) sql: SqlCap,
    pub(crate) secrets: BTreeMap<String, String>,
    pub(crate) kv: Arc<dyn KvStore>,
}

impl HostState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mode: Mode,
        masker: Arc<Masker>,
        log_ctx: LogContext,
        http: Option<HttpCap>,
        sql: SqlCap,
        secrets: BTreeMap<String, String>,
        kv: Arc<dyn KvStore>,
    ) -> Self {
        Self {
            mode,
            masker,
            log_ctx,
            log_bytes: 0,
            log_truncated: false,
            log_tail: std::collections::VecDeque::new(),
            log_tail_bytes: 0,
            log_dropped: 0,
            plan: Vec::new(),
            http,
            sql,
            secrets,
            kv,
        }
    }

    fn plan_mode(&self) -> bool {
        self.mode == Mode::Plan
    }

    /// Adds a log line (masked), bounded by [`MAX_LOG_BYTES`], and emits it as a `tracing` event.
    /// Past the bound, the line joins the log's tail (see [`HostState::finish_log`]).
    pub(crate) fn push_log(
        &mut self,
        level: Level,
        source: LogSource,
        message: &str,
        fields: Vec<(String, String)>,
    ) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if !self.log_truncated && self.log_bytes + size > MAX_LOG_BYTES {
            self.log_truncated = true;
        }
        let line = LogLine {
            level,
            source,
            message: self.masker.mask(message).into_owned(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (self.masker.mask_string(k), self.masker.mask_string(v)))
                .collect(),
        };
        if self.log_truncated {
            self.log_tail_bytes += size;
            self.log_tail.push_back((line, size));
            while self.log_tail.len() > TAIL_LINES
                || (self.log_tail_bytes > TAIL_BYTES && self.log_tail.len() > 1)
            {
                if let Some((_, n)) = self.log_tail.pop_front() {
                    self.log_tail_bytes -= n;
                    self.log_dropped += 1;
                }
            }
            return;
        }
        self.log_bytes += size;
        self.emit(level, source, &line.message, &line.fields);
        self.log_ctx.tap.push(line);
    }

    /// At the end of an invocation whose log passed [`MAX_LOG_BYTES`]: a note of how many lines
    /// were not kept, then the last lines.
    pub(crate) fn finish_log(&mut self) {
        if !self.log_truncated {
            return;
        }
        let note = format!(
            "log truncated: the step wrote more than {MAX_LOG_BYTES} bytes of log; {} lines after that were not kept, the last {} follow",
            self.log_dropped,
            self.log_tail.len()
        );
        self.emit(Level::Warn, LogSource::Host, &note, &[]);
        self.log_ctx.tap.push(LogLine {
            level: Level::Warn,
            source: LogSource::Host,
            message: note,
            fields: Vec::new(),
        });
        for (line, _) in std::mem::take(&mut self.log_tail) {
            self.emit(line.level, line.source, &line.message, &line.fields);
            self.log_ctx.tap.push(line);
        }
        self.log_truncated = false;
        self.log_dropped = 0;
        self.log_tail_bytes = 0;
    }

    fn emit(&self, level: Level, source: LogSource, message: &str, fields: &[(String, String)]) {
        let c = &self.log_ctx;
        macro_rules! ev {
            ($lvl:ident) => {
                tracing::$lvl!(
                    target: "meridian::step",
                    run = %c.run_id, step = %c.step_id, attempt = c.attempt, source = ?source, fields = ?fields,
                    "{message}"
                )
            };
        }
        match level {
            Level::Trace => ev!(trace),
            Level::Debug => ev!(debug),
            Level::Info => ev!(info),
            Level::Warn => ev!(warn),
            Level::Error => ev!(error),
        }
    }

    /// Records a planned change (masked). Past [`MAX_PLAN_ENTRIES`] the guest is stopped.
    fn record(&mut self, change: PlannedChange) -> wasmtime::Result<()> {
        if self.plan.len() >= MAX_PLAN_ENTRIES {
            wasmtime::bail!("the step recorded more than {MAX_PLAN_ENTRIES} planned changes");
        }
        let change = change.masked(&self.masker);
        let c = &self.log_ctx;
        tracing::info!(target: "meridian::plan", run = %c.run_id, step = %c.step_id, change = ?change, "planned change recorded");
        self.plan.push(change);
        Ok(())
    }
}

/// The `T` of `Store<T>`.
pub(crate) struct StoreState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) host: HostState,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.host
            .push_log(level, LogSource::Guest, &message, fields);
        Ok(())
    }
}

impl http::Host for StoreState {
    async fn send(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let plan = self.host.plan_mode();
        let Some(cap) = &self.host.http else {
            return Ok(Err(http::Error::Denied(format!(
                "{} is not granted to this step: it has no grants.http",
                req.url
            ))));
        };
        match cap.send(req, plan).await {
            Ok((resp, change)) => {
                if let Some(change) = change {
                    self.host.record(change)?;
                }
                Ok(Ok(resp))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

impl sql::Host for StoreState {
    async fn query(
        &mut self,
        connection: String,
        statement: String,
        params: Vec<sql::Value>,
    ) -> wasmtime::Result<Result<sql::Rows, sql::Error>> {
        let plan = self.host.plan_mode();
        match self
            .host
            .sql
            .query(&connection, &statement, &params, plan)
            .await
        {
            Ok((rows, change)) => {
                if let Some(change) = change {
                    self.host.record(change)?;
                }
                Ok(Ok(rows))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        connection: String,
        statement: String,
        params: Vec<sql::Value>,
    ) -> wasmtime::Result<Result<u64, sql::Error>> {
        let plan = self.host.plan_mode();
        match self
            .host
            .sql
            .execute(&connection, &statement, &params, plan)
            .await
        {
            Ok((n, change)) => {
                if let Some(change) = change {
                    self.host.record(change)?;
                }
                Ok(Ok(n))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

impl secrets::Host for StoreState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self.host.secrets.get(&name).cloned().ok_or_else(|| {
            let granted: Vec<&str> = self.host.secrets.keys().map(String::as_str).collect();
            format!(
                "secret `{name}` is not granted to this step (it is granted {}); a secret is declared under the workflow's `secrets:` and granted in the step's grants.secrets",
                match granted.as_slice() {
                    [] => "none".to_string(),
                    g => g.join(", "),
                }
            )
        }))
    }
}

impl kv::Host for StoreState {
    // Reads are infallible in the WIT: a failing journal ends the step with a host error (a
    // trap naming the cause) rather than answering "no such key" and misleading its undo.
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.host.kv.get(&key)?)
    }

    // What a step stores is journaled, so it is masked like its outputs: the journal never holds
    // a secret's value (a step that needs the secret again reads it through its grant).
    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        let value = self.host.masker.mask_bytes(value);
        match self.host.kv.set(&key, value) {
            Ok(()) => Ok(Ok(())),
            Err(e @ meridian_protocol::KvError::Limit(_)) => Ok(Err(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        Ok(self.host.kv.delete(&key)?)
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        Ok(self.host.kv.keys(&prefix)?)
    }
}
