//! Pixels: a pure function from `(seed, split, class, k)` to an RGB image.
//!
//! [`render_image`] draws the size ([`image_size`]), the per-image nuisances
//! and then fills the pixels row by row with no allocation beyond the output
//! buffer. Textures use a sine lookup table and `u32` phase accumulators, so
//! no trigonometry runs per pixel.

use crate::design::{class_style, Texture};
use crate::math::{cos_turns, hsv_to_rgb, phase_step, sin_turns, wave};
use shardfeed_rng::{derive_seed, Xoshiro256 as Rng};

/// Which half of the dataset an image belongs to. Each split has its own
/// seed stream, so `train/x_1` and `val/x_1` differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// `OUT/train/...`
    Train,
    /// `OUT/val/...`
    Val,
}

impl Split {
    /// The folder name: `"train"` or `"val"`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }

    fn tag(self) -> u64 {
        match self {
            Split::Train => 0x74_7261_696E, // "train"
            Split::Val => 0x76_616C,        // "val"
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, `data.len() == width * height * 3`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RgbBuffer {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Interleaved `R, G, B` bytes.
    pub data: Vec<u8>,
}

/// Seed streams drawn from one image's key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    /// Size, nuisances and noise.
    Pixels = 1,
    /// The file kind (oddities).
    Encoding = 2,
}

/// The generator for one stream of one image. Depends only on its arguments.
pub(crate) fn image_rng(seed: u64, split: Split, class: u32, k: u32, stream: Stream) -> Rng {
    Rng::new(derive_seed(&[
        seed,
        split.tag(),
        u64::from(class),
        u64::from(k),
        stream as u64,
    ]))
}

/// Draws an image size following ILSVRC2012's train distribution: 45%
/// 500×375, 15% 375×500, 15% 500×333, 5% 333×500, and 20% varied (width
/// 150–1200, aspect 0.5–1.5, height at least 80).
pub fn image_size(rng: &mut Rng) -> (u32, u32) {
    let r = rng.next_f64();
    if r < 0.45 {
        (500, 375)
    } else if r < 0.60 {
        (375, 500)
    } else if r < 0.75 {
        (500, 333)
    } else if r < 0.80 {
        (333, 500)
    } else {
        let w = rng.range_u32(150, 1200);
        let aspect = 0.5 + rng.next_f64();
        let h = (f64::from(w) * aspect) as u32;
        (w, h.max(80))
    }
}

/// Renders image `k` (from 1) of `class` in `split` of a `classes`-class
/// dataset made with `seed`. Pure: the pixels depend only on the arguments.
///
/// Panics if `class >= classes` or `classes > MAX_CLASSES`.
pub fn render_image(class: u32, classes: u32, seed: u64, split: Split, k: u32) -> RgbBuffer {
    let mut buf = RgbBuffer::default();
    render_image_into(class, classes, seed, split, k, &mut buf);
    buf
}

/// [`render_image`] into a caller-owned buffer, reusing its allocation.
pub fn render_image_into(
    class: u32,
    classes: u32,
    seed: u64,
    split: Split,
    k: u32,
    buf: &mut RgbBuffer,
) {
    let mut rng = image_rng(seed, split, class, k, Stream::Pixels);
    let plan = Plan::draw(class, classes, &mut rng);
    buf.width = plan.width;
    buf.height = plan.height;
    buf.data.clear();
    buf.data
        .resize(plan.width as usize * plan.height as usize * 3, 0);
    plan.fill(&mut rng, &mut buf.data);
}

/// A flat occluding shape.
#[derive(Debug, Clone, Copy)]
struct Occluder {
    ellipse: bool,
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    colour: [f32; 3],
}

impl Occluder {
    /// The half-open column range it covers on row `y` (pixel centres).
    fn span(&self, y: u32, width: u32) -> Option<(u32, u32)> {
        let dy = (y as f32 + 0.5 - self.cy) / self.ry;
        if dy.abs() >= 1.0 {
            return None;
        }
        let half = if self.ellipse {
            self.rx * (1.0 - dy * dy).sqrt()
        } else {
            self.rx
        };
        let x0 = (self.cx - half - 0.5).ceil().max(0.0) as u32;
        let x1 = ((self.cx + half - 0.5).floor() + 1.0).clamp(0.0, width as f32) as u32;
        (x0 < x1).then_some((x0, x1))
    }
}

const MAX_OCCLUDERS: usize = 3;

/// Everything drawn for one image before its pixels.
#[derive(Debug, Clone)]
struct Plan {
    width: u32,
    height: u32,
    texture: Texture,
    primary: [f32; 3],
    secondary: [f32; 3],
    /// Phase steps per pixel along x and y, and the start phase, for the
    /// pattern's two axes.
    u_step: (u32, u32, u32),
    v_step: (u32, u32, u32),
    bias: f32,
    gain: f32,
    contrast: f32,
    brightness: f32,
    grad_x: f32,
    grad_y: f32,
    noise_amp: f32,
    occluders: [Option<Occluder>; MAX_OCCLUDERS],
}

impl Plan {
    fn draw(class: u32, classes: u32, rng: &mut Rng) -> Plan {
        let style = class_style(class, classes);
        let (width, height) = image_size(rng);

        // Palette with hue and saturation jitter.
        let hue = style.hue + rng.range_f32(-5.0, 5.0) / 360.0;
        let sat = rng.range_f32(0.8, 1.15);
        let primary = hsv_to_rgb(hue, 0.78 * sat, 0.88);
        let secondary = match style.secondary_offset() {
            None => hsv_to_rgb(hue, 0.9 * sat, 0.33),
            Some(offset) => hsv_to_rgb(hue + offset, 0.6 * sat, 0.72),
        };

        // Geometry: orientation with random sign (flip invariance) and jitter.
        let sign = if rng.chance(0.5) { 1.0 } else { -1.0 };
        let theta_deg = sign * style.orientation_deg + rng.range_f32(-5.0, 5.0);
        let theta = f64::from(theta_deg) / 360.0;
        let (cos, sin) = (cos_turns(theta), sin_turns(theta));
        let short = f64::from(width.min(height));
        // At least 4 px, so the smallest images keep a visible pattern.
        let period =
            (short * f64::from(style.period) * f64::from(rng.range_f32(0.85, 1.18))).max(4.0);
        let fu = 1.0 / period;
        let (fv, bias) = match style.texture {
            Texture::Stripes => (0.0, 0.3),
            Texture::Rects => (0.5 * fu, 0.1),
            Texture::Dots => (0.6 * fu, 0.35),
        };
        let u_step = (
            phase_step(fu * cos),
            phase_step(fu * sin),
            rng.next_u64() as u32,
        );
        let v_step = (
            phase_step(-fv * sin),
            phase_step(fv * cos),
            rng.next_u64() as u32,
        );

        let contrast = rng.range_f32(0.7, 1.0);
        let brightness = rng.range_f32(0.85, 1.15);
        let grad_x = rng.range_f32(-0.25, 0.25);
        let grad_y = rng.range_f32(-0.25, 0.25);
        // Triangular noise from two bytes has a standard deviation of 104.
        let noise_amp = rng.range_f32(2.0, 9.0) / 104.0;

        let mut occluders = [None; MAX_OCCLUDERS];
        let count = rng.below(MAX_OCCLUDERS as u64 + 1) as usize;
        for slot in occluders.iter_mut().take(count) {
            let (w, h) = (width as f32, height as f32);
            *slot = Some(Occluder {
                ellipse: rng.chance(0.5),
                cx: rng.range_f32(0.0, w),
                cy: rng.range_f32(0.0, h),
                rx: w * rng.range_f32(0.04, 0.2),
                ry: h * rng.range_f32(0.04, 0.2),
                colour: hsv_to_rgb(
                    rng.next_f32(),
                    rng.range_f32(0.0, 0.8),
                    rng.range_f32(0.15, 0.95),
                ),
            });
        }

        Plan {
            width,
            height,
            texture: style.texture,
            primary,
            secondary,
            u_step,
            v_step,
            bias,
            gain: 3.0,
            contrast,
            brightness,
            grad_x,
            grad_y,
            noise_amp,
            occluders,
        }
    }

    /// Writes the pixels; `out` has `width * height * 3` bytes.
    fn fill(&self, rng: &mut Rng, out: &mut [u8]) {
        let w = self.width as usize;
        let p = self.primary;
        let d = [0, 1, 2].map(|c| (self.secondary[c] - p[c]) * self.contrast);
        let (bias, gain) = (self.bias, self.gain);
        let inv_w = 1.0 / self.width as f32;
        let inv_h = 1.0 / self.height as f32;
        let amp = self.noise_amp;

        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            let yy = y as u32;
            let mut pu = self.u_step.2.wrapping_add(self.u_step.1.wrapping_mul(yy));
            let mut pv = self.v_step.2.wrapping_add(self.v_step.1.wrapping_mul(yy));
            let (du, dv) = (self.u_step.0, self.v_step.0);

            // Occluder spans on this row, last one on top.
            let mut spans = [(0u32, 0u32, [0.0f32; 3]); MAX_OCCLUDERS];
            let mut n_spans = 0;
            for o in self.occluders.iter().flatten() {
                if let Some((x0, x1)) = o.span(yy, self.width) {
                    spans[n_spans] = (x0, x1, o.colour);
                    n_spans += 1;
                }
            }
            let spans = &spans[..n_spans];

            // Illumination: a linear ramp, stepped along the row.
            let mut light = self.brightness
                * (1.0 - 0.5 * self.grad_x + self.grad_y * ((y as f32 + 0.5) * inv_h - 0.5));
            let light_step = self.brightness * self.grad_x * inv_w;

            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let s = match self.texture {
                    Texture::Stripes => wave(pu),
                    Texture::Rects => wave(pu) * wave(pv),
                    Texture::Dots => 0.5 * (wave(pu) + wave(pv)),
                };
                pu = pu.wrapping_add(du);
                pv = pv.wrapping_add(dv);
                let t = ((s - bias) * gain + 0.5).clamp(0.0, 1.0);
                let mut c = [p[0] + t * d[0], p[1] + t * d[1], p[2] + t * d[2]];
                let xx = x as u32;
                for &(x0, x1, colour) in spans {
                    if xx >= x0 && xx < x1 {
                        c = colour;
                    }
                }
                let noise = rng.next_u64();
                for (ch, out) in px.iter_mut().enumerate() {
                    let a = (noise >> (16 * ch)) as u8;
                    let b = (noise >> (16 * ch + 8)) as u8;
                    let n = (f32::from(a) + f32::from(b) - 255.0) * amp;
                    *out = (c[ch] * light + n + 0.5).clamp(0.0, 255.0) as u8;
                }
                light += light_step;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_pure_and_depends_on_every_key() {
        let a = render_image(3, 10, 7, Split::Train, 1);
        assert_eq!(a, render_image(3, 10, 7, Split::Train, 1));
        assert_eq!(a.data.len(), a.width as usize * a.height as usize * 3);
        for other in [
            render_image(3, 10, 8, Split::Train, 1),
            render_image(3, 10, 7, Split::Val, 1),
            render_image(4, 10, 7, Split::Train, 1),
            render_image(3, 10, 7, Split::Train, 2),
        ] {
            assert_ne!(a.data, other.data);
        }
        // Reusing a buffer gives the same result.
        let mut buf = render_image(0, 10, 0, Split::Val, 9);
        render_image_into(3, 10, 7, Split::Train, 1, &mut buf);
        assert_eq!(a, buf);
    }

    /// A hash of the pixels pinned so that a change to the generator, the
    /// RNG or the maths (including on another platform) is noticed.
    #[test]
    fn pixels_are_pinned() {
        let img = render_image(1, 10, 0, Split::Train, 1);
        let h = shardfeed_rng::derive_seed(
            &img.data
                .chunks(8)
                .map(|c| c.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)))
                .collect::<Vec<_>>(),
        );
        assert_eq!((img.width, img.height, h), (1029, 570, 1315096196928249990));
    }

    #[test]
    fn the_primary_hue_dominates_every_image() {
        use crate::math::rgb_to_hsv;
        for class in 0..10 {
            let want = class_style(class, 10).hue;
            for k in 1..=3 {
                let img = render_image(class, 10, 5, Split::Val, k);
                let near = img
                    .data
                    .chunks_exact(3)
                    .step_by(7)
                    .filter(|p| {
                        let (h, _, _) = rgb_to_hsv([p[0], p[1], p[2]].map(f32::from));
                        let d = (h - want).abs();
                        d.min(1.0 - d) < 15.0 / 360.0
                    })
                    .count();
                let frac = near as f64 / (img.data.len() / 21) as f64;
                assert!(
                    frac > 0.4,
                    "class {class} image {k}: {frac:.2} near the primary hue"
                );
            }
        }
    }

    #[test]
    fn sizes_follow_the_imagenet_distribution() {
        let mut rng = Rng::new(99);
        let n = 20_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            let (w, h) = image_size(&mut rng);
            assert!(
                (80..=1800).contains(&h) && (150..=1200).contains(&w),
                "{w}x{h}"
            );
            *counts.entry((w, h)).or_insert(0u32) += 1;
        }
        let frac = |w, h| f64::from(counts.get(&(w, h)).copied().unwrap_or(0)) / n as f64;
        assert!((frac(500, 375) - 0.45).abs() < 0.02);
        assert!((frac(375, 500) - 0.15).abs() < 0.02);
        assert!((frac(500, 333) - 0.15).abs() < 0.02);
        assert!((frac(333, 500) - 0.05).abs() < 0.01);
        assert!(counts.len() > 1000, "the rest must be varied");
    }

    #[test]
    fn occluder_spans_stay_inside_the_row() {
        let o = Occluder {
            ellipse: true,
            cx: 2.0,
            cy: 5.0,
            rx: 10.0,
            ry: 3.0,
            colour: [0.0; 3],
        };
        assert_eq!(o.span(0, 100), None);
        let (x0, x1) = o.span(5, 100).unwrap();
        assert_eq!(x0, 0);
        assert!(x1 <= 12 && x1 > 8);
        let r = Occluder {
            ellipse: false,
            ..o
        };
        assert_eq!(r.span(4, 5), Some((0, 5)));
    }
}
