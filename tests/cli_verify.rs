//! End-to-end: `shardfeed verify` and `shardfeed inspect` on datasets that are partial, or whose
//! manifest or shard files are not what they should be. Exit codes: 0 all good, 1 verify found
//! problems, 2 usage or I/O error.

use std::fs;
use std::path::{Path, PathBuf};

mod common;
use common::{fails, ok, s};

/// A synthetic ILSVRC-shaped folder (3 classes, train and val) sharded into `dir/shards`.
fn sharded(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    ok(&[
        "synth",
        s(&images),
        "--classes",
        "3",
        "--per-class",
        "4",
        "--val-per-class",
        "2",
        "--seed",
        "9",
    ]);
    let out = dir.join("shards");
    ok(&["shard", s(&images), "--out", s(&out), "--shards", "2"]);
    out
}

/// `shard` of a train+val folder killed while writing val leaves `val/` with shards but no
/// manifest. `verify` and `inspect` of the root looked only at splits with a manifest, so they
/// reported train and said nothing of val: `verify` printed "train: OK" and exited 0.
#[test]
fn a_split_without_a_manifest_fails_verify_and_inspect_at_the_root() {
    let t = tempfile::tempdir().unwrap();
    let out = sharded(t.path());
    let val = out.join("val");
    fs::remove_file(val.join("manifest.json")).unwrap();
    fs::rename(val.join("shard-00001.sfs"), val.join("shard-00001.sfs.tmp")).unwrap();

    let (code, text) = fails(&["verify", s(&out)]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{}: OK, 2 shards", out.join("train").display())),
        "{text}"
    );
    let missing = format!(
        "{}: no manifest.json: not a shardfeed dataset, or one whose writing was interrupted",
        val.display()
    );
    assert!(text.contains(&missing), "{text}");
    assert!(
        text.contains(&format!("{}: FAILED: 1 problems", val.display())),
        "{text}"
    );

    let (code, text) = fails(&["inspect", s(&out)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&missing), "{text}");

    // A root with only a train split (val never asked for) is complete.
    fs::remove_dir_all(&val).unwrap();
    ok(&["verify", s(&out)]);
    ok(&["inspect", s(&out)]);
}

/// A manifest that is not valid JSON is a problem verify found (exit 1), like a bad shard; it
/// was reported as an I/O error (exit 2).
#[test]
fn a_corrupt_manifest_is_a_verify_failure_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let out = sharded(t.path());
    let manifest = out.join("train/manifest.json");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let (code, text) = fails(&["verify", s(&out)]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{}: not valid JSON: ", manifest.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: OK", out.join("val").display())),
        "the other split is still checked: {text}"
    );
    // A path that does not exist is a usage error.
    let (code, text) = fails(&["verify", s(&t.path().join("nowhere"))]);
    assert_eq!(code, 2, "{text}");
}

/// A directory in place of a shard was reported as "No such device"; bytes appended to a shard
/// were reported as "truncated".
#[test]
fn a_directory_or_appended_bytes_in_place_of_a_shard_are_named_for_what_they_are() {
    let t = tempfile::tempdir().unwrap();
    let out = sharded(t.path());
    let train = out.join("train");
    let dir_shard = train.join("shard-00000.sfs");
    fs::remove_file(&dir_shard).unwrap();
    fs::create_dir(&dir_shard).unwrap();
    let long_shard = train.join("shard-00001.sfs");
    let mut bytes = fs::read(&long_shard).unwrap();
    let end = bytes.len();
    bytes.extend_from_slice(b"appended");
    fs::write(&long_shard, &bytes).unwrap();

    let (code, text) = fails(&["verify", s(&out)]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "{}: not a regular file (a directory)",
            dir_shard.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: corrupt footer: 8 bytes follow the footer, which ends at offset {end}: \
             something was appended to the shard",
            long_shard.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: FAILED: 2 problems in 2 of 2 shards",
            train.display()
        )),
        "{text}"
    );
    let (code, text) = fails(&["inspect", s(&train)]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&format!(
            "{}: not a regular file (a directory)",
            dir_shard.display()
        )),
        "{text}"
    );
}

/// A manifest that lies about the shards: a class list cut short, counts that are stale, an
/// orphan shard. `verify` said OK to all of them.
#[test]
fn verify_checks_the_manifest_against_the_shards() {
    let t = tempfile::tempdir().unwrap();
    let out = sharded(t.path());
    let train = out.join("train");
    let manifest = train.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    m["classes"].as_array_mut().unwrap().pop();
    fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    fs::copy(train.join("shard-00000.sfs"), train.join("shard-00007.sfs")).unwrap();

    let (code, text) = fails(&["verify", s(&train)]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("records have a label the manifest's 2 classes do not hold"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: a shard file the manifest does not list",
            train.join("shard-00007.sfs").display()
        )),
        "{text}"
    );
    // The loader side: the dataset does not open.
    let (code, text) = fails(&["inspect", s(&train)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("but the manifest lists 2 classes"), "{text}");
}
