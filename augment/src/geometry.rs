//! Where in an image: integer boxes, real-valued regions and image sizes. Plain values with no
//! dependency on any other module, so decoders, planners and the augmenter can all use them.

/// The size of an image, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// An integer rectangle of an image, in pixels: columns `left..left + width`, rows
/// `top..top + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropBox {
    /// First column.
    pub left: u32,
    /// First row.
    pub top: u32,
    /// Columns, at least 1.
    pub width: u32,
    /// Rows, at least 1.
    pub height: u32,
}

impl CropBox {
    /// The whole of a `width` x `height` image.
    pub fn full(width: u32, height: u32) -> Self {
        CropBox {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    /// One past the last column.
    pub fn right(&self) -> u32 {
        self.left + self.width
    }

    /// One past the last row.
    pub fn bottom(&self) -> u32 {
        self.top + self.height
    }
}

/// A rectangle of an image in real-valued pixel coordinates: what a resize maps onto its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceRegion {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width, > 0.
    pub width: f64,
    /// Height, > 0.
    pub height: f64,
}

impl SourceRegion {
    /// The region of the whole of a `width` x `height` image.
    pub fn full(width: u32, height: u32) -> Self {
        SourceRegion {
            left: 0.0,
            top: 0.0,
            width: f64::from(width),
            height: f64::from(height),
        }
    }

    /// Whether the region is finite, has a positive size and lies inside a `width` x `height`
    /// image.
    pub fn lies_inside(&self, width: u32, height: u32) -> bool {
        let finite = [self.left, self.top, self.width, self.height]
            .iter()
            .all(|v| v.is_finite());
        finite
            && self.width > 0.0
            && self.height > 0.0
            && self.left >= 0.0
            && self.top >= 0.0
            && self.left + self.width <= f64::from(width)
            && self.top + self.height <= f64::from(height)
    }
}
