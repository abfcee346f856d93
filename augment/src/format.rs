//! Image container formats, recognised by their magic bytes.
//!
//! ImageNet is full of files whose extension lies (the training set has a PNG named
//! `n02105855_2933.JPEG`), so the format is always read from the first bytes of the file and never
//! from its name. The type is the record format's own (`shardfeed_shards::ImageFormat`), so what
//! a probe finds is what a shard stores.

pub use shardfeed_shards::ImageFormat;
