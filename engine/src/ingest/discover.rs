//! Finding the inputs of a split: class folders (`train/n01440764/*.JPEG`), or a flat folder with
//! a label file. Produces the class list and a sorted list of files with their labels.

use super::{escape_name, IngestError};
use crate::labels;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// One input: a file to read, or an entry that discovery could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its path relative to the input root, `/`-separated, each name escaped by
    /// [`escape_name`](super::escape_name) (stored in the record).
    pub rel: String,
    /// Its class index, or the reason it has none.
    pub label: Result<u32, String>,
    /// Why discovery could not use the entry (a folder that cannot be listed, a link that is
    /// broken or loops, something that is not a regular file): it is skipped and listed, or
    /// fatal with `--strict`, without being read.
    pub problem: Option<String>,
}

impl InputFile {
    fn problem(root: &Path, path: PathBuf, reason: String) -> InputFile {
        InputFile {
            rel: rel_of(root, &path),
            label: Err(reason.clone()),
            problem: Some(reason),
            path,
        }
    }
}

/// The inputs of one split.
#[derive(Debug, Clone)]
pub struct SplitInputs {
    /// Synset ids in label order.
    pub classes: Vec<String>,
    /// Files sorted by relative path, with the entries discovery could not use in their place.
    pub files: Vec<InputFile>,
}

/// Where the labels of a flat folder come from.
#[derive(Debug, Clone)]
pub enum FlatLabels {
    /// The devkit's ground truth (IDs or synsets), with the ID → synset mapping when it holds IDs.
    GroundTruth {
        /// `ILSVRC2012_validation_ground_truth.txt` or a synset-per-line file.
        file: PathBuf,
        /// The synset of each ILSVRC2012_ID, one per line in ID order.
        synset_map: Option<PathBuf>,
    },
    /// Kaggle's `LOC_val_solution.csv`.
    KaggleCsv(PathBuf),
}

/// Maps an input file to the synset its label file gives it.
type SynsetOf = Box<dyn Fn(&Path) -> Option<String>>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |error| IngestError::Io {
        path: path.to_owned(),
        error,
    }
}

/// A file or folder name as stored: its raw bytes, escaped (see [`super::names`]).
fn name_of(name: &OsStr) -> String {
    escape_name(name.as_encoded_bytes())
}

fn rel_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| name_of(c.as_os_str()))
        .collect::<Vec<_>>()
        .join("/")
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

/// What identifies a folder however it is reached, to tell a link loop from a new folder.
#[cfg(unix)]
type DirId = (u64, u64);
#[cfg(not(unix))]
type DirId = PathBuf;

#[cfg(unix)]
fn dir_id(_path: &Path, meta: &fs::Metadata) -> std::io::Result<DirId> {
    use std::os::unix::fs::MetadataExt;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn dir_id(path: &Path, _meta: &fs::Metadata) -> std::io::Result<DirId> {
    fs::canonicalize(path)
}

/// The entries of `dir`, sorted, hidden ones left out.
fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if !is_hidden(&p) {
            entries.push(p);
        }
    }
    entries.sort();
    Ok(entries)
}

/// What an entry turned out to be, links followed.
enum Kind {
    File,
    Dir(DirId),
    /// Unusable, and why.
    Problem(String),
}

/// Links are followed wherever they lead, out of the input folder too (subsets of ImageNet are
/// often farms of links into the full set); a link back to a folder being listed is a loop.
fn kind_of(p: &Path, ancestors: &[(DirId, String)]) -> Kind {
    let meta = match fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            let link = fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
            return Kind::Problem(if link {
                format!("cannot follow symbolic link: {e}")
            } else {
                format!("cannot read: {e}")
            });
        }
    };
    if meta.is_file() {
        return Kind::File;
    }
    if !meta.is_dir() {
        return Kind::Problem("not a regular file".into());
    }
    match dir_id(p, &meta) {
        Err(e) => Kind::Problem(format!("cannot read: {e}")),
        Ok(id) => match ancestors.iter().find(|(a, _)| *a == id) {
            Some((_, rel)) if rel.is_empty() => {
                Kind::Problem("symbolic link loop: leads back to the input folder".into())
            }
            Some((_, rel)) => Kind::Problem(format!("symbolic link loop: leads back to {rel}")),
            None => Kind::Dir(id),
        },
    }
}

/// Every regular file under `dir` (recursively), sorted, hidden ones left out; what cannot be
/// listed, read or followed is recorded in its place (see [`InputFile::problem`]). `id` is
/// `dir`'s; `ancestors` holds the folders from the input root down to `dir`'s parent.
fn files_under(
    root: &Path,
    dir: &Path,
    id: DirId,
    ancestors: &mut Vec<(DirId, String)>,
    out: &mut Vec<InputFile>,
    label: &Result<u32, String>,
) {
    match list_dir(dir) {
        Ok(entries) => files_in(root, dir, id, entries, ancestors, out, label),
        Err(e) => {
            let reason = format!("cannot list folder: {e}");
            out.push(InputFile::problem(root, dir.to_owned(), reason));
        }
    }
}

/// [`files_under`] for a folder already listed.
fn files_in(
    root: &Path,
    dir: &Path,
    id: DirId,
    entries: Vec<PathBuf>,
    ancestors: &mut Vec<(DirId, String)>,
    out: &mut Vec<InputFile>,
    label: &Result<u32, String>,
) {
    ancestors.push((id, rel_of(root, dir)));
    for p in entries {
        match kind_of(&p, ancestors) {
            Kind::File => out.push(InputFile {
                rel: rel_of(root, &p),
                path: p,
                label: label.clone(),
                problem: None,
            }),
            Kind::Dir(id) => files_under(root, &p, id, ancestors, out, label),
            Kind::Problem(reason) => out.push(InputFile::problem(root, p, reason)),
        }
    }
    ancestors.pop();
}

/// The first ancestor of a walk under `dir`: the input root (its relative path is empty); and
/// `dir`'s own identity.
fn walk_start(root: &Path, dir: &Path) -> Result<(Vec<(DirId, String)>, DirId), IngestError> {
    let id_of = |d: &Path| {
        fs::metadata(d)
            .and_then(|m| dir_id(d, &m))
            .map_err(io_err(d))
    };
    Ok((vec![(id_of(root)?, String::new())], id_of(dir)?))
}

/// An entry directly under a split's folder: a class folder, or one that cannot be used.
enum ClassEntry {
    Class { path: PathBuf, id: DirId },
    Problem(InputFile),
}

/// The entries under `dir` that are (or, being unusable, may have been) class folders, with
/// their stored names, sorted by them. Regular files there are not classes and are left out.
/// Also returns the walk's first ancestors: the input root and `dir`.
#[allow(clippy::type_complexity)]
fn class_entries(
    root: &Path,
    dir: &Path,
) -> Result<(Vec<(String, ClassEntry)>, Vec<(DirId, String)>), IngestError> {
    let (mut ancestors, id) = walk_start(root, dir)?;
    ancestors.push((id, rel_of(root, dir)));
    let mut found = Vec::new();
    for p in list_dir(dir).map_err(io_err(dir))? {
        let name = p.file_name().map(name_of).unwrap_or_default();
        match kind_of(&p, &ancestors) {
            Kind::File => {}
            Kind::Dir(id) => found.push((name, ClassEntry::Class { path: p, id })),
            Kind::Problem(reason) => {
                let problem = InputFile::problem(root, p, reason);
                found.push((name, ClassEntry::Problem(problem)));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((found, ancestors))
}

/// The class folders directly under `dir`, sorted by name (`ImageFolder`'s class order), names
/// escaped as records store them.
pub fn class_folders(dir: &Path) -> Result<Vec<String>, IngestError> {
    Ok(class_entries(dir, dir)?
        .0
        .into_iter()
        .filter_map(|(name, e)| matches!(e, ClassEntry::Class { .. }).then_some(name))
        .collect())
}

/// A split laid out as class folders under `dir`. `classes`, when given (a val split made with
/// its train split's classes), fixes the class list; a folder not in it is an error.
pub fn from_class_folders(
    root: &Path,
    dir: &Path,
    classes: Option<&[String]>,
) -> Result<SplitInputs, IngestError> {
    let (entries, mut ancestors) = class_entries(root, dir)?;
    let found: Vec<&str> = entries
        .iter()
        .filter_map(|(name, e)| matches!(e, ClassEntry::Class { .. }).then_some(name.as_str()))
        .collect();
    if found.is_empty() {
        return Err(IngestError::Source {
            path: dir.to_owned(),
            detail: "no class folders found (expected e.g. n01440764/*.JPEG)".into(),
        });
    }
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => found.iter().map(|&n| n.to_owned()).collect(),
    };
    let index: HashMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut files = Vec::new();
    let mut in_class_folders = 0;
    for (name, entry) in entries {
        match entry {
            ClassEntry::Problem(p) => files.push(p),
            ClassEntry::Class { path, id } => {
                let Some(&label) = index.get(name.as_str()) else {
                    return Err(IngestError::Source {
                        path,
                        detail: "class folder is not one of the train split's classes".into(),
                    });
                };
                let before = files.len();
                files_under(root, &path, id, &mut ancestors, &mut files, &Ok(label));
                in_class_folders += files.len() - before;
            }
        }
    }
    if in_class_folders == 0 {
        return Err(IngestError::Source {
            path: dir.to_owned(),
            detail: "no files in the class folders".into(),
        });
    }
    Ok(SplitInputs { classes, files })
}

fn read_text(path: &Path) -> Result<String, IngestError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn label_err(path: &Path) -> impl FnOnce(labels::LabelFileError) -> IngestError + '_ {
    move |e| IngestError::Labels {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// A flat folder of images labelled by a label file. The class list is `classes` when given
/// (the train split's), else the sorted synsets the label file knows.
pub fn from_flat_folder(
    root: &Path,
    dir: &Path,
    source: &FlatLabels,
    classes: Option<&[String]>,
) -> Result<SplitInputs, IngestError> {
    let (mut ancestors, id) = walk_start(root, dir)?;
    let entries = list_dir(dir).map_err(io_err(dir))?;
    let mut found = Vec::new();
    let unlabelled = Err(String::new());
    files_in(
        root,
        dir,
        id,
        entries,
        &mut ancestors,
        &mut found,
        &unlabelled,
    );
    if found.is_empty() {
        return Err(IngestError::Source {
            path: dir.to_owned(),
            detail: "no files found".into(),
        });
    }
    let stem = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .unwrap_or("")
            .to_owned()
    };
    // synset_of(path) for every file, and the synsets the source knows.
    let (synset_of, known, source_name): (SynsetOf, Vec<String>, PathBuf) = match source {
        FlatLabels::GroundTruth { file, synset_map } => {
            let truth = labels::parse_ground_truth(&read_text(file)?).map_err(label_err(file))?;
            let map = match synset_map {
                Some(m) => {
                    Some(labels::parse_synset_mapping(&read_text(m)?).map_err(label_err(m))?)
                }
                None => None,
            };
            let per_image =
                labels::resolve_ground_truth(truth, map.as_deref()).map_err(label_err(file))?;
            let known = map.unwrap_or_else(|| per_image.clone());
            let f = move |p: &Path| {
                let n = labels::val_image_number(p.file_name()?.to_str()?)?;
                per_image
                    .get(usize::try_from(n).ok()?.checked_sub(1)?)
                    .cloned()
            };
            (Box::new(f), known, file.clone())
        }
        FlatLabels::KaggleCsv(file) => {
            let map = labels::parse_kaggle_solution(&read_text(file)?).map_err(label_err(file))?;
            let known: Vec<String> = map.values().cloned().collect();
            let f = move |p: &Path| map.get(&stem(p)).cloned();
            (Box::new(f), known, file.clone())
        }
    };
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => labels::sorted_classes(&known),
    };
    let index: HashMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let label_file = source_name.display().to_string();
    let files = found
        .into_iter()
        .map(|f| {
            if f.problem.is_some() {
                return f;
            }
            let label = match synset_of(&f.path) {
                None => Err(format!("no label for this file in {label_file}")),
                Some(s) => index
                    .get(s.as_str())
                    .copied()
                    .ok_or_else(|| format!("label {s} is not one of the classes")),
            };
            InputFile { label, ..f }
        })
        .collect();
    Ok(SplitInputs { classes, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn class_folders_give_sorted_classes_and_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for p in [
            "train/n2/b.JPEG",
            "train/n2/a.JPEG",
            "train/n1/z.JPEG",
            "train/n1/.hidden",
            "train/README",
        ] {
            touch(&root.join(p));
        }
        let s = from_class_folders(root, &root.join("train"), None).unwrap();
        assert_eq!(s.classes, vec!["n1", "n2"]);
        let got: Vec<_> = s
            .files
            .iter()
            .map(|f| (f.rel.as_str(), f.label.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("train/n1/z.JPEG", Ok(0)),
                ("train/n2/a.JPEG", Ok(1)),
                ("train/n2/b.JPEG", Ok(1))
            ]
        );
        // A val split with the train classes: its folders map to train's labels.
        touch(&root.join("val/n2/v.JPEG"));
        let classes = vec!["n0".to_string(), "n1".to_string(), "n2".to_string()];
        let v = from_class_folders(root, &root.join("val"), Some(&classes)).unwrap();
        assert_eq!(v.files[0].label, Ok(2));
        touch(&root.join("val/n9/v.JPEG"));
        assert!(from_class_folders(root, &root.join("val"), Some(&classes)).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn broken_and_looping_links_are_listed_in_place_and_links_out_are_followed() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("in");
        touch(&root.join("val/a.JPEG"));
        touch(&d.path().join("outside/b.JPEG"));
        symlink(d.path().join("outside"), root.join("val/out")).unwrap();
        symlink("nowhere", root.join("val/broken.JPEG")).unwrap();
        symlink("..", root.join("val/up")).unwrap();
        fs::write(root.join("gt.txt"), "n00000001\n").unwrap();
        let src = FlatLabels::GroundTruth {
            file: root.join("gt.txt"),
            synset_map: None,
        };
        let s = from_flat_folder(&root, &root.join("val"), &src, None).unwrap();
        let got: Vec<_> = s
            .files
            .iter()
            .map(|f| (f.rel.as_str(), f.problem.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("val/a.JPEG", None),
                (
                    "val/broken.JPEG",
                    Some("cannot follow symbolic link: No such file or directory (os error 2)")
                ),
                ("val/out/b.JPEG", None),
                (
                    "val/up",
                    Some("symbolic link loop: leads back to the input folder")
                ),
            ]
        );
    }

    #[test]
    fn empty_or_missing_inputs_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let e = from_class_folders(d.path(), d.path(), None).unwrap_err();
        assert!(e.to_string().contains("no class folders"), "{e}");
        fs::create_dir_all(d.path().join("n1")).unwrap();
        let e = from_class_folders(d.path(), d.path(), None).unwrap_err();
        assert!(e.to_string().contains("no files"), "{e}");
        let e = from_class_folders(d.path(), &d.path().join("nope"), None).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn a_flat_folder_takes_labels_from_the_devkit_or_kaggle() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for k in 1..=3 {
            touch(&root.join(format!("val/ILSVRC2012_val_{k:08}.JPEG")));
        }
        touch(&root.join("val/stray.JPEG"));
        fs::write(root.join("gt.txt"), "2\n1\n2\n").unwrap();
        fs::write(root.join("map.txt"), "n00000009\nn00000003\n").unwrap();
        let src = FlatLabels::GroundTruth {
            file: root.join("gt.txt"),
            synset_map: Some(root.join("map.txt")),
        };
        let s = from_flat_folder(root, &root.join("val"), &src, None).unwrap();
        assert_eq!(s.classes, vec!["n00000003", "n00000009"]);
        let labels: Vec<_> = s.files.iter().map(|f| f.label.clone()).collect();
        assert_eq!(labels[..3], [Ok(0), Ok(1), Ok(0)]);
        assert!(labels[3].as_ref().unwrap_err().contains("no label"));

        fs::write(
            root.join("sol.csv"),
            "ImageId,PredictionString\nILSVRC2012_val_00000001,n00000009 1 2 3 4\nILSVRC2012_val_00000003,n00000003 1 2 3 4\n",
        )
        .unwrap();
        let s = from_flat_folder(
            root,
            &root.join("val"),
            &FlatLabels::KaggleCsv(root.join("sol.csv")),
            None,
        )
        .unwrap();
        let labels: Vec<_> = s.files.iter().map(|f| f.label.clone()).collect();
        assert_eq!(labels[0], Ok(1));
        assert!(labels[1].is_err());
        assert_eq!(labels[2], Ok(0));
    }
}
