//! End-to-end tests of gslb-powerdns against a real `pdns_server` (gsqlite3 backend, LUA records
//! on, HTTP API) started per test on free loopback ports as user `pdns`, with tiny HTTP health
//! endpoints on 127.0.0.2/127.0.0.3. A failover only counts once real DNS queries answer the
//! standby.

mod dns;
mod e2e;
mod harness;
