//! meridian-distributed: Meridian beyond one machine, with PostgreSQL as the distributed engine
//! (no home-made consensus).
//!
//! * [`PgJournal`] — the run journal (runs, events, legs) on PostgreSQL, with the same semantics
//!   and read API as the embedded SQLite journal; [`PgJournal::journal`] gives the engine its
//!   durable [`EventSink`](meridian_engine::EventSink).
//! * [`PgQueue`] — an engine [`Executor`](meridian_engine::Executor) that queues each step attempt
//!   as a row of `meridian.tasks` and waits for a worker's result.
//! * [`run_worker`] — a worker process's loop: claims tasks with `FOR UPDATE SKIP LOCKED` under a
//!   lease, heartbeats, and writes results fenced by the lease epoch (see [`worker`]).
//!
//! Everything lives in the database schema `meridian`, versioned by `meridian.migrations`
//! ([`SCHEMA_VERSION`]) and migrated under an advisory lock by whichever process starts first.
//! Secret-bearing parts of a task are sealed under a [`TaskKey`] shared by coordinators and
//! workers (see [`key`]).
//!
//! Connections follow libpq's `sslmode` (default `prefer`: TLS when the server offers it, the
//! certificate unchecked; `verify-full` with `sslrootcert` to authenticate the server).
//!
//! [`testkit`] holds the fake step executor used by this crate's tests, benchmarks and the
//! `meridian-test-worker` binary.

mod conn;
mod error;
pub mod journal;
pub mod key;
pub mod queue;
mod schema;
pub mod testkit;
mod wire;
pub mod worker;

pub use error::DistError;
pub use journal::{PgJournal, PgRunJournal};
pub use key::{TASK_KEY_ENV, TaskKey};
pub use queue::{PgQueue, QueueOptions};
pub use schema::SCHEMA_VERSION;
pub use worker::{WorkerOptions, run_worker};
