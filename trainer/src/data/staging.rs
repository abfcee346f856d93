//! Host staging memory and uploads, shared by the synthetic loader (labels) and the feeder
//! (images and labels).

use tch::{Device, Kind, Tensor};

/// A host tensor for staging copies to `device`: pinned (page-locked) when `device` is CUDA, so
/// the copy can be `non_blocking` and never waits for the GPU's queue; plain memory otherwise.
pub(crate) fn staging(shape: &[i64], kind: Kind, device: Device) -> Tensor {
    let t = Tensor::zeros(shape, (kind, Device::Cpu));
    if device.is_cuda() {
        t.pin_memory(device)
    } else {
        t
    }
}

/// Writes `values` at the start of a dense CPU int64 tensor of at least that many elements.
pub(crate) fn write_i64(dst: &Tensor, values: impl ExactSizeIterator<Item = i64>) {
    assert!(dst.kind() == Kind::Int64 && dst.numel() >= values.len());
    // SAFETY: `dst` is a dense CPU int64 tensor with room for `values.len()` elements (checked
    // above), owned by the caller while it writes.
    let out = unsafe { std::slice::from_raw_parts_mut(dst.data_ptr() as *mut i64, values.len()) };
    for (d, v) in out.iter_mut().zip(values) {
        *d = v;
    }
}

/// `host` on `device`: an asynchronous copy from pinned memory on CUDA; a copy on the CPU too,
/// so the staging memory can be reused at once.
pub(crate) fn upload(host: &Tensor, device: Device) -> Result<Tensor, tch::TchError> {
    host.f_to_device_(device, host.kind(), device.is_cuda(), !device.is_cuda())
}
