//! # shardfeed-engine
//!
//! The engine of shardfeed, an input pipeline that keeps accelerators busy while they train image
//! models on ImageNet-scale data. The `shardfeed` command-line tool and the trainer are thin
//! layers over it; it has no CLI, terminal or signal-handling dependency of its own.
//!
//! - [`loader`]: the engine. [`Loader`](loader::Loader) yields [`Batch`](loader::Batch)es of
//!   augmented images (N x H x W x 3 `u8`) and labels from a dataset, on every core, in an order
//!   fixed by (seed, epoch, rank, world), resumable at any batch.
//! - [`remote`]: the same batches computed by `shardfeed serve` workers on other hosts.
//! - [`sampler`]: that order, as pure functions.
//! - [`ingest`]: `shardfeed shard`, an image folder (ILSVRC2012 layout) into verified shards.
//! - [`labels`]: parsers for the label files of a flat validation folder.
//! - [`layout`]: which datasets a directory holds (itself, or its `train/` and `val/`).
//! - [`rng`]: seeded, version-stable random numbers (the `shardfeed-rng` crate, re-exported).
//! - [`process`]: the process's memory (peak RSS) and CPU time, for benchmarks.
//! - [`demo`]: small synthetic datasets for examples and tests.
//!
//! The record format is the `shardfeed-shards` crate; image decoding and augmentation is
//! `shardfeed-augment`; synthetic data for demos and tests is `shardfeed-synth`.

pub mod demo;
pub mod ingest;
pub mod labels;
pub mod layout;
pub mod loader;
mod panic;
pub mod process;
pub mod remote;
pub mod sampler;

pub use shardfeed_augment as augment;
pub use shardfeed_rng as rng;
pub use shardfeed_shards as shards;
pub use shardfeed_synth as synth;
pub use shardfeed_wire as wire;
