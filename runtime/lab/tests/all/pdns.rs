//! Real PowerDNS: zone and records through the HTTP API, LUA ifurlup failover seen by DNS queries.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meridian_lab::{Pdns, RTYPE_A, dns_exchange, dns_query, free_port};

use crate::support::{eventually, pid_alive, started};

/// A minimal HTTP server answering 200 on every request until `stop` is set. Single-threaded and
/// good enough for PowerDNS's health checker.
fn health_server(ip: Ipv4Addr, port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    let l = TcpListener::bind((ip, port)).unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
                        .unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    })
}

#[test]
fn zone_records_and_lua_failover() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pdns) = started(
        "PowerDNS",
        Pdns::start(&tmp.path().join("pdns"), free_port(), free_port()),
    ) else {
        return;
    };
    assert_eq!(
        pdns.api_url(),
        format!("http://127.0.0.1:{}", pdns.api_port)
    );
    let (status, body) = pdns.api("GET", "/api/v1/servers/localhost", None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("authoritative"), "{body}");

    let zone = "lab.meridian.test.";
    pdns.ensure_zone(zone, "ns1.lab.meridian.test.").unwrap();
    pdns.ensure_zone(zone, "ns1.lab.meridian.test.").unwrap(); // idempotent
    pdns.replace_rrset(zone, "plain.lab.meridian.test.", "A", 60, &["203.0.113.5"])
        .unwrap();
    let dns = pdns.dns_addr();
    assert_eq!(
        dns_query(dns, "plain.lab.meridian.test.", RTYPE_A).unwrap(),
        vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5))]
    );
    let nx = dns_exchange(dns, "nothing.lab.meridian.test.", RTYPE_A).unwrap();
    assert_eq!(nx.rcode, 3, "NXDOMAIN expected: {nx:?}");
    assert!(nx.authoritative);

    // Ordered failover over two "regions" on distinct loopback IPs, same health port.
    let port = free_port();
    let eu = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let us = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let stop_eu = Arc::new(AtomicBool::new(false));
    let stop_us = Arc::new(AtomicBool::new(false));
    let t_eu = health_server(Ipv4Addr::new(127, 0, 0, 2), port, stop_eu.clone());
    let t_us = health_server(Ipv4Addr::new(127, 0, 0, 3), port, stop_us.clone());
    let lua = format!(
        "A \"ifurlup('http://failover.lab.meridian.test:{port}/status/ready', {{{{'127.0.0.2'}}, {{'127.0.0.3'}}}})\""
    );
    pdns.replace_rrset(zone, "failover.lab.meridian.test.", "LUA", 5, &[&lua])
        .unwrap();
    let name = "failover.lab.meridian.test.";
    // The first answer may come before any check ran; once both are up, the first set wins.
    let answer = |want: IpAddr| dns_query(dns, name, RTYPE_A).is_ok_and(|a| a == vec![want]);
    assert!(eventually(20, || answer(eu)), "never answered eu {eu}");
    stop_eu.store(true, Ordering::Relaxed);
    t_eu.join().unwrap();
    assert!(
        eventually(20, || answer(us)),
        "never failed over to us {us}"
    );
    stop_us.store(true, Ordering::Relaxed);
    t_us.join().unwrap();

    let pid = pdns.pid();
    drop(pdns);
    assert!(!pid_alive(pid));
}

#[test]
fn api_rejects_a_wrong_key() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut pdns) = started(
        "PowerDNS",
        Pdns::start(&tmp.path().join("pdns"), free_port(), free_port()),
    ) else {
        return;
    };
    pdns.api_key = "wrong".into();
    let (status, _) = pdns.api("GET", "/api/v1/servers/localhost", None).unwrap();
    assert_eq!(status, 401);
}
