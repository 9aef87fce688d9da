//! The one INFO event of each metadata request, written by the count layer (`http/count.rs`)
//! straight into the local log (`writer/mod.rs`).

use super::line_sink::LineSink;
use logrecord::{Level, LogRecordRef};
use std::io::Write;

/// Writes the one INFO event of each metadata request (target `imds::request`) straight into the
/// local log, without going through tracing: the request path's profile showed tracing's dispatch,
/// the field visitor's name matching and the formatting of each field into text as most of what
/// the request event cost (BENCHMARKS.md). The line is the same record the layer writes for any
/// other event, through the same queue, so `seq`, drops and the per-level counters are shared.
/// It bypasses the stderr log, which leaves request events out anyway.
#[derive(Debug, Clone)]
pub(crate) struct RequestLog {
    lines: LineSink,
}

/// What a request event says, borrowed from the request and its response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestEvent<'a> {
    /// The response's `x-ms-request-id`.
    pub request_id: uuid::Uuid,
    pub method: &'a str,
    pub path: &'a str,
    /// As the caller sent it, when it did.
    pub api_version: Option<&'a str>,
    pub format: &'a str,
    pub status: u16,
    pub latency_us: u64,
    pub response_bytes: u64,
    pub caller: std::net::IpAddr,
}

/// The request event's target and message.
pub(crate) const REQUEST_TARGET: &str = "imds::request";
const REQUEST_MESSAGE: &str = "request served";

impl RequestLog {
    pub(super) fn new(lines: LineSink) -> Self {
        RequestLog { lines }
    }

    pub(crate) fn write(&self, event: &RequestEvent<'_>) {
        let mut caller = [0u8; 48];
        let caller_len = write_address(&mut caller, event.caller);
        let record = LogRecordRef {
            request_id: Some(event.request_id),
            method: Some(event.method),
            path: Some(event.path),
            api_version: event.api_version,
            format: Some(event.format),
            status: Some(event.status),
            latency_us: Some(event.latency_us),
            response_bytes: Some(event.response_bytes),
            caller: std::str::from_utf8(&caller[..caller_len]).ok(),
            ..self
                .lines
                .record(Level::Info, REQUEST_TARGET, REQUEST_MESSAGE)
        };
        self.lines.send(&record);
    }
}

/// `address` as text into `out` (an IPv6 address is at most 45 characters); its length. IPv4,
/// every request's case, digit by digit: through `fmt`, it was a visible share of the event.
fn write_address(out: &mut [u8; 48], address: std::net::IpAddr) -> usize {
    match address {
        std::net::IpAddr::V4(v4) => {
            let mut at = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out[at] = b'.';
                    at += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = if octet >= 100 {
                    0
                } else if octet >= 10 {
                    1
                } else {
                    2
                };
                for digit in &digits[skip..] {
                    out[at] = b'0' + digit;
                    at += 1;
                }
            }
            at
        }
        std::net::IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut out[..]);
            let _ = write!(cursor, "{v6}");
            cursor.position() as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_their_display() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.209",
            "::1",
            "::ffff:10.0.0.4",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "fe80::1ff:fe23:4567:890a",
        ] {
            let address: std::net::IpAddr = text.parse().unwrap();
            let mut out = [0u8; 48];
            let len = write_address(&mut out, address);
            assert_eq!(
                std::str::from_utf8(&out[..len]).unwrap(),
                address.to_string()
            );
        }
    }
}
