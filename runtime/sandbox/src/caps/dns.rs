//! Name resolution through one granted DNS server (`grants.dns`), for steps that must see what
//! a GSLB answers: a DR verification asks the authoritative server, not the host's resolver
//! with its caches. A minimal RFC 1035 client over UDP (A and AAAA), bounded retries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Tries per query; each waits [`TRY_TIMEOUT`].
const TRIES: usize = 3;
const TRY_TIMEOUT: Duration = Duration::from_millis(800);

/// A reqwest resolver asking `server` for A then AAAA records.
#[derive(Debug, Clone)]
pub(crate) struct GrantedResolver {
    pub(crate) server: SocketAddr,
}

impl Resolve for GrantedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let server = self.server;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let (ips, _) = lookup(server, &host).await?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The A records of `name` at `server` (AAAA when there are none) and the smallest TTL among
/// them: what a client resolving through that server would use, and for how long it may keep
/// it. No record at all is an error naming the name and the server.
pub async fn lookup(server: SocketAddr, name: &str) -> Result<(Vec<IpAddr>, Duration), BoxError> {
    let (mut ips, mut ttl) = query(server, name, 1).await?;
    if ips.is_empty() {
        (ips, ttl) = query(server, name, 28).await?;
    }
    if ips.is_empty() {
        return Err(format!("{name}: no A/AAAA record at DNS server {server}").into());
    }
    Ok((ips, Duration::from_secs(u64::from(ttl))))
}

/// Asks `server` for `rtype` (1 = A, 28 = AAAA) records of `name`; with the smallest TTL.
async fn query(server: SocketAddr, name: &str, rtype: u16) -> Result<(Vec<IpAddr>, u32), BoxError> {
    let id: u16 = rand_id();
    let packet = build_query(id, name, rtype)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..TRIES {
        sock.send(&packet).await?;
        let deadline = tokio::time::Instant::now() + TRY_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(n)) => {
                    if let Some(answer) = parse_response(id, &buf[..n], rtype)? {
                        return Ok(answer);
                    }
                }
            }
        }
    }
    Err(format!("DNS server {server} did not answer for {name} ({TRIES} tries)").into())
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

fn build_query(id: u16, name: &str, rtype: u16) -> Result<Vec<u8>, BoxError> {
    let mut p = Vec::with_capacity(32 + name.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00]); // recursion desired
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` is not a valid DNS name").into());
        }
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&rtype.to_be_bytes());
    p.extend_from_slice(&[0, 1]); // class IN
    Ok(p)
}

/// `Ok(None)` for a packet that is not the answer to our query (ignored, keep waiting).
fn parse_response(id: u16, b: &[u8], rtype: u16) -> Result<Option<(Vec<IpAddr>, u32)>, BoxError> {
    if b.len() < 12 || u16::from_be_bytes([b[0], b[1]]) != id || b[2] & 0x80 == 0 {
        return Ok(None);
    }
    let rcode = b[3] & 0x0f;
    if rcode == 3 {
        return Ok(Some((Vec::new(), 0))); // NXDOMAIN: no address
    }
    if rcode != 0 {
        return Err(format!("DNS error rcode {rcode}").into());
    }
    let qd = u16::from_be_bytes([b[4], b[5]]) as usize;
    let an = u16::from_be_bytes([b[6], b[7]]) as usize;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut out = Vec::new();
    let mut min_ttl = u32::MAX;
    for _ in 0..an {
        at = skip_name(b, at)?;
        let field = b.get(at..at + 10).ok_or("truncated DNS answer")?;
        let ty = u16::from_be_bytes([field[0], field[1]]);
        let ttl = u32::from_be_bytes([field[4], field[5], field[6], field[7]]);
        let len = u16::from_be_bytes([field[8], field[9]]) as usize;
        at += 10;
        let data = b.get(at..at + len).ok_or("truncated DNS record")?;
        match (ty, rtype, len) {
            (1, 1, 4) => {
                out.push(IpAddr::from([data[0], data[1], data[2], data[3]]));
                min_ttl = min_ttl.min(ttl);
            }
            (28, 28, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(data);
                out.push(IpAddr::from(a));
                min_ttl = min_ttl.min(ttl);
            }
            _ => {}
        }
        at += len;
    }
    let ttl = if out.is_empty() { 0 } else { min_ttl };
    Ok(Some((out, ttl)))
}

/// Offset just past the (possibly compressed) name at `at`.
fn skip_name(b: &[u8], mut at: usize) -> Result<usize, BoxError> {
    // A name is at most 255 bytes, so 128 labels bound the loop.
    for _ in 0..128 {
        let len = *b.get(at).ok_or("truncated DNS name")? as usize;
        if len == 0 {
            return Ok(at + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Ok(at + 2);
        }
        at += 1 + len;
    }
    Err("DNS name too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_records_and_ignores_strangers() {
        let q = build_query(7, "api.lab.test", 1).unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2; // two answers
        for ip in [[127, 0, 0, 3], [10, 0, 0, 1]] {
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
            r.extend_from_slice(&ip);
        }
        let got = parse_response(7, &r, 1).unwrap().unwrap();
        assert_eq!(
            got,
            (
                vec![IpAddr::from([127, 0, 0, 3]), IpAddr::from([10, 0, 0, 1])],
                30
            )
        );
        assert!(parse_response(8, &r, 1).unwrap().is_none());
        assert!(parse_response(7, &r[..20], 1).is_err());
    }
}
