//! Naming the lost rank. Every rank beats a heartbeat into the job's store (its own key, a
//! counter and its step, every [`HEARTBEAT_INTERVAL`]) from a thread with its own store
//! connection. When a collective fails (gloo: a peer's connection closed, or the collective
//! timeout passed), the rank reads every heartbeat twice, a few intervals apart, and says who
//! stopped: a rank whose counter stood still is lost (killed, or its host gone); a rank whose
//! counter moves but whose step is behind is alive but hung; an unreachable store means its
//! host (rank 0's, or torchrun's agent's) is gone.
//!
//! [`classify`] is the pure part.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::c10d::Store;

/// How often a rank beats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long [`diagnose`] watches the heartbeats.
pub const DIAGNOSIS_WINDOW: Duration = Duration::from_millis(2500);

fn key(rank: usize) -> String {
    format!("shardfeed/heartbeat/{rank}")
}

/// One reading of a rank's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Beats so far.
    pub count: u64,
    /// The rank's last started step.
    pub step: u64,
}

impl Beat {
    fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.count.to_le_bytes());
        out[8..].copy_from_slice(&self.step.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Beat> {
        let count = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let step = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Beat { count, step })
    }
}

/// This rank's heartbeat thread; stops when dropped.
pub struct Heartbeat {
    step: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Beats `rank`'s heartbeat into `store` (a connection of its own) until dropped.
    pub fn start(store: Store, rank: usize) -> Heartbeat {
        let step = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (Arc::clone(&step), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-{rank}"))
            .spawn(move || {
                let mut count = 0u64;
                while !halt.load(Ordering::Relaxed) {
                    count += 1;
                    let beat = Beat {
                        count,
                        step: s.load(Ordering::Relaxed),
                    };
                    // A store that is gone is diagnosed by the training thread; keep trying.
                    let _ = store.set(&key(rank), &beat.encode());
                    std::thread::sleep(HEARTBEAT_INTERVAL);
                }
            })
            .ok();
        Heartbeat { step, stop, thread }
    }

    /// Records the step this rank is on.
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a rank's two readings say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankState {
    /// Beating, at this step.
    Alive(u64),
    /// Beating, but at an earlier step than this rank's: hung in the step.
    Behind(u64),
    /// No beat between the readings: killed, or its host is gone (last step known).
    Lost(Option<u64>),
}

/// Classifies every rank from two readings a few intervals apart (`None`: no heartbeat key).
pub fn classify(before: &[Option<Beat>], after: &[Option<Beat>], my_step: u64) -> Vec<RankState> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| match (b, a) {
            (Some(b), Some(a)) if a.count != b.count => {
                if a.step < my_step {
                    RankState::Behind(a.step)
                } else {
                    RankState::Alive(a.step)
                }
            }
            (_, Some(a)) if a.count == b.map_or(0, |b| b.count) => RankState::Lost(Some(a.step)),
            (_, Some(a)) => RankState::Alive(a.step),
            (_, None) => RankState::Lost(None),
        })
        .collect()
}

/// The sentence naming the ranks to blame, from [`classify`]'s states (`me` is this rank).
pub fn blame(states: &[RankState], me: usize) -> String {
    let lost: Vec<String> = states
        .iter()
        .enumerate()
        .filter(|&(r, _)| r != me)
        .filter_map(|(r, s)| match s {
            RankState::Lost(Some(step)) => Some(format!(
                "rank {r} is lost (no heartbeat; last at step {step})"
            )),
            RankState::Lost(None) => Some(format!("rank {r} is lost (it never beat)")),
            _ => None,
        })
        .collect();
    if !lost.is_empty() {
        return lost.join("; ");
    }
    let behind: Vec<String> = states
        .iter()
        .enumerate()
        .filter(|&(r, _)| r != me)
        .filter_map(|(r, s)| match s {
            RankState::Behind(step) => Some(format!("rank {r} is alive but hung at step {step}")),
            _ => None,
        })
        .collect();
    if !behind.is_empty() {
        return behind.join("; ");
    }
    "every rank's heartbeat is alive and none is behind this one".into()
}

/// Reads every rank's heartbeat twice, [`DIAGNOSIS_WINDOW`] apart, and names who stopped.
/// `store_name` says where the store is, for when it cannot be reached.
pub fn diagnose(store: &Store, world: usize, me: usize, my_step: u64, store_name: &str) -> String {
    let read = || -> Result<Vec<Option<Beat>>, String> {
        (0..world)
            .map(|r| match store.check(&key(r)) {
                Ok(false) => Ok(None),
                Ok(true) => store
                    .get(&key(r), Duration::from_secs(2))
                    .map(|b| Beat::decode(&b))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    };
    let unreachable = |e: String| {
        format!("the job's store at {store_name} is unreachable ({e}): its host is lost")
    };
    let before = match read() {
        Ok(b) => b,
        Err(e) => return unreachable(e),
    };
    std::thread::sleep(DIAGNOSIS_WINDOW);
    let after = match read() {
        Ok(a) => a,
        Err(e) => return unreachable(e),
    };
    blame(&classify(&before, &after, my_step), me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(count: u64, step: u64) -> Option<Beat> {
        Some(Beat { count, step })
    }

    #[test]
    fn beats_round_trip() {
        let b = Beat {
            count: 7,
            step: 1 << 40,
        };
        assert_eq!(Beat::decode(&b.encode()), Some(b));
        assert_eq!(Beat::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn a_still_counter_is_lost_a_slow_step_is_hung() {
        let before = [beat(10, 5), beat(10, 5), beat(3, 4), None];
        let after = [beat(14, 5), beat(10, 5), beat(7, 4), None];
        let states = classify(&before, &after, 5);
        assert_eq!(
            states,
            vec![
                RankState::Alive(5),
                RankState::Lost(Some(5)),
                RankState::Behind(4),
                RankState::Lost(None)
            ]
        );
        assert_eq!(
            blame(&states, 0),
            "rank 1 is lost (no heartbeat; last at step 5); rank 3 is lost (it never beat)"
        );
        assert_eq!(blame(&states[..3], 1), "rank 2 is alive but hung at step 4");
        assert_eq!(
            blame(&[RankState::Alive(5), RankState::Alive(6)], 0),
            "every rank's heartbeat is alive and none is behind this one"
        );
    }

    #[test]
    fn a_heartbeat_that_appears_between_readings_is_alive() {
        assert_eq!(
            classify(&[None], &[beat(1, 0)], 0),
            vec![RankState::Alive(0)]
        );
    }
}
