//! Finding the inputs of a split: class folders (`train/n01440764/*.JPEG`), or a flat folder with
//! a label file. Produces the class list and a sorted list of files with their labels.

use super::IngestError;
use crate::labels;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its path relative to the input root, `/`-separated (stored in the record).
    pub rel: String,
    /// Its class index, or the reason it has none.
    pub label: Result<u32, String>,
}

/// The inputs of one split.
#[derive(Debug, Clone)]
pub struct SplitInputs {
    /// Synset ids in label order.
    pub classes: Vec<String>,
    /// Files sorted by relative path.
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
    move |source| IngestError::Io {
        path: path.to_owned(),
        source,
    }
}

fn rel_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every regular file under `dir` (recursively, following links), hidden ones left out, sorted.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.path()).map_err(io_err(dir)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if is_hidden(&p) {
            continue;
        }
        let meta = fs::metadata(&p).map_err(io_err(&p))?;
        if meta.is_dir() {
            files_under(&p, out)?;
        } else if meta.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// The class folders directly under `dir`, sorted by name (`ImageFolder`'s class order).
pub fn class_folders(dir: &Path) -> Result<Vec<String>, IngestError> {
    let mut classes = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        if !is_hidden(&p) && fs::metadata(&p).map_err(io_err(&p))?.is_dir() {
            classes.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    Ok(classes)
}

/// A split laid out as class folders under `dir`. `classes`, when given (a val split made with
/// its train split's classes), fixes the class list; a folder not in it is an error.
pub fn from_class_folders(
    root: &Path,
    dir: &Path,
    classes: Option<&[String]>,
) -> Result<SplitInputs, IngestError> {
    let found = class_folders(dir)?;
    if found.is_empty() {
        return Err(IngestError::Source {
            path: dir.to_owned(),
            detail: "no class folders found (expected e.g. n01440764/*.JPEG)".into(),
        });
    }
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => found.clone(),
    };
    let index: HashMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut files = Vec::new();
    for name in &found {
        let Some(&label) = index.get(name.as_str()) else {
            return Err(IngestError::Source {
                path: dir.join(name),
                detail: "class folder is not one of the train split's classes".into(),
            });
        };
        let mut paths = Vec::new();
        files_under(&dir.join(name), &mut paths)?;
        files.extend(paths.into_iter().map(|p| InputFile {
            rel: rel_of(root, &p),
            path: p,
            label: Ok(label),
        }));
    }
    if files.is_empty() {
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
    let mut paths = Vec::new();
    files_under(dir, &mut paths)?;
    if paths.is_empty() {
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
    let files = paths
        .into_iter()
        .map(|p| {
            let label = match synset_of(&p) {
                None => Err(format!("no label for this file in {label_file}")),
                Some(s) => index
                    .get(s.as_str())
                    .copied()
                    .ok_or_else(|| format!("label {s} is not one of the classes")),
            };
            InputFile {
                rel: rel_of(root, &p),
                path: p,
                label,
            }
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
