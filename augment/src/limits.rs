//! Bounds on what the decoders take on from a file's headers, so that a hostile header cannot make
//! them allocate gigabytes.

/// The largest width or height accepted, in pixels, for every format.
///
/// The decoders are told this limit, so a hostile header cannot make them allocate gigabytes.
/// ImageNet's largest images are a few thousand pixels on a side.
pub const MAX_DIMENSION: u32 = 32_768;
