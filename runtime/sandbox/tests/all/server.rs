//! A tiny HTTP/1.1 server on 127.0.0.1 for the HTTP tests. One thread per connection,
//! `Connection: close`, every request recorded. Stops (and joins its thread) on drop.
//!
//! Routes:
//! - `GET /ok` → 200 `ok`
//! - `GET /redirect?to=<url>` → 302 to `<url>`
//! - `GET /loop` → 302 to `/loop` (endless redirects)
//! - `GET /big?n=<bytes>` → 200 with `n` bytes
//! - `GET /slow?ms=<ms>` → 200 after `ms` milliseconds
//! - anything else → 200 echoing `<METHOD> <path> <body>`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: String,
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let seen = Arc::clone(&seen2);
                std::thread::spawn(move || {
                    let _ = handle(conn, &seen);
                });
            }
        });
        Self {
            addr,
            seen,
            stop,
            handle: Some(handle),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `http://127.0.0.1:<port>` grant for this server.
    pub(crate) fn origin(&self) -> meridian_sandbox::OriginPattern {
        self.pattern("http")
    }

    /// The grant for this server's address under `scheme` (`http`, `https` or `*`).
    pub(crate) fn pattern(&self, scheme: &str) -> meridian_sandbox::OriginPattern {
        format!("{scheme}://{}", self.addr).parse().unwrap()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let q = path.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn handle(conn: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length.min(16 << 20)];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });

    let route = path.split('?').next().unwrap_or_default();
    let (status, extra, payload): (u16, String, Vec<u8>) = match route {
        "/ok" => (200, String::new(), b"ok".to_vec()),
        "/redirect" => (
            302,
            format!(
                "Location: {}\r\n",
                query_param(&path, "to").unwrap_or("/ok")
            ),
            Vec::new(),
        ),
        "/loop" => (302, "Location: /loop\r\n".to_owned(), Vec::new()),
        "/big" => (
            200,
            String::new(),
            vec![
                b'b';
                query_param(&path, "n")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1024)
            ],
        ),
        "/slow" => {
            let ms = query_param(&path, "ms")
                .and_then(|n| n.parse().ok())
                .unwrap_or(2000);
            std::thread::sleep(Duration::from_millis(ms));
            (200, String::new(), b"slow".to_vec())
        }
        _ => (
            200,
            String::new(),
            format!("{method} {path} {body}").into_bytes(),
        ),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        payload.len()
    )?;
    conn.write_all(&payload)?;
    conn.flush()
}
