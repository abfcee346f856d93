//! `shardfeed.Dataset`: random access to the records of a dataset, for users who bring their own
//! transforms (wrap it in a `torch.utils.data.Dataset`). The shards are memory-mapped once; a
//! record is read in O(1) with its checksum checked, and copied into a `bytes` object.
//!
//! It is safe to use after `fork` (DataLoader worker processes): it holds no threads, and the
//! memory map is shared by parent and children, so workers do not copy the dataset.

use crate::errors;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use shardfeed_engine::shards::Dataset;
use std::path::PathBuf;
use std::sync::Arc;

/// A dataset made by `shardfeed shard` (a directory with `manifest.json`): `len(ds)`,
/// `ds[i]` → `(jpeg_bytes, label)`, `ds.record(i)` for the record's metadata too.
#[pyclass(frozen, name = "Dataset", module = "shardfeed")]
pub struct PyDataset {
    ds: Arc<Dataset>,
}

impl PyDataset {
    fn index(&self, i: i64) -> PyResult<u64> {
        let n = self.ds.len();
        let j = if i < 0 { i + n as i64 } else { i };
        if j < 0 || j as u64 >= n {
            return Err(PyIndexError::new_err(format!(
                "record {i} out of range: the dataset holds {n} records"
            )));
        }
        Ok(j as u64)
    }
}

#[pymethods]
impl PyDataset {
    /// Opens the dataset in `path` (its manifest, then every shard's footer and index).
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<PyDataset> {
        let ds = py
            .detach(|| Dataset::open(&path))
            .map_err(|e| errors::shard_error(&e))?;
        Ok(PyDataset { ds: Arc::new(ds) })
    }

    fn __len__(&self) -> usize {
        self.ds.len() as usize
    }

    /// `(image_bytes, label)`: the stored file's bytes (JPEG for ImageNet) and its class index
    /// (`-1` for a record stored without a label). Negative indexes count from the end.
    fn __getitem__<'py>(&self, py: Python<'py>, i: i64) -> PyResult<(Bound<'py, PyBytes>, i64)> {
        let g = self.index(i)?;
        let rec = self.ds.record(g).map_err(|e| errors::shard_error(&e))?;
        let label = rec.label.map_or(-1, i64::from);
        Ok((PyBytes::new(py, rec.image), label))
    }

    /// Record `i` with its metadata: `image` (bytes), `label`, `path` (the source path, as
    /// stored), `width`, `height`, `format`.
    fn record<'py>(&self, py: Python<'py>, i: i64) -> PyResult<Bound<'py, PyDict>> {
        let g = self.index(i)?;
        let rec = self.ds.record(g).map_err(|e| errors::shard_error(&e))?;
        let d = PyDict::new(py);
        d.set_item("image", PyBytes::new(py, rec.image))?;
        d.set_item("label", rec.label.map_or(-1, i64::from))?;
        d.set_item("path", rec.path)?;
        d.set_item("width", rec.width)?;
        d.set_item("height", rec.height)?;
        d.set_item("format", rec.format.name())?;
        Ok(d)
    }

    /// The class names (synsets), by label.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.ds
            .manifest()
            .classes
            .iter()
            .map(|c| c.synset.clone())
            .collect()
    }

    /// The dataset directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.ds.dir().to_owned()
    }

    /// The number of shard files.
    #[getter]
    fn num_shards(&self) -> usize {
        self.ds.shards().len()
    }

    fn __repr__(&self) -> String {
        format!(
            "shardfeed.Dataset({:?}: {} records, {} classes, {} shards)",
            self.ds.dir().display().to_string(),
            self.ds.len(),
            self.ds.num_classes(),
            self.ds.shards().len()
        )
    }
}
