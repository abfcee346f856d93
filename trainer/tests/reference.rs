//! The trainer against values written by `scripts/gen_reference.py` (PyTorch 2.11, torchvision
//! 0.26): LARS steps, the learning-rate schedule, torchvision's ResNet parameter names/shapes.

use std::collections::BTreeMap;

use serde_json::Value;
use shardfeed_trainer::flat::{FlatParams, LarsRole};
use shardfeed_trainer::lars::{Lars, LarsConfig};
use shardfeed_trainer::model::{parameter_count, Arch, ModelOptions, ResNet};
use shardfeed_trainer::precision::MemoryFormat;
use shardfeed_trainer::schedule::PolyWarmup;
use tch::{nn, Device, Kind, Tensor};

fn reference() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference.json"
    ))
    .expect("tests/data/reference.json (run scripts/gen_reference.py)");
    serde_json::from_str(&text).expect("valid JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn shape(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}

#[test]
fn lars_matches_the_pytorch_transcription_of_the_mlperf_reference() {
    let r = reference();
    let case = &r["lars"];
    let c = &case["config"];
    let cfg = LarsConfig {
        momentum: c["momentum"].as_f64().unwrap(),
        weight_decay: c["weight_decay"].as_f64().unwrap(),
        eta: c["eta"].as_f64().unwrap(),
        epsilon: c["epsilon"].as_f64().unwrap(),
        nesterov: false,
    };
    let mut named = Vec::new();
    for p in case["params"].as_array().unwrap() {
        let t = Tensor::from_slice(&floats(&p["init"]))
            .view(shape(&p["shape"]).as_slice())
            .set_requires_grad(true);
        named.push((p["name"].as_str().unwrap().to_string(), t));
    }
    let flat = FlatParams::from_named(named, Device::Cpu, MemoryFormat::Contiguous).unwrap();
    // The skip list of the reference is exactly our rank-1 rule on these parameters.
    for p in case["params"].as_array().unwrap() {
        let seg = flat
            .segments()
            .iter()
            .find(|s| s.name == p["name"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            seg.role == LarsRole::Skipped,
            p["skipped"].as_bool().unwrap(),
            "{}",
            seg.name
        );
    }
    let mut lars = Lars::new(&flat, cfg);
    for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
        // Gradients into the flat buffer, in segment order.
        let grads: Vec<f32> = flat
            .segments()
            .iter()
            .flat_map(|s| floats(&step["grads"][&s.name]))
            .collect();
        tch::no_grad(|| {
            flat.grads()
                .shallow_clone()
                .copy_(&Tensor::from_slice(&grads))
        });
        lars.step(&flat, step["lr"].as_f64().unwrap());
        for (seg, var) in flat.segments().iter().zip(flat.vars()) {
            let want = Tensor::from_slice(&floats(&step["weights_after"][&seg.name]));
            let got = var.flatten(0, -1);
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 2e-5, "step {i}, {}: max |diff| {diff}", seg.name);
            let want_v = Tensor::from_slice(&floats(&step["momentum_after"][&seg.name]));
            let got_v = lars.momentum().narrow(0, seg.offset, seg.numel);
            let diff = (&got_v - &want_v).abs().max().double_value(&[]);
            assert!(
                diff < 2e-5,
                "step {i}, momentum of {}: max |diff| {diff}",
                seg.name
            );
        }
    }
}

#[test]
fn schedule_matches_lars_util() {
    let r = reference();
    let s = &r["schedule"];
    let schedule = PolyWarmup::new(
        s["base_lr"].as_f64().unwrap(),
        s["end_lr"].as_f64().unwrap(),
        s["steps_per_epoch"].as_u64().unwrap(),
        s["warmup_epochs"].as_f64().unwrap(),
        s["train_steps"].as_u64().unwrap(),
    );
    for point in s["points"].as_array().unwrap() {
        let step = point[0].as_u64().unwrap();
        let want = point[1].as_f64().unwrap();
        let got = schedule.lr(step);
        assert!((got - want).abs() < 1e-12, "step {step}: {got} vs {want}");
    }
}

fn check_resnet(arch: Arch, key: &str) {
    let r = reference();
    let tv = &r[key];
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = ResNet::new(&vs.root(), arch, 1000, ModelOptions::default());
    assert_eq!(parameter_count(&vs), tv["parameters"].as_i64().unwrap());
    let ours: BTreeMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    let mut theirs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for section in ["param_shapes", "buffer_shapes"] {
        for (n, s) in tv[section].as_object().unwrap() {
            theirs.insert(n.clone(), shape(s));
        }
    }
    assert_eq!(ours, theirs);
    let trainable: Vec<_> = vs.trainable_variables();
    assert_eq!(
        trainable.len(),
        tv["param_shapes"].as_object().unwrap().len()
    );
    assert!(trainable.iter().all(|t| t.kind() == Kind::Float));
}

#[test]
fn resnet50_names_shapes_and_count_are_torchvisions() {
    check_resnet(Arch::ResNet50, "resnet50");
}

#[test]
fn resnet18_names_shapes_and_count_are_torchvisions() {
    check_resnet(Arch::ResNet18, "resnet18");
}
