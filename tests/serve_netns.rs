//! The remote fault tests across network namespaces: each worker is a host of its own (`ip
//! netns` + a veth pair to this namespace), listening on its veth address with a shared secret
//! (required off loopback). One is cut off (`ip link set ... down`) and one killed mid-epoch; the
//! bytes still equal the local engine's. Traffic stays on the veths and loopback. Skipped with a
//! message where the machine does not allow namespaces (not root, no `ip`).

mod common;

use common::workers::Worker;
use shardfeed_engine::loader::{Loader, LoaderConfig, StreamDigest};
use shardfeed_engine::remote::{RemoteConfig, WorkerList};
use shardfeed_engine::shards::Dataset;
use shardfeed_engine::wire::auth::Token;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "a shared secret for the netns test";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace with a veth pair: `10.213.N.1` on this side, `10.213.N.2` inside. Deleted (with
/// its veth) when dropped.
struct Host {
    ns: String,
    outside: String,
    addr: String,
}

impl Host {
    fn new(n: u32) -> Result<Host, String> {
        let tag = std::process::id() % 10_000;
        let ns = format!("sfnt{tag}-{n}");
        let outside = format!("sfh{tag}-{n}");
        let inside = format!("sfi{tag}-{n}");
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        let host = Host {
            ns: ns.clone(),
            outside: outside.clone(),
            addr: format!("10.213.{n}.2"),
        };
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &ns])?;
        ip(&["addr", "add", &format!("10.213.{n}.1/24"), "dev", &outside])?;
        ip(&["link", "set", &outside, "up"])?;
        ip(&[
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("10.213.{n}.2/24"),
            "dev",
            &inside,
        ])?;
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"])?;
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        Ok(host)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.outside]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

fn config() -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        workers: 2,
        prefetch: 6,
        seed: 5,
        ..LoaderConfig::train(32)
    }
}

#[test]
fn workers_on_other_hosts_survive_a_cut_link_and_a_kill() {
    let hosts: Result<Vec<Host>, String> = (1..=3).map(Host::new).collect();
    let hosts = match hosts {
        Ok(h) => h,
        Err(e) => {
            eprintln!("SKIPPED: network namespaces are not available here ({e}); run as root with iproute2");
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = shardfeed_engine::synth::SynthOptions {
        classes: 4,
        per_class: 30,
        val_per_class: 1,
        ..Default::default()
    };
    let root =
        shardfeed_engine::demo::synthetic_dataset_with(tmp.path(), &opts, 3).expect("dataset");
    let train = root.join("train");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, SECRET).expect("token");
    let token_arg = token_file.to_str().expect("utf-8");
    let mut workers: Vec<Worker> = hosts
        .iter()
        .map(|h| {
            let listen = format!("{}:7000", h.addr);
            Worker::start_in(
                Some(&h.ns),
                &root,
                &listen,
                &["--token-file", token_arg, "--max-in-flight", "2"],
            )
        })
        .collect();
    let addrs: Vec<String> = workers.iter().map(|w| w.addr.clone()).collect();
    assert!(addrs.iter().all(|a| a.starts_with("10.213.")), "{addrs:?}");

    let mut local = Loader::open(&train, config()).expect("local");
    let mut want = StreamDigest::default();
    for b in local.epoch(0) {
        want.update(&b.expect("local batch"));
    }

    let remote = RemoteConfig {
        token: Token::from_file_bytes(SECRET.as_bytes().to_vec()),
        deadline: Duration::from_millis(1500),
        connect_timeout: Duration::from_secs(1),
        refresh: Duration::from_millis(200),
        ..RemoteConfig::new(WorkerList {
            addresses: addrs.clone(),
            file: None,
        })
    };
    let dataset = Arc::new(Dataset::open(&train).expect("dataset"));
    let mut loader = Loader::remote(dataset, config(), remote).expect("remote loader");
    let mut got = StreamDigest::default();
    let mut n = 0;
    for b in loader.epoch(0) {
        got.update(&b.expect("remote batch"));
        n += 1;
        if n == 6 {
            ip(&["link", "set", &hosts[1].outside, "down"]).expect("cut the link");
        }
        if n == 14 {
            workers[2].kill();
        }
    }
    assert_eq!(got.hex(), want.hex());
    let stats = loader.remote_stats().expect("stats");
    let cut = &stats.workers[&addrs[1]];
    assert!(
        cut.deadline_misses + cut.lost >= 1,
        "the cut-off worker was noticed: {stats:?}"
    );
    assert_eq!(stats.workers[&addrs[2]].lost, 1, "{stats:?}");
    assert!(stats.workers[&addrs[0]].batches > 0);
}
