//! Label files for a flat validation folder: pure parsers, no I/O.
//!
//! ILSVRC2012's val images ship as one flat folder (`ILSVRC2012_val_00000001.JPEG` …) with the
//! labels in a separate file. Two forms are common:
//! - the devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID (1–1000) per line,
//!   line `k` for image `k`, plus a synset mapping that gives the synset of each ILSVRC2012_ID
//!   (the devkit keeps it in `meta.mat`; as text, one synset per line in ILSVRC2012_ID order, or
//!   `ID synset` pairs). Lines that hold synsets directly (TensorFlow's
//!   `imagenet_2012_validation_synset_labels.txt`) need no mapping.
//! - Kaggle's `LOC_val_solution.csv`: `ImageId,PredictionString`, where the prediction string
//!   starts with the synset (`n01751748 16 28 411 310 …`).

use std::collections::{BTreeSet, HashMap};

/// A parse error, with the 1-based line it is on (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{detail}", if *line == 0 { String::new() } else { format!("line {line}: ") })]
pub struct LabelFileError {
    /// 1-based line number; 0 when the problem is the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub detail: String,
}

fn err(line: usize, detail: impl Into<String>) -> LabelFileError {
    LabelFileError {
        line,
        detail: detail.into(),
    }
}

/// True for a WordNet id such as `n01440764`.
pub fn is_synset(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The image number in an ILSVRC file name: `ILSVRC2012_val_00000042.JPEG` → 42.
pub fn val_image_number(file_name: &str) -> Option<u64> {
    let stem = file_name.split('.').next()?;
    let digits = stem.rsplit('_').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a ground-truth file holds: ILSVRC2012_IDs (to map through a synset list) or synsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroundTruth {
    /// 1-based ILSVRC2012_IDs, one per image in image-number order.
    Ids(Vec<u32>),
    /// Synsets, one per image in image-number order.
    Synsets(Vec<String>),
}

/// Parses a ground-truth file: one entry per non-empty line, all IDs or all synsets.
pub fn parse_ground_truth(text: &str) -> Result<GroundTruth, LabelFileError> {
    let mut ids = Vec::new();
    let mut synsets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if is_synset(t) {
            synsets.push(t.to_owned());
        } else {
            let id: u32 = t.parse().map_err(|_| {
                err(
                    i + 1,
                    format!("expected an ILSVRC2012_ID or a synset, found {t:?}"),
                )
            })?;
            if id == 0 {
                return Err(err(i + 1, "ILSVRC2012_IDs start at 1"));
            }
            ids.push(id);
        }
        if !ids.is_empty() && !synsets.is_empty() {
            return Err(err(i + 1, "mixes ILSVRC2012_IDs and synsets"));
        }
    }
    match (ids.is_empty(), synsets.is_empty()) {
        (true, true) => Err(err(0, "the file holds no labels")),
        (false, _) => Ok(GroundTruth::Ids(ids)),
        (true, false) => Ok(GroundTruth::Synsets(synsets)),
    }
}

/// Parses a synset mapping: line `k` holds the synset of ILSVRC2012_ID `k` (`n02119789` or
/// `n02119789 kit fox`), or each line is `ID synset …`. Returns synsets indexed by `ID - 1`.
pub fn parse_synset_mapping(text: &str) -> Result<Vec<String>, LabelFileError> {
    // Every ID from 1 to the largest needs a line of its own, so no ID can be larger than the
    // number of entries: that bounds the table by the file's size, not by a number in it (a
    // hostile `4000000000 n01440764` would otherwise ask for a table of about 100 GB).
    let entries = text.lines().filter(|l| !l.trim().is_empty()).count();
    let mut by_id: Vec<Option<String>> = Vec::new();
    let mut next_id = 1usize;
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let (id, synset) = if is_synset(first) {
            (next_id, first)
        } else {
            let id: usize = first.parse().map_err(|_| {
                err(
                    i + 1,
                    format!("expected a synset or `ID synset`, found {first:?}"),
                )
            })?;
            let s = words
                .next()
                .filter(|s| is_synset(s))
                .ok_or_else(|| err(i + 1, "expected a synset after the ID"))?;
            (id, s)
        };
        if id == 0 {
            return Err(err(i + 1, "ILSVRC2012_IDs start at 1"));
        }
        if id > entries {
            return Err(err(
                i + 1,
                format!(
                    "ILSVRC2012_ID {id} is larger than the number of entries in the file \
                     ({entries}): IDs run from 1 to the number of classes"
                ),
            ));
        }
        if by_id.len() < id {
            by_id.resize(id, None);
        }
        if by_id[id - 1].replace(synset.to_owned()).is_some() {
            return Err(err(i + 1, format!("ILSVRC2012_ID {id} appears twice")));
        }
        next_id = id + 1;
    }
    if by_id.is_empty() {
        return Err(err(0, "the file holds no synsets"));
    }
    by_id
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| err(0, format!("no synset for ILSVRC2012_ID {}", i + 1))))
        .collect()
}

/// Resolves a ground truth to one synset per image number (index `k - 1` for image `k`).
pub fn resolve_ground_truth(
    truth: GroundTruth,
    mapping: Option<&[String]>,
) -> Result<Vec<String>, LabelFileError> {
    match truth {
        GroundTruth::Synsets(s) => Ok(s),
        GroundTruth::Ids(ids) => {
            let map = mapping.ok_or_else(|| {
                err(0, "the ground truth holds ILSVRC2012_IDs: a synset mapping (--synset-map) is needed")
            })?;
            ids.iter()
                .enumerate()
                .map(|(i, &id)| {
                    map.get(id as usize - 1).cloned().ok_or_else(|| {
                        err(
                            i + 1,
                            format!(
                                "ILSVRC2012_ID {id} is not in the synset mapping ({} synsets)",
                                map.len()
                            ),
                        )
                    })
                })
                .collect()
        }
    }
}

/// Parses Kaggle's `LOC_val_solution.csv` into image id (file stem) → synset.
pub fn parse_kaggle_solution(text: &str) -> Result<HashMap<String, String>, LabelFileError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || (i == 0 && t.starts_with("ImageId")) {
            continue;
        }
        let (id, pred) = t
            .split_once(',')
            .ok_or_else(|| err(i + 1, "expected `ImageId,PredictionString`"))?;
        let synset = pred
            .split_whitespace()
            .next()
            .filter(|s| is_synset(s))
            .ok_or_else(|| {
                err(
                    i + 1,
                    format!("prediction string {pred:?} does not start with a synset"),
                )
            })?;
        if out
            .insert(id.trim().to_owned(), synset.to_owned())
            .is_some()
        {
            return Err(err(i + 1, format!("image {id} appears twice")));
        }
    }
    if out.is_empty() {
        return Err(err(0, "the file holds no labels"));
    }
    Ok(out)
}

/// The sorted, de-duplicated synsets of a label source: the class list `ImageFolder` would
/// build from the same classes.
pub fn sorted_classes<'a>(synsets: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    synsets
        .into_iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devkit_ground_truth_maps_through_the_synset_list() {
        let truth = parse_ground_truth("490\n361\n\n171\n").unwrap();
        assert_eq!(truth, GroundTruth::Ids(vec![490, 361, 171]));
        let mut map_text = String::new();
        for k in 1..=500 {
            map_text.push_str(&format!("n{:08} words for {k}\n", 1_000_000 + k));
        }
        let map = parse_synset_mapping(&map_text).unwrap();
        assert_eq!(map.len(), 500);
        let labels = resolve_ground_truth(truth, Some(&map)).unwrap();
        assert_eq!(labels, vec!["n01000490", "n01000361", "n01000171"]);
    }

    #[test]
    fn id_synset_pairs_are_accepted_and_gaps_refused() {
        let map = parse_synset_mapping("2 n00000002 b\n1 n00000001 a\n").unwrap();
        assert_eq!(map, vec!["n00000001", "n00000002"]);
        // A gap leaves an ID larger than the number of entries.
        let e = parse_synset_mapping("1 n00000001\n3 n00000003\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.detail.starts_with(
                "ILSVRC2012_ID 3 is larger than the number of entries in the file (2)"
            ),
            "{e}"
        );
        let e = parse_synset_mapping("1 n00000001\n1 n00000002\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn a_huge_id_is_refused_naming_the_line_not_allocated() {
        // Before the bound, this sized a table by the ID: 24 MB here, about 100 GB for
        // 4000000000, and a capacity-overflow panic for the largest usize.
        let e = parse_synset_mapping("1 n00000001\n1000000 n00000002\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: ILSVRC2012_ID 1000000 is larger than the number of entries in the file (2): \
             IDs run from 1 to the number of classes"
        );
        let e = parse_synset_mapping("18446744073709551615 n00000001\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(
            e.detail
                .starts_with("ILSVRC2012_ID 18446744073709551615 is larger"),
            "{e}"
        );
        // The largest ID that fits is still fine, in any order.
        let map = parse_synset_mapping("3 n00000003\n\n1 n00000001\n2 n00000002\n").unwrap();
        assert_eq!(map, vec!["n00000001", "n00000002", "n00000003"]);
        // A problem with the file as a whole has no line number.
        assert_eq!(
            parse_synset_mapping("\n").unwrap_err().to_string(),
            "the file holds no synsets"
        );
    }

    #[test]
    fn ids_without_a_mapping_or_out_of_range_are_errors() {
        let truth = parse_ground_truth("1\n5\n").unwrap();
        assert!(resolve_ground_truth(truth.clone(), None).is_err());
        let e = resolve_ground_truth(truth, Some(&["n00000001".to_string()])).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn synset_ground_truth_needs_no_mapping() {
        let truth = parse_ground_truth("n01751748\nn09193705\n").unwrap();
        assert_eq!(
            resolve_ground_truth(truth, None).unwrap(),
            vec!["n01751748", "n09193705"]
        );
    }

    #[test]
    fn malformed_ground_truth_names_the_line() {
        assert_eq!(parse_ground_truth("1\nabc\n").unwrap_err().line, 2);
        assert_eq!(parse_ground_truth("1\nn01751748\n").unwrap_err().line, 2);
        assert!(parse_ground_truth("\n\n").is_err());
    }

    #[test]
    fn kaggle_solution_takes_the_first_synset() {
        let csv = "ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295 \nILSVRC2012_val_00000001,n01751748 16 28 411 310\n";
        let m = parse_kaggle_solution(csv).unwrap();
        assert_eq!(m["ILSVRC2012_val_00008726"], "n02119789");
        assert_eq!(m["ILSVRC2012_val_00000001"], "n01751748");
        assert_eq!(
            parse_kaggle_solution("ImageId,P\nx,12 3\n")
                .unwrap_err()
                .line,
            2
        );
    }

    #[test]
    fn image_numbers_come_from_the_file_name() {
        assert_eq!(val_image_number("ILSVRC2012_val_00000042.JPEG"), Some(42));
        assert_eq!(val_image_number("ILSVRC2012_val_00050000"), Some(50000));
        assert_eq!(val_image_number("cat.jpg"), None);
        assert!(is_synset("n01440764"));
        assert!(!is_synset("n0144076"));
        assert!(!is_synset("x01440764"));
    }
}
