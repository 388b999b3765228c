//! Integration tests of the emulators over real loopback HTTP, one binary for all areas.

mod api7;
mod apisix;
mod apisix_data_plane;
mod apisix_standalone;
mod cloudflare;
mod common;
