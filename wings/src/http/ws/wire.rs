//! RFC 6455 on the server side of the server websocket: the opening handshake's
//! checks and accept key, unmasked frames out, and a reader of client frames.
//!
//! No extension is negotiated (upstream's gorilla upgrader enables none, so no
//! permessage-deflate either) and server frames are never masked, so an outbound
//! text frame is the same bytes for every socket: a console batch is framed once by
//! the console reader and its bytes are written as they are to every socket.

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, Method, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes this side sends (RFC 6455 §7.4.1).
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused (400), with the texts the axum extractor used
/// before (the bodies of wings' `{"error": …}` answers), plus the key's format,
/// which RFC 6455 §4.2.1 requires and axum did not check.
pub fn check_upgrade(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Bytes, &'static str> {
    if version != Version::HTTP_11 {
        return Err("WebSocket upgrades need HTTP/1.1");
    }
    if method != Method::GET {
        return Err("Request method must be `GET`");
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err("Connection header did not include 'upgrade'");
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err("`Upgrade` header did not include 'websocket'");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err("`Sec-WebSocket-Key` header missing");
    };
    if !valid_key(key.as_bytes()) {
        return Err("`Sec-WebSocket-Key` header is not the base64 encoding of 16 bytes");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes().trim_ascii() != b"13")
    {
        return Err("`Sec-WebSocket-Version` header did not include '13'");
    }
    Ok(Bytes::copy_from_slice(key.as_bytes()))
}

/// Whether a comma-separated header (any of its lines) lists `token`, ignoring case.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Whether the key is base64 (standard alphabet, padded) of 16 bytes. The unused
/// bits of the last character may be set, as Go's decoder (gorilla's check, which
/// upstream's clients met) and axum's check allowed: `dGhlIHNhbXBsZSBub25jZR==`
/// passes like `dGhlIHNhbXBsZSBub25jZQ==`.
fn valid_key(key: &[u8]) -> bool {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    LENIENT
        .decode(key.trim_ascii())
        .is_ok_and(|k| k.len() == 16)
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut sha = sha1::Sha1::new();
    sha.update(key.trim_ascii());
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Appends the header of an unfragmented, unmasked frame of `len` payload bytes.
pub fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// One unfragmented, unmasked frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    push_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out.into()
}

/// A close frame; without a code its payload is empty.
pub fn close_frame(code: Option<u16>, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    if let Some(code) = code {
        payload.extend_from_slice(&code.to_be_bytes());
        // Control frames carry at most 125 bytes; the reasons sent here are short.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
    }
    frame(OP_CLOSE, &payload)
}

/// A whole message or control frame from the client.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Text(String),
    Binary(Vec<u8>),
    /// To be answered with a pong carrying the same payload.
    Ping(Bytes),
    Pong,
    /// The client's close code, if it sent one (to be echoed).
    Close(Option<u16>),
}

#[derive(Debug, PartialEq)]
pub enum ReadError {
    /// End of stream or a transport error: nothing more can be said to the peer.
    Gone,
    /// The peer broke the protocol: close with this code and reason.
    Refuse(u16, &'static str),
}

/// Reads client frames: masked frames only, no reserved bits (no extension was
/// negotiated), fragmented text/binary messages reassembled with control frames
/// allowed in between, control frames unfragmented and at most 125 bytes, messages
/// at most `max` bytes (refused from the frame header, before the payload is read),
/// text valid UTF-8.
pub struct Reader<R> {
    io: R,
    buf: BytesMut,
    max: usize,
    /// Opcode and bytes so far of a fragmented message.
    partial: Option<(u8, Vec<u8>)>,
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: usize,
    /// Bytes of the header itself.
    size: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R, max: usize) -> Reader<R> {
        Reader {
            io,
            buf: BytesMut::with_capacity(4096),
            max,
            partial: None,
        }
    }

    /// Reads at least one more byte into the buffer.
    async fn fill(&mut self, want: usize) -> Result<(), ReadError> {
        self.buf.reserve(want.clamp(4096, 64 * 1024));
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err(ReadError::Gone),
            Ok(_) => Ok(()),
        }
    }

    /// The next frame's header, checked, once all of it has arrived.
    fn header(&self) -> Result<Option<Header>, ReadError> {
        let b = &self.buf[..];
        let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Err(ReadError::Refuse(
                CLOSE_PROTOCOL_ERROR,
                "reserved bits set without an extension",
            ));
        }
        if b1 & 0x80 == 0 {
            return Err(ReadError::Refuse(
                CLOSE_PROTOCOL_ERROR,
                "client frames must be masked",
            ));
        }
        let control = opcode & 0x8 != 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(ReadError::Refuse(CLOSE_PROTOCOL_ERROR, "unknown opcode")),
        }
        let (len, at) = match b1 & 0x7F {
            126 => match b.get(2..4) {
                Some(l) => (u16::from_be_bytes([l[0], l[1]]) as u64, 4),
                None => return Ok(None),
            },
            127 => match b.get(2..10).and_then(|l| <[u8; 8]>::try_from(l).ok()) {
                Some(l) => (u64::from_be_bytes(l), 10),
                None => return Ok(None),
            },
            n => (n as u64, 2),
        };
        if control && !fin {
            return Err(ReadError::Refuse(
                CLOSE_PROTOCOL_ERROR,
                "fragmented control frame",
            ));
        }
        if control && len > 125 {
            return Err(ReadError::Refuse(
                CLOSE_PROTOCOL_ERROR,
                "control frame longer than 125 bytes",
            ));
        }
        if len >> 63 != 0 {
            return Err(ReadError::Refuse(
                CLOSE_PROTOCOL_ERROR,
                "frame length with the most significant bit set",
            ));
        }
        match (opcode, &self.partial) {
            (OP_CONTINUATION, None) => {
                return Err(ReadError::Refuse(
                    CLOSE_PROTOCOL_ERROR,
                    "continuation frame without a message to continue",
                ))
            }
            (OP_TEXT | OP_BINARY, Some(_)) => {
                return Err(ReadError::Refuse(
                    CLOSE_PROTOCOL_ERROR,
                    "new message inside a fragmented message",
                ))
            }
            _ => {}
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len()) as u64;
        if !control && len.saturating_add(so_far) > self.max as u64 {
            return Err(ReadError::Refuse(CLOSE_TOO_BIG, "message too big"));
        }
        let Some(mask) = b.get(at..at + 4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            // At most `max` (data) or 125 (control), both usize.
            len: len as usize,
            size: at + 4,
        }))
    }

    /// The next message or control frame.
    pub async fn next(&mut self) -> Result<Inbound, ReadError> {
        loop {
            let h = loop {
                match self.header()? {
                    Some(h) => break h,
                    None => self.fill(14).await?,
                }
            };
            while self.buf.len() < h.size + h.len {
                self.fill(h.size + h.len - self.buf.len()).await?;
            }
            self.buf.advance(h.size);
            let mut payload = self.buf.split_to(h.len);
            unmask(&mut payload, h.mask);
            match h.opcode {
                // A copy (at most 125 bytes): the pong may wait in the reply
                // queue, and a view would keep the whole read buffer alive.
                OP_PING => return Ok(Inbound::Ping(Bytes::copy_from_slice(&payload))),
                OP_PONG => return Ok(Inbound::Pong),
                OP_CLOSE => return close_payload(&payload),
                OP_CONTINUATION => {
                    let Some((_, so_far)) = self.partial.as_mut() else {
                        // Checked in `header`.
                        return Err(ReadError::Refuse(CLOSE_PROTOCOL_ERROR, "continuation"));
                    };
                    so_far.extend_from_slice(&payload);
                    if h.fin {
                        if let Some((opcode, message)) = self.partial.take() {
                            return message_of(opcode, message);
                        }
                    }
                }
                opcode if h.fin => return message_of(opcode, payload.to_vec()),
                opcode => self.partial = Some((opcode, payload.to_vec())),
            }
        }
    }

    /// Reads and drops whatever the peer still sends, until it closes (bytes left
    /// unread when a socket is closed make the kernel reset the connection, which
    /// can lose the close frame just sent).
    pub async fn discard_until_eof(&mut self) {
        loop {
            self.buf.clear();
            if self.fill(64 * 1024).await.is_err() {
                return;
            }
        }
    }
}

fn message_of(opcode: u8, message: Vec<u8>) -> Result<Inbound, ReadError> {
    if opcode == OP_TEXT {
        String::from_utf8(message).map(Inbound::Text).map_err(|_| {
            ReadError::Refuse(CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in a text message")
        })
    } else {
        Ok(Inbound::Binary(message))
    }
}

/// A close frame's payload: empty, or a valid code and a UTF-8 reason.
fn close_payload(p: &[u8]) -> Result<Inbound, ReadError> {
    match p {
        [] => Ok(Inbound::Close(None)),
        [_] => Err(ReadError::Refuse(
            CLOSE_PROTOCOL_ERROR,
            "close frame with a one-byte payload",
        )),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // RFC 6455 §7.4: codes a peer may send (1004-1006 and 1015 are reserved
            // for reporting, never for the wire).
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(ReadError::Refuse(
                    CLOSE_PROTOCOL_ERROR,
                    "invalid close code",
                ));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(ReadError::Refuse(
                    CLOSE_INVALID_PAYLOAD,
                    "invalid UTF-8 in the close reason",
                ));
            }
            Ok(Inbound::Close(Some(code)))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Inbound, ReadError>> {
        let mut r = Reader::new(&bytes[..], max);
        let mut out = Vec::new();
        loop {
            let x = r.next().await;
            let end = x.is_err();
            out.push(x);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        // Non-zero padding bits in the last character: still 16 bytes, as Go's
        // decoder (gorilla's check) and axum took it.
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(valid_key(b"AAAAAAAAAAAAAAAAAAAAA/=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ==="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!valid_key(b"c2hvcnQ="));
        assert!(!valid_key(b"not base64 at all!!!"));
    }

    #[test]
    fn outbound_lengths_use_the_shortest_form() {
        assert_eq!(&frame(OP_TEXT, b"hi")[..], b"\x81\x02hi");
        let f = frame(OP_TEXT, &[b'a'; 126]);
        assert_eq!(&f[..4], &[0x81, 126, 0, 126]);
        let f = frame(OP_BINARY, &vec![0; 70_000]);
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_000);
        assert_eq!(
            &close_frame(Some(1001), "server deleted")[..4],
            b"\x88\x10\x03\xe9"
        );
        assert_eq!(&close_frame(None, "")[..], b"\x88\x00");
        let long = "é".repeat(100);
        let f = close_frame(Some(1000), &long);
        assert!(f.len() <= 127 && std::str::from_utf8(&f[4..]).is_ok());
    }

    #[tokio::test]
    async fn fragments_are_reassembled_around_control_frames() {
        let mut bytes = masked(0x01, b"{\"event\":");
        bytes.extend(masked(0x89, b"ping!"));
        bytes.extend(masked(0x00, b"\"send "));
        bytes.extend(masked(0x80, b"stats\"}"));
        bytes.extend(masked(0x82, &[0xff, 0x00]));
        bytes.extend(masked(0x8A, b""));
        bytes.extend(masked(0x88, &[0x03, 0xe8, b'o', b'k']));
        let got = read_all(bytes, 1024).await;
        assert_eq!(
            got,
            vec![
                Ok(Inbound::Ping(Bytes::from_static(b"ping!"))),
                Ok(Inbound::Text("{\"event\":\"send stats\"}".into())),
                Ok(Inbound::Binary(vec![0xff, 0x00])),
                Ok(Inbound::Pong),
                Ok(Inbound::Close(Some(1000))),
                Err(ReadError::Gone),
            ]
        );
    }

    #[tokio::test]
    async fn a_pings_payload_does_not_pin_the_read_buffer() {
        // A ping read along with a large message: its payload, queued until the
        // pong goes out, is its own copy, not a view of the reader's buffer.
        let mut bytes = masked(0x81, &[b'x'; 100_000]);
        bytes.extend(masked(0x89, b"ping!"));
        let mut r = Reader::new(&bytes[..], 1 << 20);
        assert!(matches!(r.next().await, Ok(Inbound::Text(t)) if t.len() == 100_000));
        let Ok(Inbound::Ping(payload)) = r.next().await else {
            panic!("a ping")
        };
        assert_eq!(&payload[..], b"ping!");
        assert!(
            payload.is_unique(),
            "the payload shares an allocation with the reader"
        );
    }

    #[tokio::test]
    async fn protocol_violations_get_their_close_codes() {
        let proto = |r| Err(ReadError::Refuse(CLOSE_PROTOCOL_ERROR, r));
        let cases: Vec<(Vec<u8>, Result<Inbound, ReadError>)> = vec![
            (
                b"\x81\x02hi".to_vec(),
                proto("client frames must be masked"),
            ),
            (
                masked(0xC1, b"x"),
                proto("reserved bits set without an extension"),
            ),
            (masked(0x83, b"x"), proto("unknown opcode")),
            (masked(0x09, b"x"), proto("fragmented control frame")),
            (
                masked(0x89, &[0; 126]),
                proto("control frame longer than 125 bytes"),
            ),
            (
                masked(0x80, b"x"),
                proto("continuation frame without a message to continue"),
            ),
            (
                [masked(0x01, b"a"), masked(0x81, b"b")].concat(),
                proto("new message inside a fragmented message"),
            ),
            (
                masked(0x88, &[0x03]),
                proto("close frame with a one-byte payload"),
            ),
            (masked(0x88, &[0x03, 0xee]), proto("invalid close code")),
            (
                masked(0x88, &[0x03, 0xe8, 0xc3]),
                Err(ReadError::Refuse(
                    CLOSE_INVALID_PAYLOAD,
                    "invalid UTF-8 in the close reason",
                )),
            ),
            (
                masked(0x81, &[b'a', 0xc3, 0x28]),
                Err(ReadError::Refuse(
                    CLOSE_INVALID_PAYLOAD,
                    "invalid UTF-8 in a text message",
                )),
            ),
            (
                masked(0x81, &[b'a'; 1025]),
                Err(ReadError::Refuse(CLOSE_TOO_BIG, "message too big")),
            ),
            (
                [masked(0x01, &[b'a'; 1000]), masked(0x80, &[b'a'; 25])].concat(),
                Err(ReadError::Refuse(CLOSE_TOO_BIG, "message too big")),
            ),
            (
                // A 2^63 length is refused from the header, nothing allocated.
                [
                    &[0x82u8, 0xFF][..],
                    &[0x80, 0, 0, 0, 0, 0, 0, 0],
                    &[1, 2, 3, 4],
                ]
                .concat(),
                proto("frame length with the most significant bit set"),
            ),
        ];
        for (bytes, want) in cases {
            let got = read_all(bytes.clone(), 1024).await;
            assert_eq!(got.last(), Some(&want), "{bytes:02x?}");
        }
    }

    #[tokio::test]
    async fn a_too_big_message_is_refused_before_its_payload_arrives() {
        // Only the header of a 2 MiB frame is there: refused without waiting.
        let mut head = vec![0x82, 0xFF];
        head.extend_from_slice(&(2u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        let mut r = Reader::new(&head[..], 1 << 20);
        assert_eq!(
            r.next().await,
            Err(ReadError::Refuse(CLOSE_TOO_BIG, "message too big"))
        );
    }

    #[tokio::test]
    async fn truncated_input_is_gone_not_a_panic() {
        let whole = masked(0x81, &[b'x'; 300]);
        for cut in 0..whole.len() {
            let got = read_all(whole[..cut].to_vec(), 1024).await;
            assert_eq!(got, vec![Err(ReadError::Gone)], "cut at {cut}");
        }
    }

    #[test]
    fn upgrade_checks_answer_what_is_wrong() {
        let ok = || {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
            h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
            h.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
            h.insert(
                header::SEC_WEBSOCKET_KEY,
                "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
            );
            h
        };
        assert!(check_upgrade(&Method::GET, Version::HTTP_11, &ok()).is_ok());
        assert_eq!(
            check_upgrade(&Method::HEAD, Version::HTTP_11, &ok()),
            Err("Request method must be `GET`")
        );
        let without = |name| {
            let mut h = ok();
            h.remove(name);
            check_upgrade(&Method::GET, Version::HTTP_11, &h)
        };
        assert_eq!(
            without(header::CONNECTION),
            Err("Connection header did not include 'upgrade'")
        );
        assert_eq!(
            without(header::UPGRADE),
            Err("`Upgrade` header did not include 'websocket'")
        );
        assert_eq!(
            without(header::SEC_WEBSOCKET_KEY),
            Err("`Sec-WebSocket-Key` header missing")
        );
        assert_eq!(
            without(header::SEC_WEBSOCKET_VERSION),
            Err("`Sec-WebSocket-Version` header did not include '13'")
        );
        let mut h = ok();
        h.insert(header::SEC_WEBSOCKET_KEY, "c2hvcnQ=".parse().unwrap());
        assert_eq!(
            check_upgrade(&Method::GET, Version::HTTP_11, &h),
            Err("`Sec-WebSocket-Key` header is not the base64 encoding of 16 bytes")
        );
    }
}
