//! `shardfeed._shardfeed`: the extension module behind the `shardfeed` Python package.
//!
//! A small crate over the engine, as huggingface/tokenizers' and polars' bindings are over
//! theirs: it converts arguments, releases the GIL around every blocking wait, turns engine
//! errors into Python exceptions with the engine's message, and hands batch memory to Python
//! without a copy. The Python API (`py_src/shardfeed/__init__.py`) adds what reads better in
//! Python: rank and world from `torch.distributed`, torch tensors or numpy arrays.
//!
//! - [`loader`]: `_Loader`, the engine's [`Loader`](shardfeed_engine::loader::Loader) with an
//!   epoch/position state machine shaped like a PyTorch data loader (`set_epoch`,
//!   `state_dict`).
//! - [`array`]: `_Array`, one batch's images or labels, exported through DLPack (torch, numpy,
//!   JAX) and numpy's array interface; it owns the engine's batch, whose buffer goes back to the
//!   pool when the last array or tensor viewing it is freed.
//! - [`dataset`]: `Dataset`, random access to records.
//! - [`ingest`]: `shard()` and `synth()`, as the CLI's commands.
//! - [`errors`]: the exception classes and the mapping from engine errors.

use pyo3::prelude::*;

pub mod array;
pub mod dataset;
pub mod errors;
pub mod ingest;
pub mod loader;

/// The pid a process-bound object was made in: after `fork` the child has the object but not
/// the threads behind it.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// shardfeed's engine: sharded ImageNet records decoded and augmented on Rust threads.
#[pymodule]
mod _shardfeed {
    #[pymodule_export]
    use crate::array::Array;
    #[pymodule_export]
    use crate::dataset::PyDataset;
    #[pymodule_export]
    use crate::errors::{BatchError, BuffersHeldError, DatasetError, IngestError, ShardfeedError};
    #[pymodule_export]
    use crate::ingest::{shard, synth};
    #[pymodule_export]
    use crate::loader::PyLoader;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "DEFAULT_MAX_PIXELS",
            shardfeed_engine::augment::DEFAULT_MAX_PIXELS,
        )?;
        Ok(())
    }
}
