//! Content-based MIME detection for the stat object, covering the types upstream's
//! sniffer (gabriel-vasile/mimetype) reports for what game servers keep on disk.

/// The MIME type of a file from its first bytes (and, for text, its name).
pub fn sniff(head: &[u8], name: &str) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "application/gzip"),
        (b"\xfd7zXZ\x00", "application/x-xz"),
        (b"BZh", "application/x-bzip2"),
        (b"PK\x03\x04", "application/zip"),
        (b"PK\x05\x06", "application/zip"),
        (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
        (b"Rar!\x1a\x07", "application/x-rar-compressed"),
        (b"\x28\xb5\x2f\xfd", "application/zstd"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"\x7fELF", "application/x-elf"),
        (b"SQLite format 3\x00", "application/vnd.sqlite3"),
    ];
    for (magic, mime) in MAGIC {
        if head.starts_with(magic) {
            if *mime == "application/zip" && name.to_lowercase().ends_with(".jar") {
                return "application/jar";
            }
            return mime;
        }
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return "application/x-tar";
    }
    if head.is_empty() {
        return "text/plain";
    }
    if head.contains(&0) {
        return "application/octet-stream";
    }
    // A multi-byte character may be cut at the end of the sample.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return "application/octet-stream",
    };
    let t = text.trim_start();
    if (t.starts_with('{') || t.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(text).is_ok()
    {
        return "application/json";
    }
    if t.starts_with("<?xml") {
        return "text/xml; charset=utf-8";
    }
    if t.starts_with("#!")
        && (t.starts_with("#!/bin/sh")
            || t.starts_with("#!/bin/bash")
            || t.starts_with("#!/usr/bin/env"))
    {
        return "text/x-shellscript";
    }
    "text/plain; charset=utf-8"
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn common_types() {
        assert_eq!(
            sniff(b"motd=hi\n", "server.properties"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(sniff(b"\x1f\x8b\x08", "a.tar.gz"), "application/gzip");
        assert_eq!(sniff(b"PK\x03\x04", "server.jar"), "application/jar");
        assert_eq!(sniff(b"{\"a\":1}", "x.json"), "application/json");
        assert_eq!(sniff(b"", "empty"), "text/plain");
        assert_eq!(sniff(b"\x00\x01\x02", "bin"), "application/octet-stream");
    }
}
