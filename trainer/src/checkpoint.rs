//! Checkpoints: a directory holding `state-NNNNNNNN.safetensors` (named tensors: `param.NAME`,
//! `buffer.NAME` for BN statistics, `lars.momentum.NAME`) and `checkpoint.json`
//! ([`CheckpointMeta`]: step, loader position, the run's shape), which names the tensor file and
//! is written last.
//!
//! Every tensor is stored per parameter, contiguous in its logical (NCHW) shape, whatever memory
//! format the run that wrote it used, so a checkpoint written channels-last (the GPU default)
//! resumes NCHW (the CPU default) and the reverse. Format 1 (before format 2) stored the LARS
//! momentum as one flat `lars.momentum` tensor in the writer's parameter layout, which for a
//! channels-last run holds conv weights in OHWI order and does not say so. Such files are still
//! read, as then: the flat momentum is taken in the resuming run's layout, which is right only when
//! the run resumes with the memory format it was written with (`--memory-format`, or the same kind
//! of device); the first checkpoint it then writes is format 2.
//!
//! Writes are atomic: temp file → fsync → rename, the JSON after the tensors, the directory
//! fsynced, older state files removed only after. A crash or Ctrl-C at any point leaves the
//! previous checkpoint readable. [`save`] and [`load`] do the files; [`crate::train`] decides what
//! goes in.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::Position;

/// Version of the checkpoint layout written by this code: 2, per-parameter momentum in NCHW.
pub const CHECKPOINT_FORMAT: u32 = 2;
/// The oldest layout [`load`] still reads: 1, one flat momentum tensor in the writer's layout.
pub const OLDEST_READABLE_FORMAT: u32 = 1;
const META_FILE: &str = "checkpoint.json";

/// Reading or writing a checkpoint failed; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a checkpoint this code can read.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint is of another run shape (model, parameters).
    #[error("{path}: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// libtorch failed to (de)serialise tensors.
    #[error("{path}: {source}")]
    Torch {
        /// The file.
        path: PathBuf,
        /// libtorch's error.
        source: tch::TchError,
    },
}

/// The JSON half of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The layout version: [`CHECKPOINT_FORMAT`] when written by this build.
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Where the loader resumes: the next batch to train on.
    pub position: Position,
    /// Model name (e.g. `resnet50`).
    pub model: String,
    /// Trainable parameters.
    pub parameters: i64,
    /// Replicas of the run that wrote it.
    pub world_size: usize,
    /// Images per step over all replicas of the run that wrote it (absent in checkpoints
    /// written before elastic resume): a run resumes at any world size with the same global
    /// batch, which fixes the batches' samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<u64>,
    /// The tensor file, relative to the checkpoint directory.
    pub tensors: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync_file(path: &Path) -> Result<(), CheckpointError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Writes `tensors` and `meta` (whose `tensors` field is set here) into `dir`, atomically.
/// Returns the path of `checkpoint.json`.
pub fn save(
    dir: &Path,
    mut meta: CheckpointMeta,
    tensors: &[(String, Tensor)],
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("state-{:08}.safetensors", meta.step);
    let final_path = dir.join(&name);
    let tmp_path = dir.join(format!("{name}.tmp"));
    Tensor::write_safetensors(tensors, &tmp_path).map_err(|source| CheckpointError::Torch {
        path: tmp_path.clone(),
        source,
    })?;
    sync_file(&tmp_path)?;
    std::fs::rename(&tmp_path, &final_path).map_err(io(&final_path))?;

    meta.tensors = name.clone();
    meta.format = CHECKPOINT_FORMAT;
    let meta_path = dir.join(META_FILE);
    let meta_tmp = dir.join(format!("{META_FILE}.tmp"));
    {
        let mut f = File::create(&meta_tmp).map_err(io(&meta_tmp))?;
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| CheckpointError::Format {
            path: meta_tmp.clone(),
            reason: e.to_string(),
        })?;
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .map_err(io(&meta_tmp))?;
    }
    std::fs::rename(&meta_tmp, &meta_path).map_err(io(&meta_path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;

    // Older tensor files are garbage now that the JSON names the new one.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if file.starts_with("state-") && file.ends_with(".safetensors") && file != name {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(meta_path)
}

/// Whether `dir` holds a checkpoint.
pub fn exists(dir: &Path) -> bool {
    dir.join(META_FILE).is_file()
}

/// Reads the checkpoint in `dir`: its metadata and its named (CPU) tensors.
pub fn load(dir: &Path) -> Result<(CheckpointMeta, Vec<(String, Tensor)>), CheckpointError> {
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read(&meta_path).map_err(io(&meta_path))?;
    let meta: CheckpointMeta =
        serde_json::from_slice(&text).map_err(|e| CheckpointError::Format {
            path: meta_path.clone(),
            reason: format!("not a checkpoint description: {e}"),
        })?;
    if !(OLDEST_READABLE_FORMAT..=CHECKPOINT_FORMAT).contains(&meta.format) {
        return Err(CheckpointError::Format {
            path: meta_path,
            reason: format!(
                "checkpoint format {} (this build reads {OLDEST_READABLE_FORMAT} to \
                 {CHECKPOINT_FORMAT})",
                meta.format
            ),
        });
    }
    if meta.tensors.contains('/') || meta.tensors.contains("..") {
        return Err(CheckpointError::Format {
            path: meta_path,
            reason: format!("tensor file '{}' is not a plain file name", meta.tensors),
        });
    }
    let tensors_path = dir.join(&meta.tensors);
    let tensors =
        Tensor::read_safetensors(&tensors_path).map_err(|source| CheckpointError::Torch {
            path: tensors_path,
            source,
        })?;
    Ok((meta, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(step: u64) -> CheckpointMeta {
        CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            step,
            position: Position { epoch: 1, batch: 2 },
            model: "small".into(),
            parameters: 3,
            world_size: 1,
            global_batch: Some(8),
            tensors: String::new(),
        }
    }

    #[test]
    fn save_load_round_trip_and_replaces_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        save(dir.path(), meta(5), &[("param.a".to_string(), t.copy())]).unwrap();
        save(dir.path(), meta(6), &[("param.a".to_string(), &t * 2.0)]).unwrap();
        let (m, tensors) = load(dir.path()).unwrap();
        assert_eq!(m.step, 6);
        assert_eq!(m.tensors, "state-00000006.safetensors");
        assert_eq!(m.position, Position { epoch: 1, batch: 2 });
        assert_eq!(tensors.len(), 1);
        assert!(tensors[0].1.equal(&(&t * 2.0)));
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("checkpoint.json"), "{err}");
        std::fs::write(dir.path().join("checkpoint.json"), b"{").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("not a checkpoint description"),
            "{err}"
        );
        let mut m = meta(1);
        m.tensors = "state-00000001.safetensors".into();
        std::fs::write(
            dir.path().join("checkpoint.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("state-00000001.safetensors"),
            "{err}"
        );
        for format in [0, CHECKPOINT_FORMAT + 1] {
            m.format = format;
            std::fs::write(
                dir.path().join("checkpoint.json"),
                serde_json::to_vec(&m).unwrap(),
            )
            .unwrap();
            let err = load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("checkpoint.json"), "{err}");
            assert!(
                err.contains(&format!(
                    "checkpoint format {format} (this build reads 1 to {CHECKPOINT_FORMAT})"
                )),
                "{err}"
            );
        }
    }
}
