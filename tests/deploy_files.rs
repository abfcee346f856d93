//! The deploy files for clusters this project cannot run here (deploy/kubernetes, deploy/slurm)
//! and the compose cluster (docker/compose.yaml): their syntax, and the rules every one of them
//! must keep. The compose cluster itself is run by docker/test-cluster.sh; the Kubernetes and
//! Slurm files are untested on a real cluster (docs say so), so this is what checks them.
//!
//! Rules: every container runs as uid 10001 (non-root), mounts the dataset read-only, and uses
//! one of the project's two images; trainers resume from a checkpoint; workers need the token.

use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
}

/// `<<: *anchor` merge keys (YAML 1.1, which compose uses) applied, recursively.
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(Yaml::Hash(base)) = h.get(&Yaml::String("<<".into())).map(merged) {
                out.extend(base);
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A container's command line as one string (compose's folded string or a list; Kubernetes'
/// command + args).
fn command_line(parts: &[&Yaml]) -> String {
    parts
        .iter()
        .map(|y| match y.as_str() {
            Some(s) => s.to_owned(),
            None => strings(y).join(" "),
        })
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn compose_cluster_keeps_the_rules() {
    let docs = load(&repo().join("docker/compose.yaml"));
    assert_eq!(docs.len(), 1);
    let doc = merged(&docs[0]);
    let services = &doc["services"];
    let names: Vec<&str> = services
        .as_hash()
        .expect("services")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        names,
        [
            "dataset",
            "worker-1",
            "worker-2",
            "worker-3",
            "trainer-0",
            "trainer-1"
        ]
    );
    assert_eq!(doc["networks"]["cluster"]["internal"].as_bool(), Some(true));
    for name in &names[1..] {
        let s = &services[*name];
        let volumes = strings(&s["volumes"]);
        assert!(
            volumes.contains(&"dataset:/data:ro".to_owned()),
            "{name} must mount the dataset read-only: {volumes:?}"
        );
        assert!(
            volumes.contains(&"secrets:/secrets:ro".to_owned()),
            "{name}: {volumes:?}"
        );
        assert_eq!(strings(&s["networks"]), ["cluster"], "{name}");
        let cmd = command_line(&[&s["command"]]);
        assert!(cmd.contains("--token-file /secrets/token"), "{name}: {cmd}");
        if name.starts_with("worker") {
            assert!(
                s["image"].as_str().unwrap().starts_with("shardfeed:"),
                "{name}"
            );
            assert!(
                cmd.starts_with("serve /data/shards --listen 0.0.0.0:7000"),
                "{cmd}"
            );
            // The image's health check asks this endpoint.
            assert!(cmd.contains("--metrics 127.0.0.1:9100"), "{cmd}");
        } else {
            assert!(s["image"]
                .as_str()
                .unwrap()
                .starts_with("shardfeed-trainer:"));
            assert!(cmd.starts_with("torchrun --nnodes 2"), "{cmd}");
            assert!(cmd.contains("--master-addr trainer-0"), "{cmd}");
            let rank = &name["trainer-".len()..];
            assert_eq!(
                s["environment"]["PET_NODE_RANK"].as_str(),
                Some(rank),
                "{name}"
            );
            assert!(cmd.contains("--resume"), "{cmd}");
            assert!(cmd.contains("--remote worker-1:7000,worker-2:7000,worker-3:7000"));
            for w in ["worker-1", "worker-2", "worker-3"] {
                assert_eq!(
                    s["depends_on"][w]["condition"].as_str(),
                    Some("service_healthy"),
                    "{name} waits for {w}"
                );
            }
        }
    }
    // The dataset is made once, then read-only for everyone else.
    let dataset = &services["dataset"];
    assert_eq!(
        strings(&dataset["volumes"]),
        ["dataset:/data", "secrets:/secrets"]
    );
    assert_eq!(dataset["network_mode"].as_str(), Some("none"));
}

#[test]
fn kubernetes_files_keep_the_rules() {
    let dir = repo().join("deploy/kubernetes");
    let mut kinds = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {}", dir.display());
    for path in files {
        for doc in load(&path) {
            let what = format!("{}: {:?}", path.display(), doc["metadata"]["name"]);
            assert!(doc["apiVersion"].as_str().is_some(), "{what}: apiVersion");
            let kind = doc["kind"].as_str().expect("kind").to_owned();
            assert!(doc["metadata"]["name"].as_str().is_some(), "{what}: name");
            let pod = match kind.as_str() {
                "StatefulSet" => &doc["spec"]["template"]["spec"],
                "JobSet" => {
                    &doc["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
                }
                "Service" => {
                    assert_eq!(
                        doc["spec"]["clusterIP"].as_str(),
                        Some("None"),
                        "{what}: headless"
                    );
                    kinds.push(kind);
                    continue;
                }
                other => panic!("{what}: unexpected kind {other}"),
            };
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{what}"
            );
            assert_eq!(
                pod["securityContext"]["runAsUser"].as_i64(),
                Some(10001),
                "{what}"
            );
            let containers = pod["containers"].as_vec().expect("containers");
            for c in containers {
                let image = c["image"].as_str().unwrap();
                assert!(
                    image.starts_with("shardfeed:") || image.starts_with("shardfeed-trainer:"),
                    "{what}: image {image}"
                );
                let data = c["volumeMounts"]
                    .as_vec()
                    .unwrap()
                    .iter()
                    .find(|m| m["mountPath"].as_str() == Some("/data"))
                    .unwrap_or_else(|| panic!("{what}: no /data mount"));
                assert_eq!(
                    data["readOnly"].as_bool(),
                    Some(true),
                    "{what}: /data read-only"
                );
                let cmd = command_line(&[&c["command"], &c["args"]]);
                assert!(cmd.contains("--token-file=/secrets/token"), "{what}: {cmd}");
                if kind == "JobSet" {
                    assert!(cmd.starts_with("torchrun --nnodes=2"), "{what}: {cmd}");
                    assert!(cmd.contains("--resume"), "{what}: {cmd}");
                    // Every worker of the StatefulSet by its stable name.
                    for i in 0..3 {
                        assert!(
                            cmd.contains(&format!("shardfeed-worker-{i}.shardfeed-worker:7000"))
                        );
                    }
                } else {
                    assert!(cmd.starts_with("serve /data/shards"), "{what}: {cmd}");
                    assert_eq!(
                        c["readinessProbe"]["httpGet"]["path"].as_str(),
                        Some("/healthz")
                    );
                }
            }
            kinds.push(kind);
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["JobSet", "Service", "StatefulSet"]);
}

#[test]
fn slurm_script_is_valid_bash() {
    let script = repo().join("deploy/slurm/shardfeed-train.sbatch");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&script).unwrap();
    for needed in [
        "#SBATCH --nodes=",
        "--resume",
        "--checkpoint-dir",
        ":/data:ro",
        "shardfeed serve",
    ] {
        assert!(text.contains(needed), "{} lacks {needed}", script.display());
    }
}
