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

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `fragment` (already free of what JSON itself escapes) with PHP's extra
/// escapes. Most text is ASCII without `/`, so runs are found by byte and copied
/// whole; only the bytes that need it are decoded.
fn write_php_fragment<W: ?Sized + Write>(
    w: &mut W,
    fragment: &str,
    escape_slash: bool,
) -> io::Result<()> {
    let bytes = fragment.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none is non-ASCII or a slash to escape.
        while i + 8 <= bytes.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i..i + 8]);
            let w = u64::from_le_bytes(word);
            let high = w & 0x8080_8080_8080_8080;
            let slash = if escape_slash {
                let x = w ^ 0x2f2f_2f2f_2f2f_2f2f;
                x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
            } else {
                0
            };
            if high | slash != 0 {
                break;
            }
            i += 8;
        }
        if i >= bytes.len() {
            break;
        }
        let b = bytes[i];
        if b < 0x80 && !(escape_slash && b == b'/') {
            i += 1;
            continue;
        }
        if start < i {
            w.write_all(&bytes[start..i])?;
        }
        if b == b'/' {
            w.write_all(b"\\/")?;
            i += 1;
        } else {
            // A multi-byte character: `i` is on its first byte (we only stop on
            // boundaries), so the slice from here decodes.
            let ch = fragment[i..].chars().next().unwrap_or('\u{fffd}');
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                let u = *unit;
                w.write_all(&[
                    b'\\',
                    b'u',
                    HEX[usize::from(u >> 12)],
                    HEX[usize::from((u >> 8) & 0xf)],
                    HEX[usize::from((u >> 4) & 0xf)],
                    HEX[usize::from(u & 0xf)],
                ])?;
            }
            i += ch.len_utf8();
        }
        start = i;
    }
    if start < bytes.len() {
        w.write_all(&bytes[start..])?;
    }
    Ok(())
}

impl<F: Formatter> Formatter for PhpEscapes<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_php_fragment(w, fragment, self.escape_slash)
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
    if !compact_into(&mut out, value) {
        return b"{}".to_vec();
    }
    out
}

/// Appends compact PHP `json_encode($x)` to `out`, so a response is encoded into
/// one buffer in one pass. False (with `out` possibly partly written) only when a
/// `Serialize` impl fails, which our own types never do.
pub fn compact_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> bool {
    let fmt = PhpEscapes {
        inner: serde_json::ser::CompactFormatter,
        escape_slash: true,
    };
    let mut ser = serde_json::Serializer::with_formatter(out, fmt);
    value.serialize(&mut ser).is_ok()
}

/// Appends `s` as a compact PHP-encoded JSON string.
pub fn str_into(out: &mut Vec<u8>, s: &str) {
    // Writing a string into memory cannot fail.
    let _ = compact_into(out, s);
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
    fn escapes_match_php_for_every_kind_of_character() {
        let s = "a/b\\c\"d\n\u{1}\u{7f}é€😀/";
        assert_eq!(
            compact(&s),
            "\"a\\/b\\\\c\\\"d\\n\\u0001\u{7f}\\u00e9\\u20ac\\ud83d\\ude00\\/\"".as_bytes()
        );
        assert_eq!(
            pretty(&s),
            "\"a/b\\\\c\\\"d\\n\\u0001\u{7f}\\u00e9\\u20ac\\ud83d\\ude00/\"".as_bytes()
        );
        let mut out = b"[".to_vec();
        str_into(&mut out, "x/y");
        assert_eq!(out, br#"["x\/y""#);
    }

    #[test]
    fn long_strings_escape_the_same_at_every_position() {
        // The reference: PHP's rules applied character by character.
        fn reference(s: &str, slash: bool) -> String {
            let mut out = String::new();
            for ch in s.chars() {
                if slash && ch == '/' {
                    out.push_str("\\/");
                } else if !ch.is_ascii() {
                    let mut buf = [0u16; 2];
                    for u in ch.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{:04x}", u));
                    }
                } else {
                    out.push(ch);
                }
            }
            out
        }
        for special in ["/", "é", "😀", "€"] {
            for at in 0..40 {
                let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD".into();
                s.insert_str(at, special);
                for slash in [true, false] {
                    let mut out = Vec::new();
                    write_php_fragment(&mut out, &s, slash).unwrap();
                    assert_eq!(String::from_utf8(out).unwrap(), reference(&s, slash));
                }
            }
        }
    }

    #[test]
    fn integral_floats_keep_their_point() {
        assert_eq!(
            String::from_utf8(compact(&json!({"a": 5.0}))).unwrap(),
            r#"{"a":5.0}"#
        );
    }
}
