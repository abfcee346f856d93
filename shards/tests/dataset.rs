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
        // Simulate a crash: the process dies here, once the shards closed so far are in place.
        // Forget the writer so Drop cannot clean up.
        w.sync_closed().unwrap();
        std::mem::forget(w);
    }
    assert!(out.join("shard-00000.sfs").exists());
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

/// Rewrites the manifest of the dataset in `dir` through `edit`, as JSON.
fn edit_manifest(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// The problems of `verify_dataset`, as the lines `shardfeed verify` prints after "BAD".
fn problems(dir: &std::path::Path) -> Vec<String> {
    let report = verify_dataset(dir, |_| {}).unwrap();
    report.problems.iter().map(|p| p.to_string()).collect()
}

/// A manifest whose class list lost its last class: the loader yielded labels past the class
/// count (an out-of-bounds index in any training loop) and verify said OK.
#[test]
fn a_truncated_class_list_is_refused_by_open_and_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(12);
    let m = write_dataset(dir.path(), &records, ShardLayout::TargetBytes(100_000));
    assert_eq!(m.shards.len(), 1);
    edit_manifest(dir.path(), |v| {
        v["classes"].as_array_mut().unwrap().pop();
    });
    // sample_records gives record 2 the first label 2.
    assert_eq!(records[2].label, Some(2));
    let shard = dir.path().join(&m.shards[0].file);
    let offset = shardfeed_shards::ShardReader::open(&shard)
        .unwrap()
        .entry(2)
        .unwrap()
        .offset;
    let err = Dataset::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: record 2 (offset {offset}) has label 2, but the manifest lists 2 classes",
            shard.display()
        )
    );
    let labelled_2 = records.iter().filter(|r| r.label == Some(2)).count();
    assert_eq!(
        problems(dir.path()),
        [format!(
            "{}: {labelled_2} records have a label the manifest's 2 classes do not hold \
             (the first: record 2 (offset {offset}), label 2)",
            shard.display()
        )]
    );
}

#[test]
fn verify_reports_stale_class_and_format_counts() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(
        dir.path(),
        &sample_records(12),
        ShardLayout::TargetBytes(900),
    );
    let m = Manifest::load(dir.path()).unwrap();
    let (c1, jpeg) = (m.classes[1].records, m.formats["jpeg"]);
    edit_manifest(dir.path(), |v| {
        v["classes"][1]["records"] = (c1 + 5).into();
        v["formats"]["jpeg"] = (jpeg - 1).into();
    });
    let manifest = dir.path().join(MANIFEST_FILE);
    let formats: Vec<String> = m.formats.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let stale: Vec<String> = m
        .formats
        .iter()
        .map(|(k, &n)| format!("{k} {}", if k == "jpeg" { n - 1 } else { n }))
        .collect();
    assert_eq!(
        problems(dir.path()),
        [
            format!(
                "{}: the record counts of 1 classes disagree with the shards (the first: \
                 class 1 (n00001001): the manifest says {}, the shards hold {c1})",
                manifest.display(),
                c1 + 5
            ),
            format!(
                "{}: the image format counts disagree with the shards: the manifest says {}, \
                 the shards hold {}",
                manifest.display(),
                stale.join(", "),
                formats.join(", ")
            ),
        ]
    );
}

#[test]
fn a_shard_listed_twice_is_refused_by_open_and_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_dataset(
        dir.path(),
        &sample_records(12),
        ShardLayout::TargetBytes(900),
    );
    assert!(m.shards.len() >= 3);
    // Shard 2 listed in the place of shard 1, with its counts, so that the totals still add up
    // and every shard on the list opens and agrees with its entry.
    edit_manifest(dir.path(), |v| {
        let s2 = v["shards"][2].clone();
        let s1 = v["shards"][1].clone();
        v["shards"][1] = s2.clone();
        for key in ["records", "bytes"] {
            let total =
                v[key].as_u64().unwrap() - s1[key].as_u64().unwrap() + s2[key].as_u64().unwrap();
            v[key] = total.into();
        }
    });
    let manifest = dir.path().join(MANIFEST_FILE);
    let want = format!(
        "{}: shard file \"{}\" is listed twice (shards 1 and 2)",
        manifest.display(),
        m.shards[2].file
    );
    assert_eq!(Dataset::open(dir.path()).unwrap_err().to_string(), want);
    assert_eq!(problems(dir.path()), [want]);
}

#[test]
fn verify_reports_shard_files_the_manifest_does_not_list() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_dataset(
        dir.path(),
        &sample_records(12),
        ShardLayout::TargetBytes(900),
    );
    let orphan = dir.path().join("shard-00099.sfs");
    fs::copy(dir.path().join(&m.shards[0].file), &orphan).unwrap();
    let leftover = dir.path().join("shard-00100.sfs.tmp");
    fs::write(&leftover, b"partial").unwrap();
    fs::write(dir.path().join("README.txt"), b"notes are not shards").unwrap();
    let report = verify_dataset(dir.path(), |_| {}).unwrap();
    assert_eq!(
        report
            .problems
            .iter()
            .map(|p| (p.file.clone(), p.to_string()))
            .collect::<Vec<_>>(),
        [
            (
                orphan.clone(),
                format!(
                    "{}: a shard file the manifest does not list",
                    orphan.display()
                )
            ),
            (
                leftover.clone(),
                format!(
                    "{}: a temporary file left by an interrupted write",
                    leftover.display()
                )
            ),
        ]
    );
    assert_eq!(report.bad_shards, 0, "no listed shard is bad");
    // Opening the dataset is not affected: it reads the shards the manifest lists.
    assert_eq!(Dataset::open(dir.path()).unwrap().len(), 12);
}

/// A shard cut short under an open dataset (`truncate`, or `cp` over it, which first empties
/// it) made the next read of its memory map kill the process with SIGBUS, naming nothing.
#[test]
fn a_shard_that_changes_size_under_an_open_dataset_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(40);
    let m = write_dataset(dir.path(), &records, ShardLayout::TargetBytes(8000));
    assert!(m.shards.len() >= 2, "{} shards", m.shards.len());
    let ds = Dataset::open(dir.path()).unwrap();
    let last = ds.len() - 1;
    let (s, _) = ds.locate(last).unwrap();
    let shard = ds.shards()[s].path().to_owned();
    let bytes = m.shards[s].bytes;
    let file = fs::OpenOptions::new().write(true).open(&shard).unwrap();
    file.set_len(0).unwrap();
    let want = format!(
        "{}: the shard changed while it was open ({bytes} bytes when opened, 0 now): \
         a dataset must not be modified while it is read",
        shard.display()
    );
    assert_eq!(ds.record(last).unwrap_err().to_string(), want);
    assert_eq!(ds.label(last).unwrap_err().to_string(), want);
    assert!(matches!(
        ds.shards()[s].meta(0),
        Err(ShardError::Changed { .. })
    ));
    // Other shards still read.
    assert_eq!(ds.record(0).unwrap().to_owned_record(), records[0]);
    // Grown back (the rest of a `cp`): still not the file that was opened.
    file.set_len(bytes + 10).unwrap();
    assert!(matches!(
        ds.record(last),
        Err(ShardError::Changed { now, .. }) if now == bytes + 10
    ));
}
