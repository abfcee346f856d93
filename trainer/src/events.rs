//! What a training run reports, and where it goes: [`Event`]s to an [`EventSink`] —
//! [`JsonLines`] (one JSON object per line, for machines), [`Progress`] (a human line on stderr:
//! img/s, loss, lr, % of time waiting for data), [`Collect`] (tests), [`Tee`].

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One thing that happened in a training run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run started (or resumed).
    Start {
        /// Optimizer steps already done (0 unless resumed).
        step: u64,
        /// Epoch it starts in.
        epoch: u64,
        /// Batch within that epoch.
        batch: u64,
        /// Replicas.
        world_size: usize,
        /// Images per step over all replicas.
        global_batch: usize,
        /// Steps per epoch.
        steps_per_epoch: u64,
        /// Total steps of the run.
        train_steps: u64,
    },
    /// The loss of one optimizer step.
    Step {
        /// Steps done after this one (1 for the first).
        step: u64,
        /// Epoch of the step.
        epoch: u64,
        /// Training loss (label-smoothed cross entropy, mean over this replica's batch).
        loss: f64,
        /// Learning rate the step used.
        lr: f64,
    },
    /// Throughput over the last `log_every` steps.
    Throughput {
        /// Steps done.
        step: u64,
        /// Epoch.
        epoch: u64,
        /// Mean loss over the window.
        loss: f64,
        /// Learning rate of the last step.
        lr: f64,
        /// Images per second, all replicas.
        images_per_sec: f64,
        /// Share of the window's wall time spent waiting for the loader, in percent.
        data_wait_pct: f64,
    },
    /// Validation results.
    Eval {
        /// Epochs completed.
        epoch: u64,
        /// Steps done.
        step: u64,
        /// Top-1 accuracy in [0, 1].
        top1: f64,
        /// Top-5 accuracy in [0, 1].
        top5: f64,
        /// Mean validation loss (no label smoothing).
        loss: f64,
        /// Images evaluated.
        images: u64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: u64,
        /// Its directory.
        path: PathBuf,
    },
    /// The run ended.
    End {
        /// Steps done.
        step: u64,
        /// Whether it stopped early on request (Ctrl-C).
        interrupted: bool,
    },
}

/// Receives events.
pub trait EventSink {
    /// Handles one event; failures to record are reported, never fatal to training.
    fn event(&mut self, event: &Event);
}

/// Appends JSON lines to a file.
pub struct JsonLines {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl JsonLines {
    /// Opens (appends to) `path`.
    pub fn append(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonLines {
            path: path.to_owned(),
            out: std::io::BufWriter::new(file),
        })
    }
}

impl EventSink for JsonLines {
    fn event(&mut self, event: &Event) {
        let result = serde_json::to_writer(&mut self.out, event)
            .map_err(std::io::Error::other)
            .and_then(|()| self.out.write_all(b"\n"))
            // Every line reaches the file at once (one write per step is nothing next to a
            // step): a rank killed mid-run leaves a log that ends where it stopped, which a
            // restarted job (torchrun --max-restarts) then continues.
            .and_then(|()| self.out.flush());
        if let Err(e) = result {
            eprintln!("warning: cannot write the log {}: {e}", self.path.display());
        }
    }
}

impl Drop for JsonLines {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Human progress lines on stderr.
#[derive(Debug, Default)]
pub struct Progress;

impl EventSink for Progress {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Start {
                step,
                epoch,
                world_size,
                global_batch,
                steps_per_epoch,
                train_steps,
                ..
            } => eprintln!(
                "training: {world_size} replica(s), global batch {global_batch}, {steps_per_epoch} steps/epoch, {train_steps} steps; from step {step} (epoch {epoch})"
            ),
            Event::Throughput {
                step,
                epoch,
                loss,
                lr,
                images_per_sec,
                data_wait_pct,
            } => eprintln!(
                "epoch {epoch:>3} step {step:>7}  loss {loss:.4}  lr {lr:.4}  {images_per_sec:>8.1} img/s  data wait {data_wait_pct:>4.1}%"
            ),
            Event::Eval {
                epoch,
                top1,
                top5,
                loss,
                images,
                ..
            } => eprintln!(
                "eval after epoch {epoch}: top-1 {:.2}%  top-5 {:.2}%  loss {loss:.4}  ({images} images)",
                top1 * 100.0,
                top5 * 100.0
            ),
            Event::Checkpoint { step, path } => {
                eprintln!("checkpoint at step {step}: {}", path.display())
            }
            Event::End { step, interrupted } => eprintln!(
                "{} at step {step}",
                if *interrupted { "stopped" } else { "finished" }
            ),
            Event::Step { .. } => {}
        }
    }
}

/// Keeps every event (tests, benchmarks).
#[derive(Debug, Default)]
pub struct Collect(pub Vec<Event>);

impl Collect {
    /// The losses of the `Step` events, in order, with their step numbers.
    pub fn losses(&self) -> Vec<(u64, f64)> {
        self.0
            .iter()
            .filter_map(|e| match e {
                Event::Step { step, loss, .. } => Some((*step, *loss)),
                _ => None,
            })
            .collect()
    }
}

impl EventSink for Collect {
    fn event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

/// Sends each event to several sinks.
pub struct Tee(pub Vec<Box<dyn EventSink>>);

impl EventSink for Tee {
    fn event(&mut self, event: &Event) {
        for sink in &mut self.0 {
            sink.event(event);
        }
    }
}

/// Drops every event (replicas other than rank 0).
#[derive(Debug, Default)]
pub struct Discard;

impl EventSink for Discard {
    fn event(&mut self, _: &Event) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_tagged_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        {
            let mut log = JsonLines::append(&path).unwrap();
            log.event(&Event::Step {
                step: 1,
                epoch: 0,
                loss: 2.5,
                lr: 0.1,
            });
            log.event(&Event::End {
                step: 1,
                interrupted: true,
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "step");
        assert_eq!(lines[0]["loss"], 2.5);
        assert_eq!(lines[1]["event"], "end");
        assert_eq!(lines[1]["interrupted"], true);
    }
}
