//! Pterodactyl's byte-level JSON (reference §1.4): success bodies are PHP's
//! `json_encode` with flags 0 (`/` escaped as `\/`, non-ASCII as `\uXXXX`), most
//! error bodies are `JSON_PRETTY_PRINT|JSON_UNESCAPED_SLASHES` (4-space indent,
//! non-ASCII still escaped).

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};
use std::io::{self, Write};

/// Escapes what PHP escapes on top of JSON's minimum: non-ASCII (as UTF-16
/// `\uXXXX` units) and, unless disabled, `/`.
struct PhpEscapes<F> {
    inner: F,
    escape_slash: bool,
}

impl<F: Formatter> Formatter for PhpEscapes<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let escape = !ch.is_ascii() || (self.escape_slash && ch == '/');
            if !escape {
                continue;
            }
            if start < i {
                w.write_all(&fragment.as_bytes()[start..i])?;
            }
            if ch == '/' {
                w.write_all(b"\\/")?;
            } else {
                let mut buf = [0u16; 2];
                for unit in ch.encode_utf16(&mut buf) {
                    write!(w, "\\u{:04x}", unit)?;
                }
            }
            start = i + ch.len_utf8();
        }
        if start < fragment.len() {
            w.write_all(&fragment.as_bytes()[start..])?;
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        esc: CharEscape,
    ) -> io::Result<()> {
        self.inner.write_char_escape(w, esc)
    }

    // Delegate structure to the inner formatter (compact or pretty).
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_object_value(w)
    }
}

/// Compact PHP `json_encode($x)`.
pub fn compact<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let fmt = PhpEscapes {
        inner: serde_json::ser::CompactFormatter,
        escape_slash: true,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serialising our own types into memory cannot fail.
    if value.serialize(&mut ser).is_err() {
        return b"{}".to_vec();
    }
    out
}

/// PHP `json_encode($x, JSON_PRETTY_PRINT|JSON_UNESCAPED_SLASHES)`.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let fmt = PhpEscapes {
        inner: PrettyFormatter::with_indent(b"    "),
        escape_slash: false,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if value.serialize(&mut ser).is_err() {
        return b"{}".to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_escapes_slashes_and_non_ascii_like_php() {
        let v = json!({"url": "https://x.y/a", "name": "Zoë 😀", "html": "<a>&'"});
        assert_eq!(
            String::from_utf8(compact(&v)).unwrap(),
            r#"{"url":"https:\/\/x.y\/a","name":"Zo\u00eb \ud83d\ude00","html":"<a>&'"}"#
        );
    }

    #[test]
    fn pretty_uses_four_spaces_and_keeps_slashes() {
        let v = json!({"errors": [{"code": "X", "detail": "a/b"}]});
        assert_eq!(
            String::from_utf8(pretty(&v)).unwrap(),
            "{\n    \"errors\": [\n        {\n            \"code\": \"X\",\n            \"detail\": \"a/b\"\n        }\n    ]\n}"
        );
    }

    #[test]
    fn integral_floats_keep_their_point() {
        assert_eq!(
            String::from_utf8(compact(&json!({"a": 5.0}))).unwrap(),
            r#"{"a":5.0}"#
        );
    }
}
