//! One module per decoder or parser of outside bytes. Each maps its library's errors onto the
//! crate's [`ProbeError`](crate::ProbeError) and knows nothing of the others; `probe`, `decode`
//! and `region` choose between them.

pub(crate) mod image_rs;
pub(crate) mod jpeg_walk;
pub(crate) mod turbo;
pub(crate) mod zune;
