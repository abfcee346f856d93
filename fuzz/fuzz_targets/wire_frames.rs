//! Fuzzes every parser of the service protocol (docs/PROTOCOL.md) a peer's bytes reach: the frame
//! header and its bounds, each handshake and control message, a batch's meta checked against what
//! was asked, and the recipe a worker rebuilds its loader from. Any bytes: no panic, no
//! allocation past the payload, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_engine::loader::recipe;
use shardfeed_wire::frame::{check_length, FrameHeader, Kind, HEADER_LEN, MAX_CONTROL_PAYLOAD};
use shardfeed_wire::message::{
    BatchMeta, Challenge, Decode, Encode, ExpectedBatch, Hello, Proof, Reason, Request, Welcome,
    BATCH_META_LEN,
};

fn round_trip<M: Decode + Encode + PartialEq + std::fmt::Debug>(payload: &[u8]) {
    if let Ok(m) = M::decode(payload) {
        let mut again = Vec::new();
        m.encode_into(&mut again);
        assert_eq!(M::decode(&again).ok().as_ref(), Some(&m));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= HEADER_LEN {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&data[..HEADER_LEN]);
        if let Ok(header) = FrameHeader::decode(&h) {
            assert_eq!(header.encode(), h);
            let _ = check_length(&header, MAX_CONTROL_PAYLOAD);
        }
    }
    let (selector, payload) = data.split_first().map_or((0, data), |(s, p)| (*s, p));
    match selector % 8 {
        0 => round_trip::<Hello>(payload),
        1 => round_trip::<Challenge>(payload),
        2 => round_trip::<Proof>(payload),
        3 => round_trip::<Welcome>(payload),
        4 => round_trip::<Request>(payload),
        5 => {
            for kind in [Kind::Refused, Kind::Failed, Kind::Goodbye] {
                let _ = Reason::decode(kind, payload);
            }
        }
        6 => {
            if payload.len() >= BATCH_META_LEN + 4 {
                let mut meta = [0u8; BATCH_META_LEN];
                meta.copy_from_slice(&payload[..BATCH_META_LEN]);
                let length = u32::from_le_bytes([payload[40], payload[41], payload[42], payload[43]]);
                let expected = ExpectedBatch { epoch: 0, batch: 0, count: 256, side: 224 };
                if let Ok(m) = BatchMeta::decode_expected(&meta, &expected, length) {
                    assert_eq!(m.payload_len(), u64::from(length));
                    assert!(u64::from(length) <= expected.max_frame_len());
                }
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(payload) {
                if let Ok(config) = recipe::parse(text) {
                    let canonical = recipe::canonical(&config);
                    assert_eq!(recipe::parse(&canonical).map(|c| recipe::canonical(&c)).ok(), Some(canonical));
                }
            }
        }
    }
});
