//! The CPU LARS step as one fused, multi-threaded pass pair over the flat buffers: pure Rust
//! over `f32` slices, no libtorch call.
//!
//! Written out as tensor ops, a LARS step over ResNet-50's 25.5M parameters was ~20 passes over
//! memory (322 per-parameter f64 norms, each casting its slice to f64 first; a 25.5M-element
//! int64 `index_select` to spread the rates; then `w·β`, `+g`, `·lr`, `m·μ`, `m − u`, `w + m` as
//! separate kernels): 120 bytes of traffic per parameter, more than PyTorch's whole
//! `_foreach_*` optimizer. Here:
//!
//! 1. **norms**: one read of `w` and `g` (8 bytes per parameter), summing squares in f64 over
//!    fixed blocks of [`BLOCK`] elements, blocks added in order per parameter;
//! 2. **update**: one read of `w`, `g`, `m` and one write of `m`, `w` (20 bytes per parameter).
//!
//! The arithmetic is the tensor-op path's, operation for operation in fp32 (`u = (g + w·β)·lr_t`,
//! `m = m·μ − u`, `w = w + m`; Rust never contracts a multiply and an add into an FMA), so the
//! update is bit for bit the tensor path's given the same trust ratios; the f64 norms differ from
//! libtorch's only in summation order (relative 1e-15), which can move a trust ratio by one fp32
//! ulp (`lars::tests::fused_cpu_step_matches_the_tensor_op_step`). Results do not depend on the
//! number of threads: block boundaries depend on the layout only, and every block's partial sum
//! is added in block order.

use crate::lars::{trust_ratio, LarsConfig};

/// Elements per work item (128 KiB of fp32): small enough to balance two to a few dozen
/// threads over ResNet-50, large enough that a block's bookkeeping is noise.
pub(crate) const BLOCK: usize = 1 << 15;

/// One parameter's place in the flat buffers, as the kernel needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    /// First element.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
    /// Trust ratio and weight decay (conv and fc weights), or neither (BN parameters, biases).
    pub scaled: bool,
}

/// A block: `[start, end)` of the flat buffers, inside parameter `seg`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Block {
    seg: usize,
    start: usize,
    end: usize,
}

fn blocks(spans: &[Span]) -> Vec<Block> {
    let mut out = Vec::new();
    for (seg, s) in spans.iter().enumerate() {
        let mut start = s.offset;
        let end = s.offset + s.len;
        while start < end {
            let stop = (start + BLOCK).min(end);
            out.push(Block {
                seg,
                start,
                end: stop,
            });
            start = stop;
        }
    }
    out
}

/// Σx² in f64: every square is exact in f64 (24-bit mantissas), summed in 8 lanes, the lanes
/// added pairwise. A fixed order, whatever instructions the compiler picks.
#[inline(always)]
fn sum_squares_generic(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            let v = f64::from(c[k]);
            acc[k] += v * v;
        }
    }
    for (k, &x) in rest.iter().enumerate() {
        let v = f64::from(x);
        acc[k] += v * v;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_squares_avx2(x: &[f32]) -> f64 {
    sum_squares_generic(x)
}

/// Σx² in f64 (AVX2 where the CPU has it: the same operations in the same order, so the same
/// result).
pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { sum_squares_avx2(x) };
    }
    sum_squares_generic(x)
}

/// The per-block update's constants.
#[derive(Debug, Clone, Copy)]
struct Update {
    /// `β` (scaled) or 0 (skipped), fp32 as the tensor path's per-element decay is.
    weight_decay: f32,
    /// `fp32(trust) · fp32(lr)`, rounded to fp32.
    rate: f32,
    momentum: f32,
    nesterov: bool,
}

#[inline(always)]
fn update_generic(w: &mut [f32], g: &[f32], m: &mut [f32], u: Update) {
    let Update {
        weight_decay,
        rate,
        momentum,
        nesterov,
    } = u;
    if nesterov {
        for ((w, &g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            let step = (g + *w * weight_decay) * rate;
            let v = *m * momentum - step;
            *m = v;
            *w += v * momentum - step;
        }
    } else {
        for ((w, &g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            let step = (g + *w * weight_decay) * rate;
            let v = *m * momentum - step;
            *m = v;
            *w += v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2(w: &mut [f32], g: &[f32], m: &mut [f32], u: Update) {
    update_generic(w, g, m, u)
}

fn update(w: &mut [f32], g: &[f32], m: &mut [f32], u: Update) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { update_avx2(w, g, m, u) };
    }
    update_generic(w, g, m, u)
}

/// Runs `work(item)` for every item on `threads` threads (the caller's among them), item `i` on
/// thread `i % threads`.
fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(work).collect();
    }
    let n = items.len();
    let mut lanes: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        lanes[i % threads].push((i, item));
    }
    let work = &work;
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let mut lanes = lanes.into_iter();
        let own = lanes.next().unwrap_or_default();
        let handles: Vec<_> = lanes
            .map(|lane| {
                s.spawn(move || {
                    lane.into_iter()
                        .map(|(i, t)| (i, work(t)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, R)> = own.into_iter().map(|(i, t)| (i, work(t))).collect();
        for h in handles {
            // A worker only panics if `work` does; carry the panic to the caller.
            match h.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    debug_assert_eq!(done.len(), n);
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Block `b`'s part of its parameter's gradient.
fn grad_block<'a>(grads: &[&'a [f32]], spans: &[Span], b: &Block) -> &'a [f32] {
    let at = b.start - spans[b.seg].offset;
    &grads[b.seg][at..at + (b.end - b.start)]
}

/// Per-parameter `(‖w‖, ‖g‖)` in f64, over `threads` threads. `grads[i]` is parameter `i`'s
/// gradient, `spans[i].len` elements in the order of its part of `w`.
pub(crate) fn norms(
    w: &[f32],
    grads: &[&[f32]],
    spans: &[Span],
    threads: usize,
) -> Vec<(f64, f64)> {
    let blocks = blocks(spans);
    let partial = on_threads(blocks.clone(), threads, |b| {
        (
            sum_squares(&w[b.start..b.end]),
            sum_squares(grad_block(grads, spans, &b)),
        )
    });
    let mut sums = vec![(0f64, 0f64); spans.len()];
    for (b, (sw, sg)) in blocks.iter().zip(partial) {
        sums[b.seg].0 += sw;
        sums[b.seg].1 += sg;
    }
    sums.into_iter()
        .map(|(w, g)| (w.sqrt(), g.sqrt()))
        .collect()
}

/// The per-parameter trust ratios (1 for skipped parameters and for zero norms), in fp32.
pub(crate) fn trust_ratios(norms: &[(f64, f64)], spans: &[Span], cfg: &LarsConfig) -> Vec<f32> {
    norms
        .iter()
        .zip(spans)
        .map(|(&(wn, gn), s)| {
            if s.scaled {
                trust_ratio(wn, gn, cfg) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// One LARS step in place: `w` (weights) and `m` (momentum), flat buffers laid out by `spans`,
/// updated from `grads` (parameter `i`'s gradient: `spans[i].len` elements, in the order of its
/// part of `w`) with learning rate `lr`, on `threads` threads. Returns the per-parameter trust
/// ratios.
///
/// `spans` must be in buffer order and not overlap (as [`crate::flat::FlatParams`] lays them
/// out), and `grads[i].len() == spans[i].len`; elements outside every span are left alone.
pub(crate) fn step(
    w: &mut [f32],
    grads: &[&[f32]],
    m: &mut [f32],
    spans: &[Span],
    cfg: &LarsConfig,
    lr: f64,
    threads: usize,
) -> Vec<f32> {
    let trust = trust_ratios(&norms(w, grads, spans, threads), spans, cfg);
    let lr32 = lr as f32;
    let wd32 = cfg.weight_decay as f32;
    let consts: Vec<Update> = spans
        .iter()
        .zip(&trust)
        .map(|(s, &t)| Update {
            weight_decay: if s.scaled { wd32 } else { 0.0 },
            rate: t * lr32,
            momentum: cfg.momentum as f32,
            nesterov: cfg.nesterov,
        })
        .collect();
    // Disjoint mutable pieces, one per block, in buffer order.
    let mut items = Vec::new();
    let (mut w_rest, mut m_rest) = (w, m);
    let mut at = 0usize;
    for b in blocks(spans) {
        let skip = b.start - at;
        let (_, w_tail) = std::mem::take(&mut w_rest).split_at_mut(skip);
        let (_, m_tail) = std::mem::take(&mut m_rest).split_at_mut(skip);
        let len = b.end - b.start;
        let (w_blk, w_next) = w_tail.split_at_mut(len);
        let (m_blk, m_next) = m_tail.split_at_mut(len);
        items.push((w_blk, grad_block(grads, spans, &b), m_blk, consts[b.seg]));
        (w_rest, m_rest) = (w_next, m_next);
        at = b.end;
    }
    on_threads(items, threads, |(w, g, m, u)| update(w, g, m, u));
    trust
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans() -> Vec<Span> {
        vec![
            Span {
                offset: 0,
                len: 3 * BLOCK + 5,
                scaled: true,
            },
            Span {
                offset: 3 * BLOCK + 5,
                len: 7,
                scaled: false,
            },
            Span {
                offset: 3 * BLOCK + 12,
                len: BLOCK,
                scaled: true,
            },
        ]
    }

    fn lcg(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    #[test]
    fn blocks_tile_every_parameter() {
        let b = blocks(&spans());
        assert_eq!(b.len(), 4 + 1 + 1);
        assert_eq!(
            b[3],
            Block {
                seg: 0,
                start: 3 * BLOCK,
                end: 3 * BLOCK + 5
            }
        );
        assert_eq!(b[4].seg, 1);
        assert_eq!((b[5].start, b[5].end), (3 * BLOCK + 12, 4 * BLOCK + 12));
    }

    #[test]
    fn sum_squares_is_exactish_and_the_same_on_every_path() {
        let x = lcg(3, 1000 * 8 + 3, 2.0);
        let want: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let got = sum_squares(&x);
        assert!(((got - want) / want).abs() < 1e-13);
        assert_eq!(got.to_bits(), sum_squares_generic(&x).to_bits());
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let sp = spans();
        let n = 4 * BLOCK + 12;
        let cfg = LarsConfig {
            nesterov: true,
            ..LarsConfig::default()
        };
        let run = |threads| {
            let (mut w, g, mut m) = (lcg(1, n, 0.1), lcg(2, n, 1e-3), lcg(4, n, 1e-2));
            let grads: Vec<&[f32]> = sp.iter().map(|s| &g[s.offset..s.offset + s.len]).collect();
            let trust = step(&mut w, &grads, &mut m, &sp, &cfg, 3.0, threads);
            (w, m, trust)
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
        // Skipped parameters get trust 1.
        assert_eq!(one.2[1], 1.0);
    }

    #[test]
    fn elements_outside_the_spans_are_left_alone() {
        let sp = [Span {
            offset: 2,
            len: 3,
            scaled: false,
        }];
        let mut w = vec![1.0f32; 6];
        let g = vec![1.0f32; 3];
        let mut m = vec![0.0f32; 6];
        step(&mut w, &[&g], &mut m, &sp, &LarsConfig::default(), 0.5, 2);
        assert_eq!(w, [1.0, 1.0, 0.5, 0.5, 0.5, 1.0]);
        assert_eq!(m, [0.0, 0.0, -0.5, -0.5, -0.5, 0.0]);
    }
}
