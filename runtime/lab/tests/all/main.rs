//! Integration tests of meridian-lab against the real binaries (PostgreSQL 15, pdns_server,
//! moto_server). A missing binary fails the test with the install command, unless
//! MERIDIAN_ALLOW_SKIP=1, which turns it into a printed skip notice.

mod daemon;
mod moto;
mod pdns;
mod pg;
mod support;
