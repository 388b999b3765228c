//! Capture of the guest's WASI stdout/stderr into a bounded buffer. Writes past the bound are
//! accepted and dropped (counted), never refused: Rust's `println!` panics on a failed write, and
//! a chatty guest must not turn into a crashing one.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buf {
    data: Vec<u8>,
    dropped: u64,
}

/// A cloneable handle on one captured stream.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    buf: Arc<Mutex<Buf>>,
    cap: usize,
}

impl Capture {
    /// Keeps at most `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            buf: Arc::default(),
            cap,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut b = self
            .buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = self.cap.saturating_sub(b.data.len());
        let keep = room.min(bytes.len());
        b.data.extend_from_slice(&bytes[..keep]);
        b.dropped += (bytes.len() - keep) as u64;
    }

    /// The captured text and how many bytes were dropped.
    pub(crate) fn take(&self) -> (String, u64) {
        let mut b = self
            .buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let data = std::mem::take(&mut b.data);
        (String::from_utf8_lossy(&data).into_owned(), b.dropped)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_never_refuses() {
        let mut c = Capture::new(5);
        c.write(Bytes::from_static(b"abc")).unwrap();
        c.write(Bytes::from_static(b"defgh")).unwrap();
        assert_eq!(c.check_write().unwrap(), 64 << 10);
        assert_eq!(c.take(), ("abcde".to_owned(), 3));
    }
}
