//! End-to-end tests: the real `meridian` binary against real step components, real PostgreSQL,
//! PowerDNS and moto where a test needs them (started and stopped by the test, on loopback).
//!
//! One binary, one module per area (see wasmtime's `tests/all`).

mod cli;
mod resume;
mod support;
