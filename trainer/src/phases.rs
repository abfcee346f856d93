//! Where a training step's time goes: [`PhaseTimer`] splits each step into [`Phase`]s and
//! [`PhaseTimes`] adds them up (`shardfeed-train --phases`, `scripts/bench-trainer.sh`).
//!
//! On the CPU every libtorch op returns when its work is done, so wall-clock marks between the
//! phases are exact. On CUDA ops are queued: a timer made with [`PhaseTimer::new`] for a CUDA
//! device synchronises the device at every mark, which attributes the GPU time to its phase but
//! removes the overlap of host and device work, so measure images/s without it.
//!
//! ```
//! use shardfeed_trainer::phases::{Phase, PhaseTimer};
//! let mut timer = PhaseTimer::new(tch::Device::Cpu);
//! timer.start();
//! // ... forward ...
//! timer.mark(Phase::Forward);
//! timer.end_step();
//! assert_eq!(timer.times().steps, 1);
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use tch::Device;

/// A part of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the loader's next batch.
    Data,
    /// Zeroing the gradients.
    Zero,
    /// The model's forward pass.
    Forward,
    /// The loss (cross entropy with label smoothing).
    Loss,
    /// Backward (autograd, gradients accumulated into the flat buffer).
    Backward,
    /// Gradient averaging over replicas (the all-reduce).
    Average,
    /// The LARS update.
    Lars,
    /// Host syncs: reading a step's loss back (`.item()`).
    Sync,
}

impl Phase {
    /// Every phase, in step order.
    pub const ALL: [Phase; 8] = [
        Phase::Data,
        Phase::Zero,
        Phase::Forward,
        Phase::Loss,
        Phase::Backward,
        Phase::Average,
        Phase::Lars,
        Phase::Sync,
    ];

    /// The short name the benchmark tables use (the PyTorch script prints the same names).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Data => "data",
            Phase::Zero => "zero",
            Phase::Forward => "forward",
            Phase::Loss => "loss",
            Phase::Backward => "backward",
            Phase::Average => "allreduce",
            Phase::Lars => "lars",
            Phase::Sync => "sync",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Time spent per phase over a number of steps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhaseTimes {
    /// Per phase, in [`Phase::ALL`] order.
    pub total: [Duration; 8],
    /// Steps counted.
    pub steps: u64,
}

impl PhaseTimes {
    /// Mean milliseconds per step of `phase` (0 without steps).
    pub fn ms_per_step(&self, phase: Phase) -> f64 {
        if self.steps == 0 {
            return 0.0;
        }
        self.total[phase.index()].as_secs_f64() * 1e3 / self.steps as f64
    }

    /// Mean milliseconds per step of all phases together.
    pub fn total_ms_per_step(&self) -> f64 {
        Phase::ALL.iter().map(|&p| self.ms_per_step(p)).sum()
    }
}

impl fmt::Display for PhaseTimes {
    /// `data 0.4 zero 3.1 forward 101.2 ... total 310.5` (ms per step).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in Phase::ALL {
            write!(f, "{} {:.1} ", p.name(), self.ms_per_step(p))?;
        }
        write!(f, "total {:.1}", self.total_ms_per_step())
    }
}

/// Marks phase boundaries within steps and adds the time between marks to [`PhaseTimes`]. A
/// disabled timer ([`PhaseTimer::off`]) does nothing.
#[derive(Debug)]
pub struct PhaseTimer {
    on: bool,
    cuda: Option<i64>,
    last: Option<Instant>,
    times: PhaseTimes,
}

impl PhaseTimer {
    /// A running timer for steps on `device` (synchronising it at every mark when it is a GPU).
    pub fn new(device: Device) -> Self {
        PhaseTimer {
            on: true,
            cuda: match device {
                Device::Cuda(i) => Some(i as i64),
                _ => None,
            },
            last: None,
            times: PhaseTimes::default(),
        }
    }

    /// A timer that records nothing.
    pub fn off() -> Self {
        PhaseTimer {
            on: false,
            cuda: None,
            last: None,
            times: PhaseTimes::default(),
        }
    }

    /// Whether it records.
    pub fn is_on(&self) -> bool {
        self.on
    }

    fn now(&self) -> Instant {
        if let Some(i) = self.cuda {
            tch::Cuda::synchronize(i);
        }
        Instant::now()
    }

    /// Starts timing from now (the start of a step, or after a pause).
    pub fn start(&mut self) {
        if self.on {
            self.last = Some(self.now());
        }
    }

    /// Adds the time since the previous mark (or [`PhaseTimer::start`]) to `phase`.
    pub fn mark(&mut self, phase: Phase) {
        if !self.on {
            return;
        }
        let now = self.now();
        if let Some(last) = self.last {
            self.times.total[phase.index()] += now.duration_since(last);
        }
        self.last = Some(now);
    }

    /// Counts one step.
    pub fn end_step(&mut self) {
        if self.on {
            self.times.steps += 1;
        }
    }

    /// What it recorded.
    pub fn times(&self) -> PhaseTimes {
        self.times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_add_up_per_phase_and_off_records_nothing() {
        let mut t = PhaseTimer::new(Device::Cpu);
        for _ in 0..2 {
            t.start();
            std::thread::sleep(Duration::from_millis(2));
            t.mark(Phase::Forward);
            t.mark(Phase::Lars);
            t.end_step();
        }
        let times = t.times();
        assert_eq!(times.steps, 2);
        assert!(times.ms_per_step(Phase::Forward) >= 2.0);
        assert!(times.ms_per_step(Phase::Lars) < times.ms_per_step(Phase::Forward));
        let line = times.to_string();
        assert!(line.starts_with("data 0.0 zero 0.0 forward "), "{line}");
        assert!(line.contains(" total "), "{line}");

        let mut off = PhaseTimer::off();
        off.start();
        off.mark(Phase::Forward);
        off.end_step();
        assert_eq!(off.times(), PhaseTimes::default());
        assert_eq!(off.times().ms_per_step(Phase::Forward), 0.0);
    }
}
