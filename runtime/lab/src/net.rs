//! Loopback networking helpers: free ports, a tiny DNS client and a tiny blocking HTTP client.
//!
//! Both clients are hand-rolled on `std::net` on purpose: they are used from synchronous test code
//! and from inside the async lab daemon alike, where a blocking reqwest client would panic, and
//! they keep `dig` and `curl` out of the test prerequisites.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::LabError;

/// DNS record type A (IPv4 address).
pub const RTYPE_A: u16 = 1;
/// DNS record type AAAA (IPv6 address).
pub const RTYPE_AAAA: u16 = 28;
/// DNS record type SOA.
pub const RTYPE_SOA: u16 = 6;

/// Ports handed out by this process, never handed out twice: two tests asking at the same moment
/// would otherwise be able to get the same just-released port from the kernel.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a port on 127.0.0.1 that is free for both TCP and UDP right now, and free for TCP on
/// the lab's region addresses too. Cost: a few syscalls. Within this process the same port is
/// never returned twice.
///
/// The port comes from below the kernel's ephemeral range (`ip_local_port_range`), picked at
/// random: the kernel gives ephemeral ports to every outgoing connection, and a port taken from
/// that range (by binding port 0) and released could become some test client's source port
/// before the server it was meant for bound it ("address in use", a red CI). Another process can
/// still take the port in between; on a machine whose ephemeral range leaves no room below it,
/// the kernel picks (port 0).
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed = guard.get_or_insert_with(HashSet::new);
    let below = ephemeral_low().saturating_sub(1);
    let mut pick = Picker::new();
    // Bounded: thousands of ports to pick from; 1000 tries only fail when loopback is exhausted,
    // which no test can recover from anyway.
    for _ in 0..1000 {
        let port = if below > MIN_PICKED {
            MIN_PICKED + (pick.next() % u64::from(below - MIN_PICKED)) as u16
        } else {
            0
        };
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else {
            continue;
        };
        let port = addr.port();
        // PowerDNS binds UDP and TCP on the same port; make sure the UDP side is free too.
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        // The lab's regions listen on 127.0.0.2 and up (at most 8): a port free on 127.0.0.1
        // can be in use there (by a lab daemon, a process with its own list of ports handed
        // out), and a test binding it on a region's address then fails with "address in use".
        let in_use_by_a_region =
            (0..8u8).any(|i| TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2 + i), port)).is_err());
        if in_use_by_a_region {
            continue;
        }
        if handed.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port after 1000 attempts");
}

/// The lowest port picked: above the registered services most machines run.
const MIN_PICKED: u16 = 20_000;

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// xorshift64*, seeded from the clock and the process id: different processes picking at the
/// same moment should not walk the same sequence.
struct Picker(u64);

impl Picker {
    fn new() -> Picker {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Picker((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A parsed DNS response: the response code and the address records of the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// RCODE: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED.
    pub rcode: u8,
    /// Whether the server answered authoritatively (AA bit).
    pub authoritative: bool,
    /// A and AAAA records of the answer section, in order.
    pub addrs: Vec<IpAddr>,
    /// Type codes of every record in the answer section (including CNAME, SOA, …).
    pub answer_types: Vec<u16>,
}

/// Asks `server` for `name`/`rtype` over UDP (falling back to TCP when the answer is truncated)
/// and returns the A/AAAA addresses of the answer. An rcode other than NOERROR is an error naming
/// it. Bounded: 3 attempts of 1 s each.
pub fn dns_query(server: SocketAddr, name: &str, rtype: u16) -> Result<Vec<IpAddr>, LabError> {
    let ans = dns_exchange(server, name, rtype)?;
    if ans.rcode != 0 {
        return Err(LabError::Dns {
            server,
            name: name.to_string(),
            rtype,
            message: format!("rcode {} ({})", ans.rcode, rcode_name(ans.rcode)),
        });
    }
    Ok(ans.addrs)
}

/// Like [`dns_query`] but returns the whole parsed answer, whatever its rcode (only transport and
/// parse failures are errors). Useful to check that a server is up (REFUSED is still an answer).
pub fn dns_exchange(server: SocketAddr, name: &str, rtype: u16) -> Result<DnsAnswer, LabError> {
    let err = |message: String| LabError::Dns {
        server,
        name: name.to_string(),
        rtype,
        message,
    };
    let id = query_id();
    let query = build_query(id, name, rtype).map_err(err)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| err(format!("bind: {e}")))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| err(format!("socket: {e}")))?;
    let mut last = String::from("no attempt");
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        if let Err(e) = sock.send_to(&query, server) {
            last = format!("send: {e}");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // Read until a datagram with our id arrives or the read times out; strays are skipped.
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if from == server => {
                    let msg = &buf[..n];
                    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
                        continue;
                    }
                    if msg[2] & 0x02 != 0 {
                        // TC: the answer did not fit a datagram; ask again over TCP.
                        return tcp_exchange(server, &query, id).map_err(err);
                    }
                    return parse_response(msg, id).map_err(err);
                }
                Ok(_) => continue,
                Err(e) => {
                    last = format!("no answer within 1 s ({e})");
                    break;
                }
            }
        }
    }
    Err(err(format!("{last} after 3 attempts")))
}

fn tcp_exchange(server: SocketAddr, query: &[u8], id: u16) -> Result<DnsAnswer, String> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2))
        .map_err(|e| format!("tcp connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("tcp: {e}"))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)
        .map_err(|e| format!("tcp write: {e}"))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| format!("tcp read: {e}"))?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg)
        .map_err(|e| format!("tcp read: {e}"))?;
    parse_response(&msg, id)
}

fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "other",
    }
}

/// A query id that differs between calls; not cryptographic (loopback test traffic only).
fn query_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u16) ^ NEXT.fetch_add(0x9e37, Ordering::Relaxed)
}

/// Encodes a standard query (RD set, one question, class IN).
pub(crate) fn build_query(id: u16, name: &str, rtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // flags: RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1 AN=0 NS=0 AR=0
    let trimmed = name.trim_end_matches('.');
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("invalid label {label:?} in {name:?}"));
            }
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
    }
    q.push(0);
    if q.len() - 12 > 255 + 1 {
        return Err(format!("name {name:?} longer than 255 octets"));
    }
    q.extend_from_slice(&rtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // class IN
    Ok(q)
}

/// Skips a (possibly compressed) name starting at `pos`, returning the offset just after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, String> {
    // A name has at most 128 labels; the bound also stops malformed input from looping.
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or("name runs past the message")?;
        match len & 0xC0 {
            0xC0 => {
                msg.get(pos + 1).ok_or("truncated compression pointer")?;
                return Ok(pos + 2);
            }
            0x00 => {
                if len == 0 {
                    return Ok(pos + 1);
                }
                pos += 1 + len as usize;
            }
            _ => return Err(format!("unsupported label type {len:#x}")),
        }
    }
    Err("name has too many labels".into())
}

fn be16(msg: &[u8], pos: usize) -> Result<u16, String> {
    match msg.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err("message truncated".into()),
    }
}

/// Decodes a response to query `id`: header checks, skips the question, collects the answers.
pub(crate) fn parse_response(msg: &[u8], id: u16) -> Result<DnsAnswer, String> {
    if msg.len() < 12 {
        return Err("response shorter than a DNS header".into());
    }
    if be16(msg, 0)? != id {
        return Err("response id does not match the query".into());
    }
    if msg[2] & 0x80 == 0 {
        return Err("message is not a response (QR=0)".into());
    }
    let authoritative = msg[2] & 0x04 != 0;
    let rcode = msg[3] & 0x0F;
    let qdcount = be16(msg, 4)?;
    let ancount = be16(msg, 6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut addrs = Vec::new();
    let mut answer_types = Vec::new();
    for _ in 0..ancount {
        pos = skip_name(msg, pos)?;
        let rtype = be16(msg, pos)?;
        let rdlen = be16(msg, pos + 8)? as usize;
        let rdata = msg
            .get(pos + 10..pos + 10 + rdlen)
            .ok_or("record data runs past the message")?;
        answer_types.push(rtype);
        match (rtype, rdlen) {
            (RTYPE_A, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (RTYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                addrs.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            (RTYPE_A | RTYPE_AAAA, n) => {
                return Err(format!("address record with {n} bytes of data"));
            }
            _ => {}
        }
        pos += 10 + rdlen;
    }
    Ok(DnsAnswer {
        rcode,
        authoritative,
        addrs,
        answer_types,
    })
}

/// A response of the tiny HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// One blocking HTTP/1.0 exchange with a loopback server (`addr` is `host:port`). HTTP/1.0 keeps
/// the parsing trivial: no chunked encoding, the server closes when done. Bounded by `timeout` for
/// connect and for each read/write.
pub(crate) fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse, LabError> {
    let url = format!("http://{addr}{path}");
    let fail = |message: String| LabError::Http {
        url: url.clone(),
        message,
    };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .map_err(|e| fail(format!("write: {e}")))?;
    let mut raw = Vec::new();
    // Responses of the lab's own services are small; 16 MiB is a guard, not an expectation.
    s.take(16 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| fail(format!("read: {e}")))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("malformed response: {:.200}", head)))?;
    Ok(HttpResponse {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_never_repeats_within_process() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(!ports.contains(&0));
    }

    #[test]
    fn free_ports_come_from_below_the_ephemeral_range() {
        let low = ephemeral_low();
        if low <= MIN_PICKED + 1 {
            return; // no room below it on this machine: the kernel picks
        }
        for _ in 0..50 {
            let port = free_port();
            assert!(
                (MIN_PICKED..low).contains(&port),
                "{port} not in {MIN_PICKED}..{low}"
            );
        }
    }

    #[test]
    fn query_encodes_labels_and_question() {
        let q = build_query(0x1234, "api.lab.test.", RTYPE_A).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[12..], b"\x03api\x03lab\x04test\x00\x00\x01\x00\x01");
        assert!(build_query(1, "a..b", RTYPE_A).is_err());
        assert!(build_query(1, &"x".repeat(64), RTYPE_A).is_err());
    }

    /// A response with a compressed owner name, one A, one CNAME and one AAAA record.
    fn sample_response(id: u16, rcode: u8) -> Vec<u8> {
        let mut m = build_query(id, "api.lab.test", RTYPE_A).unwrap();
        m[2] = 0x85; // QR, AA, RD
        m[3] = rcode;
        m[7] = 3; // ANCOUNT
        // A 127.0.0.2, owner = pointer to the question name at offset 12
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 2]);
        // CNAME with a 2-byte pointer as data
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xC0, 12]);
        // AAAA ::1
        m.extend_from_slice(&[0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
        m.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        m
    }

    #[test]
    fn response_parses_addresses_and_types() {
        let a = parse_response(&sample_response(7, 0), 7).unwrap();
        assert_eq!(a.rcode, 0);
        assert!(a.authoritative);
        assert_eq!(
            a.addrs,
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(a.answer_types, vec![1, 5, 28]);
    }

    #[test]
    fn response_rejects_mismatch_and_truncation() {
        let m = sample_response(7, 0);
        assert!(parse_response(&m, 8).unwrap_err().contains("id"));
        for cut in [5, 20, m.len() - 3] {
            assert!(parse_response(&m[..cut], 7).is_err(), "cut at {cut}");
        }
        let mut q = m.clone();
        q[2] = 0x01;
        assert!(parse_response(&q, 7).unwrap_err().contains("QR"));
        assert_eq!(parse_response(&sample_response(7, 3), 7).unwrap().rcode, 3);
    }

    #[test]
    fn dns_query_against_a_local_fake_server() {
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            // First query: answer NXDOMAIN; second: an A record.
            for rcode in [3u8, 0u8] {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let mut m = buf[..n].to_vec();
                m[2] = 0x84;
                m[3] = rcode;
                if rcode == 0 {
                    m[7] = 1;
                    m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 9, 8, 7]);
                }
                assert_eq!(u16::from_be_bytes([m[0], m[1]]), id);
                server.send_to(&m, from).unwrap();
            }
        });
        let e = dns_query(addr, "x.test.", RTYPE_A).unwrap_err();
        assert!(e.to_string().contains("NXDOMAIN"), "{e}");
        let ips = dns_query(addr, "x.test.", RTYPE_A).unwrap();
        assert_eq!(ips, vec![IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7))]);
        t.join().unwrap();
    }

    #[test]
    fn dns_query_times_out_boundedly() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let e = dns_query(silent.local_addr().unwrap(), "x.test.", RTYPE_A).unwrap_err();
        assert!(e.to_string().contains("after 3 attempts"), "{e}");
    }
}
