//! Fuzzes the shard readers ([`ShardReader::from_bytes`] and [`ShardStream`]) on any bytes.
//!
//! The first input byte picks a mode: odd means "checksums repaired": before reading, the footer
//! CRC, the index CRC and the CRC of every record found by walking `record_len` fields are
//! recomputed, so the fuzzer gets past the checksums and explores the structural checks behind
//! them (lengths, offsets, tags, labels). Either way: no panic, and every record a reader
//! returns lies byte for byte where it was read from, with a stored CRC that matches its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_shards::format::{FOOTER_LEN, HEADER_LEN, MIN_RECORD_LEN, RECORD_FIXED_LEN};
use shardfeed_shards::{ImageFormat, Record, ShardReader, ShardStream, ShardWriter};

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Recomputes every checksum it can locate.
fn repair_checksums(b: &mut [u8]) {
    let len = b.len();
    if len < HEADER_LEN + 8 + FOOTER_LEN {
        return;
    }
    let footer = len - FOOTER_LEN;
    let index_offset = le_u64(b, footer);
    // Records, walked front to back by their record_len, up to the index (or the footer).
    let end = usize::try_from(index_offset).map_or(footer, |i| i.min(footer));
    let mut at = HEADER_LEN;
    while at + MIN_RECORD_LEN <= end {
        let record_len = le_u32(b, at + 4) as usize;
        if record_len < MIN_RECORD_LEN || at + record_len > end {
            break;
        }
        let crc = crc32c::crc32c(&b[at..at + record_len - 4]);
        b[at + record_len - 4..at + record_len].copy_from_slice(&crc.to_le_bytes());
        at += record_len;
    }
    if let Ok(i) = usize::try_from(index_offset) {
        if i <= footer {
            let crc = crc32c::crc32c(&b[i..footer]);
            b[footer + 16..footer + 20].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&b[footer..footer + 28]);
    b[footer + 28..footer + 32].copy_from_slice(&crc.to_le_bytes());
}

/// Asserts that `read` is the record encoded in `file` (as the writer would encode it) and that
/// the CRC stored after it matches. Two bytes may differ from the writer's encoding, as the
/// format allows: a format code this build does not know reads as `Unknown` (code 0), and the
/// reserved flags byte is ignored (new flags are a minor-version change).
fn assert_is_checked_record(read: &Record<'_>, file: &[u8], what: &str) {
    let mut w = ShardWriter::new(Vec::new()).expect("in memory");
    w.append(read).expect("a record read back fits");
    let (bytes, _) = w.finish().expect("in memory");
    let mut want = bytes[HEADER_LEN..HEADER_LEN + read.encoded_len() as usize].to_vec();
    assert!(
        file.len() >= want.len(),
        "{what}: shorter than its encoding"
    );
    let got = &file[..want.len()];
    if ImageFormat::from_code(got[20]) == read.format {
        want[20] = got[20];
    }
    want[21] = got[21];
    // Everything but the CRC, which differs when the two bytes above do; then the CRC itself.
    let end = want.len();
    assert_eq!(&want[..end - 4], &got[..end - 4], "{what}: the bytes read");
    assert_eq!(
        le_u32(got, end - 4),
        crc32c::crc32c(&got[..end - 4]),
        "{what}: CRC checked"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        repair_checksums(&mut bytes);
    }
    if let Ok(shard) = ShardReader::from_bytes("fuzz.sfs", bytes.clone()) {
        let file = shard.as_bytes();
        for i in 0..shard.len() {
            let _ = shard.meta(i);
            let _ = shard.label(i);
            let Ok(rec) = shard.record(i) else { continue };
            let e = shard.entry(i).expect("in range");
            let start = rec.path.as_ptr() as usize - file.as_ptr() as usize - RECORD_FIXED_LEN;
            assert_eq!(
                start as u64, e.offset,
                "record {i} read from where the index says"
            );
            assert_eq!(rec.encoded_len(), u64::from(e.len), "record {i}: length");
            assert_is_checked_record(&rec, &file[start..], &format!("record {i}"));
        }
    }
    let mut at = HEADER_LEN;
    for (i, rec) in ShardStream::new("fuzz.sfs", &bytes[..]).enumerate() {
        let Ok(rec) = rec else { break };
        let rec = rec.as_record();
        assert_is_checked_record(&rec, &bytes[at..], &format!("streamed record {i}"));
        at += rec.encoded_len() as usize;
    }
});
