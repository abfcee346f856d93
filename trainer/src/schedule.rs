//! The learning-rate schedule of the MLPerf ResNet-50 LARS reference
//! (`mlcommons/training`, `image_classification/tensorflow2/lars_util.py`,
//! `PolynomialDecayWithWarmup`): linear warmup from 0, then polynomial decay of power 2 to an end
//! rate. [`PolyWarmup`] is pure (`lr(step)`), [`mlperf_defaults`] is MLPerf's batch-size table.
//!
//! ```
//! use shardfeed_trainer::schedule::{mlperf_defaults, PolyWarmup};
//! let d = mlperf_defaults(8192);
//! assert_eq!((d.base_lr, d.warmup_epochs), (10.0, 5.0));
//! let s = PolyWarmup::new(d.base_lr, d.end_lr, 100, d.warmup_epochs, 1000);
//! assert_eq!(s.lr(0), 0.0);
//! assert_eq!(s.lr(500), 10.0);
//! ```

use serde::{Deserialize, Serialize};

/// MLPerf's defaults for one global batch size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDefaults {
    /// Peak learning rate, reached at the end of warmup.
    pub base_lr: f64,
    /// Linear warmup length in epochs.
    pub warmup_epochs: f64,
    /// Learning rate at the last step.
    pub end_lr: f64,
}

/// MLPerf's table (`lars_util.py`): base LR 10 and 5 warmup epochs below a global batch of 16K,
/// 25 and 5 below 32K, 31.2 and 25 from 32K; end LR 1e-4 for all.
pub fn mlperf_defaults(global_batch: u64) -> ScheduleDefaults {
    let (base_lr, warmup_epochs) = if global_batch < 16384 {
        (10.0, 5.0)
    } else if global_batch < 32768 {
        (25.0, 5.0)
    } else {
        (31.2, 25.0)
    };
    ScheduleDefaults {
        base_lr,
        warmup_epochs,
        end_lr: 1e-4,
    }
}

/// Linear warmup then polynomial (power 2) decay, step by step as the reference computes it.
///
/// `step` is the number of updates already applied (the reference's `optimizer.iterations`),
/// so the very first update runs at rate 0. With `w` warmup steps and `T` train steps:
/// `lr = base·step/w` while `step ≤ w`; after that, with `d = T − w + 1` and
/// `p = min(step − w, d)/d`, `lr = (base − end)·(1 − p)² + end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PolyWarmup {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Final learning rate.
    pub end_lr: f64,
    /// Steps of linear warmup (`warmup_epochs · steps_per_epoch`, may be fractional).
    pub warmup_steps: f64,
    /// Steps of the decay phase: `train_steps − warmup_steps + 1`.
    pub decay_steps: f64,
    /// Decay power (2 in MLPerf).
    pub power: f64,
}

impl PolyWarmup {
    /// The schedule for `train_steps` updates of `steps_per_epoch` steps per epoch.
    pub fn new(
        base_lr: f64,
        end_lr: f64,
        steps_per_epoch: u64,
        warmup_epochs: f64,
        train_steps: u64,
    ) -> Self {
        let warmup_steps = warmup_epochs * steps_per_epoch as f64;
        PolyWarmup {
            base_lr,
            end_lr,
            warmup_steps,
            decay_steps: (train_steps as f64 - warmup_steps + 1.0).max(1.0),
            power: 2.0,
        }
    }

    /// The learning rate of the update that follows `step` applied updates.
    pub fn lr(&self, step: u64) -> f64 {
        let step = step as f64;
        // Without warmup, step 0 is the first decay step.
        if step <= self.warmup_steps && self.warmup_steps > 0.0 {
            return self.base_lr * step / self.warmup_steps;
        }
        let poly_step = (step - self.warmup_steps).clamp(0.0, self.decay_steps);
        let remaining = 1.0 - poly_step / self.decay_steps;
        (self.base_lr - self.end_lr) * remaining.powf(self.power) + self.end_lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlperf_table_boundaries() {
        assert_eq!(mlperf_defaults(256).base_lr, 10.0);
        assert_eq!(mlperf_defaults(16383).base_lr, 10.0);
        assert_eq!(mlperf_defaults(16384).base_lr, 25.0);
        assert_eq!(mlperf_defaults(16384).warmup_epochs, 5.0);
        assert_eq!(mlperf_defaults(32768).base_lr, 31.2);
        assert_eq!(mlperf_defaults(32768).warmup_epochs, 25.0);
        assert_eq!(mlperf_defaults(1).end_lr, 1e-4);
    }

    #[test]
    fn warmup_is_linear_from_zero() {
        // 10 steps per epoch, 2 warmup epochs = 20 warmup steps, 100 train steps.
        let s = PolyWarmup::new(8.0, 0.0, 10, 2.0, 100);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 2.0).abs() < 1e-12);
        assert!((s.lr(20) - 8.0).abs() < 1e-12);
    }

    #[test]
    fn decay_is_quadratic_to_the_end_rate() {
        let s = PolyWarmup::new(8.0, 0.5, 10, 2.0, 100);
        // decay_steps = 100 - 20 + 1 = 81
        assert_eq!(s.decay_steps, 81.0);
        let p: f64 = 10.0 / 81.0;
        let want = 7.5 * (1.0 - p).powi(2) + 0.5;
        assert!((s.lr(30) - want).abs() < 1e-12);
        // Past the end it stays at the end rate.
        assert!((s.lr(101) - 0.5).abs() < 1e-12);
        assert!((s.lr(10_000) - 0.5).abs() < 1e-12);
        // Monotone non-increasing after warmup.
        let mut prev = s.lr(21);
        for step in 22..120 {
            let lr = s.lr(step);
            assert!(lr <= prev + 1e-15, "step {step}");
            prev = lr;
        }
    }

    #[test]
    fn no_warmup_starts_at_the_base_rate() {
        let s = PolyWarmup::new(2.0, 0.0, 10, 0.0, 50);
        assert_eq!(s.lr(0), 2.0);
    }
}
