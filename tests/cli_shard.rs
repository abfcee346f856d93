//! End-to-end: the `shardfeed` binary on synthetic ImageNet-shaped folders, as a user runs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{fails, ok, s, shardfeed};

/// A small synthetic ILSVRC-shaped folder with the oddities ImageNet really holds.
fn synth(dir: &Path, oddities: bool) -> PathBuf {
    let images = dir.join("images");
    let mut args = vec![
        "synth",
        s(&images),
        "--classes",
        "3",
        "--per-class",
        "8",
        "--val-per-class",
        "2",
        "--seed",
        "5",
    ];
    if oddities {
        args.push("--oddities");
    }
    ok(&args);
    images
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn synth_shard_inspect_verify_extract() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), true);
    let out = t.path().join("shards");
    let summary = ok(&[
        "shard",
        s(&images),
        "--out",
        s(&out),
        "--shard-size",
        "100KiB",
    ]);
    assert!(summary.contains("train: 24 images ->"), "{summary}");
    assert!(summary.contains("val: 6 images ->"), "{summary}");

    let m = manifest(&out.join("train"));
    assert_eq!(m["format_version"], "1.0");
    assert_eq!(m["records"], 24);
    assert!(m["shards"].as_array().unwrap().len() > 1);
    let classes: Vec<&str> = m["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["synset"].as_str().unwrap())
        .collect();
    let mut sorted = classes.clone();
    sorted.sort();
    assert_eq!(
        classes, sorted,
        "labels follow sorted synset order, like ImageFolder"
    );
    // The PNG named .JPEG is stored as what it is.
    assert_eq!(m["formats"]["png"], 1, "{}", m["formats"]);
    assert_eq!(
        manifest(&out.join("val"))["classes"],
        m["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c["records"] = serde_json::json!(2);
                c
            })
            .collect::<serde_json::Value>()
    );

    let report = ok(&["inspect", s(&out)]);
    assert!(report.contains("records   24 in"), "{report}");
    assert!(
        report.contains("classes   3 (8 to 8 records per class)"),
        "{report}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&out), "--json"])).unwrap();
    assert_eq!(json[1]["split"], "val");

    let verified = ok(&["verify", s(&out)]);
    assert_eq!(verified.matches(": OK,").count(), 2, "{verified}");

    // Extract by path and by index give the original file's bytes.
    let original = images
        .join("train")
        .join(classes[1])
        .join(format!("{}_3.JPEG", classes[1]));
    let rel = format!("train/{}/{}_3.JPEG", classes[1], classes[1]);
    let got = t.path().join("got.jpg");
    ok(&[
        "extract",
        s(&out.join("train")),
        "--path",
        &rel,
        "--out",
        s(&got),
    ]);
    assert_eq!(fs::read(&got).unwrap(), fs::read(&original).unwrap());
    let (_, err) = fails(&[
        "extract",
        s(&out.join("train")),
        "--index",
        "0",
        "--out",
        s(&got),
    ]);
    assert!(err.contains("exists"), "{err}");
    ok(&[
        "extract",
        s(&out.join("train")),
        "--index",
        "0",
        "--out",
        s(&got),
        "--force",
    ]);
}

#[test]
fn two_runs_are_byte_identical_whatever_the_worker_count() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), true);
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    ok(&[
        "shard",
        s(&images),
        "--out",
        s(&a),
        "--shards",
        "3",
        "--workers",
        "1",
    ]);
    ok(&[
        "shard",
        s(&images),
        "--out",
        s(&b),
        "--shards",
        "3",
        "--workers",
        "4",
    ]);
    for split in ["train", "val"] {
        let names: Vec<_> = fs::read_dir(a.join(split))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "3 shards and the manifest");
        for n in names {
            assert_eq!(
                fs::read(a.join(split).join(&n)).unwrap(),
                fs::read(b.join(split).join(&n)).unwrap(),
                "{n:?}"
            );
        }
    }
}

#[test]
fn a_flipped_byte_makes_verify_fail_naming_the_record() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let out = t.path().join("shards");
    ok(&["shard", s(&images), "--out", s(&out), "--shards", "2"]);
    let shard = out.join("train/shard-00001.sfs");
    let mut bytes = fs::read(&shard).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    fs::write(&shard, &bytes).unwrap();
    let (code, text) = fails(&["verify", s(&out)]);
    assert_eq!(code, 1);
    assert!(text.contains("shard-00001.sfs"), "{text}");
    assert!(text.contains("checksum mismatch in record"), "{text}");
    assert!(text.contains("global record"), "{text}");
    assert!(text.contains("train/n"), "names the source path: {text}");
    assert!(
        text.contains("val: OK"),
        "the other dataset is still checked: {text}"
    );
}

#[test]
fn a_truncated_shard_is_named_by_verify_and_inspect() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let out = t.path().join("shards");
    ok(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&out),
        "--shards",
        "2",
    ]);
    let shard = out.join("shard-00000.sfs");
    let bytes = fs::read(&shard).unwrap();
    fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let (_, text) = fails(&["verify", s(&out)]);
    assert!(text.contains("shard-00000.sfs: truncated shard"), "{text}");
    let (code, text) = fails(&["inspect", s(&out)]);
    assert_eq!(code, 2);
    assert!(text.contains("shard-00000.sfs: truncated shard"), "{text}");
}

#[test]
fn files_that_are_not_images_are_skipped_and_listed_or_fatal_with_strict() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let class_dir = fs::read_dir(images.join("train"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = fs::read(class_dir.join(format!(
        "{}_1.JPEG",
        class_dir.file_name().unwrap().to_str().unwrap()
    )))
    .unwrap();
    fs::write(class_dir.join("empty.JPEG"), b"").unwrap();
    fs::write(class_dir.join("notes.JPEG"), b"<html>not an image</html>").unwrap();
    fs::write(class_dir.join("cut.JPEG"), &good[..good.len() / 2]).unwrap();

    let out = t.path().join("shards");
    let summary = ok(&["shard", s(&images), "--out", s(&out)]);
    assert!(summary.contains("skipped 3"), "{summary}");
    assert!(summary.contains("empty.JPEG: empty file"), "{summary}");
    assert!(summary.contains("notes.JPEG: not an image"), "{summary}");
    assert!(summary.contains("cut.JPEG: truncated JPEG"), "{summary}");
    let m = manifest(&out.join("train"));
    assert_eq!(m["records"], 24);
    let skipped: Vec<&str> = m["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3);
    assert!(skipped.iter().all(|p| p.starts_with("train/n")));

    let strict_out = t.path().join("strict");
    let (code, text) = fails(&["shard", s(&images), "--out", s(&strict_out), "--strict"]);
    assert_eq!(code, 2);
    assert!(text.contains("--strict"), "{text}");
    assert!(text.contains(".JPEG: "), "names the file: {text}");
    assert!(!strict_out.join("train/manifest.json").exists());
    assert!(!strict_out.join("train").exists(), "partial output removed");
}

#[test]
fn empty_missing_and_unlabelled_inputs_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let (_, text) = fails(&["shard", s(&t.path().join("nope")), "--out", s(&out)]);
    assert!(text.contains("nope: no such directory"), "{text}");
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (_, text) = fails(&["shard", s(&empty), "--out", s(&out)]);
    assert!(text.contains("no class folders found"), "{text}");
    // A folder of only non-images.
    let junk = t.path().join("junk/n00000001");
    fs::create_dir_all(&junk).unwrap();
    fs::write(junk.join("a.JPEG"), b"hello").unwrap();
    let (_, text) = fails(&["shard", s(&t.path().join("junk")), "--out", s(&out)]);
    assert!(
        text.contains("none of the 1 inputs is a usable image"),
        "{text}"
    );
    assert!(!out.join("manifest.json").exists());
    let (_, text) = fails(&["inspect", s(&empty)]);
    assert!(text.contains("no manifest.json"), "{text}");
}

#[test]
fn an_existing_dataset_is_kept_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let out = t.path().join("shards");
    ok(&["shard", s(&images), "--out", s(&out)]);
    let before = fs::read(out.join("train/manifest.json")).unwrap();
    let (_, text) = fails(&["shard", s(&images), "--out", s(&out), "--seed", "9"]);
    assert!(text.contains("already holds a dataset"), "{text}");
    assert_eq!(fs::read(out.join("train/manifest.json")).unwrap(), before);
    ok(&[
        "shard",
        s(&images),
        "--out",
        s(&out),
        "--seed",
        "9",
        "--force",
    ]);
    assert_ne!(fs::read(out.join("train/manifest.json")).unwrap(), before);
    ok(&["verify", s(&out)]);
}

#[test]
fn reencode_mode_shrinks_to_baseline_jpeg() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), true);
    let out = t.path().join("ffcv");
    let summary = ok(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&out),
        "--max-side",
        "128",
        "--quality",
        "80",
    ]);
    assert!(summary.contains("mode reencode"), "{summary}");
    let m = manifest(&out);
    assert_eq!(m["params"]["max_side"], 128);
    assert_eq!(m["params"]["quality"], 80);
    assert_eq!(m["formats"], serde_json::json!({"jpeg": 24}));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&out), "--json"])).unwrap();
    let sizes = json[0]["common_sizes"].as_array().unwrap();
    for sz in sizes {
        let (w, h) = sz[0].as_str().unwrap().split_once('x').unwrap();
        let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        assert!(w.max(h) <= 128 && w.max(h) >= 100, "{w}x{h}");
    }
    ok(&["verify", s(&out)]);
}

#[test]
fn a_flat_val_folder_is_labelled_from_devkit_or_kaggle_files() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    // Re-lay val/ as ILSVRC2012 does: one flat folder, labels in a separate file.
    let mut val: Vec<(PathBuf, String)> = Vec::new();
    for c in fs::read_dir(images.join("val")).unwrap() {
        let c = c.unwrap().path();
        for f in fs::read_dir(&c).unwrap() {
            val.push((
                f.unwrap().path(),
                c.file_name().unwrap().to_str().unwrap().to_owned(),
            ));
        }
    }
    val.sort();
    let flat = t.path().join("ilsvrc");
    fs::create_dir_all(flat.join("val")).unwrap();
    fs::rename(images.join("train"), flat.join("train")).unwrap();
    let mut synsets: Vec<String> = val.iter().map(|v| v.1.clone()).collect();
    synsets.dedup();
    // The devkit's IDs are not in sorted order: make ID 1 the last synset.
    let id_order: Vec<String> = synsets.iter().rev().cloned().collect();
    let (mut truth, mut csv) = (String::new(), String::from("ImageId,PredictionString\n"));
    for (k, (path, synset)) in val.iter().enumerate() {
        let name = format!("ILSVRC2012_val_{:08}", k + 1);
        fs::copy(path, flat.join("val").join(format!("{name}.JPEG"))).unwrap();
        let id = id_order.iter().position(|s| s == synset).unwrap() + 1;
        truth.push_str(&format!("{id}\n"));
        csv.push_str(&format!("{name},{synset} 1 2 3 4\n"));
    }
    fs::write(t.path().join("gt.txt"), truth).unwrap();
    fs::write(t.path().join("map.txt"), id_order.join("\n")).unwrap();
    fs::write(t.path().join("LOC_val_solution.csv"), csv).unwrap();

    let (_, text) = fails(&["shard", s(&flat), "--out", s(&t.path().join("x"))]);
    assert!(text.contains("--val-labels"), "{text}");

    let mut labels = Vec::new();
    for (name, extra) in [
        (
            "devkit",
            vec![
                "--val-labels".to_string(),
                s(&t.path().join("gt.txt")).to_owned(),
                "--synset-map".into(),
                s(&t.path().join("map.txt")).to_owned(),
            ],
        ),
        (
            "kaggle",
            vec![
                "--val-labels".to_string(),
                s(&t.path().join("LOC_val_solution.csv")).to_owned(),
            ],
        ),
    ] {
        let out = t.path().join(name);
        let mut args = vec![
            "shard".to_string(),
            s(&flat).into(),
            "--out".into(),
            s(&out).into(),
            "--no-shuffle".into(),
        ];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&args);
        let ds = shardfeed_engine::shards::Dataset::open(out.join("val")).unwrap();
        assert_eq!(ds.len(), 6);
        let got: Vec<(String, String)> = (0..ds.len())
            .map(|g| {
                let r = ds.record(g).unwrap();
                (
                    r.path.to_owned(),
                    ds.manifest().classes[r.label.unwrap() as usize]
                        .synset
                        .clone(),
                )
            })
            .collect();
        for (k, (path, synset)) in got.iter().enumerate() {
            assert_eq!(path, &format!("val/ILSVRC2012_val_{:08}.JPEG", k + 1));
            assert_eq!(synset, &val[k].1, "{name}: image {k}");
        }
        labels.push(got);
    }
    assert_eq!(labels[0], labels[1]);
}

/// Sets the major version in a shard's header and footer (the footer CRC goes stale, but the
/// version is checked before the checksums).
fn set_major_version(shard: &Path, major: u8) {
    let mut bytes = fs::read(shard).unwrap();
    let n = bytes.len();
    bytes[8] = major;
    bytes[n - 40 + 24] = major;
    fs::write(shard, bytes).unwrap();
}

#[test]
fn a_wrong_format_version_is_refused_naming_the_file_and_both_versions() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let out = t.path().join("shards");
    ok(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&out),
        "--shards",
        "2",
    ]);
    let shard = out.join("shard-00001.sfs");
    set_major_version(&shard, 2);
    let want = format!(
        "{}: unsupported format version 2.0 (this build reads 1.x)",
        shard.display()
    );
    let (code, text) = fails(&["inspect", s(&out)]);
    assert_eq!(code, 2);
    assert!(text.contains(&want), "{text}");
    let (code, text) = fails(&["verify", s(&out)]);
    assert_eq!(code, 1);
    assert!(text.contains(&want), "{text}");
    let (_, text) = fails(&[
        "extract",
        s(&out),
        "--index",
        "0",
        "--out",
        s(&t.path().join("x")),
    ]);
    assert!(text.contains(&want), "{text}");

    // A manifest from a future major version is refused before any shard is opened.
    set_major_version(&shard, 1);
    ok(&["verify", s(&out)]);
    let manifest_path = out.join("manifest.json");
    let text = fs::read_to_string(&manifest_path).unwrap();
    fs::write(
        &manifest_path,
        text.replace("\"format_version\": \"1.0\"", "\"format_version\": \"3.4\""),
    )
    .unwrap();
    let want = format!(
        "{}: unsupported format version 3.4 (this build reads 1.x)",
        manifest_path.display()
    );
    for cmd in ["inspect", "verify"] {
        let (code, text) = fails(&[cmd, s(&out)]);
        assert_eq!(code, 2, "{cmd}");
        assert!(text.contains(&want), "{cmd}: {text}");
    }
}

#[test]
fn an_empty_or_missing_shard_file_is_named() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let out = t.path().join("shards");
    ok(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&out),
        "--shards",
        "3",
    ]);
    let empty = out.join("shard-00000.sfs");
    fs::write(&empty, b"").unwrap();
    let missing = out.join("shard-00002.sfs");
    fs::remove_file(&missing).unwrap();
    let (code, text) = fails(&["verify", s(&out)]);
    assert_eq!(code, 1);
    assert!(
        text.contains(&format!(
            "{}: truncated shard: the file is empty (0 bytes)",
            empty.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: No such file", missing.display())),
        "{text}"
    );
    assert!(
        text.contains("FAILED: 2 problems in 2 of 3 shards"),
        "{text}"
    );
    let (code, text) = fails(&["inspect", s(&out)]);
    assert_eq!(code, 2);
    assert!(text.contains(&format!("{}: ", empty.display())), "{text}");
}

#[test]
fn empty_inputs_are_errors_that_name_the_folder() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    // A folder with no class folders.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (code, text) = fails(&["shard", s(&empty), "--out", s(&out)]);
    assert_eq!(code, 2);
    assert!(
        text.contains(&format!("{}: no class folders found", empty.display())),
        "{text}"
    );
    // Class folders with no files in them.
    let hollow = t.path().join("hollow");
    fs::create_dir_all(hollow.join("n00000001")).unwrap();
    fs::create_dir_all(hollow.join("n00000002")).unwrap();
    let (_, text) = fails(&["shard", s(&hollow), "--out", s(&out)]);
    assert!(
        text.contains(&format!(
            "{}: no files in the class folders",
            hollow.display()
        )),
        "{text}"
    );
    // A missing input, and a file where a folder should be.
    let (_, text) = fails(&["shard", s(&t.path().join("nope")), "--out", s(&out)]);
    assert!(
        text.contains(&format!(
            "{}: no such directory",
            t.path().join("nope").display()
        )),
        "{text}"
    );
    let file = t.path().join("file.JPEG");
    fs::write(&file, b"x").unwrap();
    let (_, text) = fails(&["shard", s(&file), "--out", s(&out)]);
    assert!(
        text.contains(&format!("{}: not a directory", file.display())),
        "{text}"
    );
    assert!(
        !out.exists(),
        "nothing written for inputs that are not there"
    );
    // Verifying or inspecting something that is not a dataset.
    for cmd in ["verify", "inspect"] {
        let (code, text) = fails(&[cmd, s(&t.path().join("nope"))]);
        assert_eq!(code, 2);
        assert!(
            text.contains("nope: no such dataset directory"),
            "{cmd}: {text}"
        );
    }
}

#[test]
fn strict_names_the_first_unusable_file_in_write_order() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let class_dir = images
        .join("train")
        .join(shardfeed_engine::synth::synset_id(1));
    let bad = class_dir.join("zz_not_an_image.JPEG");
    fs::write(&bad, b"GIF89a, or so it says").unwrap();
    let out = t.path().join("strict");
    let (code, text) = fails(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&out),
        "--strict",
    ]);
    assert_eq!(code, 2);
    assert!(
        text.contains(&format!("{}: ", bad.display())),
        "names the file by its full path: {text}"
    );
    assert!(text.contains("--strict makes this fatal"), "{text}");
    assert!(!out.exists(), "partial output removed");
}

#[test]
fn reencoded_output_is_byte_identical_whatever_the_worker_count() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), true);
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for (out, workers) in [(&a, "1"), (&b, "3")] {
        ok(&[
            "shard",
            s(&images.join("train")),
            "--out",
            s(out),
            "--max-side",
            "48",
            "--shards",
            "2",
            "--workers",
            workers,
        ]);
    }
    for name in ["manifest.json", "shard-00000.sfs", "shard-00001.sfs"] {
        assert_eq!(
            fs::read(a.join(name)).unwrap(),
            fs::read(b.join(name)).unwrap(),
            "{name}"
        );
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn force_checks_every_output_folder_before_deleting_anything() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    // One split: the dataset is the output folder itself, and a stranger's file sits beside it.
    let one = t.path().join("one");
    ok(&["shard", s(&images.join("train")), "--out", s(&one)]);
    fs::write(one.join("README.txt"), "notes\n").unwrap();
    let before = fs::read(one.join("manifest.json")).unwrap();
    let out = shardfeed(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&one),
        "--force",
    ]);
    assert_eq!(fs::read(one.join("manifest.json")).unwrap(), before);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: {}: is not empty (found \"README.txt\"): choose a new or empty directory\n",
            one.display()
        )
    );
    ok(&["verify", s(&one)]);

    // Two splits: val's folder is refused before train's dataset is touched.
    let both = t.path().join("both");
    ok(&["shard", s(&images), "--out", s(&both)]);
    fs::write(both.join("val/README.txt"), "notes\n").unwrap();
    let before = fs::read(both.join("train/manifest.json")).unwrap();
    let out = shardfeed(&[
        "shard",
        s(&images),
        "--out",
        s(&both),
        "--force",
        "--seed",
        "3",
    ]);
    assert_eq!(fs::read(both.join("train/manifest.json")).unwrap(), before);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: {}: is not empty (found \"README.txt\"): choose a new or empty directory\n",
            both.join("val").display()
        )
    );
    ok(&["verify", s(&both.join("train"))]);
}

#[test]
fn extract_never_writes_through_a_link_planted_at_a_temporary_name() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let out = t.path().join("shards");
    ok(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&out),
        "--no-shuffle",
    ]);
    let c0 = shardfeed_engine::synth::synset_id(0);
    let original = fs::read(images.join(format!("train/{c0}/{c0}_1.JPEG"))).unwrap();
    let victim = t.path().join("victim.txt");
    fs::write(&victim, "precious\n").unwrap();
    let got = t.path().join("got.jpg");
    std::os::unix::fs::symlink(&victim, t.path().join("got.jpg.tmp")).unwrap();
    ok(&[
        "extract",
        s(&out),
        "--path",
        &format!("{c0}/{c0}_1.JPEG"),
        "--out",
        s(&got),
    ]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!fs::symlink_metadata(&got).unwrap().is_symlink());
    assert_eq!(fs::read(&got).unwrap(), original);

    // --out naming a folder: refused, and nothing is left behind.
    let dir = t.path().join("a-folder");
    fs::create_dir(&dir).unwrap();
    let listing = || {
        let mut names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    for force in [false, true] {
        let mut args = vec!["extract", s(&out), "--index", "0", "--out", s(&dir)];
        if force {
            args.push("--force");
        }
        let res = shardfeed(&args);
        assert_eq!(res.status.code(), Some(2), "force {force}");
        assert_eq!(
            stderr_of(&res),
            format!(
                "error: {}: is a folder; give --out a file name\n",
                dir.display()
            ),
            "force {force}"
        );
        assert_eq!(listing(), before, "force {force}: nothing left behind");
    }
}

/// Runs shardfeed with its stdout a pipe whose read end is already closed, as in
/// `shardfeed ... | head -0`: every write to stdout fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (read, write) = rustix::pipe::pipe().unwrap();
    drop(read);
    Command::new(env!("CARGO_BIN_EXE_shardfeed"))
        .args(args)
        .stdout(std::process::Stdio::from(write))
        .output()
        .expect("run shardfeed")
}

#[test]
fn a_closed_stdout_never_panics_nor_stops_the_work() {
    let t = tempfile::tempdir().unwrap();
    let images = t.path().join("images");
    let res = with_closed_stdout(&["synth", s(&images), "--classes", "2", "--per-class", "3"]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr_of(&res));
    let out = t.path().join("shards");
    let res = with_closed_stdout(&["shard", s(&images), "--out", s(&out)]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr_of(&res));
    assert_eq!(stderr_of(&res), "");
    assert!(out.join("train/manifest.json").exists());
    assert!(
        out.join("val/manifest.json").exists(),
        "val is still written"
    );
    ok(&["verify", s(&out)]);
    for args in [
        vec!["verify", s(&out)],
        vec!["inspect", s(&out), "--classes"],
        vec!["inspect", s(&out), "--json"],
    ] {
        let res = with_closed_stdout(&args);
        assert_eq!(res.status.code(), Some(0), "{args:?}: {}", stderr_of(&res));
        assert_eq!(stderr_of(&res), "", "{args:?}");
    }
    let got = t.path().join("got.jpg");
    let res = with_closed_stdout(&[
        "extract",
        s(&out.join("val")),
        "--index",
        "1",
        "--out",
        s(&got),
    ]);
    assert_eq!(res.status.code(), Some(0), "{}", stderr_of(&res));
    assert!(got.exists());
    // A check that finds problems still says so by its exit code.
    let shard = out.join("train/shard-00000.sfs");
    let mut bytes = fs::read(&shard).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs::write(&shard, bytes).unwrap();
    let res = with_closed_stdout(&["verify", s(&out)]);
    assert_eq!(res.status.code(), Some(1), "{}", stderr_of(&res));

    // Any other failure to write stdout (here a full disk) is an I/O error: exit 2, said once.
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_shardfeed"))
        .args(["inspect", s(&out.join("val"))])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert_eq!(
        stderr_of(&res),
        "error: writing to standard output: No space left on device (os error 28)\n"
    );
}

#[test]
fn unreadable_entries_are_skipped_and_listed_and_fatal_with_strict() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let (c0, c1) = (
        shardfeed_engine::synth::synset_id(0),
        shardfeed_engine::synth::synset_id(1),
    );
    let class_dir = images.join("train").join(&c0);
    symlink(t.path().join("nowhere.JPEG"), class_dir.join("gone.JPEG")).unwrap();
    symlink("self.JPEG", class_dir.join("self.JPEG")).unwrap();
    symlink(".", class_dir.join("loop")).unwrap();
    symlink("../..", class_dir.join("up")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(class_dir.join("pipe.JPEG"))
        .status()
        .unwrap();
    assert!(fifo.success());
    symlink(t.path().join("unmounted"), images.join("train/n99999999")).unwrap();
    // Links are followed wherever they lead, outside the input folder too.
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::copy(
        class_dir.join(format!("{c0}_1.JPEG")),
        elsewhere.join("x.JPEG"),
    )
    .unwrap();
    symlink(&elsewhere, images.join("train").join(&c1).join("linked")).unwrap();
    // A folder that cannot be listed. Root reads it anyway: then that case is left out.
    let locked = class_dir.join("locked");
    fs::create_dir(&locked).unwrap();
    fs::write(locked.join("x.JPEG"), b"x").unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let locked_blocks = fs::read_dir(&locked).is_err();
    if !locked_blocks {
        eprintln!("note: permission bits do not stop this user (root): the unreadable-folder case is skipped");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_dir_all(&locked).unwrap();
    }

    let out = t.path().join("shards");
    let summary = ok(&["shard", s(&images), "--out", s(&out), "--no-shuffle"]);
    let mut want = vec![
        format!("    train/{c0}/gone.JPEG: cannot follow symbolic link: No such file or directory (os error 2)"),
        format!("    train/{c0}/loop: symbolic link loop: leads back to train/{c0}"),
        format!("    train/{c0}/pipe.JPEG: not a regular file"),
        format!("    train/{c0}/self.JPEG: cannot follow symbolic link: Too many levels of symbolic links (os error 40)"),
        format!("    train/{c0}/up: symbolic link loop: leads back to the input folder"),
        "    train/n99999999: cannot follow symbolic link: No such file or directory (os error 2)".to_string(),
    ];
    if locked_blocks {
        want.insert(
            1,
            format!("    train/{c0}/locked: cannot list folder: Permission denied (os error 13)"),
        );
    }
    let got: Vec<&str> = summary.lines().filter(|l| l.starts_with("    ")).collect();
    assert_eq!(got, want, "{summary}");
    assert!(
        summary.contains(&format!(
            "  skipped {} (listed in the manifest):",
            want.len()
        )),
        "{summary}"
    );
    let m = manifest(&out.join("train"));
    assert_eq!(
        m["records"], 25,
        "24 images and the one behind the link: {m}"
    );
    assert_eq!(m["skipped"].as_array().unwrap().len(), want.len());
    assert_eq!(m["classes"].as_array().unwrap().len(), 3);
    let ds = shardfeed_engine::shards::Dataset::open(out.join("train")).unwrap();
    assert!(ds
        .find_path(&format!("train/{c1}/linked/x.JPEG"))
        .unwrap()
        .is_some());

    let strict = shardfeed(&[
        "shard",
        s(&images),
        "--out",
        s(&t.path().join("strict")),
        "--strict",
        "--no-shuffle",
    ]);
    assert_eq!(strict.status.code(), Some(2));
    assert_eq!(
        stderr_of(&strict),
        format!(
            "error: sharding {}: {}: cannot follow symbolic link: No such file or directory (os error 2) (--strict makes this fatal; without it the file is skipped and listed)\n",
            images.join("train").display(),
            class_dir.join("gone.JPEG").display()
        )
    );
    if locked_blocks {
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn names_that_are_not_utf8_stay_distinct_and_control_characters_are_escaped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let c0 = shardfeed_engine::synth::synset_id(0);
    let class_dir = images.join("train").join(&c0);
    let (one, two) = (
        fs::read(class_dir.join(format!("{c0}_1.JPEG"))).unwrap(),
        fs::read(class_dir.join(format!("{c0}_2.JPEG"))).unwrap(),
    );
    fs::write(class_dir.join(OsStr::from_bytes(b"a\xe9.JPEG")), &one).unwrap();
    fs::write(class_dir.join(OsStr::from_bytes(b"a\xe8.JPEG")), &two).unwrap();
    fs::write(class_dir.join("back\\slash.JPEG"), &one).unwrap();
    fs::write(class_dir.join("bad\nforged: line.JPEG"), b"<html>").unwrap();
    let out = t.path().join("shards");
    let summary = ok(&["shard", s(&images), "--out", s(&out)]);
    assert!(
        summary.contains(&format!(
            "\n    train/{c0}/bad\\x0aforged: line.JPEG: not an image"
        )),
        "{summary}"
    );
    assert!(
        !summary.lines().any(|l| l.starts_with("forged")),
        "{summary}"
    );
    for (stored, want) in [
        (format!("train/{c0}/a\\xe9.JPEG"), &one),
        (format!("train/{c0}/a\\xe8.JPEG"), &two),
        (format!("train/{c0}/back\\\\slash.JPEG"), &one),
    ] {
        let got = t.path().join("got");
        ok(&[
            "extract",
            s(&out.join("train")),
            "--path",
            &stored,
            "--out",
            s(&got),
            "--force",
        ]);
        assert_eq!(&fs::read(&got).unwrap(), want, "{stored}");
    }
    // Without --out, extract writes the file under its original name, bytes and all.
    let ds = shardfeed_engine::shards::Dataset::open(out.join("train")).unwrap();
    let g = ds
        .find_path(&format!("train/{c0}/a\\xe8.JPEG"))
        .unwrap()
        .unwrap();
    let here = t.path().join("here");
    fs::create_dir(&here).unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_shardfeed"))
        .args(["extract", s(&out.join("train")), "--index", &g.to_string()])
        .current_dir(&here)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(0), "{}", stderr_of(&res));
    assert_eq!(
        fs::read(here.join(OsStr::from_bytes(b"a\xe8.JPEG"))).unwrap(),
        two
    );
}

#[test]
fn os_errors_are_printed_once() {
    let t = tempfile::tempdir().unwrap();
    let images = synth(t.path(), false);
    let missing = t.path().join("missing.txt");
    let res = shardfeed(&[
        "shard",
        s(&images.join("val")),
        "--out",
        s(&t.path().join("o")),
        "--val-labels",
        s(&missing),
    ]);
    assert_eq!(res.status.code(), Some(2));
    assert_eq!(
        stderr_of(&res),
        format!(
            "error: {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    let file = t.path().join("file");
    fs::write(&file, b"x").unwrap();
    let res = shardfeed(&[
        "shard",
        s(&images.join("train")),
        "--out",
        s(&file.join("sub")),
    ]);
    assert_eq!(res.status.code(), Some(2));
    assert_eq!(
        stderr_of(&res),
        format!(
            "error: sharding {}: {}: Not a directory (os error 20)\n",
            images.join("train").display(),
            file.join("sub").display()
        )
    );
}

#[test]
fn max_pixels_skips_images_whose_headers_declare_more() {
    let t = tempfile::tempdir().expect("tempdir");
    let images = synth(t.path(), false);
    let out = t.path().join("out");
    // 60 x 60 pixels at most: every synthetic image (150 px and more a side) declares more.
    let (code, text) = fails(&[
        "shard",
        s(&images),
        "--out",
        s(&out),
        "--max-pixels",
        "3600",
        "--strict",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("more than the limit of 3600 pixels"),
        "{text}"
    );
    // Without --strict they are skipped and listed, leaving splits with nothing to write.
    let (_, text) = fails(&[
        "shard",
        s(&images),
        "--out",
        s(&out),
        "--max-pixels",
        "3600",
    ]);
    assert!(
        text.contains("more than the limit of 3600 pixels"),
        "{text}"
    );
    // The default keeps them all.
    ok(&["shard", s(&images), "--out", s(&out)]);
}
