//! Writing a dataset folder: validation, directories, worker threads and
//! atomic file writes. The pixels and bytes come from [`crate::render`] and
//! [`crate::encode`]; this module only decides what goes where.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::design::MAX_CLASSES;
use crate::encode::{choose_kind, encode};
use crate::render::{image_rng, render_image_into, RgbBuffer, Split, Stream};
use crate::{synset_id, SynthError, SynthOptions, SynthSummary};

/// One image to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Job {
    split: Split,
    class: u32,
    /// 1-based index within the class.
    k: u32,
}

/// The images of a run, numbered: all of train (class by class), then val.
#[derive(Debug, Clone, Copy)]
struct Jobs {
    classes: u32,
    per_class: u32,
    val_per_class: u32,
}

impl Jobs {
    fn len(&self) -> u64 {
        u64::from(self.classes) * (u64::from(self.per_class) + u64::from(self.val_per_class))
    }

    fn get(&self, i: u64) -> Job {
        let train = u64::from(self.classes) * u64::from(self.per_class);
        let (split, i, n) = if i < train {
            (Split::Train, i, u64::from(self.per_class))
        } else {
            (Split::Val, i - train, u64::from(self.val_per_class))
        };
        Job {
            split,
            class: (i / n) as u32,
            k: (i % n) as u32 + 1,
        }
    }
}

pub(crate) fn validate(opts: &SynthOptions) -> Result<(), SynthError> {
    if opts.classes == 0 {
        return Err(SynthError::NoClasses);
    }
    if opts.classes > MAX_CLASSES {
        return Err(SynthError::TooManyClasses {
            classes: opts.classes,
            max: MAX_CLASSES,
        });
    }
    if opts.per_class == 0 {
        return Err(SynthError::NoImages);
    }
    if !(1..=100).contains(&opts.quality) {
        return Err(SynthError::BadQuality(opts.quality));
    }
    Ok(())
}

/// Creates `out` if missing; fails if it exists and holds anything.
fn prepare_output(out: &Path) -> Result<(), SynthError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SynthError::OutputNotEmpty(out.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(out),
        Err(source) => Err(SynthError::ReadDir {
            path: out.to_path_buf(),
            source,
        }),
    }
}

fn create_dir(path: &Path) -> Result<(), SynthError> {
    fs::create_dir_all(path).map_err(|source| SynthError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` via `path.tmp` and a rename, so `path` is either
/// absent or complete. (No fsync: this guards against an interrupted
/// process, not against power loss.)
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Err(source) = fs::write(&tmp, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(SynthError::Write { path: tmp, source });
    }
    fs::rename(&tmp, path).map_err(|source| SynthError::Rename {
        from: tmp,
        to: path.to_path_buf(),
        source,
    })
}

/// Per-worker buffers, reused for every image.
#[derive(Default)]
struct Worker {
    pixels: RgbBuffer,
    bytes: Vec<u8>,
    scratch: Vec<u8>,
}

impl Worker {
    /// Makes one image and writes it; returns its size in bytes.
    fn run(
        &mut self,
        out: &Path,
        synsets: &[String],
        opts: &SynthOptions,
        job: Job,
    ) -> Result<u64, SynthError> {
        let Job { split, class, k } = job;
        let syn = &synsets[class as usize];
        let path = out
            .join(split.dir_name())
            .join(syn)
            .join(format!("{syn}_{k}.JPEG"));
        render_image_into(class, opts.classes, opts.seed, split, k, &mut self.pixels);
        let mut rng = image_rng(opts.seed, split, class, k, Stream::Encoding);
        let kind = choose_kind(&mut rng, opts.oddities, split, class, k);
        encode(
            &self.pixels,
            kind,
            opts.quality,
            &mut self.bytes,
            &mut self.scratch,
        )
        .map_err(|source| SynthError::Encode {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &self.bytes)?;
        Ok(self.bytes.len() as u64)
    }
}

pub(crate) fn generate(
    out: &Path,
    opts: &SynthOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SynthSummary, SynthError> {
    validate(opts)?;
    prepare_output(out)?;
    let synsets: Vec<String> = (0..opts.classes).map(synset_id).collect();
    for (split, n) in [
        (Split::Train, opts.per_class),
        (Split::Val, opts.val_per_class),
    ] {
        if n == 0 {
            continue;
        }
        for syn in &synsets {
            create_dir(&out.join(split.dir_name()).join(syn))?;
        }
    }

    let jobs = Jobs {
        classes: opts.classes,
        per_class: opts.per_class,
        val_per_class: opts.val_per_class,
    };
    let total = jobs.len();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(usize::try_from(total).unwrap_or(usize::MAX))
    .max(1);

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let bytes = AtomicU64::new(0);
    let done = Mutex::new(0u64);
    let first_error: Mutex<Option<SynthError>> = Mutex::new(None);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut worker = Worker::default();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if i >= total {
                        break;
                    }
                    match worker.run(out, &synsets, opts, jobs.get(i)) {
                        Ok(n) => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                            // Under the lock so the counts reach `progress`
                            // in increasing order.
                            let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                            *done += 1;
                            progress(*done);
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut slot = first_error.lock().unwrap_or_else(|e| e.into_inner());
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });

    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(SynthSummary {
        images: total,
        bytes: bytes.into_inner(),
        classes: synsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::frame;
    use std::collections::BTreeMap;

    fn opts(classes: u32, per_class: u32, val_per_class: u32) -> SynthOptions {
        SynthOptions {
            classes,
            per_class,
            val_per_class,
            threads: 2,
            ..SynthOptions::default()
        }
    }

    /// Every file under `dir`, by relative path.
    fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn jobs_cover_train_then_val() {
        let jobs = Jobs {
            classes: 2,
            per_class: 3,
            val_per_class: 1,
        };
        let all: Vec<_> = (0..jobs.len()).map(|i| jobs.get(i)).collect();
        let job = |split, class, k| Job { split, class, k };
        assert_eq!(
            all,
            [
                job(Split::Train, 0, 1),
                job(Split::Train, 0, 2),
                job(Split::Train, 0, 3),
                job(Split::Train, 1, 1),
                job(Split::Train, 1, 2),
                job(Split::Train, 1, 3),
                job(Split::Val, 0, 1),
                job(Split::Val, 1, 1),
            ]
        );
    }

    #[test]
    fn output_is_identical_across_thread_counts() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut trees = Vec::new();
        for (dir, threads) in dirs.iter().zip([1, 2]) {
            let o = SynthOptions {
                threads,
                oddities: true,
                seed: 11,
                ..opts(3, 5, 2)
            };
            let out = dir.path().join("ds");
            let summary = generate(&out, &o, &|_| {}).unwrap();
            let tree = read_tree(&out);
            assert_eq!(summary.images, 21);
            assert_eq!(
                summary.bytes,
                tree.values().map(|b| b.len() as u64).sum::<u64>()
            );
            trees.push(tree);
        }
        assert_eq!(trees[0].len(), 21);
        assert!(trees[0] == trees[1], "thread count changed the output");
    }

    #[test]
    fn layout_and_counts_match_imagenet() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ds");
        let seen = Mutex::new(Vec::new());
        let summary = generate(&out, &opts(3, 4, 2), &|n| seen.lock().unwrap().push(n)).unwrap();
        assert_eq!(summary.images, 18);
        assert_eq!(summary.classes, (0..3).map(synset_id).collect::<Vec<_>>());
        assert_eq!(seen.into_inner().unwrap(), (1..=18).collect::<Vec<u64>>());

        let tree = read_tree(&out);
        let mut expected = Vec::new();
        for (split, n) in [("train", 4), ("val", 2)] {
            for syn in &summary.classes {
                for k in 1..=n {
                    expected.push(format!("{split}/{syn}/{syn}_{k}.JPEG"));
                }
            }
        }
        expected.sort();
        assert_eq!(tree.keys().cloned().collect::<Vec<_>>(), expected);
        for (name, bytes) in &tree {
            assert_eq!(&bytes[..2], &[0xFF, 0xD8], "{name}");
            assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9], "{name}");
            let (sof, n, f) = frame(bytes);
            assert_eq!(
                (sof, n, f[0]),
                (0xC0, 3, (2, 2)),
                "{name}: baseline RGB 4:2:0"
            );
        }
        // Train and val images with the same k differ.
        let syn = &summary.classes[0];
        assert_ne!(
            tree[&format!("train/{syn}/{syn}_1.JPEG")],
            tree[&format!("val/{syn}/{syn}_1.JPEG")]
        );
    }

    #[test]
    fn no_val_folder_without_val_images() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ds");
        let s = generate(&out, &opts(2, 1, 0), &|_| {}).unwrap();
        assert_eq!(s.images, 2);
        assert!(!out.join("val").exists());
    }

    #[test]
    fn oddities_produce_every_kind() {
        // Chosen from the encoding streams alone (cheap), then written with
        // `generate` and checked on disk: the dataset must contain at least
        // one of each kind.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ds");
        let o = SynthOptions {
            oddities: true,
            seed: 3,
            quality: 85,
            ..opts(2, 60, 0)
        };
        generate(&out, &o, &|_| {}).unwrap();
        let mut kinds = BTreeMap::new();
        for (name, bytes) in read_tree(&out) {
            let kind = if bytes.starts_with(b"\x89PNG") {
                "png".to_string()
            } else {
                assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9], "{name}");
                let (sof, n, f) = frame(&bytes);
                match (sof, n) {
                    (0xC0, 1) => "gray".into(),
                    (0xC0, 4) => "cmyk".into(),
                    (0xC0, 3) => format!("baseline {:?}", f[0]),
                    (0xC2, 3) => "progressive".into(),
                    other => panic!("{name}: unexpected frame {other:?}"),
                }
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
        let syn = synset_id(0);
        let png = fs::read(out.join(format!("train/{syn}/{syn}_1.JPEG"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        for k in [
            "png",
            "gray",
            "cmyk",
            "progressive",
            "baseline (1, 1)",
            "baseline (2, 2)",
        ] {
            assert!(kinds.contains_key(k), "no {k} in {kinds:?}");
        }
        assert_eq!(kinds["png"], 1);
    }

    #[test]
    fn bad_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ds");
        let run = |o: SynthOptions| generate(&out, &o, &|_| {}).unwrap_err();
        assert!(matches!(run(opts(0, 1, 1)), SynthError::NoClasses));
        assert!(matches!(run(opts(1, 0, 1)), SynthError::NoImages));
        assert!(matches!(
            run(opts(MAX_CLASSES + 1, 1, 1)),
            SynthError::TooManyClasses { classes, max: MAX_CLASSES } if classes == MAX_CLASSES + 1
        ));
        for q in [0, 101, 255] {
            let e = run(SynthOptions {
                quality: q,
                ..opts(1, 1, 1)
            });
            assert!(matches!(e, SynthError::BadQuality(x) if x == q), "{e}");
        }
        assert!(!out.exists(), "nothing is created for bad options");
    }

    #[test]
    fn non_empty_output_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), b"x").unwrap();
        let e = generate(dir.path(), &opts(1, 1, 0), &|_| {}).unwrap_err();
        assert!(
            matches!(&e, SynthError::OutputNotEmpty(p) if p == dir.path()),
            "{e}"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // An existing empty folder is fine.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        generate(&empty, &opts(1, 1, 0), &|_| {}).unwrap();

        // A file where the folder should be is an I/O error naming it.
        let file = dir.path().join("x");
        let e = generate(&file, &opts(1, 1, 0), &|_| {}).unwrap_err();
        assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.JPEG");
        write_atomic(&p, b"abc").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"abc");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A missing folder: the error names the temp path.
        let e = write_atomic(&dir.path().join("no/b.JPEG"), b"x").unwrap_err();
        assert!(matches!(&e, SynthError::Write { path, .. } if path.ends_with("b.JPEG.tmp")));
    }
}
