//! [`RemoteConfig`]: where the workers are and how the remote source treats them.

use shardfeed_wire::auth::{Token, MIN_TOKEN_LEN};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the workers are: addresses given once, and a file re-read at every refresh (edit it to
/// add or remove workers while a job runs). Names are resolved again at every connection, so a
/// worker may move or come and go behind a DNS name (a Kubernetes headless service, a compose
/// service).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerList {
    /// `host:port` addresses.
    pub addresses: Vec<String>,
    /// A file of `host:port` addresses (one per line or comma-separated; `#` starts a comment).
    pub file: Option<PathBuf>,
}

impl WorkerList {
    /// `host:port[,host:port...]`.
    pub fn parse_addresses(list: &str) -> WorkerList {
        WorkerList {
            addresses: split_addresses(list),
            file: None,
        }
    }

    /// The addresses now: the fixed ones, then the file's.
    ///
    /// # Errors
    ///
    /// The file's read error, as text naming it.
    pub fn read(&self) -> Result<Vec<String>, String> {
        let mut all = self.addresses.clone();
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading the worker list {}: {e}", path.display()))?;
            for line in text.lines() {
                all.extend(split_addresses(line.split('#').next().unwrap_or("")));
            }
        }
        all.dedup();
        Ok(all)
    }
}

fn split_addresses(list: &str) -> Vec<String> {
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A shared secret that cannot be had from its file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("reading {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// It holds fewer than [`MIN_TOKEN_LEN`] bytes (after one trailing newline).
    #[error("{}: a token must hold at least {MIN_TOKEN_LEN} bytes", .0.display())]
    TooShort(PathBuf),
}

/// Reads a shared secret (`--token-file`): the one rule every command and binding uses.
///
/// # Errors
///
/// [`TokenFileError`] naming the file.
pub fn read_token(path: &Path) -> Result<Token, TokenFileError> {
    let bytes = std::fs::read(path).map_err(|error| TokenFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    Token::from_file_bytes(bytes).ok_or_else(|| TokenFileError::TooShort(path.to_owned()))
}

/// How the remote source talks to workers. [`RemoteConfig::new`] has the defaults.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The workers.
    pub workers: WorkerList,
    /// The shared secret, when the workers require one (`--token-file`).
    pub token: Option<Token>,
    /// A request not answered within this time goes to another worker, and the worker that
    /// missed it is disconnected (and tried again later). When no worker can take work for this
    /// long, the loader fails naming every worker tried. Default 30 s.
    pub deadline: Duration,
    /// Connecting and the handshake, per worker. Default 5 s.
    pub connect_timeout: Duration,
    /// How often the worker list is re-read, names re-resolved and lost workers retried.
    /// Default 2 s.
    pub refresh: Duration,
    /// Requests outstanding per worker, at most what the worker allows (0: what it allows).
    /// Default 0.
    pub max_in_flight: usize,
    /// This client's name in the workers' logs and metrics.
    pub client_name: String,
}

impl RemoteConfig {
    /// The defaults, for `workers`.
    pub fn new(workers: WorkerList) -> RemoteConfig {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "client".into());
        RemoteConfig {
            workers,
            token: None,
            deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            refresh: Duration::from_secs(2),
            max_in_flight: 0,
            client_name: format!("{host}:{}", std::process::id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lists_parse_from_flags_and_files() {
        assert_eq!(
            WorkerList::parse_addresses("a:1, b:2,,c:3").read(),
            Ok(vec!["a:1".into(), "b:2".into(), "c:3".into()])
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("workers");
        std::fs::write(&path, "# workers\nw1:7000\nw2:7000, w3:7000 # spare\n\n").expect("write");
        let list = WorkerList {
            addresses: vec!["local:1".into()],
            file: Some(path.clone()),
        };
        assert_eq!(
            list.read(),
            Ok(vec![
                "local:1".into(),
                "w1:7000".into(),
                "w2:7000".into(),
                "w3:7000".into()
            ])
        );
        let missing = WorkerList {
            addresses: vec![],
            file: Some(dir.path().join("nope")),
        }
        .read();
        assert!(missing.is_err_and(|e| e.contains("nope")));
    }
}
