//! The shard file: round trips, random access against streaming, and every kind of damage.

mod common;

use common::{sample_records, shard_bytes};
use proptest::prelude::*;
use shardfeed_shards::format::{FOOTER_LEN, HEADER_LEN};
use shardfeed_shards::{OwnedRecord, ShardError, ShardReader, ShardStream};

#[test]
fn every_field_round_trips_through_random_access_and_streaming() {
    let records = sample_records(40);
    let bytes = shard_bytes(&records);
    let shard = ShardReader::from_bytes("t.sfs", bytes.clone()).unwrap();
    assert_eq!(shard.len(), 40);
    for (i, want) in records.iter().enumerate() {
        let got = shard.record(i as u64).unwrap();
        assert_eq!(&got.to_owned_record(), want, "record {i}");
        assert_eq!(shard.label(i as u64).unwrap(), want.label);
    }
    let streamed: Vec<OwnedRecord> = ShardStream::new("t.sfs", &bytes[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, records);
}

#[test]
fn random_access_in_any_order_equals_the_sequential_read() {
    let records = sample_records(64);
    let shard = ShardReader::from_bytes("t.sfs", shard_bytes(&records)).unwrap();
    let sequential: Vec<OwnedRecord> = shard
        .records()
        .map(|r| r.unwrap().to_owned_record())
        .collect();
    let mut order: Vec<u64> = (0..64).collect();
    order.reverse();
    order.rotate_left(17);
    for i in order {
        assert_eq!(
            shard.record(i).unwrap().to_owned_record(),
            sequential[i as usize]
        );
    }
}

#[test]
fn an_empty_shard_is_valid() {
    let bytes = shard_bytes(&[]);
    assert_eq!(bytes.len(), HEADER_LEN + 8 + FOOTER_LEN);
    let shard = ShardReader::from_bytes("e.sfs", bytes.clone()).unwrap();
    assert!(shard.is_empty());
    assert!(matches!(
        shard.record(0),
        Err(ShardError::OutOfRange { .. })
    ));
    assert_eq!(ShardStream::new("e.sfs", &bytes[..]).count(), 0);
}

#[test]
fn a_truncated_shard_is_refused_naming_the_file_at_every_cut() {
    let bytes = shard_bytes(&sample_records(5));
    for cut in 0..bytes.len() {
        let err = ShardReader::from_bytes("cut.sfs", bytes[..cut].to_vec()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cut.sfs: "), "{msg}");
        match err {
            ShardError::Truncated { .. } => assert!(cut == 0 || cut >= 8, "cut {cut}: {msg}"),
            ShardError::BadMagic { .. } => assert!(0 < cut && cut < 8, "cut {cut}: {msg}"),
            other => panic!("cut {cut}: unexpected {other:?}"),
        }
        // The stream reader refuses it too, naming the file, never yielding a record past the
        // cut.
        let streamed: Vec<_> = ShardStream::new("cut.sfs", &bytes[..cut]).collect();
        let Some(Err(err)) = streamed.last() else {
            panic!("cut {cut}: the stream ended without an error");
        };
        assert!(err.to_string().starts_with("cut.sfs: "), "cut {cut}: {err}");
    }
}

#[test]
fn an_empty_file_is_called_empty_by_both_readers() {
    for err in [
        ShardReader::from_bytes("empty.sfs", Vec::new()).unwrap_err(),
        ShardStream::new("empty.sfs", &[][..])
            .next()
            .unwrap()
            .unwrap_err(),
    ] {
        assert_eq!(
            err.to_string(),
            "empty.sfs: truncated shard: the file is empty (0 bytes)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-00000.sfs");
    std::fs::write(&path, b"").unwrap();
    let err = ShardReader::open(&path).unwrap_err();
    assert!(matches!(err, ShardError::Truncated { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("{}: ", path.display())));
}

#[test]
fn a_short_stream_says_where_it_ended() {
    let bytes = shard_bytes(&sample_records(3));
    let header_only: Vec<_> = ShardStream::new("s.sfs", &bytes[..12]).collect();
    assert_eq!(
        header_only[0].as_ref().unwrap_err().to_string(),
        "s.sfs: truncated shard: 12 bytes, shorter than the 16-byte header"
    );
    let cut = bytes.len() - 50;
    let out: Vec<_> = ShardStream::new("s.sfs", &bytes[..cut]).collect();
    assert_eq!(
        out.last().unwrap().as_ref().unwrap_err().to_string(),
        format!("s.sfs: truncated shard: stream ends inside the index at offset {cut}")
    );
}

#[test]
fn an_unknown_major_version_is_refused_before_the_checksums() {
    let mut bytes = shard_bytes(&sample_records(3));
    let n = bytes.len();
    // Major version 2 in header and footer (the footer CRC is now stale, but version comes first).
    bytes[8] = 2;
    bytes[n - FOOTER_LEN + 24] = 2;
    let err = ShardReader::from_bytes("v2.sfs", bytes.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            ShardError::UnsupportedVersion {
                major: 2,
                minor: 0,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "v2.sfs: unsupported format version 2.0 (this build reads 1.x)"
    );
    let first = ShardStream::new("v2.sfs", &bytes[..]).next().unwrap();
    assert!(matches!(first, Err(ShardError::UnsupportedVersion { .. })));
}

#[test]
fn a_newer_minor_version_is_read() {
    let mut bytes = shard_bytes(&sample_records(3));
    let n = bytes.len();
    bytes[10] = 3;
    bytes[n - FOOTER_LEN + 26] = 3;
    let crc = crc32c::crc32c(&bytes[n - FOOTER_LEN..n - FOOTER_LEN + 28]);
    bytes[n - FOOTER_LEN + 28..n - FOOTER_LEN + 32].copy_from_slice(&crc.to_le_bytes());
    let shard = ShardReader::from_bytes("v1_3.sfs", bytes).unwrap();
    assert_eq!(shard.version(), (1, 3));
    assert_eq!(shard.len(), 3);
}

#[test]
fn a_bad_index_is_refused() {
    let records = sample_records(4);
    let bytes = shard_bytes(&records);
    let n = bytes.len();
    let index_offset = n - FOOTER_LEN - 8 - 4 * 16;
    // Corrupt one entry's offset: the index CRC catches it.
    let mut bad = bytes.clone();
    bad[index_offset + 8 + 16] ^= 0x40;
    let err = ShardReader::from_bytes("idx.sfs", bad).unwrap_err();
    assert!(
        matches!(&err, ShardError::Checksum { what, .. } if what == "index"),
        "{err:?}"
    );
    // The same change with a recomputed index CRC: the layout check catches it.
    let mut bad = bytes.clone();
    bad[index_offset + 8 + 16] ^= 0x40;
    let crc = crc32c::crc32c(&bad[index_offset..n - FOOTER_LEN]);
    bad[n - FOOTER_LEN + 16..n - FOOTER_LEN + 20].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32c::crc32c(&bad[n - FOOTER_LEN..n - FOOTER_LEN + 28]);
    bad[n - FOOTER_LEN + 28..n - FOOTER_LEN + 32].copy_from_slice(&crc.to_le_bytes());
    let err = ShardReader::from_bytes("idx.sfs", bad).unwrap_err();
    assert!(
        matches!(&err, ShardError::Corrupt { what, .. } if what == "index entry 1"),
        "{err:?}"
    );
    // A footer whose record count does not fit the file.
    let mut bad = bytes;
    bad[n - FOOTER_LEN + 8] = 200;
    let err = ShardReader::from_bytes("idx.sfs", bad).unwrap_err();
    assert!(
        matches!(&err, ShardError::Corrupt { what, .. } if what == "footer"),
        "{err:?}"
    );
}

#[test]
fn a_flipped_byte_in_a_record_is_caught_when_the_record_is_read() {
    let records = sample_records(6);
    let bytes = shard_bytes(&records);
    let shard = ShardReader::from_bytes("f.sfs", bytes.clone()).unwrap();
    let e = shard.entry(4).unwrap();
    let mut bad = bytes;
    // A byte in the middle of record 4's image.
    bad[(e.offset + u64::from(e.len) - 10) as usize] ^= 1;
    let shard = ShardReader::from_bytes("f.sfs", bad.clone()).unwrap();
    for i in [0, 1, 2, 3, 5] {
        shard.record(i).unwrap();
    }
    let err = shard.record(4).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "f.sfs: checksum mismatch in record 4 (offset {})",
            e.offset
        )),
        "{msg}"
    );
    let streamed: Vec<_> = ShardStream::new("f.sfs", &bad[..]).collect();
    assert_eq!(streamed.len(), 5);
    assert!(matches!(streamed[4], Err(ShardError::Checksum { .. })));
}

#[test]
fn a_file_that_is_not_a_shard_is_refused_as_such() {
    let err = ShardReader::from_bytes("x.jpg", b"\xFF\xD8\xFF\xE0 not a shard at all".to_vec())
        .unwrap_err();
    assert!(matches!(err, ShardError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("not a shardfeed shard"));
}

#[test]
fn trailing_bytes_after_a_streamed_footer_are_refused() {
    let mut bytes = shard_bytes(&sample_records(2));
    bytes.push(0);
    let out: Vec<_> = ShardStream::new("t.sfs", &bytes[..]).collect();
    assert!(matches!(out.last(), Some(Err(ShardError::Corrupt { .. }))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic either reader.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(shard) = ShardReader::from_bytes("fuzz.sfs", bytes.clone()) {
            for r in shard.records() { let _ = r; }
        }
        for r in ShardStream::new("fuzz.sfs", &bytes[..]) { let _ = r; }
    }

    /// Valid shards with bytes overwritten or cut never panic, and a changed byte is never
    /// returned as good data: every record that reads back equals what was written.
    #[test]
    fn damaged_shards_never_panic_or_lie(
        n in 0u32..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let records = sample_records(n);
        let mut bytes = shard_bytes(&records);
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Some(c) = cut { bytes.truncate(c.index(bytes.len())); }
        if let Ok(shard) = ShardReader::from_bytes("fuzz.sfs", bytes.clone()) {
            for (i, r) in shard.records().enumerate() {
                if let Ok(r) = r {
                    prop_assert_eq!(r.image, &records[i].image[..]);
                    prop_assert_eq!(r.path, &records[i].path[..]);
                }
            }
        }
        for (i, r) in ShardStream::new("fuzz.sfs", &bytes[..]).enumerate() {
            if let Ok(r) = r {
                prop_assert_eq!(&r.image, &records[i].image);
            }
        }
    }
}

/// Pinned from cargo-fuzz (`fuzz/`, target shard_reader): a record whose format code is one this
/// build does not know (66) and whose reserved flags byte is set, with a valid CRC, is what a
/// newer minor version may write. It reads as `Unknown` with its flags ignored, by both readers.
#[test]
fn unknown_format_codes_and_reserved_flags_read_as_unknown() {
    let records = sample_records(2);
    let mut bytes = shard_bytes(&records);
    let shard = ShardReader::from_bytes("x.sfs", bytes.clone()).unwrap();
    let e = shard.entry(1).unwrap();
    let (start, len) = (e.offset as usize, e.len as usize);
    bytes[start + 20] = 66;
    bytes[start + 21] = 0x80;
    let crc = crc32c::crc32c(&bytes[start..start + len - 4]);
    bytes[start + len - 4..start + len].copy_from_slice(&crc.to_le_bytes());

    let want = OwnedRecord {
        format: shardfeed_shards::ImageFormat::Unknown,
        ..records[1].clone()
    };
    let shard = ShardReader::from_bytes("x.sfs", bytes.clone()).unwrap();
    assert_eq!(shard.record(1).unwrap().to_owned_record(), want);
    assert_eq!(shard.record(0).unwrap().to_owned_record(), records[0]);
    let streamed: Vec<OwnedRecord> = ShardStream::new("x.sfs", &bytes[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, vec![records[0].clone(), want]);
}

/// A shard with bytes appended after its footer (`cat more >> shard.sfs`) was called
/// "truncated", which sent people looking for a missing end. The reader finds the footer and
/// says what is really wrong.
#[test]
fn bytes_appended_to_a_shard_are_called_appended_not_truncated() {
    let bytes = shard_bytes(&sample_records(3));
    let end = bytes.len();
    let mut appended = bytes.clone();
    appended.extend_from_slice(b"xyz");
    let err = ShardReader::from_bytes("a.sfs", appended).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "a.sfs: corrupt footer: 3 bytes follow the footer, which ends at offset {end}: \
             something was appended to the shard"
        )
    );
    // A whole second shard appended: its footer is not this file's (it does not describe a
    // file that ends there), so the search goes on to the real one.
    let mut twice = bytes.clone();
    twice.extend_from_slice(&bytes);
    let err = ShardReader::from_bytes("a.sfs", twice).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "a.sfs: corrupt footer: {end} bytes follow the footer, which ends at offset {end}: \
             something was appended to the shard"
        )
    );
    // A shard cut short is still called truncated.
    let err = ShardReader::from_bytes("a.sfs", bytes[..end - 3].to_vec()).unwrap_err();
    assert!(matches!(err, ShardError::Truncated { .. }), "{err:?}");
}

/// A directory in place of a shard gave the OS's "No such device" (from mmap), which names
/// nothing useful.
#[test]
fn a_directory_in_place_of_a_shard_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-00000.sfs");
    std::fs::create_dir(&path).unwrap();
    let err = ShardReader::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: not a regular file (a directory)", path.display())
    );
}

/// Runs `open` on `fifo`, which has no writer. An open that blocks waiting for one (the bug:
/// `verify` hung on a FIFO in place of a shard) gets one from this helper and returns, so the
/// test fails on its result instead of hanging; an open that does not block returns at once.
/// Deterministic: the loop ends when the open under test has returned, whatever the timing.
#[cfg(unix)]
fn open_fifo_without_a_writer<T: Send>(
    fifo: &std::path::Path,
    open: impl FnOnce() -> T + Send,
) -> T {
    use std::os::unix::fs::OpenOptionsExt;
    std::thread::scope(|s| {
        let under_test = s.spawn(open);
        while !under_test.is_finished() {
            // Succeeds only while a reader is inside open(); closing it at once gives that
            // reader an empty file.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(fifo);
            std::thread::yield_now();
        }
        under_test.join().unwrap()
    })
}

#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_a_shard_or_manifest_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-00000.sfs");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    let err = open_fifo_without_a_writer(&path, || ShardReader::open(&path).unwrap_err());
    assert_eq!(
        err.to_string(),
        format!("{}: not a regular file (a FIFO)", path.display())
    );
    let manifest = dir.path().join("manifest.json");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &manifest,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    let err = open_fifo_without_a_writer(&manifest, || {
        shardfeed_shards::Manifest::load(dir.path()).unwrap_err()
    });
    assert_eq!(
        err.to_string(),
        format!("{}: not a regular file (a FIFO)", manifest.display())
    );
}
