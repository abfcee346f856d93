//! # shardfeed
//!
//! The engine and command-line tool of shardfeed, an input pipeline that keeps accelerators busy
//! while they train image models on ImageNet-scale data.
//!
//! - [`ingest`]: `shardfeed shard`, an image folder (ILSVRC2012 layout) into verified shards.
//! - [`labels`]: parsers for the label files of a flat validation folder.
//! - [`rng`]: seeded, version-stable random numbers for shard and sample order.
//! - [`sampler`]: the sample order of each epoch and rank, as pure functions.
//!
//! The record format is the `shardfeed-shards` crate; image decoding and augmentation is
//! `shardfeed-augment`; synthetic data for demos and tests is `shardfeed-synth`.

pub mod ingest;
pub mod labels;
pub mod rng;
pub mod sampler;

pub use shardfeed_augment as augment;
pub use shardfeed_shards as shards;
pub use shardfeed_synth as synth;
