//! hyper answers requests it cannot parse (400, 414 URI too long, 431 headers too large) itself,
//! with an empty body and no hook to change it. [`JsonParserErrors`] wraps a connection's socket
//! (plain or TLS) and, when hyper writes one of those answers, sends the service's JSON error
//! shape in its place, so every error the metadata and admin APIs send is JSON.
//!
//! hyper's own answer is recognised by its exact shape: one write holding a whole 4xx head and
//! nothing else, with only `content-length: 0`, `date` and `connection` headers. Every answer of
//! the services carries a `server` header, so none of theirs matches; a body chunk (a served log
//! file) would have to be exactly such a head, CRLFs included, which a JSON log line cannot hold.

use super::count::SERVER;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket whose parser-error answers are rewritten as JSON.
#[derive(Debug)]
pub(crate) struct JsonParserErrors<S> {
    inner: S,
    /// Called with the status of each answer replaced (to count it).
    on_replace: fn(u16),
    /// A JSON answer being written in place of hyper's: (bytes, written so far, hyper's length).
    replacement: Option<(Vec<u8>, usize, usize)>,
}

impl<S> JsonParserErrors<S> {
    pub(crate) fn new(inner: S, on_replace: fn(u16)) -> Self {
        JsonParserErrors {
            inner,
            on_replace,
            replacement: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParserErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParserErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none()
            && let Some(status) = automatic_error_status(buf)
        {
            (self.on_replace)(status);
            self.replacement = Some((json_error_response(status), 0, buf.len()));
        }
        let this = &mut *self;
        match &mut this.replacement {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            Some((bytes, written, reported)) => {
                while *written < bytes.len() {
                    match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => *written += n,
                        other => return other,
                    }
                }
                // hyper closes the connection after such an answer: nothing follows it.
                let reported = *reported;
                Poll::Ready(Ok(reported.min(buf.len())))
            }
        }
    }

    /// Vectored writes pass through (hyper then sends a body from its own buffer instead of
    /// copying it into one: a 15 MB answer to 200 callers would be 200 copies). hyper's error
    /// answer is one head and no body: a write of one non-empty slice goes through the check.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
            return self.poll_write(cx, only);
        }
        if self.replacement.is_some() {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status of an answer hyper wrote on its own (see the module's comment for the shape).
fn automatic_error_status(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 4")?;
    let head = buf.strip_suffix(b"\r\n\r\n")?;
    let mut lines = head.split(|&b| b == b'\n').skip(1);
    let only_hypers_headers = lines.all(|line| {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        [&b"content-length"[..], b"date", b"connection"]
            .iter()
            .any(|known| name.eq_ignore_ascii_case(known))
    });
    if !only_hypers_headers {
        return None;
    }
    let digits = std::str::from_utf8(rest.get(..2)?).ok()?;
    Some(400 + digits.parse::<u16>().ok()?)
}

fn json_error_response(status: u16) -> Vec<u8> {
    let (reason, message) = match status {
        414 => ("URI Too Long", "Bad request. The request line is too long"),
        431 => (
            "Request Header Fields Too Large",
            "Bad request. The request headers are too large",
        ),
        _ => (
            "Bad Request",
            "Bad request. The request is not valid HTTP/1.1",
        ),
    };
    let body = serde_json::json!({ "error": message }).to_string();
    let mut id = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nx-ms-request-id: {id}\r\nserver: {SERVER}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_answers_are_recognised() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_error_status(hyper_431), Some(431));
        assert_eq!(
            automatic_error_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nserver: IMDS/0.1.0\r\n\r\n";
        assert_eq!(automatic_error_status(ours), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(automatic_error_status(with_body), None);
        assert_eq!(automatic_error_status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        let response = String::from_utf8(json_error_response(414)).unwrap();
        assert!(response.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        let length: usize = response
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap()["error"],
            "Bad request. The request line is too long"
        );
    }
}
