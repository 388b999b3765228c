//! What each call gets before its guest runs: a slot among the steps running at once and its
//! host handles reserved, then a fresh store — a deny-by-default WASI context, the call's
//! capabilities, its memory and handle limits and its deadline.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::Sandbox;
use crate::caps::http::{HttpCap, build_client};
use crate::caps::sql::SqlCap;
use crate::error::StepFailure;
use crate::state::{HostState, MemoryLimiter, StoreState};
use crate::stdio::Capture;
use crate::types::Call;
use meridian_protocol::{Masker, Mode};

impl Sandbox {
    /// A slot among the steps running at once.
    pub(super) async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StepFailure> {
        Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| StepFailure::Instantiate("the sandbox is shutting down".into()))
    }

    /// A slot among the steps running at once, and the call's handles reserved.
    pub(super) async fn acquire_for(
        &self,
        call: &Call,
    ) -> Result<
        (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
        StepFailure,
    > {
        let total = self.inner.cfg.max_handles;
        if call.handle_limit > total {
            return Err(StepFailure::Grant(format!(
                "`limits.handles` {} is above the {total} host handles this runner gives its steps in all",
                call.handle_limit
            )));
        }
        let slot = self.acquire().await?;
        let handles = Arc::clone(&self.inner.handles)
            .acquire_many_owned(call.handle_limit)
            .await
            .map_err(|_| StepFailure::Instantiate("the sandbox is shutting down".into()))?;
        Ok((slot, handles))
    }

    pub(super) fn http_client(&self) -> Result<reqwest::Client, StepFailure> {
        self.inner
            .http_client
            .get_or_init(build_client)
            .clone()
            .map_err(StepFailure::Instantiate)
    }

    /// A fresh store for one call: WASI context (deny-by-default), capabilities, limits, deadline.
    pub(super) fn new_store(
        &self,
        call: &Call,
        masker: Arc<Masker>,
    ) -> Result<(Store<StoreState>, Capture, Capture), StepFailure> {
        let cfg = &self.inner.cfg;
        if call.memory_limit > cfg.max_memory_limit {
            return Err(StepFailure::Grant(format!(
                "memory limit {} bytes is above the sandbox maximum of {} bytes",
                call.memory_limit, cfg.max_memory_limit
            )));
        }
        let mode = call.invocation.mode;
        let caps = &call.caps;
        // The deadline is an instant on the monotonic clock, checked at every epoch tick: the
        // step stops within one tick of it however late the ticker thread wakes under load
        // (counting ticks instead let a 4 s timeout end 2.5 s late next to busy processes).
        // SQL statements are timed to end before it.
        let deadline = std::time::Instant::now() + call.timeout;
        let stdout = Capture::new(cfg.stdio_capture_bytes);
        let stderr = Capture::new(cfg.stdio_capture_bytes);
        let mut wasi = WasiCtxBuilder::new();
        // No env, no args, no stdin, no sockets (network goes through the `http` interface only).
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for p in &caps.fs {
            let perms = if p.writable && mode == Mode::Apply {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&p.host, &p.guest, perms).map_err(|e| {
                StepFailure::Grant(format!(
                    "preopen {} as {}: {e:#}",
                    p.host.display(),
                    p.guest
                ))
            })?;
        }
        let http = if caps.http.allow.is_empty() {
            None
        } else {
            // A DNS grant needs a client of its own: reqwest fixes the resolver per client.
            let client = match caps.http.resolver {
                Some(server) => crate::caps::http::build_client_with(Some(server))
                    .map_err(StepFailure::Grant)?,
                None => self.http_client()?,
            };
            Some(HttpCap {
                policy: caps.http.clone(),
                client,
            })
        };
        let host = HostState::new(
            mode,
            masker,
            caps.log.clone(),
            http,
            SqlCap::new(caps.sql.clone(), deadline, call.timeout),
            caps.secrets.clone(),
            Arc::clone(&caps.kv),
        );
        let limiter = MemoryLimiter {
            limit: usize::try_from(call.memory_limit).unwrap_or(usize::MAX),
            exceeded: false,
        };
        // Every open file, directory and stream is an entry of the step's own table: bounding
        // it bounds what one step can take of the process's file descriptors.
        let mut table = ResourceTable::new();
        table.set_max_capacity(call.handle_limit as usize);
        let mut store = Store::new(
            &self.inner.engine,
            StoreState {
                wasi: wasi.build(),
                table,
                limiter,
                host,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        // At every epoch tick a running guest yields to the async runtime: a step that computes
        // in a loop shares its thread with the rest of the process (a server's API and
        // scheduler, other steps, cancellation) instead of holding it until its deadline.
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        Ok((store, stdout, stderr))
    }
}
