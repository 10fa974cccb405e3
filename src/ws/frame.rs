//! RFC 6455 §5 base framing, server side: parsing client frame headers, unmasking payloads,
//! encoding server frames, and the Close frame body (§5.5.1, §7.4).
//!
//! This module owns the wire format of one frame and nothing above it: which frames may follow
//! which (fragmentation, UTF-8 of text messages) is `ws::message`'s job. Every function is pure;
//! `parse_header` looks at bytes and answers incomplete (`Ok(None)`), complete or error, failing
//! as early as the bytes present allow.
//!
//! ```text
//!       0                   1                   2                   3
//!       0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!      +-+-+-+-+-------+-+-------------+-------------------------------+
//!      |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//!      |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//!      |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//!      | |1|2|3|       |K|             |                               |
//!      +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//!      |     Extended payload length continued, if payload len == 127  |
//!      + - - - - - - - - - - - - - - - +-------------------------------+
//!      |                               |Masking-key, if MASK set to 1  |
//!      +-------------------------------+-------------------------------+
//!      | Masking-key (continued)       |          Payload Data         |
//!      +-------------------------------- - - - - - - - - - - - - - - - +
//!      :                     Payload Data continued ...                :
//!      + - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - +
//!      |                     Payload Data continued ...                |
//!      +---------------------------------------------------------------+
//! ```
//! (RFC 6455 §5.2)

use std::fmt;

/// Largest payload a control frame may carry (§5.5: "All control frames MUST have a payload
/// length of 125 bytes or less and MUST NOT be fragmented.").
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest possible frame header: 2 bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// Longest reason a Close frame can carry: the control payload minus the 2-byte status code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// A frame's opcode (§5.2); the reserved values 0x3–0x7 and 0xB–0xF have no variant.
///
/// ```text
/// *  %x0 denotes a continuation frame
/// *  %x1 denotes a text frame
/// *  %x2 denotes a binary frame
/// *  %x3-7 are reserved for further non-control frames
/// *  %x8 denotes a connection close
/// *  %x9 denotes a ping
/// *  %xA denotes a pong
/// *  %xB-F are reserved for further control frames
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// 0x0: a later fragment of a fragmented data message.
    Continuation = 0x0,
    /// 0x1: the first (or only) frame of a text message.
    Text = 0x1,
    /// 0x2: the first (or only) frame of a binary message.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for a 4-bit value, or `None` for a reserved one.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        match v {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// True for Close, Ping and Pong (§5.5: "Control frames are identified by opcodes where the
    /// most significant bit of the opcode is 1.").
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A parsed frame header; the payload starts `header_len` bytes into the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1–RSV3 as the low three bits; always 0 from `parse_header` (no extension negotiated).
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key; always `Some` from `parse_header`, which rejects unmasked client frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes (at most 2^63 - 1 by §5.2, at most `max_payload` by our limit).
    pub payload_len: u64,
    /// Bytes of the header: 2, plus 2 or 8 of extended length, plus 4 of masking key.
    pub header_len: usize,
}

/// Why a frame (or a Close body) cannot be accepted; each maps to the close code to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The peer broke RFC 6455; the text says which rule (close code 1002).
    Protocol(&'static str),
    /// The payload is larger than the configured limit (close code 1009).
    TooBig,
    /// A Close frame's reason is not UTF-8 (close code 1007).
    InvalidUtf8,
}

impl FrameError {
    /// The status code to put in our Close frame (§7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::TooBig => 1009,
            FrameError::InvalidUtf8 => 1007,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Protocol(rule) => write!(f, "protocol error: {rule}"),
            FrameError::TooBig => f.write_str("frame payload too big"),
            FrameError::InvalidUtf8 => f.write_str("close reason is not valid utf-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses a client frame header from the start of `buf`: `Ok(None)` until all of it is there,
/// an error as soon as the bytes present break a rule.
///
/// Rules enforced, in wire order, so a bad first byte fails before the second arrives:
/// - byte 0: RSV bits must be 0 (no extension is negotiated), the opcode must not be reserved,
///   a control frame must have FIN set;
/// - byte 1: MASK must be set ("The server MUST close the connection upon receiving a frame that
///   is not masked.", §5.1);
/// - length: the 64-bit form must have its most significant bit clear; a control frame's payload
///   must be ≤ 125; a data frame's payload over `max_payload` is `TooBig`, decided before any
///   payload (and before the masking key) arrives. `max_payload` does not apply to control
///   frames, whose limit is the fixed 125 of §5.5.
///
/// §5.2 says "the minimal number of bytes MUST be used to encode the length"; we are liberal in
/// what we accept and take non-minimal encodings (e.g. 126, 0, 5) at face value.
pub fn parse_header(buf: &[u8], max_payload: u64) -> Result<Option<FrameHeader>, FrameError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x07;
    // "RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an extension is negotiated that defines
    // meanings for non-zero values. If a nonzero value is received and none of the negotiated
    // extensions defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail
    // the WebSocket Connection_."
    if rsv != 0 {
        return Err(FrameError::Protocol("reserved bits set without an extension"));
    }
    // "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
    // Connection_."
    let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(FrameError::Protocol("reserved opcode"))?;
    if opcode.is_control() && !fin {
        return Err(FrameError::Protocol("fragmented control frame"));
    }

    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("unmasked client frame"));
    }

    // "Payload length: 7 bits, 7+16 bits, or 7+64 bits. The length of the "Payload data", in
    // bytes: if 0-125, that is the payload length. If 126, the following 2 bytes interpreted as
    // a 16-bit unsigned integer are the payload length. If 127, the following 8 bytes
    // interpreted as a 64-bit unsigned integer (the most significant bit MUST be 0) are the
    // payload length. Multibyte length quantities are expressed in network byte order."
    let (payload_len, ext_len) = match b1 & 0x7F {
        126 => {
            let Some(ext) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 2)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(ext);
            let n = u64::from_be_bytes(be);
            if n >> 63 != 0 {
                return Err(FrameError::Protocol("64-bit payload length has its top bit set"));
            }
            (n, 8)
        }
        n => (u64::from(n), 0),
    };
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD as u64 {
        return Err(FrameError::Protocol("control frame payload over 125 bytes"));
    }
    // The limit is for data; control frames have their own fixed one above, so a caller whose
    // budget is nearly spent (the end of a fragmented message) still accepts a Ping.
    if !opcode.is_control() && payload_len > max_payload {
        return Err(FrameError::TooBig);
    }

    let header_len = 2 + ext_len + 4;
    let Some(key) = buf.get(2 + ext_len..header_len) else {
        return Ok(None);
    };
    Ok(Some(FrameHeader { fin, rsv, opcode, mask: Some([key[0], key[1], key[2], key[3]]), payload_len, header_len }))
}

/// XORs `payload` with the masking key in place (§5.3); `offset` is the position of
/// `payload[0]` within the whole frame payload, so a payload may be unmasked piece by piece.
///
/// ```text
/// j                   = i MOD 4
/// transformed-octet-i = original-octet-i XOR masking-key-octet-j
/// ```
///
/// Works on eight bytes at a time with the key rotated to the offset; masking is its own
/// inverse, so this also masks.
pub fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let r = offset % 4;
    let key = [mask[r], mask[(r + 1) % 4], mask[(r + 2) % 4], mask[(r + 3) % 4]];
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8 from `payload[0]`, so key index 0 again.
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// Appends a server frame header (never masked: "A server MUST NOT mask any frames that it
/// sends to the client.", §5.1) using the minimal length encoding.
pub fn encode_header(fin: bool, opcode: Opcode, len: u64, out: &mut Vec<u8>) {
    debug_assert!(len >> 63 == 0, "payload length must fit in 63 bits");
    debug_assert!(!opcode.is_control() || (fin && len <= MAX_CONTROL_PAYLOAD as u64));
    out.push(if fin { 0x80 } else { 0x00 } | opcode.as_u8());
    if len <= 125 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A whole unfragmented (FIN set), unmasked server frame.
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + payload.len());
    encode_header(true, opcode, payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// True for a status code an endpoint may receive in a Close frame (§7.4.1, §7.4.2 and the IANA
/// "WebSocket Close Code Number Registry").
///
/// - 1000–1003 and 1007–1011 are defined by §7.4.1; 1012–1014 are registered with IANA.
/// - 1004 is reserved; 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close control
///   frame by an endpoint".
/// - "0-999: Status codes in the range 0-999 are not used."; 1016–2999 are unassigned.
/// - 3000–3999 are registered for libraries and applications, 4000–4999 are for private use.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reads a Close frame's (unmasked) payload: `None` for an empty body, else the status code and
/// the reason.
///
/// §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
/// integer (in network byte order) representing a status code with value /code/ defined in
/// Section 7.4. Following the 2-byte integer, the body MAY contain UTF-8-encoded data with value
/// /reason/". A 1-byte body or a code not valid to receive is `Protocol` (1002); a reason that
/// is not UTF-8 is `InvalidUtf8` (1007, §8.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// A whole server Close frame with `code` and `reason`; the reason is cut at a char boundary so
/// the payload stays within 125 bytes.
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    debug_assert!(is_valid_close_code(code), "close code {code} may not be sent");
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut out = Vec::with_capacity(4 + reason.len());
    encode_header(true, Opcode::Close, 2 + reason.len() as u64, &mut out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Turns an unmasked RFC example frame (7-bit length) into the masked frame a client sends.
    fn masked(unmasked: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![unmasked[0], unmasked[1] | 0x80];
        out.extend_from_slice(&mask);
        let mut payload = unmasked[2..].to_vec();
        unmask(&mut payload, mask, 0);
        out.extend_from_slice(&payload);
        out
    }

    fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        parse_header(buf, u64::MAX >> 1)
    }

    /// Parses every strict prefix of `buf` (must be incomplete), then the header itself.
    fn parse_all_splits(buf: &[u8], max: u64) -> Result<FrameHeader, FrameError> {
        let full = parse_header(buf, max)?.expect("complete header");
        for n in 0..full.header_len {
            assert_eq!(parse_header(&buf[..n], max), Ok(None), "prefix of {n} bytes");
        }
        Ok(full)
    }

    // --- RFC 6455 §5.7 examples ---

    #[test]
    fn rfc_single_frame_masked_hello() {
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = parse_all_splits(&frame, 125).unwrap();
        assert_eq!(
            h,
            FrameHeader { fin: true, rsv: 0, opcode: Opcode::Text, mask: Some(MASK), payload_len: 5, header_len: 6 }
        );
        let mut payload = frame[h.header_len..].to_vec();
        unmask(&mut payload, MASK, 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn rfc_single_frame_unmasked_hello() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(encode_frame(Opcode::Text, b"Hello"), frame);
        // A client must mask: the server rejects this very frame.
        assert_eq!(parse(&frame), Err(FrameError::Protocol("unmasked client frame")));
        // Masked, as a client would send it, it parses to the same message.
        let m = masked(&frame, MASK);
        assert_eq!(m, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn rfc_fragmented_text() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c]; // "Hel"
        let second = [0x80, 0x02, 0x6c, 0x6f]; // "lo"

        let mut out = Vec::new();
        encode_header(false, Opcode::Text, 3, &mut out);
        out.extend_from_slice(b"Hel");
        assert_eq!(out, first);
        out.clear();
        encode_header(true, Opcode::Continuation, 2, &mut out);
        out.extend_from_slice(b"lo");
        assert_eq!(out, second);

        let h = parse_all_splits(&masked(&first, MASK), 125).unwrap();
        assert!(!h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.payload_len, 3);
        let h = parse_all_splits(&masked(&second, MASK), 125).unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Continuation);
        assert_eq!(h.payload_len, 2);
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(encode_frame(Opcode::Ping, b"Hello"), ping);
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = parse_all_splits(&pong, 125).unwrap();
        assert_eq!(h.opcode, Opcode::Pong);
        assert!(h.opcode.is_control());
        let mut payload = pong[6..].to_vec();
        unmask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        let h = parse_all_splits(&masked(&ping, MASK), 125).unwrap();
        assert_eq!(h.opcode, Opcode::Ping);
    }

    #[test]
    fn rfc_256_byte_binary() {
        let payload = vec![0xAB; 256];
        let frame = encode_frame(Opcode::Binary, &payload);
        assert_eq!(&frame[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(frame.len(), 4 + 256);

        let mut client = vec![0x82, 0xFE, 0x01, 0x00];
        client.extend_from_slice(&MASK);
        let h = parse_all_splits(&client, 256).unwrap();
        assert_eq!(h.payload_len, 256);
        assert_eq!(h.header_len, 8);
        assert_eq!(h.opcode, Opcode::Binary);
        assert_eq!(parse_header(&client, 255), Err(FrameError::TooBig));
    }

    #[test]
    fn rfc_64k_binary() {
        let payload = vec![0xCD; 65536];
        let frame = encode_frame(Opcode::Binary, &payload);
        assert_eq!(&frame[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frame.len(), 10 + 65536);

        let mut client = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0];
        client.extend_from_slice(&MASK);
        let h = parse_all_splits(&client, 65536).unwrap();
        assert_eq!(h.payload_len, 65536);
        assert_eq!(h.header_len, 14);
    }

    // --- encoding ---

    #[test]
    fn encode_uses_minimal_lengths_at_the_edges() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x82, 0]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            ((1 << 63) - 1, &[0x82, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for &(len, want) in cases {
            let mut out = Vec::new();
            encode_header(true, Opcode::Binary, len, &mut out);
            assert_eq!(out, want, "len {len}");
        }
        let mut out = vec![0xEE];
        encode_header(false, Opcode::Continuation, 1, &mut out);
        assert_eq!(out, [0xEE, 0x00, 0x01], "appends, fin clear");
    }

    #[test]
    fn encoded_headers_round_trip_through_the_parser_once_masked() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            let mut out = Vec::new();
            encode_header(true, Opcode::Binary, len, &mut out);
            out[1] |= 0x80;
            out.extend_from_slice(&MASK);
            let h = parse_all_splits(&out, u64::MAX).unwrap();
            assert_eq!(h.payload_len, len);
            assert_eq!(h.header_len, out.len());
        }
    }

    // --- parse errors ---

    #[test]
    fn rsv_bits_are_rejected_from_the_first_byte() {
        for b0 in [0xC1u8, 0xA1, 0x91, 0xF1, 0x41] {
            assert_eq!(parse(&[b0]), Err(FrameError::Protocol("reserved bits set without an extension")), "{b0:#x}");
        }
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            for fin in [0x00, 0x80] {
                let e = parse(&[fin | op]).unwrap_err();
                assert_eq!(e, FrameError::Protocol("reserved opcode"), "{op:#x}");
                assert_eq!(e.close_code(), 1002);
            }
        }
        for op in [0x0, 0x1, 0x2, 0x8, 0x9, 0xA] {
            assert_eq!(Opcode::from_u8(op).unwrap().as_u8(), op);
        }
    }

    #[test]
    fn control_frames_must_not_be_fragmented() {
        for op in [0x8, 0x9, 0xA] {
            assert_eq!(parse(&[op]), Err(FrameError::Protocol("fragmented control frame")));
        }
    }

    #[test]
    fn unmasked_frames_are_rejected_at_the_second_byte() {
        assert_eq!(parse(&[0x82, 0x00]), Err(FrameError::Protocol("unmasked client frame")));
        assert_eq!(parse(&[0x82, 0x7F]), Err(FrameError::Protocol("unmasked client frame")));
    }

    #[test]
    fn control_payload_over_125_is_rejected() {
        // 7-bit 126 marker: 16-bit length follows.
        let e = parse(&[0x89, 0xFE, 0x00, 0x7E]).unwrap_err();
        assert_eq!(e, FrameError::Protocol("control frame payload over 125 bytes"));
        let e = parse(&[0x88, 0xFF, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e, FrameError::Protocol("control frame payload over 125 bytes"));
        // Exactly 125 is fine.
        let h = parse(&[0x8A, 0xFD, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(h.payload_len, 125);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let h = parse(&[0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.payload_len, h.header_len), (5, 8));
        let h = parse(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x05, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!((h.payload_len, h.header_len), (5, 14));
        // A control frame with a non-minimal but small length is fine too.
        let h = parse(&[0x89, 0xFE, 0x00, 0x05, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let e = parse(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e, FrameError::Protocol("64-bit payload length has its top bit set"));
        let e = parse_header(&[0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], 0);
        assert_eq!(e.unwrap_err().close_code(), 1002, "protocol error wins over too big");
    }

    #[test]
    fn too_big_is_decided_before_the_mask_and_payload_arrive() {
        // 7-bit, 16-bit and 64-bit lengths, each with no masking key yet.
        assert_eq!(parse_header(&[0x82, 0x8B], 10), Err(FrameError::TooBig));
        assert_eq!(parse_header(&[0x82, 0xFE, 0x01, 0x00], 255), Err(FrameError::TooBig));
        assert_eq!(parse_header(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0], 1 << 30), Err(FrameError::TooBig));
        assert_eq!(FrameError::TooBig.close_code(), 1009);
        // The limit is for data frames only: a 125-byte Ping passes a limit of 10.
        let h = parse_header(&[0x89, 0xFD, 1, 2, 3, 4], 10).unwrap().unwrap();
        assert_eq!(h.payload_len, 125);
        assert_eq!(parse_header(&[0x00, 0x8B], 10), Err(FrameError::TooBig));
        // Equal to the limit is fine.
        assert!(parse_header(&[0x82, 0x8A, 1, 2, 3, 4], 10).unwrap().is_some());
    }

    #[test]
    fn partial_headers_are_incomplete_at_every_split() {
        let mut long16 = vec![0x82, 0xFE, 0x12, 0x34];
        long16.extend_from_slice(&MASK);
        let mut long64 = vec![0x02, 0xFF, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        long64.extend_from_slice(&MASK);
        let short = [0x88, 0x82, 1, 2, 3, 4];
        let empty = [0x80, 0x80, 1, 2, 3, 4];
        for frame in [&long16[..], &long64[..], &short[..], &empty[..]] {
            let h = parse_all_splits(frame, u64::MAX).unwrap();
            assert_eq!(h.header_len, frame.len());
            // Trailing payload bytes do not change the header.
            let mut more = frame.to_vec();
            more.extend_from_slice(b"payload");
            assert_eq!(parse(&more).unwrap(), Some(h));
        }
    }

    #[test]
    fn frame_error_display_and_codes() {
        let cases = [
            (FrameError::Protocol("reserved opcode"), 1002, "protocol error: reserved opcode"),
            (FrameError::TooBig, 1009, "frame payload too big"),
            (FrameError::InvalidUtf8, 1007, "close reason is not valid utf-8"),
        ];
        for (e, code, text) in cases {
            assert_eq!(e.close_code(), code);
            assert_eq!(e.to_string(), text);
        }
    }

    // --- unmasking ---

    #[test]
    fn unmask_matches_the_bytewise_definition_at_every_offset_and_length() {
        let mask = [0x01, 0x23, 0x45, 0x67];
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for start in 0..8 {
            for len in 0..40 {
                let mut got = data[start..start + len].to_vec();
                unmask(&mut got, mask, start);
                let want: Vec<u8> = (start..start + len).map(|i| data[i] ^ mask[i % 4]).collect();
                assert_eq!(got, want, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn unmask_in_pieces_equals_unmask_at_once() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = data.clone();
        unmask(&mut whole, MASK, 0);
        for cut in [1, 2, 3, 5, 8, 13, 999] {
            let mut pieces = data.clone();
            let mut pos = 0;
            while pos < pieces.len() {
                let end = (pos + cut).min(pieces.len());
                unmask(&mut pieces[pos..end], MASK, pos);
                pos = end;
            }
            assert_eq!(pieces, whole, "cut {cut}");
        }
        // Involution.
        unmask(&mut whole, MASK, 0);
        assert_eq!(whole, data);
    }

    // --- Close bodies ---

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(parse_close_payload(&[0x03]), Err(FrameError::Protocol("close payload of one byte")));
        assert_eq!(parse_close_payload(&[0x03, 0xE8]), Ok(Some((1000, ""))));
        assert_eq!(parse_close_payload(b"\x03\xe9bye \xce\xba"), Ok(Some((1001, "bye κ"))));
        assert_eq!(parse_close_payload(b"\x03\xe8\xff"), Err(FrameError::InvalidUtf8));
        // Autobahn 7.5.1: reason with a surrogate.
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn close_codes_valid_to_receive() {
        // Autobahn 7.7.x (valid) and 7.9.x (invalid), plus the IANA-registered 1012–1014.
        let valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
        let invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
        for code in valid {
            assert!(is_valid_close_code(code), "{code}");
            let body = code.to_be_bytes();
            assert_eq!(parse_close_payload(&body), Ok(Some((code, ""))), "{code}");
        }
        for code in invalid {
            assert!(!is_valid_close_code(code), "{code}");
            let body = code.to_be_bytes();
            let e = parse_close_payload(&body).unwrap_err();
            assert_eq!(e, FrameError::Protocol("invalid close code"), "{code}");
            assert_eq!(e.close_code(), 1002);
        }
    }

    #[test]
    fn encode_close_frames() {
        assert_eq!(encode_close(1000, ""), [0x88, 0x02, 0x03, 0xE8]);
        assert_eq!(encode_close(1002, "bad"), [0x88, 0x05, 0x03, 0xEA, b'b', b'a', b'd']);

        // 200 ASCII bytes: cut to 123.
        let long = "x".repeat(200);
        let f = encode_close(1009, &long);
        assert_eq!(f[1] as usize, MAX_CONTROL_PAYLOAD);
        assert_eq!(f.len(), 2 + 125);

        // 'é' is 2 bytes: 62 of them are 124 bytes, one more than fits; cut at the char.
        let accents = "é".repeat(62);
        let f = encode_close(1000, &accents);
        assert_eq!(f[1], 2 + 122);
        assert_eq!(std::str::from_utf8(&f[4..]).unwrap(), "é".repeat(61));

        // 4-byte chars: 31 × 4 = 124 > 123 → 30 chars.
        let emoji = "😀".repeat(31);
        let f = encode_close(1000, &emoji);
        assert_eq!(f[1], 2 + 120);

        // Round trip through the receive side.
        let mut client = masked(&encode_close(4001, "going"), MASK);
        let h = parse(&client).unwrap().unwrap();
        assert_eq!(h.opcode, Opcode::Close);
        let payload = &mut client[h.header_len..];
        unmask(payload, MASK, 0);
        assert_eq!(parse_close_payload(payload), Ok(Some((4001, "going"))));
    }
}
