//! One connection to a worker, on blocking sockets: [`connect`] (TCP, then the handshake of
//! docs/PROTOCOL.md), and [`read_answers`], the connection's reader thread, which reads each
//! `Batch` answer straight into the batch buffer it belongs to.
//!
//! Every length a worker sends is checked against what this side expects before anything is
//! read or allocated; any protocol error ends the connection (its batches are then asked of
//! another worker) and is reported with the worker's address.

use crate::loader::batch::BatchState;
use crate::loader::RecordFailure;
use crate::remote::schedule::ConnId;
use shardfeed_wire::auth::Token;
use shardfeed_wire::frame::{
    check_length, FrameHeader, Kind, HEADER_LEN, MAX_CONTROL_PAYLOAD, VERSION,
};
use shardfeed_wire::message::{
    AuthMode, BatchMeta, Bytes32, Challenge, Decode, Encode, ExpectedBatch, Hello, Proof, Reason,
    Welcome, BATCH_META_LEN,
};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A request outstanding on a connection: the buffer its answer goes into.
pub(crate) struct InFlight {
    pub state: Arc<BatchState>,
    pub expected: ExpectedBatch,
}

/// The requests outstanding on one connection, shared by the coordinator (which adds) and the
/// reader (which takes).
pub(crate) type InFlightMap = Arc<Mutex<HashMap<u64, InFlight>>>;

/// What the connection threads tell the coordinator.
pub(crate) enum Event {
    /// The handshake succeeded.
    Connected(Box<Connected>),
    /// Connecting or the handshake failed.
    ConnectFailed {
        conn: ConnId,
        addr: String,
        error: String,
    },
    /// `request` was answered; its buffer holds the batch.
    Answered { conn: ConnId, request: u64 },
    /// The worker answered `Failed`.
    Refused {
        conn: ConnId,
        request: u64,
        reason: String,
    },
    /// The connection ended; the reader thread is done.
    Lost { conn: ConnId, error: String },
}

/// An open connection.
pub(crate) struct Connected {
    pub conn: ConnId,
    pub addr: String,
    pub welcome: Welcome,
    /// The write half (the coordinator sends requests on it).
    pub writer: TcpStream,
    pub in_flight: InFlightMap,
}

/// What every connection's `Hello` carries.
#[derive(Clone)]
pub(crate) struct HelloParts {
    pub dataset: Bytes32,
    pub recipe: String,
    pub client: String,
    pub token: Option<Token>,
}

fn write_frame<M: Encode>(
    stream: &mut TcpStream,
    msg: &M,
    request: u64,
) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    msg.encode_into(&mut payload);
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&FrameHeader::new(M::KIND, payload.len() as u32, request).encode());
    frame.extend_from_slice(&payload);
    stream.write_all(&frame)?;
    Ok(payload)
}

/// Sends one `Request` frame.
pub(crate) fn send_request(
    stream: &mut TcpStream,
    request: u64,
    epoch: u64,
    batch: u64,
) -> std::io::Result<()> {
    write_frame(
        stream,
        &shardfeed_wire::message::Request { epoch, batch },
        request,
    )
    .map(|_| ())
}

fn read_header(stream: &mut TcpStream) -> Result<FrameHeader, String> {
    let mut h = [0u8; HEADER_LEN];
    stream.read_exact(&mut h).map_err(|e| e.to_string())?;
    FrameHeader::decode(&h).map_err(|e| e.to_string())
}

/// Reads a control frame's payload, after checking its length against the control bound.
fn read_control(stream: &mut TcpStream, header: &FrameHeader) -> Result<Vec<u8>, String> {
    check_length(header, MAX_CONTROL_PAYLOAD).map_err(|e| e.to_string())?;
    let mut payload = vec![0u8; header.length as usize];
    stream.read_exact(&mut payload).map_err(|e| e.to_string())?;
    Ok(payload)
}

/// Reads the next handshake frame: `want`, or `Refused` (an error with the worker's reason).
fn expect(stream: &mut TcpStream, want: Kind) -> Result<Vec<u8>, String> {
    let header = read_header(stream)?;
    let payload = read_control(stream, &header)?;
    match header.kind {
        k if k == want => Ok(payload),
        Kind::Refused => Err(match Reason::decode(Kind::Refused, &payload) {
            Ok(r) => format!("refused: {}", r.reason),
            Err(e) => format!("refused, with a malformed reason: {e}"),
        }),
        other => Err(format!("sent {other:?} where {want:?} was expected")),
    }
}

fn nonce() -> Result<Bytes32, String> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| format!("no random numbers for a nonce: {e}"))?;
    Ok(n)
}

/// Connects to `addr` and runs the handshake. Every error names what failed; the caller
/// prefixes the address.
pub(crate) fn connect(
    addr: &str,
    timeout: Duration,
    hello: &HelloParts,
) -> Result<(TcpStream, Welcome), String> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let setup = |s: &TcpStream| -> std::io::Result<()> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))
    };
    setup(&stream).map_err(|e| e.to_string())?;
    let result = handshake(&mut stream, hello);
    if result.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let welcome = result?;
    // Deadlines are the coordinator's from here on; writes (small requests) keep a bound.
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok((stream, welcome))
}

fn handshake(stream: &mut TcpStream, parts: &HelloParts) -> Result<Welcome, String> {
    let hello = Hello {
        min_version: VERSION,
        max_version: VERSION,
        client_nonce: nonce()?,
        dataset: parts.dataset,
        recipe: parts.recipe.clone(),
        client: parts.client.clone(),
    };
    let hello_payload = write_frame(stream, &hello, 0).map_err(|e| e.to_string())?;
    let challenge =
        Challenge::decode(&expect(stream, Kind::Challenge)?).map_err(|e| e.to_string())?;
    let mac = match (challenge.auth, &parts.token) {
        (AuthMode::None, _) => None,
        (AuthMode::HmacSha256, Some(t)) => {
            Some(t.client_proof(&hello_payload, &challenge.worker_nonce))
        }
        (AuthMode::HmacSha256, None) => {
            return Err(
                "the worker requires a shared secret (--token-file) and none was given".into(),
            )
        }
    };
    write_frame(stream, &Proof { mac }, 0).map_err(|e| e.to_string())?;
    let welcome = Welcome::decode(&expect(stream, Kind::Welcome)?).map_err(|e| e.to_string())?;
    if let (Some(token), Some(proof)) = (&parts.token, mac) {
        let ok = welcome.mac.is_some_and(|m| {
            token.verify_worker(&hello_payload, &challenge.worker_nonce, &proof, &m)
        });
        if !ok {
            return Err("the worker did not prove it holds the shared secret".into());
        }
    }
    if welcome.max_in_flight == 0 {
        return Err("the worker allows no request in flight".into());
    }
    Ok(welcome)
}

/// The reader thread of connection `conn`: reads answers until the connection ends, then sends
/// `Lost` (after which it touches no buffer).
pub(crate) fn read_answers(
    conn: ConnId,
    mut stream: TcpStream,
    in_flight: &InFlightMap,
    events: &crossbeam_channel::Sender<Event>,
) {
    let mut scratch = Vec::new();
    let error = loop {
        match read_one(&mut stream, in_flight, &mut scratch) {
            Ok(Some(Answer::Batch(request))) => {
                if events.send(Event::Answered { conn, request }).is_err() {
                    break "the loader stopped".to_owned();
                }
            }
            Ok(Some(Answer::Failed(request, reason))) => {
                if events
                    .send(Event::Refused {
                        conn,
                        request,
                        reason,
                    })
                    .is_err()
                {
                    break "the loader stopped".to_owned();
                }
            }
            Ok(None) => break "the worker closed the connection".to_owned(),
            Err(e) => break e,
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let _ = events.send(Event::Lost { conn, error });
}

enum Answer {
    Batch(u64),
    Failed(u64, String),
}

fn read_one(
    stream: &mut TcpStream,
    in_flight: &InFlightMap,
    scratch: &mut Vec<u8>,
) -> Result<Option<Answer>, String> {
    let mut h = [0u8; HEADER_LEN];
    match stream.read(&mut h[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    stream.read_exact(&mut h[1..]).map_err(|e| e.to_string())?;
    let header = FrameHeader::decode(&h).map_err(|e| e.to_string())?;
    match header.kind {
        Kind::Batch => {
            let entry = in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&header.request)
                .ok_or_else(|| {
                    format!(
                        "answered request {}, which is not outstanding",
                        header.request
                    )
                })?;
            read_batch(stream, &header, &entry, scratch)?;
            Ok(Some(Answer::Batch(header.request)))
        }
        Kind::Failed => {
            let payload = read_control(stream, &header)?;
            let reason = Reason::decode(Kind::Failed, &payload).map_err(|e| e.to_string())?;
            in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&header.request);
            Ok(Some(Answer::Failed(header.request, reason.reason)))
        }
        Kind::Goodbye => {
            let payload = read_control(stream, &header)?;
            let reason = Reason::decode(Kind::Goodbye, &payload).map_err(|e| e.to_string())?;
            Err(format!("the worker said goodbye: {}", reason.reason))
        }
        other => Err(format!("sent an unexpected {other:?} frame")),
    }
}

/// Reads a `Batch` payload into the request's buffer: checked against what was asked before a
/// byte of it is read, the pixels straight into the batch buffer.
fn read_batch(
    stream: &mut TcpStream,
    header: &FrameHeader,
    entry: &InFlight,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    let expected = &entry.expected;
    if u64::from(header.length) > expected.max_frame_len() {
        return Err(format!(
            "Batch frame of {} bytes for batch {} of epoch {}, at most {} expected",
            header.length,
            expected.batch,
            expected.epoch,
            expected.max_frame_len()
        ));
    }
    let mut meta = [0u8; BATCH_META_LEN];
    stream.read_exact(&mut meta).map_err(|e| e.to_string())?;
    let meta =
        BatchMeta::decode_expected(&meta, expected, header.length).map_err(|e| e.to_string())?;
    let count = meta.count as usize;
    let mut buf = entry.state.lock();
    scratch.resize(12 * count, 0);
    stream.read_exact(scratch).map_err(|e| e.to_string())?;
    let (labels, records) = scratch.split_at(4 * count);
    buf.labels.clear();
    buf.labels.extend(
        labels
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    buf.records.clear();
    buf.records.extend(records.chunks_exact(8).map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    }));
    scratch.resize(meta.failure_bytes as usize, 0);
    stream.read_exact(scratch).map_err(|e| e.to_string())?;
    buf.failures = decode_failures(scratch, meta.failures)?;
    let pixels = meta.pixels_len() as usize;
    if buf.images.len() < pixels {
        return Err(format!(
            "internal: batch buffer of {} bytes for {pixels}",
            buf.images.len()
        ));
    }
    stream
        .read_exact(&mut buf.images[..pixels])
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The failure list of a `Batch` answer: JSON (docs/PROTOCOL.md, "Batch payload").
pub fn encode_failures(failures: &[RecordFailure]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = failures
        .iter()
        .map(|f| {
            serde_json::json!({
                "epoch": f.epoch,
                "position": f.position,
                "record": f.record,
                "shard": f.shard.to_string_lossy(),
                "shard_record": f.shard_record,
                "source_path": f.source_path,
                "reason": f.reason,
                "replaced_by": f.replaced_by,
            })
        })
        .collect();
    let mut bytes = serde_json::Value::Array(list).to_string().into_bytes();
    // Bounded by the protocol: keep whole entries only, dropping the last ones.
    let max = shardfeed_wire::frame::MAX_FAILURE_BYTES as usize;
    if bytes.len() > max {
        let mut kept = failures.to_vec();
        while !kept.is_empty() && bytes.len() > max {
            kept.truncate(kept.len() / 2);
            bytes = encode_failures(&kept);
        }
    }
    bytes
}

fn decode_failures(bytes: &[u8], count: u32) -> Result<Vec<RecordFailure>, String> {
    if bytes.is_empty() && count == 0 {
        return Ok(Vec::new());
    }
    let bad = |why: &str| format!("malformed failure list in a Batch answer: {why}");
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
    let list = value.as_array().ok_or_else(|| bad("not a list"))?;
    list.iter()
        .map(|v| {
            let u = |k: &str| {
                v.get(k)
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| bad(k))
            };
            let s = |k: &str| {
                v.get(k)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            Ok(RecordFailure {
                epoch: u("epoch")?,
                position: u("position")?,
                record: u("record")?,
                shard: s("shard").unwrap_or_default().into(),
                shard_record: u("shard_record")?,
                source_path: s("source_path"),
                reason: s("reason").unwrap_or_default(),
                replaced_by: v.get("replaced_by").and_then(serde_json::Value::as_u64),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lists_round_trip_and_stay_bounded() {
        let f = RecordFailure {
            epoch: 1,
            position: 2,
            record: 3,
            shard: "/data/shard-00001.sfs".into(),
            shard_record: 4,
            source_path: Some("n01/x.JPEG".into()),
            reason: "bad huffman code".into(),
            replaced_by: Some(5),
        };
        let bytes = encode_failures(std::slice::from_ref(&f));
        assert_eq!(decode_failures(&bytes, 1), Ok(vec![f.clone()]));
        let many = vec![f; 2000];
        let bytes = encode_failures(&many);
        assert!(bytes.len() <= shardfeed_wire::frame::MAX_FAILURE_BYTES as usize);
        assert!(decode_failures(&bytes, 0).is_ok_and(|v| !v.is_empty()));
        assert!(decode_failures(b"{", 1).is_err());
    }
}
