//! The 20-byte frame header and the bounds a reader enforces before it allocates or reads a
//! payload (docs/PROTOCOL.md, "Transport").

use crate::WireError;

/// `"SFSP"`: the first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"SFSP";
/// The protocol major version this crate speaks.
pub const VERSION: u16 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 20;
/// The largest payload of a handshake or control frame.
pub const MAX_CONTROL_PAYLOAD: u32 = 64 * 1024;
/// The largest encoded failure list in a batch frame.
pub const MAX_FAILURE_BYTES: u32 = 64 * 1024;

/// A message kind (docs/PROTOCOL.md, "Message kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// client → worker: first frame of a connection.
    Hello,
    /// worker → client: the answer to `Hello`.
    Challenge,
    /// client → worker: the answer to `Challenge`.
    Proof,
    /// worker → client: the connection is open for requests.
    Welcome,
    /// worker → client: the handshake failed; the worker closes after it.
    Refused,
    /// client → worker: compute one batch.
    Request,
    /// worker → client: a batch.
    Batch,
    /// worker → client: a request that cannot be answered.
    Failed,
    /// client → worker: a request no longer wanted.
    Cancel,
    /// either: orderly close.
    Goodbye,
}

impl Kind {
    /// The kind's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Kind::Hello => 1,
            Kind::Challenge => 2,
            Kind::Proof => 3,
            Kind::Welcome => 4,
            Kind::Refused => 5,
            Kind::Request => 16,
            Kind::Batch => 17,
            Kind::Failed => 18,
            Kind::Cancel => 19,
            Kind::Goodbye => 20,
        }
    }

    /// The kind with number `code`, if any.
    pub fn from_code(code: u16) -> Option<Kind> {
        Some(match code {
            1 => Kind::Hello,
            2 => Kind::Challenge,
            3 => Kind::Proof,
            4 => Kind::Welcome,
            5 => Kind::Refused,
            16 => Kind::Request,
            17 => Kind::Batch,
            18 => Kind::Failed,
            19 => Kind::Cancel,
            20 => Kind::Goodbye,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: Kind,
    /// Payload bytes that follow the header.
    pub length: u32,
    /// The request a `Request`, `Batch`, `Failed` or `Cancel` frame belongs to; 0 otherwise.
    pub request: u64,
}

impl FrameHeader {
    /// A header for `kind` with a payload of `length` bytes.
    pub fn new(kind: Kind, length: u32, request: u64) -> Self {
        FrameHeader {
            kind,
            length,
            request,
        }
    }

    /// The header's 20 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.kind.code().to_le_bytes());
        out[8..12].copy_from_slice(&self.length.to_le_bytes());
        out[12..20].copy_from_slice(&self.request.to_le_bytes());
        out
    }

    /// Decodes a header, checking magic, version and kind in that order. The payload length is
    /// not bounded here: the caller knows its connection's state and calls [`check_length`].
    ///
    /// # Errors
    ///
    /// [`WireError::Magic`], [`WireError::Version`] or [`WireError::UnknownKind`].
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader, WireError> {
        if bytes[0..4] != MAGIC {
            return Err(WireError::Magic([bytes[0], bytes[1], bytes[2], bytes[3]]));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(WireError::Version {
                ours: VERSION,
                theirs: version,
            });
        }
        let code = u16::from_le_bytes([bytes[6], bytes[7]]);
        let kind = Kind::from_code(code).ok_or(WireError::UnknownKind(code))?;
        let length = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let mut request = [0u8; 8];
        request.copy_from_slice(&bytes[12..20]);
        Ok(FrameHeader {
            kind,
            length,
            request: u64::from_le_bytes(request),
        })
    }
}

/// Checks a frame's payload length against the most the reader accepts for it, before anything
/// is allocated or read.
///
/// # Errors
///
/// [`WireError::TooLong`] naming the kind, the claimed length and the bound.
pub fn check_length(header: &FrameHeader, max: u32) -> Result<(), WireError> {
    if header.length > max {
        return Err(WireError::TooLong {
            kind: header.kind,
            length: header.length,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_is_little_endian() {
        let h = FrameHeader::new(Kind::Batch, 0x0102_0304, 7);
        let bytes = h.encode();
        assert_eq!(&bytes[..4], b"SFSP");
        assert_eq!(&bytes[4..8], &[1, 0, 17, 0]);
        assert_eq!(&bytes[8..12], &[4, 3, 2, 1]);
        assert_eq!(FrameHeader::decode(&bytes), Ok(h));
    }

    #[test]
    fn bad_headers_are_named() {
        let mut bytes = FrameHeader::new(Kind::Hello, 5, 0).encode();
        bytes[0] = b'X';
        assert_eq!(FrameHeader::decode(&bytes), Err(WireError::Magic(*b"XFSP")));
        let mut bytes = FrameHeader::new(Kind::Hello, 5, 0).encode();
        bytes[4] = 2;
        assert_eq!(
            FrameHeader::decode(&bytes),
            Err(WireError::Version { ours: 1, theirs: 2 })
        );
        let mut bytes = FrameHeader::new(Kind::Hello, 5, 0).encode();
        bytes[6] = 99;
        assert_eq!(FrameHeader::decode(&bytes), Err(WireError::UnknownKind(99)));
    }

    #[test]
    fn every_kind_has_a_unique_code() {
        let kinds = [
            Kind::Hello,
            Kind::Challenge,
            Kind::Proof,
            Kind::Welcome,
            Kind::Refused,
            Kind::Request,
            Kind::Batch,
            Kind::Failed,
            Kind::Cancel,
            Kind::Goodbye,
        ];
        for k in kinds {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        let mut codes: Vec<u16> = kinds.iter().map(|k| k.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
    }

    #[test]
    fn lengths_over_the_bound_are_refused_before_reading() {
        let h = FrameHeader::new(Kind::Hello, MAX_CONTROL_PAYLOAD + 1, 0);
        assert_eq!(
            check_length(&h, MAX_CONTROL_PAYLOAD),
            Err(WireError::TooLong {
                kind: Kind::Hello,
                length: MAX_CONTROL_PAYLOAD + 1,
                max: MAX_CONTROL_PAYLOAD
            })
        );
        assert_eq!(
            check_length(&FrameHeader::new(Kind::Hello, 10, 0), 10),
            Ok(())
        );
    }
}
