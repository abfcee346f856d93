//! Mixed precision and memory format: the two tch 0.24 gaps, closed through a small C++ shim
//! (`csrc/shim.cpp`, built by `build.rs` against the same libtorch).
//!
//! - [`AutocastGuard`]: bf16 (or fp16) autocast on CPU or CUDA, as `torch.autocast(device,
//!   dtype=torch.bfloat16)` — `tch::autocast` only turns CUDA autocast on in its default dtype,
//!   fp16. Parameters stay fp32 (the master weights): autocast casts them per op.
//! - [`to_memory_format`] / [`is_memory_format`]: `Tensor::contiguous(memory_format)`, so
//!   inputs and conv weights can be channels-last (NHWC strides), which cuDNN needs for its
//!   NHWC tensor-core kernels. [`channels_last_strides`] is the pure stride rule.
//!
//! ```
//! use shardfeed_trainer::precision::{AutocastGuard, Precision};
//! let x = tch::Tensor::ones([1, 3, 4, 4], (tch::Kind::Float, tch::Device::Cpu));
//! let w = tch::Tensor::ones([2, 3, 3, 3], (tch::Kind::Float, tch::Device::Cpu));
//! let _guard = AutocastGuard::new(tch::Device::Cpu, Precision::Bf16)?;
//! let y = x.conv2d(&w, None::<tch::Tensor>, [1, 1], [1, 1], [1, 1], 1);
//! assert_eq!(y.kind(), tch::Kind::BFloat16);
//! # Ok::<(), shardfeed_trainer::precision::ShimError>(())
//! ```

use std::ffi::{c_char, c_int, CStr};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn sf_free_error(err: *mut c_char);
    fn sf_autocast_get(device: c_int, enabled: *mut bool, dtype: *mut c_int) -> *mut c_char;
    fn sf_autocast_set(device: c_int, enabled: bool, dtype: c_int) -> *mut c_char;
    fn sf_autocast_enter() -> *mut c_char;
    fn sf_autocast_exit() -> *mut c_char;
    fn sf_contiguous(t: *const C_tensor, format: c_int, out: *mut *mut C_tensor) -> *mut c_char;
    fn sf_is_contiguous(t: *const C_tensor, format: c_int, out: *mut bool) -> *mut c_char;
}

/// A libtorch call of the shim failed; the message is libtorch's.
#[derive(Debug, thiserror::Error)]
#[error("libtorch {call}: {message}")]
pub struct ShimError {
    /// Which shim call failed.
    pub call: &'static str,
    /// libtorch's error message.
    pub message: String,
}

/// The shim's convention (every `sf_*` call of `csrc/`): null on success, else a malloc'd
/// message, taken and freed here.
pub(crate) fn check(call: &'static str, err: *mut c_char) -> Result<(), ShimError> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'd by the shim.
    let message = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { sf_free_error(err) };
    Err(ShimError { call, message })
}

/// Training precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything fp32.
    #[default]
    Fp32,
    /// bf16 autocast, fp32 master weights (no loss scaling needed).
    Bf16,
}

/// Memory layout of image tensors and conv weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// NCHW, PyTorch's default.
    #[default]
    Contiguous,
    /// NHWC strides behind an NCHW shape.
    ChannelsLast,
}

impl MemoryFormat {
    fn code(self) -> c_int {
        match self {
            MemoryFormat::Contiguous => 0,
            MemoryFormat::ChannelsLast => 1,
        }
    }
}

fn device_code(device: Device) -> c_int {
    match device {
        Device::Cuda(_) => 1,
        _ => 0,
    }
}

const DTYPE_BF16: c_int = 0;

/// Autocast on for one device type while alive; restores the previous state when dropped (as
/// leaving a `torch.autocast` block does). Autocast is thread-local: create the guard on the
/// thread that runs the forward pass. Backward needs no guard: it runs in the forward's dtypes.
pub struct AutocastGuard {
    device: c_int,
    prev_enabled: bool,
    prev_dtype: c_int,
    active: bool,
}

impl AutocastGuard {
    /// Enters autocast for `device`'s type in `precision`; `Precision::Fp32` is a no-op guard.
    pub fn new(device: Device, precision: Precision) -> Result<Self, ShimError> {
        let device = device_code(device);
        if precision == Precision::Fp32 {
            return Ok(AutocastGuard {
                device,
                prev_enabled: false,
                prev_dtype: DTYPE_BF16,
                active: false,
            });
        }
        let mut prev_enabled = false;
        let mut prev_dtype: c_int = -1;
        check("autocast_get", unsafe {
            sf_autocast_get(device, &mut prev_enabled, &mut prev_dtype)
        })?;
        check("autocast_set", unsafe {
            sf_autocast_set(device, true, DTYPE_BF16)
        })?;
        check("autocast_enter", unsafe { sf_autocast_enter() })?;
        Ok(AutocastGuard {
            device,
            prev_enabled,
            prev_dtype,
            active: true,
        })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        // Errors cannot be returned from drop; these calls only fail on invalid codes, which
        // the constructor already validated.
        let _ = check("autocast_exit", unsafe { sf_autocast_exit() });
        let dtype = if self.prev_dtype < 0 {
            DTYPE_BF16
        } else {
            self.prev_dtype
        };
        let _ = check("autocast_set", unsafe {
            sf_autocast_set(self.device, self.prev_enabled, dtype)
        });
    }
}

/// Whether autocast is on for `device`'s type on this thread.
pub fn autocast_enabled(device: Device) -> Result<bool, ShimError> {
    let mut enabled = false;
    let mut dtype: c_int = -1;
    check("autocast_get", unsafe {
        sf_autocast_get(device_code(device), &mut enabled, &mut dtype)
    })?;
    Ok(enabled)
}

/// `t.contiguous(memory_format=format)`: the same tensor when already in that format, else a copy.
pub fn to_memory_format(t: &Tensor, format: MemoryFormat) -> Result<Tensor, ShimError> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    check("contiguous", unsafe {
        sf_contiguous(t.as_ptr(), format.code(), &mut out)
    })?;
    // SAFETY: on success the shim returns a new heap `at::Tensor*`, which tch takes ownership of.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// `t.is_contiguous(memory_format=format)`.
pub fn is_memory_format(t: &Tensor, format: MemoryFormat) -> Result<bool, ShimError> {
    let mut out = false;
    check("is_contiguous", unsafe {
        sf_is_contiguous(t.as_ptr(), format.code(), &mut out)
    })?;
    Ok(out)
}

/// The strides of a dense channels-last tensor of NCHW `size`: `[H·W·C, 1, W·C, C]`.
pub fn channels_last_strides(size: [i64; 4]) -> [i64; 4] {
    let [_, c, h, w] = size;
    [h * w * c, 1, w * c, c]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn channels_last_stride_rule() {
        assert_eq!(channels_last_strides([2, 3, 4, 5]), [60, 1, 15, 3]);
    }

    #[test]
    fn to_channels_last_changes_strides_not_values() {
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        assert!(is_memory_format(&t, MemoryFormat::Contiguous).unwrap());
        assert!(!is_memory_format(&t, MemoryFormat::ChannelsLast).unwrap());
        let cl = to_memory_format(&t, MemoryFormat::ChannelsLast).unwrap();
        assert_eq!(cl.size(), vec![2, 3, 4, 5]);
        assert_eq!(cl.stride(), channels_last_strides([2, 3, 4, 5]).to_vec());
        assert!(is_memory_format(&cl, MemoryFormat::ChannelsLast).unwrap());
        assert!(cl.equal(&t));
        let back = to_memory_format(&cl, MemoryFormat::Contiguous).unwrap();
        assert_eq!(back.stride(), vec![60, 20, 5, 1]);
    }

    #[test]
    fn conv_keeps_channels_last_on_cpu() {
        let x = to_memory_format(
            &Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu)),
            MemoryFormat::ChannelsLast,
        )
        .unwrap();
        let w = to_memory_format(
            &Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu)),
            MemoryFormat::ChannelsLast,
        )
        .unwrap();
        let y = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert!(is_memory_format(&y, MemoryFormat::ChannelsLast).unwrap());
    }

    #[test]
    fn bf16_autocast_casts_conv_and_restores_state() {
        let x = Tensor::randn([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        assert!(!autocast_enabled(Device::Cpu).unwrap());
        {
            let _g = AutocastGuard::new(Device::Cpu, Precision::Bf16).unwrap();
            assert!(autocast_enabled(Device::Cpu).unwrap());
            let y = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
            assert_eq!(y.kind(), Kind::BFloat16);
        }
        assert!(!autocast_enabled(Device::Cpu).unwrap());
        let y = x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert_eq!(y.kind(), Kind::Float);
        let _fp32 = AutocastGuard::new(Device::Cpu, Precision::Fp32).unwrap();
        assert!(!autocast_enabled(Device::Cpu).unwrap());
    }
}
