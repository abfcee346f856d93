//! The class design: what makes class `c` look like class `c` in any crop.
//!
//! A class is one combination of five attributes, each chosen so that it
//! survives `RandomResizedCrop` (scale 0.08–1, ratio 3/4–4/3) and a
//! horizontal flip:
//!
//! | attribute | levels | survives crops because |
//! |-----------|--------|------------------------|
//! | primary hue | `min(classes, 12)`, evenly spaced | it fills ~60–75% of every region |
//! | secondary colour | 4: dark shade of the primary, or primary hue + 50°, + 140°, + 260° | the texture repeats many times per crop |
//! | texture | 3: stripes, rectangles (checker of 2:1 cells), elongated dots | same |
//! | orientation \|θ\| | 4: 0°, 30°, 60°, 90° | a flip maps θ to −θ, and each image draws the sign at random, so the class is flip-invariant |
//! | period | 3: 3.5%, 8%, 18% of the image's short side | levels a factor 2.3 apart, so crops' rescaling blurs but rarely swaps them |
//!
//! That gives `12 × 4 × 3 × 4 × 3 = 1728` distinct classes ([`MAX_CLASSES`]).
//! Class `c` takes the hue `c mod H` (`H = min(classes, 12)`) and the other
//! four attributes from the digits of `c / H`, each shifted by a function of
//! `c mod H` so that the first `H` classes also differ in texture, period and
//! orientation. The map is injective: no two classes share all five.
//! With up to 12 classes colour alone separates them; beyond that, classes
//! that share a hue differ in secondary colour, texture, orientation or
//! period.
//!
//! Per-image nuisances (drawn by [`crate::render_image`]) keep it from being
//! trivial: hue ±5°, saturation ×0.8–1.15, brightness ×0.85–1.15, texture
//! contrast ×0.7–1, a random texture phase, orientation ±5°, period
//! −15%/+18%, a linear illumination gradient (±25% across the image), 0–3
//! flat rectangles or ellipses of random colour (each up to 40% of the
//! width and height), and sensor noise (σ 2–9 levels).

/// Number of distinct classes the design can produce.
pub const MAX_CLASSES: u32 = (HUES * SECONDARIES * TEXTURES * ORIENTATIONS * PERIODS) as u32;

const HUES: usize = 12;
const SECONDARIES: usize = 4;
const TEXTURES: usize = 3;
const ORIENTATIONS: usize = 4;
const PERIODS: usize = 3;

/// Secondary hue offsets in turns for secondaries 1..=3. Off the 30° hue
/// grid and not symmetric (`-x` is never in the set), so no two classes
/// share the same pair of colours.
const SECONDARY_OFFSETS: [f32; 3] = [50.0 / 360.0, 140.0 / 360.0, 260.0 / 360.0];

/// The repeating pattern that mixes a class's two colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Texture {
    /// Parallel stripes across the orientation.
    Stripes,
    /// A rotated checker of 2:1 rectangles.
    Rects,
    /// A rotated lattice of elongated dots.
    Dots,
}

/// The secondary colour of a class's palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Secondary {
    /// A dark, saturated shade of the primary hue.
    Dark,
    /// Another, less saturated hue: offset number `i` (0, 1, 2 for +50°,
    /// +140°, +260°) from the primary; see [`ClassStyle::secondary_offset`].
    Hue(u8),
}

/// Everything that identifies a class visually.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassStyle {
    /// Primary (dominant) hue in turns, `[0, 1)`.
    pub hue: f32,
    /// The palette's second colour.
    pub secondary: Secondary,
    /// The pattern.
    pub texture: Texture,
    /// Unsigned orientation of the pattern in degrees: 0, 30, 60 or 90.
    /// Each image uses `+θ` or `−θ` at random.
    pub orientation_deg: f32,
    /// Pattern period as a fraction of the image's short side.
    pub period: f32,
}

impl ClassStyle {
    /// Secondary hue offset in turns, or `None` for [`Secondary::Dark`].
    pub fn secondary_offset(&self) -> Option<f32> {
        match self.secondary {
            Secondary::Dark => None,
            Secondary::Hue(i) => Some(SECONDARY_OFFSETS[usize::from(i)]),
        }
    }
}

/// The style of `class` in a dataset of `classes` classes.
///
/// `classes` matters only through the hue spacing (`min(classes, 12)` evenly
/// spaced hues), so small datasets get maximally different colours.
/// Panics if `class >= classes` or `classes > MAX_CLASSES`.
pub fn class_style(class: u32, classes: u32) -> ClassStyle {
    assert!(
        class < classes && classes <= MAX_CLASSES,
        "class {class} of {classes} (max {MAX_CLASSES})"
    );
    let h = (classes as usize).min(HUES);
    let c = class as usize;
    let r = c % h;
    let mut q = c / h;
    let mut digit = |radix: usize| {
        let d = q % radix;
        q /= radix;
        d
    };
    let s = (digit(SECONDARIES) + r) % SECONDARIES;
    let t = (digit(TEXTURES) + r) % TEXTURES;
    let o = (digit(ORIENTATIONS) + r / 2) % ORIENTATIONS;
    let p = (digit(PERIODS) + r / 4 + r) % PERIODS;
    ClassStyle {
        hue: r as f32 / h as f32,
        secondary: if s == 0 {
            Secondary::Dark
        } else {
            Secondary::Hue(s as u8 - 1)
        },
        texture: [Texture::Stripes, Texture::Rects, Texture::Dots][t],
        orientation_deg: [0.0, 30.0, 60.0, 90.0][o],
        period: [0.035, 0.08, 0.18][p],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &ClassStyle) -> (u32, Secondary, Texture, u32, u32) {
        (
            (s.hue * 1e4) as u32,
            s.secondary,
            s.texture,
            s.orientation_deg as u32,
            (s.period * 1e4) as u32,
        )
    }

    #[test]
    fn every_class_is_distinct() {
        for classes in [1, 2, 10, 12, 13, 100, 1000, MAX_CLASSES] {
            let mut seen = std::collections::HashSet::new();
            for c in 0..classes {
                assert!(seen.insert(key(&class_style(c, classes))), "{c}/{classes}");
            }
        }
    }

    #[test]
    fn small_datasets_get_evenly_spaced_hues() {
        for classes in 1..=12 {
            let hues: Vec<f32> = (0..classes).map(|c| class_style(c, classes).hue).collect();
            for (i, h) in hues.iter().enumerate() {
                assert!((h - i as f32 / classes as f32).abs() < 1e-6);
            }
        }
        // And the first few classes vary in the other attributes too.
        let styles: Vec<_> = (0..10).map(|c| class_style(c, 10)).collect();
        for attr in [
            styles.iter().map(|s| s.texture as u32).collect::<Vec<_>>(),
            styles.iter().map(|s| s.orientation_deg as u32).collect(),
            styles.iter().map(|s| (s.period * 1e3) as u32).collect(),
        ] {
            let distinct: std::collections::HashSet<_> = attr.iter().collect();
            assert!(distinct.len() >= 3, "{attr:?}");
        }
    }

    #[test]
    fn secondary_pairs_are_never_swapped_copies() {
        // Class A's (primary, secondary) hues must never be class B's
        // (secondary, primary): offsets are off-grid and not symmetric.
        for &a in &SECONDARY_OFFSETS {
            for &b in &SECONDARY_OFFSETS {
                assert!(((a + b) - 1.0).abs() > 1e-3);
            }
            assert!(((a * 12.0) - (a * 12.0).round()).abs() > 0.1);
        }
    }

    #[test]
    #[should_panic]
    fn class_out_of_range_panics() {
        class_style(5, 5);
    }
}
