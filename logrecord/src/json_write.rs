//! Writes a [`LogRecordRef`] as its JSON line without serde's serializer: the agent writes one
//! line per metadata request, and serde's generic machinery (a state per field, its string
//! escaper taking every byte through a lookup) was the largest part of the request event's cost
//! in the request path's profile (BENCHMARKS.md). The field names and their order are fixed, so
//! the line is written straight out; strings are copied in runs between the bytes JSON must
//! escape, which are escaped exactly as `serde_json` escapes them (a test compares the two).

use crate::{LogRecordRef, timestamp_micros};

/// How a line of a record whose `seq` is 0 begins: `seq` is the first key, so a writer that
/// numbers lines as it writes them (the agent's log writer) replaces exactly these bytes.
pub const SEQ_PLACEHOLDER: &[u8] = b"{\"seq\":0,";

impl LogRecordRef<'_> {
    /// Appends the JSON line, newline included, to `out`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Room for the whole line of a request event at once: the fixed part (names, numbers,
        // ids, timestamp) is under 320 bytes; escapes may still grow it past this.
        let strings = [self.target, self.message, self.cluster, self.machine]
            .iter()
            .chain(
                [
                    self.method,
                    self.path,
                    self.api_version,
                    self.format,
                    self.caller,
                ]
                .iter()
                .flatten(),
            )
            .map(|s| s.len())
            .sum::<usize>();
        out.reserve(320 + strings);
        out.extend_from_slice(b"{\"seq\":");
        write_u64(out, self.seq);
        out.extend_from_slice(b",\"id\":\"");
        write_uuid(out, &self.id);
        out.extend_from_slice(b"\",\"timestamp\":\"");
        let mut stamp = [0u8; timestamp_micros::LEN];
        // Digits and separators only: nothing to escape.
        out.extend_from_slice(timestamp_micros::format(&self.timestamp, &mut stamp).as_bytes());
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.push(b'"');
        // Each name is a constant with its punctuation (`,"name":`), one fixed-size copy each.
        string_field(out, b",\"target\":", self.target);
        string_field(out, b",\"message\":", self.message);
        string_field(out, b",\"cluster\":", self.cluster);
        string_field(out, b",\"machine\":", self.machine);
        if let Some(id) = &self.request_id {
            out.extend_from_slice(b",\"request_id\":\"");
            write_uuid(out, id);
            out.push(b'"');
        }
        optional_string(out, b",\"method\":", self.method);
        optional_string(out, b",\"path\":", self.path);
        optional_string(out, b",\"api_version\":", self.api_version);
        optional_string(out, b",\"format\":", self.format);
        optional_number(out, b",\"status\":", self.status.map(u64::from));
        optional_number(out, b",\"latency_us\":", self.latency_us);
        optional_number(out, b",\"response_bytes\":", self.response_bytes);
        optional_string(out, b",\"caller\":", self.caller);
        if let Some(fields) = self.fields {
            out.extend_from_slice(b",\"fields\":");
            // A map of JSON values always serializes; the rare event with free fields keeps
            // serde's writer for them.
            let _ = serde_json::to_writer(&mut *out, fields);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `key` is `,"name":`: fixed ASCII with nothing to escape.
fn string_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    write_string(out, value);
}

fn optional_string(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) {
    if let Some(value) = value {
        string_field(out, key, value);
    }
}

fn optional_number(out: &mut Vec<u8>, key: &[u8], value: Option<u64>) {
    if let Some(value) = value {
        out.extend_from_slice(key);
        write_u64(out, value);
    }
}

fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut text = uuid::Uuid::encode_buffer();
    out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
}

/// What each byte becomes in a JSON string: 0 as it is, `u` as `\u00XX`, any other value as
/// a backslash and that letter (serde_json's table).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A JSON string, quotes included, escaped as `serde_json` escapes: `"` and `\` with a
/// backslash, the control characters with their short form or `\u00XX`, everything else
/// (non-ASCII included) as it is.
fn write_string(out: &mut Vec<u8>, value: &str) {
    // No reserve of its own: the line reserved room for every string unescaped, and escapes
    // (rare) grow the buffer as they go.
    let bytes = value.as_bytes();
    out.push(b'"');
    let mut run_start = 0;
    let mut at = 0;
    while at < bytes.len() {
        // Eight bytes at a time past those with nothing to escape (nearly every string), then
        // byte by byte through the word that has one, or the last few bytes.
        while let Some(word) = bytes.get(at..at + 8)
            && !needs_escape(u64::from_le_bytes(word.try_into().unwrap_or_default()))
        {
            at += 8;
        }
        let word_end = (at + 8).min(bytes.len());
        for (i, &byte) in bytes.iter().enumerate().take(word_end).skip(at) {
            let escape = ESCAPE[usize::from(byte)];
            if escape == 0 {
                continue;
            }
            out.extend_from_slice(&bytes[run_start..i]);
            run_start = i + 1;
            if escape == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            } else {
                out.push(b'\\');
                out.push(escape);
            }
        }
        at = word_end;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is one JSON escapes: a control character, `"` or
/// `\`. Exact (no false positive or negative) for the question "any?", the classic zero-byte
/// test: `(x - 0x01..) & !x & 0x80..` is non-zero iff some byte of `x` is zero, and bytes below
/// 0x20 are those whose value minus 0x20 borrows with the high bit clear.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || zero_in(word ^ (ONES * u64::from(b'"')))
        || zero_in(word ^ (ONES * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use crate::tests::request_record;
    use crate::{LogRecord, LogRecordRef};

    fn by_serde(record: &LogRecordRef<'_>) -> Vec<u8> {
        let mut line = serde_json::to_vec(record).unwrap();
        line.push(b'\n');
        line
    }

    fn by_hand(record: &LogRecordRef<'_>) -> Vec<u8> {
        let mut line = Vec::new();
        record.write_json_line(&mut line);
        line
    }

    #[test]
    fn lines_are_byte_for_byte_what_serde_writes() {
        let full = request_record();
        let mut fields = serde_json::Map::new();
        fields.insert("error".into(), "disk \"full\"\n".into());
        fields.insert("attempt".into(), 3.into());
        let awkward = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "controls \u{0} \u{1} \u{8} \u{9} \u{a} \u{b} \u{c} \u{d} \u{1f} \u{7f}",
            "non-ascii é ✓ 🦀 \u{2028} \u{2029} \u{fffd}",
            "\"",
            "ends with \\",
        ];
        for text in awkward {
            let record = LogRecordRef {
                seq: u64::MAX,
                target: text,
                message: text,
                cluster: text,
                machine: text,
                method: Some(text),
                path: Some(text),
                api_version: Some(text),
                format: Some(text),
                caller: Some(text),
                status: Some(u16::MAX),
                latency_us: Some(0),
                response_bytes: Some(1234567890),
                fields: Some(&fields),
                ..full.borrowed()
            };
            assert_eq!(
                String::from_utf8(by_hand(&record)).unwrap(),
                String::from_utf8(by_serde(&record)).unwrap(),
                "{text:?}"
            );
        }
        // Every optional field left out, another level and a time of day with leading zeros: the
        // line read back is written back the same.
        let line = concat!(
            r#"{"seq":0,"id":"01930000-0000-7000-8000-000000000001","#,
            r#""timestamp":"2001-02-03T04:05:06.000007Z","level":"WARN","target":"t","#,
            r#""message":"m","cluster":"c","machine":"h"}"#,
            "\n"
        );
        let bare = LogRecord::from_json_line(line).unwrap();
        assert_eq!(by_hand(&bare.borrowed()), line.as_bytes());
        assert_eq!(by_serde(&bare.borrowed()), line.as_bytes());
        assert!(line.as_bytes().starts_with(crate::SEQ_PLACEHOLDER));
        assert_eq!(by_hand(&full.borrowed()), by_serde(&full.borrowed()));
    }

    #[test]
    fn strings_escape_as_serde_does_whatever_byte_sits_at_whatever_place_in_a_word() {
        // Strings are checked eight bytes at a time: every ASCII byte (and a non-ASCII letter)
        // at every offset of strings up to three words long, next to plain bytes and to the
        // bytes closest to those escaped (space, '!', '#', '[', ']', DEL).
        let mut specials: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        specials.push("é".into());
        for len in 0..24 {
            for at in 0..len {
                for special in &specials {
                    for filler in ["a", " ", "!", "#", "[", "]", "\u{7f}"] {
                        let mut text = filler.repeat(at);
                        text.push_str(special);
                        text.push_str(&filler.repeat(len - at - 1));
                        let mut by_hand = Vec::new();
                        super::write_string(&mut by_hand, &text);
                        assert_eq!(
                            String::from_utf8(by_hand).unwrap(),
                            serde_json::to_string(&text).unwrap(),
                            "{text:?}"
                        );
                    }
                }
            }
        }
    }
}
