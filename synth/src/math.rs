//! Small numeric helpers built from exact IEEE operations only (`+ - * /`,
//! `floor`, `sqrt`), never the platform's `sin`/`exp`, so the same seed gives
//! the same pixels on every platform.

/// Entries in [`SIN_LUT`]: one period of a sine, indexed by the top 10 bits
/// of a `u32` phase (2^32 = one period).
const LUT_BITS: u32 = 10;

/// `sin(2π i / 1024)` for `i` in `0..1024`.
pub static SIN_LUT: [f32; 1 << LUT_BITS] = sin_lut();

const fn sin_lut() -> [f32; 1 << LUT_BITS] {
    let mut lut = [0.0f32; 1 << LUT_BITS];
    let mut i = 0;
    while i < lut.len() {
        let mut t = i as f64 / lut.len() as f64;
        if t >= 0.5 {
            t -= 1.0;
        }
        lut[i] = sin_reduced(t) as f32;
        i += 1;
    }
    lut
}

/// A sine of a `u32` phase, where 2^32 is one full period.
#[inline(always)]
pub fn wave(phase: u32) -> f32 {
    SIN_LUT[(phase >> (32 - LUT_BITS)) as usize]
}

/// `sin(2π t)` for `t` in `[-0.5, 0.5]`, by a Taylor polynomial after
/// folding to `[-π/2, π/2]` (error below 1e-9).
const fn sin_reduced(t: f64) -> f64 {
    let pi = std::f64::consts::PI;
    let mut x = t * 2.0 * pi;
    if x > pi / 2.0 {
        x = pi - x;
    } else if x < -pi / 2.0 {
        x = -pi - x;
    }
    let x2 = x * x;
    // x - x^3/3! + x^5/5! - ... - x^15/15!, in Horner form.
    let mut p = -1.0 / 1_307_674_368_000.0;
    p = p * x2 + 1.0 / 6_227_020_800.0;
    p = p * x2 - 1.0 / 39_916_800.0;
    p = p * x2 + 1.0 / 362_880.0;
    p = p * x2 - 1.0 / 5_040.0;
    p = p * x2 + 1.0 / 120.0;
    p = p * x2 - 1.0 / 6.0;
    p = p * x2 + 1.0;
    x * p
}

/// `sin(2π turns)` for any finite `turns`.
pub fn sin_turns(turns: f64) -> f64 {
    sin_reduced(turns - (turns + 0.5).floor())
}

/// `cos(2π turns)` for any finite `turns`.
pub fn cos_turns(turns: f64) -> f64 {
    sin_turns(turns + 0.25)
}

/// A frequency in cycles per pixel as a `u32` phase step (wrapping).
pub fn phase_step(cycles_per_pixel: f64) -> u32 {
    (cycles_per_pixel * 4_294_967_296.0).round() as i64 as u32
}

/// HSV to RGB. `h` in turns (any value, wrapped), `s` and `v` in `[0, 1]`;
/// returns channels in `[0, 255]`.
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = (h - h.floor()) * 6.0;
    let s = s.clamp(0.0, 1.0);
    let v = v.clamp(0.0, 1.0) * 255.0;
    let sector = (h.floor() as u32).min(5);
    let f = h - sector as f32;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match sector {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// RGB to HSV: hue in turns `[0, 1)`, saturation and value in `[0, 1]`.
/// Channels in `[0, 255]`. Used by the class-design checks.
#[cfg(test)]
pub fn rgb_to_hsv(rgb: [f32; 3]) -> (f32, f32, f32) {
    let [r, g, b] = rgb.map(|c| c / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let s = if max > 0.0 { d / max } else { 0.0 };
    if d <= 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        (g - b) / d
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    } / 6.0;
    (h - h.floor(), s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_matches_std_closely() {
        for i in -2000..=2000 {
            let t = i as f64 / 337.0;
            let want = (t * std::f64::consts::TAU).sin();
            assert!((sin_turns(t) - want).abs() < 1e-9, "t={t}");
            let want = (t * std::f64::consts::TAU).cos();
            assert!((cos_turns(t) - want).abs() < 1e-9, "t={t}");
        }
        for (i, &v) in SIN_LUT.iter().enumerate() {
            let want = (i as f64 / 1024.0 * std::f64::consts::TAU).sin();
            assert!((f64::from(v) - want).abs() < 1e-6, "i={i}");
        }
    }

    #[test]
    fn wave_follows_the_phase() {
        assert_eq!(wave(0), 0.0);
        assert!((wave(1 << 30) - 1.0).abs() < 1e-6); // a quarter period
        assert!((wave(3 << 30) + 1.0).abs() < 1e-6);
        // A step of -1/4 period wraps to 3/4.
        assert_eq!(phase_step(-0.25), 3 << 30);
        assert_eq!(phase_step(0.25), 1 << 30);
    }

    #[test]
    fn hsv_round_trips() {
        for i in 0..36 {
            let h = i as f32 / 36.0;
            let rgb = hsv_to_rgb(h, 0.8, 0.9);
            let (h2, s2, v2) = rgb_to_hsv(rgb);
            let dh = (h2 - h).abs().min(1.0 - (h2 - h).abs());
            assert!(dh < 1e-4 && (s2 - 0.8).abs() < 1e-4 && (v2 - 0.9).abs() < 1e-4);
        }
        assert_eq!(hsv_to_rgb(0.0, 0.0, 1.0), [255.0; 3]);
        assert_eq!(hsv_to_rgb(1.25, 1.0, 1.0), hsv_to_rgb(0.25, 1.0, 1.0));
    }
}
