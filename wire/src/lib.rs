//! # shardfeed-wire
//!
//! The shardfeed service protocol ([docs/PROTOCOL.md](../../docs/PROTOCOL.md)) as pure code: no
//! sockets, no runtime, no threads, so the worker (`shardfeed serve`, on tokio) and the engine's
//! remote source (blocking threads) share one implementation, and every parser of bytes from the
//! network can be property-tested and fuzzed on its own.
//!
//! - [`frame`]: the 20-byte [`FrameHeader`](frame::FrameHeader), message [`Kind`](frame::Kind)s,
//!   and the bounds checked before a payload is read ([`check_length`](frame::check_length)).
//! - [`message`]: each kind's payload, with `encode_into` and `decode`; [`BatchMeta`]
//!   (message::BatchMeta) is checked against what the client asked for before any pixel is read.
//! - [`auth`]: the handshake's HMAC-SHA256 proofs over a shared [`Token`](auth::Token), and the
//!   dataset fingerprint.
//!
//! ```
//! use shardfeed_wire::frame::{check_length, FrameHeader, Kind, MAX_CONTROL_PAYLOAD};
//! use shardfeed_wire::message::{Decode, Encode, Request};
//!
//! let mut payload = Vec::new();
//! Request { epoch: 1, batch: 7 }.encode_into(&mut payload);
//! let header = FrameHeader::new(Kind::Request, payload.len() as u32, 42).encode();
//!
//! let got = FrameHeader::decode(&header)?;
//! check_length(&got, MAX_CONTROL_PAYLOAD)?;      // before reading the payload
//! assert_eq!(Request::decode(&payload)?, Request { epoch: 1, batch: 7 });
//! # Ok::<(), shardfeed_wire::WireError>(())
//! ```

pub mod auth;
pub mod frame;
pub mod message;

use frame::Kind;

/// What is wrong with bytes received from a peer. Each variant says enough to log the reason a
/// connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first four bytes of a frame are not "SFSP".
    #[error("not a shardfeed frame: magic {0:02x?}, expected \"SFSP\"")]
    Magic([u8; 4]),
    /// The frame's protocol version is not ours.
    #[error("protocol version {theirs} (this side speaks {ours})")]
    Version {
        /// Ours.
        ours: u16,
        /// The peer's.
        theirs: u16,
    },
    /// A message kind this version does not define.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// A frame or field longer than the reader accepts.
    #[error("{kind:?} frame of {length} bytes exceeds the limit of {max}")]
    TooLong {
        /// The frame's kind.
        kind: Kind,
        /// The claimed length.
        length: u32,
        /// The bound.
        max: u32,
    },
    /// A payload that ends before a field it must hold.
    #[error("{kind:?} payload truncated: {needed} bytes needed at offset {at} of {len}")]
    Truncated {
        /// The frame's kind.
        kind: Kind,
        /// Where the field starts.
        at: usize,
        /// Its length.
        needed: usize,
        /// The payload's length.
        len: usize,
    },
    /// Bytes left after the last field.
    #[error("{kind:?} payload has {extra} bytes after its last field")]
    Trailing {
        /// The frame's kind.
        kind: Kind,
        /// How many.
        extra: usize,
    },
    /// A string field that is not UTF-8.
    #[error("{kind:?} field {field} is not UTF-8")]
    Utf8 {
        /// The frame's kind.
        kind: Kind,
        /// The field.
        field: &'static str,
    },
    /// A field with a value the protocol does not define.
    #[error("{kind:?} field {field} has undefined value {value}")]
    Value {
        /// The frame's kind.
        kind: Kind,
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A batch answer that is not the batch that was asked for.
    #[error("batch answer's {field} is {got}, expected {want}")]
    BatchMismatch {
        /// The first field that differs.
        field: &'static str,
        /// What came.
        got: u64,
        /// What was expected.
        want: u64,
    },
}
