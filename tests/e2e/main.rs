//! End-to-end tests: the real `meridian` binary against real step components, real PostgreSQL,
//! PowerDNS and moto where a test needs them (started and stopped by the test, on loopback).
//!
//! One binary, one module per area (see wasmtime's `tests/all`).

// A test binary has no public API.
#![allow(unreachable_pub)]

mod capacity;
mod cli;
mod console;
mod distributed;
mod drills;
mod gitops;
mod lab;
mod limits;
mod oci;
mod output;
mod pgtls;
mod pipes;
mod polyglot;
mod regressions;
mod resume;
mod scaffold;
mod serve;
mod support;
mod terminal;
mod vendors;
mod workflows;
