//! Dataset directories: writing (layouts, atomicity, determinism), opening and verifying.

mod common;

use common::{sample_records, spec, write_dataset};
use shardfeed_shards::{
    verify_dataset, Dataset, DatasetWriter, ImageFormat, Manifest, Record, ShardError, ShardLayout,
    WriteError, MANIFEST_FILE,
};
use std::fs;

#[test]
fn global_records_read_back_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(50);
    let m = write_dataset(dir.path(), &records, ShardLayout::TargetBytes(2000));
    assert!(m.shards.len() > 3, "{} shards", m.shards.len());
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.len(), 50);
    for (g, want) in records.iter().enumerate() {
        assert_eq!(&ds.record(g as u64).unwrap().to_owned_record(), want);
        assert_eq!(ds.label(g as u64).unwrap(), want.label);
    }
    assert!(matches!(ds.record(50), Err(ShardError::OutOfRange { .. })));
    assert_eq!(ds.find_path(&records[33].path).unwrap(), Some(33));
    // Manifest totals and class counts.
    assert_eq!(m.records, 50);
    let labelled = records.iter().filter(|r| r.label.is_some()).count() as u64;
    assert_eq!(m.classes.iter().map(|c| c.records).sum::<u64>(), labelled);
    assert_eq!(m.formats["jpeg"], 50 / 7 + u64::from(50 % 7 > 1));
}

#[test]
fn target_size_cuts_shards_before_they_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_dataset(
        dir.path(),
        &sample_records(80),
        ShardLayout::TargetBytes(3000),
    );
    for s in &m.shards[..m.shards.len() - 1] {
        assert!(s.bytes <= 3000 + 8 + 16 * s.records + 40, "{s:?}");
        assert!(s.bytes > 1500, "{s:?}");
    }
}

#[test]
fn a_shard_count_gives_exactly_that_many_shards_even_with_skips() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(10);
    let mut w = DatasetWriter::create(
        dir.path(),
        spec(ShardLayout::Count {
            shards: 4,
            inputs: 10,
        }),
    )
    .unwrap();
    for (i, r) in records.iter().enumerate() {
        // The last three inputs (all of shard 3) are skipped.
        if i >= 7 {
            w.skip(i as u64, &r.path, "not an image").unwrap();
        } else {
            w.append(i as u64, &r.as_record()).unwrap();
        }
    }
    let m = w.finish().unwrap();
    let counts: Vec<u64> = m.shards.iter().map(|s| s.records).collect();
    assert_eq!(counts, vec![3, 2, 2, 0]);
    assert_eq!(m.skipped.len(), 3);
    assert_eq!(m.skipped[0].reason, "not an image");
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.len(), 7);
    assert_eq!(ds.locate(6).unwrap(), (2, 1));
}

#[test]
fn the_same_records_give_byte_identical_datasets() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let records = sample_records(30);
    write_dataset(a.path(), &records, ShardLayout::TargetBytes(1500));
    write_dataset(b.path(), &records, ShardLayout::TargetBytes(1500));
    let mut names: Vec<_> = fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() > 2);
    for n in names {
        assert_eq!(
            fs::read(a.path().join(&n)).unwrap(),
            fs::read(b.path().join(&n)).unwrap(),
            "{n:?}"
        );
    }
}

#[test]
fn verify_names_the_record_holding_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(30);
    write_dataset(dir.path(), &records, ShardLayout::TargetBytes(2000));
    let clean = verify_dataset(dir.path(), |_| {}).unwrap();
    assert!(clean.is_ok(), "{:?}", clean.problems);
    assert_eq!(clean.records, 30);

    // Flip one byte inside the image of global record 12.
    let ds = Dataset::open(dir.path()).unwrap();
    let (s, i) = ds.locate(12).unwrap();
    let entry = ds.shards()[s].entry(i).unwrap();
    let file = ds.shards()[s].path().to_owned();
    drop(ds);
    let mut bytes = fs::read(&file).unwrap();
    bytes[(entry.offset + u64::from(entry.len) - 6) as usize] ^= 0x80;
    fs::write(&file, bytes).unwrap();

    let report = verify_dataset(dir.path(), |_| {}).unwrap();
    assert_eq!(report.records, 30);
    let record_problems: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.record.is_some())
        .collect();
    assert_eq!(record_problems.len(), 1, "{:?}", report.problems);
    let p = record_problems[0];
    assert_eq!(p.record, Some((i, 12)));
    assert_eq!(p.source_path.as_deref(), Some(records[12].path.as_str()));
    assert_eq!(p.file, file);
    let line = p.to_string();
    assert!(
        line.starts_with(&format!("global record 12 ({})", records[12].path)),
        "{line}"
    );
    assert!(line.contains("checksum mismatch in record"), "{line}");
    // The whole-file checksum against the manifest is reported for that shard too.
    assert!(report
        .problems
        .iter()
        .any(|p| p.record.is_none() && p.detail.contains("whole-file CRC32C")));
}

#[test]
fn verify_reports_a_truncated_shard_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_dataset(
        dir.path(),
        &sample_records(30),
        ShardLayout::TargetBytes(2000),
    );
    let victim = dir.path().join(&m.shards[1].file);
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let report = verify_dataset(dir.path(), |_| {}).unwrap();
    assert_eq!(report.shards as usize, m.shards.len());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].detail.contains("truncated shard"));
    assert!(report.problems[0].detail.contains(&m.shards[1].file));
    // Opening the dataset fails on that shard, naming it.
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&m.shards[1].file), "{err}");
}

#[test]
fn a_directory_without_manifest_is_not_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");
    let err = Dataset::open(dir.path().join("missing")).unwrap_err();
    assert!(
        err.to_string().contains("no such dataset directory"),
        "{err}"
    );
}

#[test]
fn an_unknown_manifest_major_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &sample_records(3),
        ShardLayout::TargetBytes(2000),
    );
    let path = dir.path().join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("\"format_version\": \"1.0\"", "\"format_version\": \"7.2\""),
    )
    .unwrap();
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ShardError::UnsupportedVersion {
                major: 7,
                minor: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_interrupted_write_leaves_no_dataset_and_is_cleaned_up_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    {
        let mut w = DatasetWriter::create(&out, spec(ShardLayout::TargetBytes(500))).unwrap();
        for (i, r) in sample_records(20).iter().enumerate() {
            w.append(i as u64, &r.as_record()).unwrap();
        }
        // Simulate a crash: the process dies here. Forget the writer so Drop cannot clean up.
        std::mem::forget(w);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!out.join(MANIFEST_FILE).exists());
    assert!(Dataset::open(&out).is_err());
    // The next run removes the leftovers and succeeds.
    let m = write_dataset(&out, &sample_records(5), ShardLayout::TargetBytes(500));
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = m.shards.iter().map(|s| s.file.clone()).collect();
    want.push(MANIFEST_FILE.into());
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn abort_and_drop_remove_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let mut w = DatasetWriter::create(&out, spec(ShardLayout::TargetBytes(500))).unwrap();
    for (i, r) in sample_records(20).iter().enumerate() {
        w.append(i as u64, &r.as_record()).unwrap();
    }
    w.abort();
    assert!(!out.exists());
}

#[test]
fn an_existing_dataset_or_foreign_files_are_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &sample_records(3),
        ShardLayout::TargetBytes(500),
    );
    let before = fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
    let err = DatasetWriter::create(dir.path(), spec(ShardLayout::TargetBytes(500)))
        .err()
        .unwrap();
    assert!(err.to_string().contains("already holds a dataset"), "{err}");
    assert_eq!(fs::read(dir.path().join(MANIFEST_FILE)).unwrap(), before);
    // --force replaces it.
    let mut s = spec(ShardLayout::TargetBytes(500));
    s.overwrite = true;
    let mut w = DatasetWriter::create(dir.path(), s).unwrap();
    w.append(0, &sample_records(1)[0].as_record()).unwrap();
    assert_eq!(w.finish().unwrap().records, 1);

    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("notes.txt"), "mine").unwrap();
    let err = DatasetWriter::create(other.path(), spec(ShardLayout::TargetBytes(500)))
        .err()
        .unwrap();
    assert!(matches!(err, WriteError::OutputExists { .. }), "{err:?}");
    assert_eq!(fs::read(other.path().join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn labels_outside_the_class_list_and_out_of_order_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(dir.path(), spec(ShardLayout::TargetBytes(500))).unwrap();
    let rec = Record {
        label: Some(3),
        width: 1,
        height: 1,
        format: ImageFormat::Png,
        path: "x.png",
        image: b"",
    };
    assert!(matches!(
        w.append(0, &rec),
        Err(WriteError::LabelOutOfRange { label: 3, .. })
    ));
    w.append(
        5,
        &Record {
            label: Some(0),
            ..rec
        },
    )
    .unwrap();
    assert!(matches!(w.skip(5, "y", "z"), Err(WriteError::Usage(_))));
}

#[test]
fn manifest_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_dataset(
        dir.path(),
        &sample_records(9),
        ShardLayout::TargetBytes(700),
    );
    assert_eq!(Manifest::load(dir.path()).unwrap(), m);
}
