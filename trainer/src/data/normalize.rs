//! uint8 NHWC host pixels → normalised float NCHW on the device.

use tch::{Device, Kind, Tensor};

use crate::precision::{to_memory_format, MemoryFormat, ShimError};

/// Per-channel mean and standard deviation of pixel values in `[0, 255]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageStats {
    /// RGB mean.
    pub mean: [f32; 3],
    /// RGB standard deviation.
    pub std: [f32; 3],
}

impl ImageStats {
    /// torchvision's ImageNet statistics, scaled to `[0, 255]`.
    pub const IMAGENET: ImageStats = ImageStats {
        mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
        std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
    };
}

/// uint8 NHWC → normalised float NCHW on the device; the constants live there, built once.
pub struct Normalizer {
    mean: Tensor,
    inv_std: Tensor,
    format: MemoryFormat,
}

impl Normalizer {
    /// Constants for `stats` on `device`; output in `format`.
    pub fn new(stats: ImageStats, device: Device, format: MemoryFormat) -> Self {
        let inv: Vec<f32> = stats.std.iter().map(|s| 1.0 / s).collect();
        Normalizer {
            mean: Tensor::from_slice(&stats.mean)
                .view([1, 3, 1, 1])
                .to_device(device),
            inv_std: Tensor::from_slice(&inv)
                .view([1, 3, 1, 1])
                .to_device(device),
            format,
        }
    }

    /// `(x − mean)/std` of a `[B, H, W, 3]` uint8 tensor, as `[B, 3, H, W]` float. The NHWC input
    /// seen as NCHW already has channels-last strides; elementwise ops keep them.
    pub fn normalize(&self, nhwc_u8: &Tensor) -> Result<Tensor, ShimError> {
        let x = nhwc_u8.permute([0, 3, 1, 2]).to_kind(Kind::Float);
        let y = (x - &self.mean) * &self.inv_std;
        to_memory_format(&y, self.format)
    }
}
