//! Integration tests of the sandbox against real guest components (built by meridian-artifacts).
//! SQL tests need PostgreSQL: set MERIDIAN_TEST_PG to a DSN (they skip with a notice otherwise).

mod server;
mod support;

mod cache;
mod capabilities;
mod hostile;
mod plan;
mod sdk;
