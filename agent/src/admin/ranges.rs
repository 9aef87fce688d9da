//! One file sent whole or in part, as HTTP specifies (RFC 9110 section 14): `Accept-Ranges:
//! bytes`, a strong `ETag`, one range answered `206 Partial Content`, a range that starts past the
//! end `416` with `Content-Range: bytes */<size>`, and `If-Range` so a resumed download of a file
//! that changed since gets the whole new file rather than a splice of two. A Range header that
//! does not parse is ignored (the whole file, as the RFC allows), and so is a request for several
//! ranges: nobody fetching logs asks for them, and a multipart answer buys nothing here.

use super::error;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Answers `headers` (its `Range` and `If-Range`) with `file`, whose metadata is `meta` (taken
/// on the open handle: the size sent is the size then, even if the file grows meanwhile).
pub(super) async fn serve_file(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    content_type: &'static str,
    headers: &HeaderMap,
) -> Response {
    let size = meta.len();
    // Inode, size and modification time: an hourly log that grew, or a file replaced under the
    // same name, gets a new tag.
    let etag = format!(
        "\"{:x}-{:x}-{:x}\"",
        meta.ino(),
        size,
        meta.mtime() as i128 * 1_000_000_000 + i128::from(meta.mtime_nsec())
    );
    let common = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
    ];
    let range = match wanted_range(headers, &etag, size) {
        Wanted::Whole => None,
        Wanted::Part(start, end) => Some((start, end)),
        Wanted::Unsatisfiable => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("range not satisfiable: the file has {size} bytes"),
            );
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let mut file = tokio::fs::File::from_std(file);
    let (start, length) = match range {
        Some((start, end)) => (start, end - start + 1),
        None => (0, size),
    };
    if start > 0
        && let Err(reason) = file.seek(SeekFrom::Start(start)).await
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reading the file failed: {reason}"),
        );
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(length)));
    match range {
        None => (
            common,
            [(header::CONTENT_LENGTH, HeaderValue::from(size))],
            body,
        )
            .into_response(),
        Some((start, end)) => {
            let content_range = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
                .unwrap_or(HeaderValue::from_static("bytes */0"));
            (
                StatusCode::PARTIAL_CONTENT,
                common,
                [
                    (header::CONTENT_LENGTH, HeaderValue::from(length)),
                    (header::CONTENT_RANGE, content_range),
                ],
                body,
            )
                .into_response()
        }
    }
}

/// What a request asks of a file of `size` bytes tagged `etag`.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

fn wanted_range(headers: &HeaderMap, etag: &str, size: u64) -> Wanted {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::Whole;
    };
    // If-Range with another tag (or a date, which this server does not send): the file changed
    // since the client's first part, so it gets the whole file.
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.as_bytes() != etag.as_bytes()
    {
        return Wanted::Whole;
    }
    let Ok(parsed) = http_range_header::parse_range_header(range) else {
        return Wanted::Whole;
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => Wanted::Part(*ranges[0].start(), *ranges[0].end()),
        Ok(_) => Wanted::Whole,
        Err(_) => Wanted::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(range: &str, if_range: Option<&str>, size: u64) -> Wanted {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(tag) = if_range {
            headers.insert(header::IF_RANGE, HeaderValue::from_str(tag).unwrap());
        }
        wanted_range(&headers, "\"t\"", size)
    }

    #[test]
    fn ranges_as_rfc_9110_specifies() {
        assert_eq!(asked("bytes=0-9", None, 100), Wanted::Part(0, 9));
        assert_eq!(asked("bytes=90-", None, 100), Wanted::Part(90, 99));
        assert_eq!(asked("bytes=-10", None, 100), Wanted::Part(90, 99));
        // An end past the file is cut to it; a start past it cannot be satisfied.
        assert_eq!(asked("bytes=50-1000", None, 100), Wanted::Part(50, 99));
        assert_eq!(asked("bytes=100-", None, 100), Wanted::Unsatisfiable);
        assert_eq!(asked("bytes=0-", None, 0), Wanted::Unsatisfiable);
        // Unparsable, another unit, several ranges: ignored.
        assert_eq!(asked("bytes=abc", None, 100), Wanted::Whole);
        assert_eq!(asked("lines=1-2", None, 100), Wanted::Whole);
        assert_eq!(asked("bytes=0-1,5-6", None, 100), Wanted::Whole);
        // If-Range: the part only while the file is the one the client started with.
        assert_eq!(asked("bytes=5-", Some("\"t\""), 100), Wanted::Part(5, 99));
        assert_eq!(asked("bytes=5-", Some("\"old\""), 100), Wanted::Whole);
        assert_eq!(wanted_range(&HeaderMap::new(), "\"t\"", 100), Wanted::Whole);
    }
}
