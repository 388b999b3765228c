//! A minimal DNS client over UDP: one A query, the A answers back. Enough to observe what the
//! PowerDNS under test answers, without shelling out to `dig`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Queries `name` type A at `server` and returns the A records of the answer section.
/// `Err` on timeout, a malformed reply or a non-zero RCODE.
pub(crate) fn query_a(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let id: u16 = (std::process::id() as u16) ^ 0x5a5a;
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]); // flags, QD=1
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&q, server).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut buf)
        .map_err(|e| format!("no answer: {e}"))?;
    parse_a(&buf[..n], id)
}

fn parse_a(msg: &[u8], id: u16) -> Result<Vec<Ipv4Addr>, String> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err("short reply or wrong id".into());
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(format!("rcode {rcode}"));
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let header = msg.get(pos..pos + 10).ok_or("truncated answer")?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[8], header[9]]) as usize;
        pos += 10;
        let rdata = msg.get(pos..pos + len).ok_or("truncated rdata")?;
        if rtype == 1 && len == 4 {
            out.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        pos += len;
    }
    Ok(out)
}

fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, String> {
    // Labels end with a zero byte or a two-byte compression pointer; bounded by the message.
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or("truncated name")?;
        match len {
            0 => return Ok(pos + 1),
            l if l & 0xc0 == 0xc0 => return Ok(pos + 2),
            l => pos += 1 + l as usize,
        }
    }
    Err("name too long".into())
}

#[test]
fn parses_a_compressed_answer() {
    let id = 0x1234;
    let mut m = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(&[3, b'a', b'p', b'i', 7]);
    m.extend_from_slice(b"example");
    m.extend_from_slice(&[3, b'o', b'r', b'g', 0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 3]);
    assert_eq!(parse_a(&m, id).unwrap(), [Ipv4Addr::new(127, 0, 0, 3)]);
    m[3] = 0x03;
    assert!(parse_a(&m, id).unwrap_err().contains("rcode 3"));
}
