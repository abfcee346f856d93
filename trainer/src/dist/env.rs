//! Where a process stands in a multi-process job, from the variables the launchers set. Pure:
//! the environment comes in as a lookup function, so every launcher's set is unit-tested.
//!
//! - torchrun (and Kubernetes' JobSet / PyTorchJob, which set the same names): `RANK`,
//!   `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`,
//!   `TORCHELASTIC_RESTART_COUNT`; torchrun's agent hosts the TCPStore itself and says so with
//!   `TORCHELASTIC_USE_AGENT_STORE=True` (the workers then connect as clients, under the
//!   attempt's key prefix, as `torch.distributed`'s `env://` rendezvous does).
//! - Slurm `srun`: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE` (or
//!   the first count of `SLURM_TASKS_PER_NODE`), the first host of `SLURM_JOB_NODELIST` as the
//!   master (unless `MASTER_ADDR` is set), `MASTER_PORT` or 29500, `SLURM_RESTART_COUNT`.
//!
//! With none of them set, [`DistEnv::from_vars`] gives `None` and the trainer runs in one
//! process as before.

use std::fmt;

/// The port torch.distributed uses when `MASTER_PORT` is not set.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// Which launcher's variables were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun (its elastic agent set `TORCHELASTIC_*`).
    Torchrun,
    /// `RANK`/`WORLD_SIZE` without torchrun's agent (Kubernetes, a script).
    Env,
    /// Slurm's `srun`.
    Slurm,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Torchrun => "torchrun",
            Launcher::Env => "env",
            Launcher::Slurm => "slurm",
        })
    }
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// Whose variables these are.
    pub launcher: Launcher,
    /// Global rank, `0..world`.
    pub rank: usize,
    /// Processes in the job.
    pub world: usize,
    /// Rank on this node (the GPU index), `0..local_world`.
    pub local_rank: usize,
    /// Processes on this node.
    pub local_world: usize,
    /// The TCPStore's host.
    pub master_addr: String,
    /// The TCPStore's port.
    pub master_port: u16,
    /// How many times the launcher restarted the job's workers.
    pub restart_count: u64,
    /// torchrun's agent hosts the store: connect as a client, keys under
    /// [`store_prefix`](Self::store_prefix).
    pub agent_store: bool,
}

/// A launcher variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistEnvError {
    /// A variable the others imply is not set.
    #[error("{var} is not set, but {because} is: a multi-process launch needs both")]
    Missing {
        /// The missing variable.
        var: &'static str,
        /// The variable that implied it.
        because: &'static str,
    },
    /// A variable's value is not usable.
    #[error("{var}={value:?}: {why}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
}

fn parse<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, DistEnvError> {
    value.trim().parse().map_err(|_| DistEnvError::Invalid {
        var,
        value: value.to_owned(),
        why: "not a number".into(),
    })
}

impl DistEnv {
    /// Reads the launcher variables through `get` (`|k| std::env::var(k).ok()` in the binary).
    ///
    /// # Errors
    ///
    /// [`DistEnvError`] naming the variable that is missing or malformed, or a rank out of range.
    pub fn from_vars(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<DistEnv>, DistEnvError> {
        let found = if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
            Self::torchrun(&get)?
        } else if get("SLURM_PROCID").is_some() && get("SLURM_NTASKS").is_some() {
            Self::slurm(&get)?
        } else {
            return Ok(None);
        };
        if found.world == 0 {
            return Err(DistEnvError::Invalid {
                var: "WORLD_SIZE",
                value: "0".into(),
                why: "a job has at least one process".into(),
            });
        }
        if found.rank >= found.world {
            return Err(DistEnvError::Invalid {
                var: "RANK",
                value: found.rank.to_string(),
                why: format!("not below the world size {}", found.world),
            });
        }
        if found.local_rank >= found.local_world.max(1) {
            return Err(DistEnvError::Invalid {
                var: "LOCAL_RANK",
                value: found.local_rank.to_string(),
                why: format!("not below the local world size {}", found.local_world),
            });
        }
        Ok(Some(found))
    }

    fn torchrun(get: &impl Fn(&str) -> Option<String>) -> Result<DistEnv, DistEnvError> {
        let need = |var: &'static str, because: &'static str| {
            get(var).ok_or(DistEnvError::Missing { var, because })
        };
        let rank: usize = parse("RANK", &need("RANK", "WORLD_SIZE")?)?;
        let world: usize = parse("WORLD_SIZE", &need("WORLD_SIZE", "RANK")?)?;
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => parse("LOCAL_RANK", &v)?,
            None => rank,
        };
        let local_world = match get("LOCAL_WORLD_SIZE") {
            Some(v) => parse("LOCAL_WORLD_SIZE", &v)?,
            None => world,
        };
        let master_addr = match get("MASTER_ADDR") {
            Some(a) => a,
            None if world == 1 => "127.0.0.1".into(),
            None => {
                return Err(DistEnvError::Missing {
                    var: "MASTER_ADDR",
                    because: "RANK",
                })
            }
        };
        let master_port = match get("MASTER_PORT") {
            Some(p) => parse("MASTER_PORT", &p)?,
            None => DEFAULT_MASTER_PORT,
        };
        let restart_count = match get("TORCHELASTIC_RESTART_COUNT") {
            Some(v) => parse("TORCHELASTIC_RESTART_COUNT", &v)?,
            None => 0,
        };
        let elastic =
            get("TORCHELASTIC_RUN_ID").is_some() || get("TORCHELASTIC_RESTART_COUNT").is_some();
        Ok(DistEnv {
            launcher: if elastic {
                Launcher::Torchrun
            } else {
                Launcher::Env
            },
            rank,
            world,
            local_rank,
            local_world,
            master_addr,
            master_port,
            restart_count,
            agent_store: get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
        })
    }

    fn slurm(get: &impl Fn(&str) -> Option<String>) -> Result<DistEnv, DistEnvError> {
        let rank: usize = parse("SLURM_PROCID", &get("SLURM_PROCID").unwrap_or_default())?;
        let world: usize = parse("SLURM_NTASKS", &get("SLURM_NTASKS").unwrap_or_default())?;
        let local_rank = match get("SLURM_LOCALID") {
            Some(v) => parse("SLURM_LOCALID", &v)?,
            None => 0,
        };
        let local_world = match (get("SLURM_NTASKS_PER_NODE"), get("SLURM_TASKS_PER_NODE")) {
            (Some(v), _) => parse("SLURM_NTASKS_PER_NODE", &v)?,
            // "4(x2),3": this node's count is not told apart; the first is the common case.
            (None, Some(v)) => parse(
                "SLURM_TASKS_PER_NODE",
                v.split([',', '(']).next().unwrap_or_default(),
            )?,
            (None, None) => 1,
        };
        let master_addr = match get("MASTER_ADDR") {
            Some(a) => a,
            None => {
                let (var, list) = match (get("SLURM_JOB_NODELIST"), get("SLURM_NODELIST")) {
                    (Some(l), _) => ("SLURM_JOB_NODELIST", l),
                    (None, Some(l)) => ("SLURM_NODELIST", l),
                    (None, None) => {
                        return Err(DistEnvError::Missing {
                            var: "SLURM_JOB_NODELIST",
                            because: "SLURM_PROCID",
                        })
                    }
                };
                first_host(&list).map_err(|why| DistEnvError::Invalid {
                    var,
                    value: list.clone(),
                    why,
                })?
            }
        };
        let master_port = match get("MASTER_PORT") {
            Some(p) => parse("MASTER_PORT", &p)?,
            None => DEFAULT_MASTER_PORT,
        };
        let restart_count = match get("SLURM_RESTART_COUNT") {
            Some(v) => parse("SLURM_RESTART_COUNT", &v)?,
            None => 0,
        };
        Ok(DistEnv {
            launcher: Launcher::Slurm,
            rank,
            world,
            local_rank,
            local_world: local_world.max(1),
            master_addr,
            master_port,
            restart_count,
            agent_store: false,
        })
    }

    /// The key prefix of this attempt's store: torchrun's agent store is shared by every
    /// restart, so each attempt keeps to its own keys (`/worker/attempt_N`, as PyTorch does).
    pub fn store_prefix(&self) -> String {
        if self.agent_store {
            format!("/worker/attempt_{}", self.restart_count)
        } else {
            String::new()
        }
    }

    /// The one line the trainer prints at start.
    pub fn describe(&self) -> String {
        format!(
            "{}: rank {} of {} (local {} of {}), store {}:{}{}, restart {}",
            self.launcher,
            self.rank,
            self.world,
            self.local_rank,
            self.local_world,
            self.master_addr,
            self.master_port,
            if self.agent_store {
                " (torchrun's agent)"
            } else {
                ""
            },
            self.restart_count,
        )
    }
}

/// The first host of a Slurm host list: `node[03-05,9],gpu1` → `node03`, keeping the
/// zero padding, for every bracket of the first name (`r[1-2]n[07-08]` → `r1n07`).
///
/// # Errors
///
/// Why the list does not parse (empty, unbalanced brackets, an empty range).
pub fn first_host(list: &str) -> Result<String, String> {
    let list = list.trim();
    // The first name: up to the first comma outside brackets.
    let mut depth = 0usize;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1).ok_or("a `]` without its `[`")?,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let name = &list[..end];
    let mut host = String::new();
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        host.push_str(&rest[..open]);
        let close = rest[open..].find(']').ok_or("a `[` without its `]`")? + open;
        let inside = &rest[open + 1..close];
        let first = inside
            .split(',')
            .next()
            .and_then(|r| r.split('-').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or("an empty range `[]`")?;
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    if host.is_empty() || host.contains(']') {
        return Err("no host name".into());
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>, DistEnvError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_a_single_process_run() {
        assert_eq!(env(&[]), Ok(None));
        assert_eq!(
            env(&[("SLURM_JOB_ID", "7")]),
            Ok(None),
            "an allocation without srun"
        );
    }

    #[test]
    fn torchruns_variables() {
        let e = env(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("TORCHELASTIC_RUN_ID", "job"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            e,
            DistEnv {
                launcher: Launcher::Torchrun,
                rank: 3,
                world: 8,
                local_rank: 1,
                local_world: 2,
                master_addr: "10.0.0.1".into(),
                master_port: 29400,
                restart_count: 2,
                agent_store: true,
            }
        );
        assert_eq!(e.store_prefix(), "/worker/attempt_2");
        assert_eq!(
            e.describe(),
            "torchrun: rank 3 of 8 (local 1 of 2), store 10.0.0.1:29400 (torchrun's agent), restart 2"
        );
    }

    #[test]
    fn plain_env_variables_default_the_port_and_host_the_store_themselves() {
        let e = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.launcher, e.master_port, e.agent_store),
            (Launcher::Env, 29500, false)
        );
        assert_eq!((e.local_rank, e.local_world), (0, 2));
        assert_eq!(e.store_prefix(), "");
    }

    #[test]
    fn slurms_variables() {
        let e = env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_TASKS_PER_NODE", "4(x2)"),
            ("SLURM_JOB_NODELIST", "gpu[007-008]"),
            ("SLURM_RESTART_COUNT", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (e.launcher, e.rank, e.world, e.local_rank, e.local_world),
            (Launcher::Slurm, 5, 8, 1, 4)
        );
        assert_eq!(
            (e.master_addr.as_str(), e.master_port, e.restart_count),
            ("gpu007", 29500, 1)
        );
        // MASTER_ADDR / MASTER_PORT win when the batch script sets them.
        let e = env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "a,b"),
            ("MASTER_ADDR", "ib0-a"),
            ("MASTER_PORT", "12345"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((e.master_addr.as_str(), e.master_port), ("ib0-a", 12345));
    }

    #[test]
    fn bad_or_partial_variables_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| env(pairs).unwrap_err().to_string();
        assert!(err(&[("RANK", "0")]).starts_with("WORLD_SIZE is not set"));
        assert!(err(&[("RANK", "x"), ("WORLD_SIZE", "2")]).starts_with("RANK=\"x\""));
        assert!(
            err(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])
                .contains("not below the world size 2")
        );
        assert!(err(&[("RANK", "1"), ("WORLD_SIZE", "2")]).starts_with("MASTER_ADDR is not set"));
        assert!(
            err(&[("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_PORT", "99999")])
                .starts_with("MASTER_PORT")
        );
        assert!(err(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2")])
            .starts_with("SLURM_JOB_NODELIST is not set"));
        assert!(err(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NODELIST", "n[1-2")
        ])
        .starts_with("SLURM_NODELIST=\"n[1-2\""));
    }

    #[test]
    fn slurm_host_lists() {
        assert_eq!(first_host("node01").unwrap(), "node01");
        assert_eq!(first_host("node[03-05,9],gpu1").unwrap(), "node03");
        assert_eq!(first_host("gpu1,node[03-05]").unwrap(), "gpu1");
        assert_eq!(first_host("r[1-2]n[07-08]").unwrap(), "r1n07");
        assert_eq!(first_host("n[8,2]").unwrap(), "n8");
        assert!(first_host("").is_err());
        assert!(first_host("n[]").is_err());
        assert!(first_host("n]").is_err());
    }
}
