//! The payloads of each message kind (docs/PROTOCOL.md, "Handshake" and "Requests and batches"):
//! plain data with `encode` into a buffer and `decode` from a payload that has already passed
//! its frame's length bound. Decoding checks every length against the bytes actually present,
//! so it never allocates more than the payload holds and never panics.

use crate::frame::{Kind, MAX_FAILURE_BYTES};
use crate::WireError;

/// A 32-byte value: a nonce, a SHA-256 digest or an HMAC-SHA256 tag.
pub type Bytes32 = [u8; 32];

/// `Hello`: the client's first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The lowest protocol version the client speaks.
    pub min_version: u16,
    /// The highest protocol version the client speaks.
    pub max_version: u16,
    /// Fresh random bytes for this connection.
    pub client_nonce: Bytes32,
    /// SHA-256 of the `manifest.json` bytes of the split the client reads.
    pub dataset: Bytes32,
    /// The canonical recipe (canonical JSON).
    pub recipe: String,
    /// A name for logs and metrics.
    pub client: String,
}

/// How a worker wants the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No secret (a loopback listener without `--token-file`).
    None,
    /// HMAC-SHA256 challenge-response over a shared secret.
    HmacSha256,
}

/// `Challenge`: the worker's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Fresh random bytes for this connection.
    pub worker_nonce: Bytes32,
    /// Whether a proof is required.
    pub auth: AuthMode,
}

/// `Proof`: the client's answer to `Challenge`; `None` when the worker asked for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// HMAC-SHA256(token, "shardfeed client v1" ‖ Hello payload ‖ worker nonce).
    pub mac: Option<Bytes32>,
}

/// `Welcome`: the connection is open for requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The worker's name.
    pub worker: String,
    /// Decode cores the worker has.
    pub cores: u32,
    /// Requests this connection may have outstanding.
    pub max_in_flight: u32,
    /// The worker's own proof, when the handshake was authenticated.
    pub mac: Option<Bytes32>,
}

/// `Request`: compute batch `batch` of `epoch` with the connection's recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The epoch.
    pub epoch: u64,
    /// The batch within the epoch, for the client's rank.
    pub batch: u64,
}

/// The fixed 40-byte start of a `Batch` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// The epoch.
    pub epoch: u64,
    /// The batch within the epoch.
    pub batch: u64,
    /// Images in the batch.
    pub count: u32,
    /// Each image is `side x side x 3` bytes.
    pub side: u32,
    /// Trailing images that are padding duplicates.
    pub padding: u32,
    /// Failed records the batch replaced.
    pub failures: u32,
    /// Bytes of the encoded failure list.
    pub failure_bytes: u32,
}

/// Bytes of a [`BatchMeta`].
pub const BATCH_META_LEN: usize = 40;

impl BatchMeta {
    /// Bytes of the labels (u32) and records (u64) that follow the meta.
    pub fn ids_len(&self) -> u64 {
        12 * u64::from(self.count)
    }

    /// Bytes of the pixels at the end of the payload.
    pub fn pixels_len(&self) -> u64 {
        u64::from(self.count) * u64::from(self.side) * u64::from(self.side) * 3
    }

    /// The whole payload's length.
    pub fn payload_len(&self) -> u64 {
        BATCH_META_LEN as u64 + self.ids_len() + u64::from(self.failure_bytes) + self.pixels_len()
    }

    /// Encodes the meta.
    pub fn encode(&self) -> [u8; BATCH_META_LEN] {
        let mut out = [0u8; BATCH_META_LEN];
        out[0..8].copy_from_slice(&self.epoch.to_le_bytes());
        out[8..16].copy_from_slice(&self.batch.to_le_bytes());
        let words = [
            self.count,
            self.side,
            self.padding,
            self.failures,
            self.failure_bytes,
            0,
        ];
        for (i, w) in words.iter().enumerate() {
            out[16 + 4 * i..20 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes the meta and checks it against what the client asked for: the epoch and batch of
    /// its request, the `count` and `side` it computed for that batch, and the frame's length.
    ///
    /// # Errors
    ///
    /// [`WireError::BatchMismatch`] naming the first field that differs, or
    /// [`WireError::TooLong`] for a failure list over its bound.
    pub fn decode_expected(
        bytes: &[u8; BATCH_META_LEN],
        expected: &ExpectedBatch,
        frame_length: u32,
    ) -> Result<BatchMeta, WireError> {
        let mut r = Reader::new(Kind::Batch, bytes);
        let meta = BatchMeta {
            epoch: r.u64()?,
            batch: r.u64()?,
            count: r.u32()?,
            side: r.u32()?,
            padding: r.u32()?,
            failures: r.u32()?,
            failure_bytes: r.u32()?,
        };
        let mismatch = |field: &'static str, got: u64, want: u64| {
            Err(WireError::BatchMismatch { field, got, want })
        };
        if meta.epoch != expected.epoch {
            return mismatch("epoch", meta.epoch, expected.epoch);
        }
        if meta.batch != expected.batch {
            return mismatch("batch", meta.batch, expected.batch);
        }
        if meta.count != expected.count {
            return mismatch("count", meta.count.into(), expected.count.into());
        }
        if meta.side != expected.side {
            return mismatch("side", meta.side.into(), expected.side.into());
        }
        if meta.padding > meta.count {
            return mismatch("padding", meta.padding.into(), meta.count.into());
        }
        if meta.failure_bytes > MAX_FAILURE_BYTES {
            return Err(WireError::TooLong {
                kind: Kind::Batch,
                length: meta.failure_bytes,
                max: MAX_FAILURE_BYTES,
            });
        }
        if meta.payload_len() != u64::from(frame_length) {
            return mismatch("length", frame_length.into(), meta.payload_len());
        }
        Ok(meta)
    }
}

/// What a client knows of a batch before the answer arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedBatch {
    /// The epoch asked for.
    pub epoch: u64,
    /// The batch asked for.
    pub batch: u64,
    /// Images the batch holds (from the sampler).
    pub count: u32,
    /// The output side of the epoch's transform.
    pub side: u32,
}

impl ExpectedBatch {
    /// The largest frame length a batch answer may have: the bound a client checks before it
    /// reads a `Batch` payload.
    pub fn max_frame_len(&self) -> u64 {
        let meta = BatchMeta {
            epoch: self.epoch,
            batch: self.batch,
            count: self.count,
            side: self.side,
            padding: 0,
            failures: 0,
            failure_bytes: MAX_FAILURE_BYTES,
        };
        meta.payload_len()
    }
}

/// Appends the encoding of a handshake or control message to `out`.
pub trait Encode {
    /// Its kind.
    const KIND: Kind;
    /// Appends the payload.
    fn encode_into(&self, out: &mut Vec<u8>);
}

/// Decodes a handshake or control message from a whole payload.
pub trait Decode: Sized {
    /// Decodes `payload`, which must hold exactly one message.
    ///
    /// # Errors
    ///
    /// [`WireError`] naming the kind and what was wrong.
    fn decode(payload: &[u8]) -> Result<Self, WireError>;
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings longer than u16 are cut at a char boundary: names and reasons are for people.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_mac(out: &mut Vec<u8>, mac: &Option<Bytes32>) {
    match mac {
        Some(m) => {
            out.push(1);
            out.extend_from_slice(m);
        }
        None => out.push(0),
    }
}

/// A bounds-checked cursor over one payload.
struct Reader<'a> {
    kind: Kind,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(kind: Kind, bytes: &'a [u8]) -> Self {
        Reader { kind, bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(WireError::Truncated {
                kind: self.kind,
                at: self.at,
                needed: n,
                len: self.bytes.len(),
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }

    fn bytes32(&mut self) -> Result<Bytes32, WireError> {
        let mut w = [0u8; 32];
        w.copy_from_slice(self.take(32)?);
        Ok(w)
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Utf8 {
            kind: self.kind,
            field,
        })
    }

    fn mac(&mut self) -> Result<Option<Bytes32>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes32()?)),
            flag => Err(WireError::Value {
                kind: self.kind,
                field: "mac flag",
                value: flag.into(),
            }),
        }
    }

    fn finish<T>(self, value: T) -> Result<T, WireError> {
        if self.at != self.bytes.len() {
            return Err(WireError::Trailing {
                kind: self.kind,
                extra: self.bytes.len() - self.at,
            });
        }
        Ok(value)
    }
}

impl Encode for Hello {
    const KIND: Kind = Kind::Hello;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.min_version.to_le_bytes());
        out.extend_from_slice(&self.max_version.to_le_bytes());
        out.extend_from_slice(&self.client_nonce);
        out.extend_from_slice(&self.dataset);
        put_str(out, &self.recipe);
        put_str(out, &self.client);
    }
}

impl Decode for Hello {
    fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(Kind::Hello, payload);
        let hello = Hello {
            min_version: r.u16()?,
            max_version: r.u16()?,
            client_nonce: r.bytes32()?,
            dataset: r.bytes32()?,
            recipe: r.string("recipe")?,
            client: r.string("client")?,
        };
        r.finish(hello)
    }
}

impl Encode for Challenge {
    const KIND: Kind = Kind::Challenge;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.worker_nonce);
        out.push(match self.auth {
            AuthMode::None => 0,
            AuthMode::HmacSha256 => 1,
        });
    }
}

impl Decode for Challenge {
    fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(Kind::Challenge, payload);
        let worker_nonce = r.bytes32()?;
        let auth = match r.u8()? {
            0 => AuthMode::None,
            1 => AuthMode::HmacSha256,
            v => {
                return Err(WireError::Value {
                    kind: Kind::Challenge,
                    field: "auth",
                    value: v.into(),
                })
            }
        };
        r.finish(Challenge { worker_nonce, auth })
    }
}

impl Encode for Proof {
    const KIND: Kind = Kind::Proof;
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_mac(out, &self.mac);
    }
}

impl Decode for Proof {
    fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(Kind::Proof, payload);
        let mac = r.mac()?;
        r.finish(Proof { mac })
    }
}

impl Encode for Welcome {
    const KIND: Kind = Kind::Welcome;
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_str(out, &self.worker);
        out.extend_from_slice(&self.cores.to_le_bytes());
        out.extend_from_slice(&self.max_in_flight.to_le_bytes());
        put_mac(out, &self.mac);
    }
}

impl Decode for Welcome {
    fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(Kind::Welcome, payload);
        let welcome = Welcome {
            worker: r.string("worker")?,
            cores: r.u32()?,
            max_in_flight: r.u32()?,
            mac: r.mac()?,
        };
        r.finish(welcome)
    }
}

impl Encode for Request {
    const KIND: Kind = Kind::Request;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.batch.to_le_bytes());
    }
}

impl Decode for Request {
    fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(Kind::Request, payload);
        let request = Request {
            epoch: r.u64()?,
            batch: r.u64()?,
        };
        r.finish(request)
    }
}

/// `Refused`, `Failed` and `Goodbye`: a reason for a person to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Which of the three.
    pub kind: Kind,
    /// The text.
    pub reason: String,
}

impl Reason {
    /// Encodes the reason's payload.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_str(out, &self.reason);
    }

    /// Decodes a `Refused`, `Failed` or `Goodbye` payload.
    ///
    /// # Errors
    ///
    /// [`WireError`] naming `kind` and what was wrong.
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(kind, payload);
        let reason = r.string("reason")?;
        r.finish(Reason { kind, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello {
            min_version: 1,
            max_version: 1,
            client_nonce: [7; 32],
            dataset: [9; 32],
            recipe: r#"{"batch_size":256}"#.into(),
            client: "host:1/rank0".into(),
        }
    }

    fn encoded<T: Encode>(m: &T) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode_into(&mut out);
        out
    }

    #[test]
    fn messages_round_trip() {
        let h = hello();
        assert_eq!(Hello::decode(&encoded(&h)), Ok(h));
        let c = Challenge {
            worker_nonce: [3; 32],
            auth: AuthMode::HmacSha256,
        };
        assert_eq!(Challenge::decode(&encoded(&c)), Ok(c));
        for mac in [None, Some([5; 32])] {
            let p = Proof { mac };
            assert_eq!(Proof::decode(&encoded(&p)), Ok(p.clone()));
            let w = Welcome {
                worker: "w1".into(),
                cores: 16,
                max_in_flight: 4,
                mac,
            };
            assert_eq!(Welcome::decode(&encoded(&w)), Ok(w));
        }
        let q = Request { epoch: 3, batch: 9 };
        assert_eq!(Request::decode(&encoded(&q)), Ok(q));
        let r = Reason {
            kind: Kind::Refused,
            reason: "wrong dataset ✗".into(),
        };
        let mut out = Vec::new();
        r.encode_into(&mut out);
        assert_eq!(Reason::decode(Kind::Refused, &out), Ok(r));
    }

    #[test]
    fn truncated_and_trailing_payloads_are_named() {
        let bytes = encoded(&hello());
        assert!(matches!(
            Hello::decode(&bytes[..bytes.len() - 1]),
            Err(WireError::Truncated {
                kind: Kind::Hello,
                ..
            })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Hello::decode(&long),
            Err(WireError::Trailing {
                kind: Kind::Hello,
                extra: 1
            })
        );
        // A string that claims more bytes than the payload holds is refused, not allocated.
        let mut lying = encoded(&Request { epoch: 1, batch: 2 });
        lying.truncate(0);
        lying.extend_from_slice(&0xFFFFu16.to_le_bytes());
        assert!(matches!(
            Reason::decode(Kind::Failed, &lying),
            Err(WireError::Truncated { needed: 65535, .. })
        ));
    }

    #[test]
    fn batch_meta_is_checked_against_the_request() {
        let expected = ExpectedBatch {
            epoch: 2,
            batch: 5,
            count: 4,
            side: 8,
        };
        let meta = BatchMeta {
            epoch: 2,
            batch: 5,
            count: 4,
            side: 8,
            padding: 1,
            failures: 0,
            failure_bytes: 0,
        };
        let len = meta.payload_len() as u32;
        assert_eq!(len, 40 + 48 + 4 * 8 * 8 * 3);
        assert_eq!(
            BatchMeta::decode_expected(&meta.encode(), &expected, len),
            Ok(meta)
        );
        let wrong = BatchMeta { batch: 6, ..meta };
        assert_eq!(
            BatchMeta::decode_expected(&wrong.encode(), &expected, len),
            Err(WireError::BatchMismatch {
                field: "batch",
                got: 6,
                want: 5
            })
        );
        assert_eq!(
            BatchMeta::decode_expected(&meta.encode(), &expected, len + 1),
            Err(WireError::BatchMismatch {
                field: "length",
                got: u64::from(len) + 1,
                want: u64::from(len)
            })
        );
        let huge = BatchMeta {
            failure_bytes: MAX_FAILURE_BYTES + 1,
            ..meta
        };
        assert!(matches!(
            BatchMeta::decode_expected(&huge.encode(), &expected, len),
            Err(WireError::TooLong { .. })
        ));
        assert!(u64::from(len) <= expected.max_frame_len());
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Hello::decode(&bytes);
            let _ = Challenge::decode(&bytes);
            let _ = Proof::decode(&bytes);
            let _ = Welcome::decode(&bytes);
            let _ = Request::decode(&bytes);
            let _ = Reason::decode(Kind::Goodbye, &bytes);
            let mut meta = [0u8; BATCH_META_LEN];
            let n = bytes.len().min(BATCH_META_LEN);
            meta[..n].copy_from_slice(&bytes[..n]);
            let expected = ExpectedBatch { epoch: 0, batch: 0, count: 1, side: 1 };
            let _ = BatchMeta::decode_expected(&meta, &expected, u32::MAX);
        }

        #[test]
        fn hello_round_trips(recipe in ".{0,200}", client in ".{0,50}", a in any::<[u8; 32]>(), lo in any::<u16>(), hi in any::<u16>()) {
            let h = Hello { min_version: lo, max_version: hi, client_nonce: a, dataset: a, recipe, client };
            prop_assert_eq!(Hello::decode(&encoded(&h)), Ok(h));
        }
    }
}
