//! Integration tests of the emulators over real loopback HTTP, one binary for all areas.

mod api7;
mod apisix;
mod cloudflare;
mod common;
